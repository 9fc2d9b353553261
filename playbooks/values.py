"""Typed validation of every value that reaches an action: addresses, hostnames, ports, URLs, tags, text.

Values drawn from alerts are hostile until proven otherwise. The annotated types below are used in
the actions' parameter models, so a value must parse as what the action needs before it runs;
nothing is ever interpolated into a shell (there is no shell), and nft/iptables arguments are built
from the normalised forms returned here.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field

HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")
NETNS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
TEMPLATE_MARKERS = ("{{", "}}", "{%", "%}", "{#", "#}")
SHELL_MARKERS = ("$(", "`", "${")


class HostileValue(ValueError):
    """A value drawn from an alert that must never reach an action."""


def check_scalar(value: object, max_length: int = 512) -> None:
    """Refuse alert-derived strings with control characters, template/command-substitution syntax or excess length."""
    if value is None or isinstance(value, (bool, int, float)):
        return
    if not isinstance(value, str):
        raise HostileValue(f"expected a scalar value, got {type(value).__name__}")
    if len(value) > max_length:
        raise HostileValue(f"value longer than {max_length} characters ({len(value)})")
    if CONTROL_RE.search(value):
        raise HostileValue("value contains control characters (newline injection?)")
    for marker in TEMPLATE_MARKERS:
        if marker in value:
            raise HostileValue(f"value contains template syntax {marker!r}")
    for marker in SHELL_MARKERS:
        if marker in value:
            raise HostileValue(f"value contains command-substitution syntax {marker!r}")


def _address(value: object) -> str:
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if not isinstance(value, str) or len(value) > 45:
        raise ValueError("not an IP address")
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"not an IP address: {value[:64]!r}") from None
    if addr.is_unspecified or addr.is_multicast:
        raise ValueError(f"{addr} is not a host address")
    return str(addr)


def _hostname(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("not a hostname")
    try:
        return _address(value)
    except ValueError:
        pass
    if not HOSTNAME_RE.match(value):
        raise ValueError(f"not a hostname or address: {value[:64]!r}")
    return value.rstrip(".").lower()


def _url(value: object) -> str:
    if not isinstance(value, str) or len(value) > 2048 or CONTROL_RE.search(value) or " " in value:
        raise ValueError("not a URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"only http(s) URLs with a host are allowed: {value[:64]!r}")
    if parts.username or parts.password:
        raise ValueError("URLs with credentials are not allowed")
    _hostname(parts.hostname)
    _ = parts.port  # raises ValueError on a bad port
    return value


def _tag(value: object) -> str:
    if not isinstance(value, str) or not TAG_RE.match(value):
        raise ValueError(f"not a tag (letters, digits, _.:/-, at most 64): {str(value)[:64]!r}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        value = str(value)
    check_scalar(value, max_length=4096)
    return value


def _port(value: object) -> object:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value


Address = Annotated[str, BeforeValidator(_address)]
Hostname = Annotated[str, BeforeValidator(_hostname)]
Url = Annotated[str, BeforeValidator(_url)]
Tag = Annotated[str, BeforeValidator(_tag)]
Text = Annotated[str, BeforeValidator(_text)]
Port = Annotated[int, BeforeValidator(_port), Field(ge=1, le=65535)]
NetnsName = Annotated[str, AfterValidator(lambda v: v if NETNS_RE.match(v) else _bad_netns(v))]


def _bad_netns(value: str) -> str:
    raise ValueError(f"not a network namespace name: {value[:64]!r}")


def url_allowed(url: str, prefixes: list[str]) -> bool:
    """True if the URL starts with one of the configured prefixes, compared on parsed scheme/host/port/path."""
    u = urlsplit(url)
    for prefix in prefixes:
        p = urlsplit(prefix)
        if (u.scheme, (u.hostname or "").lower(), u.port) != (p.scheme, (p.hostname or "").lower(), p.port):
            continue
        base = p.path or "/"
        if u.path == base or u.path.startswith(base if base.endswith("/") else base + "/") or base == "/":
            return True
    return False
