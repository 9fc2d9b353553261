"""Outbound deliveries for notify/ticket: the kernel's senders (secops.delivery) with the playbooks' policy:
webhooks only under allow-listed prefixes, an Idempotency-Key per step, errors as retryable or permanent."""

from __future__ import annotations

from typing import Any

from playbooks.errors import ActionError, PermanentError
from playbooks.values import url_allowed
from secops import delivery
from secops.config import PlaybookSettings


def _action_error(exc: delivery.DeliveryError) -> ActionError:
    return PermanentError(str(exc)) if exc.permanent else ActionError(str(exc))


def check_webhook(url: str, settings: PlaybookSettings) -> None:
    if not url_allowed(url, settings.webhook_allow):
        raise PermanentError(f"webhook {url[:120]} is not under any playbooks.webhook_allow prefix")


def post_json(url: str, payload: dict[str, Any], settings: PlaybookSettings, timeout: float,
              idempotency_key: str) -> dict[str, Any]:
    """POST JSON to an allow-listed URL; the Idempotency-Key header lets receivers drop a redelivered step."""
    check_webhook(url, settings)
    try:
        return delivery.post_json(url, payload, timeout, {"Idempotency-Key": idempotency_key},
                                  user_agent="secops-playbooks")
    except delivery.DeliveryError as exc:
        raise _action_error(exc) from None


def send_mail(settings: PlaybookSettings, to: list[str], subject: str, text: str, timeout: float) -> dict[str, Any]:
    try:
        return delivery.send_mail(settings.smtp_host, settings.smtp_port, settings.mail_from, to, subject, text,
                                  timeout)
    except delivery.DeliveryError as exc:
        raise _action_error(exc) from None


def send_syslog(settings: PlaybookSettings, text: str, severity: int = 4) -> dict[str, Any]:
    """One RFC 5424 message over UDP (facility local0)."""
    try:
        return delivery.send_syslog(settings.syslog_address, text, severity, msgid="playbook")
    except delivery.DeliveryError as exc:
        raise _action_error(exc) from None
