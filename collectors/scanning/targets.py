"""Scan targets: strict parsing (address, network, hostname) and the scope/exclusion check.

Nothing reaches nmap unless it parsed here as one of three shapes and every address it covers lies
inside a configured scope and outside every exclusion. Hostnames are resolved here and nmap gets the
resolved addresses, so a DNS answer cannot change what is scanned between the check and the scan.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 1123 labels; no leading '-', nothing but letters, digits, '-' and '.'
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
HOSTNAME_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")
ADDRESS_CHARS = re.compile(r"^[0-9A-Fa-f:./]+$")
DEFAULT_MAX_ADDRESSES = 65536


class TargetError(ValueError):
    """A target that is malformed, hostile, too large or outside the scan scope."""


@dataclass(frozen=True)
class Target:
    """One validated target: the operator's text and the networks it covers."""

    text: str
    kind: str  # "address" | "network" | "hostname"
    networks: tuple[IPNetwork, ...]

    @property
    def size(self) -> int:
        return sum(n.num_addresses for n in self.networks)


def _describe(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def parse_target(text: object, *, resolver: Callable[[str], list[str]] | None = None,
                 max_addresses: int = DEFAULT_MAX_ADDRESSES) -> Target:
    """Parse one operator-supplied target or raise TargetError naming the reason."""
    if not isinstance(text, str):
        raise TargetError(f"target must be a string, got {type(text).__name__}")
    if text == "" or text.strip() == "":
        raise TargetError("empty target")
    if text != text.strip() or any(c.isspace() for c in text):
        raise TargetError(f"target {_describe(text)} contains whitespace; give one target per argument")
    if text.startswith("-"):
        raise TargetError(f"target {_describe(text)} starts with '-' and would be read by nmap as an option")
    if any(c in text for c in ",;|&$`'\"\\<>(){}[]*?!~#%^=+@") or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise TargetError(f"target {_describe(text)} contains characters that are not allowed in an address, "
                          "network or hostname")
    if len(text) > 253:
        raise TargetError(f"target {_describe(text)} is longer than 253 characters")
    if ADDRESS_CHARS.match(text) and ("/" in text or ":" in text or text.replace(".", "").isdigit()):
        return _parse_ip(text, max_addresses)
    # a hostname's last label has a letter (RFC 1123): '127.0.0.1-5' or '10.1' are not names
    if HOSTNAME_RE.match(text) and re.search(r"[A-Za-z]", text.rstrip(".").rsplit(".", 1)[-1]):
        addrs = (resolver or resolve)(text)
        if not addrs:
            raise TargetError(f"hostname {_describe(text)} does not resolve")
        nets = tuple(sorted({ipaddress.ip_network(a) for a in addrs}, key=lambda n: (n.version, n)))
        return Target(text, "hostname", nets)
    raise TargetError(f"target {_describe(text)} is neither an IP address, a CIDR network nor a hostname")


def _parse_ip(text: str, max_addresses: int) -> Target:
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            if str(net.network_address) != text.split("/")[0]:
                raise TargetError(f"network {_describe(text)} has host bits set; did you mean {net}?")
            kind = "network"
        else:
            net = ipaddress.ip_network(ipaddress.ip_address(text))
            kind = "address"
    except ValueError as exc:
        raise TargetError(f"target {_describe(text)} is not a valid address or network ({exc})") from None
    if net.num_addresses > max_addresses:
        raise TargetError(f"network {text} has {net.num_addresses} addresses, more than the limit of {max_addresses}; "
                          "split it or raise scanning.max_target_addresses")
    return Target(text, kind, (net,))


def resolve(hostname: str) -> list[str]:
    """All addresses a hostname resolves to (empty when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({info[4][0].split("%")[0] for info in infos})


def parse_networks(entries: Iterable[str], what: str) -> list[IPNetwork]:
    """Scope/exclusion entries from the configuration (CIDRs or addresses; hostnames are not allowed there)."""
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise TargetError(f"{what} entry {entry!r} is not an address or CIDR network") from None
    return out


def _within(net: IPNetwork, nets: list[IPNetwork]) -> bool:
    """Whether every address of ``net`` lies in the union of ``nets``. Adjacent entries are merged first
    (two /32s make a /31), so a chunk the scheduler compacted from in-scope addresses stays in scope."""
    merged = ipaddress.collapse_addresses([n for n in nets if n.version == net.version])  # type: ignore[misc]
    return any(net.subnet_of(n) for n in merged)  # type: ignore[arg-type]


def _overlaps(net: IPNetwork, nets: list[IPNetwork]) -> bool:
    return any(net.version == n.version and net.overlaps(n) for n in nets)


@dataclass
class Scope:
    """Allowed networks minus excluded networks. An empty scope allows nothing."""

    allowed: list[IPNetwork]
    excluded: list[IPNetwork]
    name: str = "scope"

    @classmethod
    def from_config(cls, scopes: dict[str, list[str]], exclusions: list[str], names: Iterable[str] | None = None
                    ) -> Scope:
        """The union of the named scopes (all scopes when names is None), minus the exclusions."""
        wanted = list(scopes) if names is None else list(names)
        missing = [n for n in wanted if n not in scopes]
        if missing:
            raise TargetError(f"unknown scan scope(s): {', '.join(missing)}; configured: {', '.join(scopes) or 'none'}")
        allowed = [n for name in wanted for n in parse_networks(scopes[name], f"scanning.scopes.{name}")]
        return cls(allowed, parse_networks(exclusions, "scanning.exclusions"), "+".join(wanted) or "none")

    def check(self, target: Target) -> None:
        """Raise TargetError unless every address of the target is in scope and none is excluded."""
        if not self.allowed:
            raise TargetError("no scan scope is configured (scanning.scopes is empty): the default scans nothing")
        for net in target.networks:
            if not _within(net, self.allowed):
                raise TargetError(f"target {target.text} ({net}) is outside the scan scope {self.name}")
            if _overlaps(net, self.excluded):
                raise TargetError(f"target {target.text} ({net}) overlaps an excluded network in scanning.exclusions")

    def expand(self) -> list[IPAddress]:
        """Every scannable host address of the scope (host addresses of each network, minus exclusions)."""
        out: list[IPAddress] = []
        seen: set[IPAddress] = set()
        for net in self.allowed:
            hosts = [net.network_address] if net.num_addresses == 1 else net.hosts()
            for h in hosts:
                if h not in seen and not any(h.version == ex.version and h in ex for ex in self.excluded):
                    seen.add(h)
                    out.append(h)
        return out


def validate_targets(texts: Iterable[object], scope: Scope, *, max_addresses: int = DEFAULT_MAX_ADDRESSES,
                     resolver: Callable[[str], list[str]] | None = None) -> list[Target]:
    """Parse and scope-check every target; the first problem raises TargetError (nothing is scanned)."""
    targets = [parse_target(t, resolver=resolver, max_addresses=max_addresses) for t in texts]
    if not targets:
        raise TargetError("no targets given")
    total = sum(t.size for t in targets)
    if total > max_addresses:
        raise TargetError(f"targets cover {total} addresses, more than the limit of {max_addresses}")
    for t in targets:
        scope.check(t)
    return targets


def nmap_host_args(targets: Iterable[Target]) -> list[str]:
    """The host arguments for nmap: canonical CIDR strings built from parsed networks, never the raw text."""
    nets = {n for t in targets for n in t.networks}
    return [str(n.network_address) if n.num_addresses == 1 else str(n)
            for n in sorted(nets, key=lambda n: (n.version, n))]
