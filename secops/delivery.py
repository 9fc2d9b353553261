"""Outbound deliveries to targets the operator configured: JSON over HTTP POST (no redirects), SMTP mail, one
RFC 5424 syslog line over UDP. Shared by playbook actions (notify, ticket) and case/alert notifications; callers
decide which URLs are allowed. Every failure is a :class:`DeliveryError` saying whether a retry can help."""

from __future__ import annotations

import json
import smtplib
import socket
import urllib.error
import urllib.request
from email.message import EmailMessage
from http.client import HTTPMessage
from typing import IO, Any

from secops.ecs import iso


class DeliveryError(Exception):
    """A delivery that failed; ``permanent``: the same request will fail again (a 4xx, no server configured).
    ``msgid`` and ``params`` let a caller show it translated (playbooks/delivery.py marks the ids)."""

    def __init__(self, msgid: str, permanent: bool = False, **params: Any):
        super().__init__(msgid % params if params else msgid)
        self.msgid, self.params, self.permanent = msgid, params, permanent


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: HTTPMessage, newurl: str) -> urllib.request.Request | None:
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} refused", headers, fp)


_OPENER = urllib.request.build_opener(_NoRedirect)


def post_json(url: str, payload: dict[str, Any], timeout: float, headers: dict[str, str] | None = None,
              user_agent: str = "secops") -> dict[str, Any]:
    """POST JSON to ``url`` (http or https only); {status, response} or DeliveryError."""
    if not url.lower().startswith(("http://", "https://")):
        raise DeliveryError("not an http(s) URL: %(url)s", permanent=True, url=url[:120])
    body = json.dumps(payload, default=str).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={  # noqa: S310 (scheme checked above)
        "Content-Type": "application/json", "User-Agent": user_agent, **(headers or {})})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            text = resp.read(4096).decode("utf-8", "replace")
            return {"status": resp.status, "response": text[:500]}
    except urllib.error.HTTPError as exc:
        raise DeliveryError("webhook answered %(status)s", status=exc.code,
                            permanent=400 <= exc.code < 500 and exc.code not in (408, 429)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError("webhook unreachable: %(reason)s", reason=str(getattr(exc, "reason", exc))) from None


def send_mail(host: str | None, port: int, mail_from: str, to: list[str], subject: str, text: str,
              timeout: float) -> dict[str, Any]:
    if not host:
        raise DeliveryError("playbooks.smtp_host is not configured", permanent=True)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = mail_from, ", ".join(to), subject
    msg.set_content(text)
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            refused = smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError("SMTP %(server)s: %(error)s", server=f"{host}:{port}", error=str(exc)) from None
    return {"mailed": to, "refused": list(refused)}


def send_syslog(address: str | None, text: str, severity: int = 4, app: str = "secops",
                msgid: str = "-") -> dict[str, Any]:
    """One RFC 5424 message over UDP (facility local0) to ``host:port``."""
    if not address:
        raise DeliveryError("playbooks.syslog_address is not configured", permanent=True)
    host, _, port = address.rpartition(":")
    pri = 16 * 8 + severity
    line = f"<{pri}>1 {iso()} {socket.gethostname()} {app} - {msgid} - {text}".encode()
    try:
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.sendto(line, (host.strip("[]"), int(port)))
    except (OSError, ValueError) as exc:
        raise DeliveryError("syslog %(server)s: %(error)s", server=address, error=str(exc)) from None
    return {"syslog": address, "bytes": len(line)}
