"""Secrets out of everything printed or logged: URL userinfo and secret-looking query parameters.

Without pydantic or the configuration's models, so that the command line installs it before it reads any settings
(``secops.config`` re-exports these names).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from secops.config import Settings

# scheme://USERINFO@ (up to the last '@' before the path) and secret-looking query parameters.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]*(?:@[^/\s@]*)*@")
_URL_SECRET_PARAM = re.compile(r"(?P<key>[?&;](?:password|passwd|pass|pwd|secret|token|api_?key|auth)=)[^&;#\s'\"]*",
                               re.IGNORECASE)


def redact_text(text: str) -> str:
    """``text`` with the userinfo of every URL in it (``redis://:pass@host``, ``https://user:pass@es``) and
    secret query parameters replaced by ``***``; for anything printed or logged that may hold a URL."""
    if "://" not in text:
        return text
    text = _URL_USERINFO.sub(r"\g<scheme>***@", text)
    return _URL_SECRET_PARAM.sub(r"\g<key>***", text)


def _redact_tree(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [_redact_tree(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_tree(v) for k, v in value.items()}
    return value


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data with every secret replaced: SecretStr fields dump as
    '**********', URL userinfo and secret query parameters (file or environment) as '***'."""
    return _redact_tree(settings.model_dump(mode="json"))


class RedactingFilter(logging.Filter):
    """Log filter: the formatted message and exception text of every record with URL secrets redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def install_log_redaction(*loggers: logging.Logger) -> None:
    """Add the RedactingFilter to every handler of the given loggers, once each (default: the root logger's
    handlers and Python's last-resort handler, which prints warnings when nothing is configured)."""
    handlers = [h for lg in loggers or (logging.getLogger(),) for h in lg.handlers]
    if not loggers and logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
