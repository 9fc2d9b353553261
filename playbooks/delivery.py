"""Outbound deliveries for notify/ticket: the kernel's senders (secops.delivery) with the playbooks' policy:
webhooks only under allow-listed prefixes, an Idempotency-Key per step, errors as retryable or permanent."""

from __future__ import annotations

from typing import Any

from playbooks.errors import ActionError, PermanentError
from playbooks.values import url_allowed
from secops import delivery
from secops.config import PlaybookSettings
from secops.i18n import N_, message

# The delivery failures a step can show, marked here so the playbooks catalogue translates them.
DELIVERY_MESSAGES = (
    N_("not an http(s) URL: %(url)s"), N_("webhook answered %(status)s"), N_("webhook unreachable: %(reason)s"),
    N_("playbooks.smtp_host is not configured"), N_("SMTP %(server)s: %(error)s"),
    N_("playbooks.syslog_address is not configured"), N_("syslog %(server)s: %(error)s"),
)


def _action_error(exc: delivery.DeliveryError) -> ActionError:
    text = message(exc.msgid, **exc.params)
    return PermanentError(text) if exc.permanent else ActionError(text)


def check_webhook(url: str, settings: PlaybookSettings) -> None:
    if not url_allowed(url, settings.webhook_allow):
        raise PermanentError(message(N_("webhook %(url)s is not under any playbooks.webhook_allow prefix"),
                                     url=url[:120]))


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
