"""Outbound deliveries for notify/ticket: webhook POST (allow-listed prefixes only, no redirects), SMTP, syslog UDP."""

from __future__ import annotations

import json
import smtplib
import socket
import urllib.error
import urllib.request
from email.message import EmailMessage
from http.client import HTTPMessage
from typing import IO, Any

from playbooks.errors import ActionError, PermanentError
from playbooks.values import url_allowed
from secops.config import PlaybookSettings
from secops.ecs import iso
from secops.i18n import N_, message


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: HTTPMessage, newurl: str) -> urllib.request.Request | None:
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} refused", headers, fp)


_OPENER = urllib.request.build_opener(_NoRedirect)


def check_webhook(url: str, settings: PlaybookSettings) -> None:
    if not url_allowed(url, settings.webhook_allow):
        raise PermanentError(message(N_("webhook %(url)s is not under any playbooks.webhook_allow prefix"),
                                     url=url[:120]))


def post_json(url: str, payload: dict[str, Any], settings: PlaybookSettings, timeout: float,
              idempotency_key: str) -> dict[str, Any]:
    """POST JSON to an allow-listed URL; the Idempotency-Key header lets receivers drop a redelivered step."""
    check_webhook(url, settings)
    body = json.dumps(payload, default=str).encode()
    # Only http(s) URLs under an allow-listed prefix reach this point (check_webhook, values.Url).
    req = urllib.request.Request(url, data=body, method="POST", headers={  # noqa: S310
        "Content-Type": "application/json", "Idempotency-Key": idempotency_key, "User-Agent": "secops-playbooks"})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            text = resp.read(4096).decode("utf-8", "replace")
            return {"status": resp.status, "response": text[:500]}
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500 and exc.code not in (408, 429):
            raise PermanentError(message(N_("webhook answered %(status)s"), status=exc.code)) from None
        raise ActionError(message(N_("webhook answered %(status)s"), status=exc.code)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ActionError(message(N_("webhook unreachable: %(reason)s"),
                                  reason=str(getattr(exc, "reason", exc)))) from None


def send_mail(settings: PlaybookSettings, to: list[str], subject: str, text: str, timeout: float) -> dict[str, Any]:
    if not settings.smtp_host:
        raise PermanentError(message(N_("playbooks.smtp_host is not configured")))
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = settings.mail_from, ", ".join(to), subject
    msg.set_content(text)
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout) as smtp:
            refused = smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise ActionError(message(N_("SMTP %(server)s: %(error)s"), server=f"{settings.smtp_host}:{settings.smtp_port}",
                                  error=str(exc))) from None
    return {"mailed": to, "refused": list(refused)}


def send_syslog(settings: PlaybookSettings, text: str, severity: int = 4) -> dict[str, Any]:
    """One RFC 5424 message over UDP (facility local0)."""
    if not settings.syslog_address:
        raise PermanentError(message(N_("playbooks.syslog_address is not configured")))
    host, _, port = settings.syslog_address.rpartition(":")
    pri = 16 * 8 + severity
    line = f"<{pri}>1 {iso()} {socket.gethostname()} secops - playbook - {text}".encode()
    try:
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.sendto(line, (host.strip("[]"), int(port)))
    except (OSError, ValueError) as exc:
        raise ActionError(message(N_("syslog %(server)s: %(error)s"), server=settings.syslog_address,
                                  error=str(exc))) from None
    return {"syslog": settings.syslog_address, "bytes": len(line)}
