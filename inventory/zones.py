"""Network zones: which named zone (inventory.zones) an address belongs to (most specific CIDR wins)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache


@lru_cache(maxsize=64)
def _compiled(zones: tuple[tuple[str, tuple[str, ...]], ...]) -> list[tuple[ipaddress._BaseNetwork, str]]:
    nets = [(ipaddress.ip_network(c, strict=False), name) for name, cidrs in zones for c in cidrs]
    return sorted(nets, key=lambda x: x[0].prefixlen, reverse=True)


def zone_for(ip: str | None, zones: dict[str, list[str]], default: str = "default") -> str:
    if not ip:
        return default
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return default
    for net, name in _compiled(tuple((k, tuple(v)) for k, v in zones.items())):
        if addr.version == net.version and addr in net:
            return name
    return default
