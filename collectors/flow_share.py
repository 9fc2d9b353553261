"""Split live traffic between sensor workers by a symmetric flow hash, inside the kernel.

Each worker's capture process gets a BPF filter that keeps only its share. The hash uses the IP addresses
alone (the XOR of source and destination, folded to 8 bits), so it is symmetric (both directions of a
connection land on the same worker), IP fragments without ports stay with their flow, and the inner flows
of a tunnel stay with their outer endpoints. 802.1Q/802.1ad-tagged IP is hashed after the tag.

The shares form an exact partition: the last share is the complement of all the others, so a packet that
no hash clause matches (ARP, LLDP, MPLS, anything not IP) still reaches exactly one worker.
"""

from __future__ import annotations

from pathlib import Path


def _hash_clause(addr_a: str, addr_b: str, test: str, shares: int) -> str:
    x = f"({addr_a} ^ {addr_b})"
    folded = f"(({x} >> 16) ^ {x})"
    return f"(((({folded} >> 8) ^ {folded}) & 0xff) % {shares} {test})"


def _hash_in(test: str, shares: int, vlan: bool) -> str:
    """IP (and, on Ethernet, 802.1Q-tagged IP) whose address hash modulo ``shares`` passes ``test``."""
    v4 = f"(ip and {_hash_clause('ip[12:4]', 'ip[16:4]', test, shares)})"
    v6 = f"(ip6 and {_hash_clause('ip6[20:4]', 'ip6[36:4]', test, shares)})"
    if not vlan:
        return f"({v4} or {v6})"
    # ``vlan`` shifts the offsets of everything after it in the whole expression: it appears once, last
    return f"({v4} or {v6} or (vlan and ({v4} or {v6})))"


def share_filter(index: int, shares: int, user_filter: str | None = None, *, vlan: bool = True) -> str:
    """The capture filter for worker ``index`` of ``shares`` (optionally narrowed by the operator's filter).

    ``vlan``: the link is Ethernet and tagged frames get their own clauses (libpcap refuses ``vlan`` on other
    link types: raw IP, Linux cooked capture of the ``any`` device, loopback). An operator filter that uses
    ``vlan`` itself shifts the share clauses too: write it for the tagged frames only, or use one worker."""
    if not 0 <= index < shares:
        raise ValueError(f"share {index} of {shares}")
    if shares == 1:
        own = ""
    elif index < shares - 1:
        own = _hash_in(f"= {index}", shares, vlan)
    else:
        own = f"not {_hash_in(f'< {shares - 1}', shares, vlan)}"
    if user_filter and own:
        return f"({user_filter}) and ({own})"
    return user_filter or own


def is_ethernet(interface: str) -> bool:
    """Whether the interface's link layer is Ethernet (ARPHRD_ETHER); ``any`` and tunnels are not."""
    try:
        return Path(f"/sys/class/net/{interface}/type").read_text().strip() == "1"
    except OSError:
        return False
