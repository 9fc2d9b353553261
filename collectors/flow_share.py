"""Split live traffic between sensor workers by a symmetric flow hash, inside the kernel.

Each worker's capture process gets a BPF filter that keeps only its share. The hash uses the IP addresses
alone (the XOR of source and destination, folded to 8 bits), so it is symmetric (both directions of a
connection land on the same worker), IP fragments without ports stay with their flow, and the inner flows
of a tunnel stay with their outer endpoints. 802.1Q/802.1ad-tagged IP is hashed after the tag.

The shares form an exact partition: the last share is the complement of all the others, so a packet that
no hash clause matches (ARP, LLDP, MPLS, anything not IP) still reaches exactly one worker.
"""

from __future__ import annotations


def _hash_clause(addr_a: str, addr_b: str, index: int, shares: int) -> str:
    x = f"({addr_a} ^ {addr_b})"
    folded = f"(({x} >> 16) ^ {x})"
    return f"(((({folded} >> 8) ^ {folded}) & 0xff) % {shares} = {index})"


def _share_clause(index: int, shares: int) -> str:
    v4 = f"(ip and {_hash_clause('ip[12:4]', 'ip[16:4]', index, shares)})"
    v6 = f"(ip6 and {_hash_clause('ip6[20:4]', 'ip6[36:4]', index, shares)})"
    # ``vlan`` shifts the offsets of everything after it, so the tagged clauses come last
    return f"({v4} or {v6} or (vlan and ({v4} or {v6})))"


def share_filter(index: int, shares: int, user_filter: str | None = None) -> str:
    """The capture filter for worker ``index`` of ``shares`` (optionally narrowed by the operator's filter)."""
    if not 0 <= index < shares:
        raise ValueError(f"share {index} of {shares}")
    if shares == 1:
        own = ""
    elif index < shares - 1:
        own = _share_clause(index, shares)
    else:
        own = "not (" + " or ".join(_share_clause(i, shares) for i in range(shares - 1)) + ")"
    if user_filter and own:
        return f"({user_filter}) and ({own})"
    return user_filter or own
