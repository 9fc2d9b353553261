"""Community ID v1 (https://github.com/corelight/community-id-spec), computed from packed addresses.

Hand-rolled instead of ``communityid.CommunityID`` because this runs once per flow on the fast path
(the package validates and re-packs every field); tests check it against the spec's vectors and the package.
"""

from __future__ import annotations

import base64
import hashlib
import struct

PORT_PROTOS = frozenset({1, 6, 17, 58, 132})
_pack_tail = struct.Struct("!BxHH").pack
_pack_tail_noports = struct.Struct("!Bx").pack


def community_id(proto: int, src: bytes, dst: bytes, sport: int, dport: int, *, one_way: bool = False,
                 seed: int = 0) -> str:
    """``1:<base64 sha1>`` for a flow; ICMP ports are Zeek's (type, counterpart) pair."""
    if not one_way and (src > dst or (src == dst and sport > dport)):
        src, dst, sport, dport = dst, src, dport, sport
    head = struct.pack("!H", seed) + src + dst
    tail = _pack_tail(proto, sport, dport) if proto in PORT_PROTOS else _pack_tail_noports(proto)
    return "1:" + base64.b64encode(hashlib.sha1(head + tail).digest()).decode("ascii")  # noqa: S324 - spec mandates SHA1
