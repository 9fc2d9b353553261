"""Which analyzer process a selected frame goes to (``deep_fanout``): a symmetric hash of the address pair of the flow
the analyzers will see, read from the frame's headers (tunnels through the decoder, fragments with their datagram).

Compiled with mypyc (setup.py): the native flow core asks :meth:`HostPairs.share` about every frame it does not
route itself (tunnels, IP fragments, other link types); interpreted, these calls were 13% of the main process's CPU
on the 1M-packet real-trace benchmark.
"""

from __future__ import annotations

import struct
import zlib

from collectors.decode import DPORT, DST, PROTO, SPORT, SRC, TUNNEL_PORTS, Decoder
from collectors.flowconst import TCP, UDP
from collectors.protocols.outer_ip import IPV6_FRAGMENT, Fragment, ip_fragment, ip_offset, whole_looking

DHCP_PORTS = frozenset((67, 68, 546, 547))
MAX_FRAGMENTED = 4096  # datagrams whose fragments' share is remembered (the oldest go first)

_u16 = struct.Struct("!H").unpack_from
_ports = struct.Struct("!HH").unpack_from

def plain_pair(linktype: int, buf: bytes, frame: int, end: int) -> tuple[bytes, bytes, int, int] | None:
    """(source, destination, source port, destination port; ports 0 when not UDP) of a frame whose outermost IP
    header says where it goes: TCP, or UDP off the tunnel ports. None for anything else (IP fragments, tunnels, other
    link types, MPLS, PPPoE, IPv6 extension headers), which the router reads further."""
    found = ip_offset(linktype, buf, frame, end)
    if found is None:
        return None
    off, etype = found
    if etype == 0x0800:
        if end - off < 20:
            return None
        proto, l4 = buf[off + 9], off + (buf[off] & 0x0F) * 4
        src, dst = buf[off + 12:off + 16], buf[off + 16:off + 20]
        fragment = _u16(buf, off + 6)[0] & 0x3FFF
    else:
        if end - off < 40:
            return None
        proto, l4 = buf[off + 6], off + 40
        src, dst = buf[off + 8:off + 24], buf[off + 24:off + 40]
        fragment = proto == IPV6_FRAGMENT
    if fragment:  # where its datagram goes (HostPairRouter.fragment_share)
        return None
    if proto == TCP:
        return src, dst, 0, 0
    if proto == UDP and end - l4 >= 4:
        sport, dport = _ports(buf, l4)
        if sport not in TUNNEL_PORTS and dport not in TUNNEL_PORTS:
            return src, dst, sport, dport
    return None


class HostPairs:
    """The share of each frame among ``shares`` analyzer processes: every frame between the same two addresses (of
    the flow the analyzers see: a tunnel's inner one) goes to the same one; DHCP, and frames without IP, to the
    first."""

    def __init__(self, shares: int) -> None:
        self.shares = shares
        self.decoder = Decoder()  # for frames the plain reading does not cover (its fragment state is its own)
        # datagrams whose fragments are being routed: (version, source, destination, IP ID, protocol) -> (share,
        # placed by its first fragment)
        self.fragments: dict[tuple[int, bytes, bytes, int, int], tuple[int, bool]] = {}

    def share(self, linktype: int, buf: bytes, frame: int, end: int) -> int:
        pair = plain_pair(linktype, buf, frame, end)
        if pair is not None:
            return self._pair_share(pair)
        piece = ip_fragment(linktype, buf, frame, end)
        if piece is not None:
            return self.fragment_share(piece, linktype, buf, frame, end)
        decoded = self._decoded_share(linktype, buf, frame, end)
        return 0 if decoded is None else decoded

    def _decoded_share(self, linktype: int, buf: bytes, frame: int, end: int) -> int | None:
        """The share of the innermost flow the decoder finds in the frame (None: it finds none)."""
        packets = self.decoder.decode(linktype, buf, frame, end - frame)
        if not packets:
            return None
        p = packets[-1]
        udp = p[PROTO] == UDP
        return self._pair_share((p[SRC], p[DST], p[SPORT] if udp else 0, p[DPORT] if udp else 0))

    def _pair_share(self, pair: tuple[bytes, bytes, int, int]) -> int:
        a, b, sport, dport = pair
        if sport in DHCP_PORTS or dport in DHCP_PORTS:
            return 0
        return zlib.crc32(a + b if a < b else b + a) % self.shares

    def fragment_share(self, piece: Fragment, linktype: int, buf: bytes, frame: int, end: int) -> int:
        """Where an IP fragment goes: where its datagram's first-seen fragment went. The first fragment of an IPv4
        datagram goes by the flow inside it (a copy made to look whole, ``whole_looking``, through the decoder);
        any other first-seen fragment by its own pair. A first fragment meeting a remembered first fragment is a
        new datagram reusing the IP ID (or a duplicate): it is placed again."""
        key, offset = piece
        known = self.fragments.get(key)
        if known is not None and not (offset == 0 and known[1]):
            return known[0]
        whole = whole_looking(linktype, buf, frame, end) if offset == 0 else None
        target = self._decoded_share(linktype, whole, 0, len(whole)) if whole is not None else None
        if target is None:
            target = self._pair_share((key[1], key[2], 0, 0))
        if key not in self.fragments and len(self.fragments) >= MAX_FRAGMENTED:
            del self.fragments[next(iter(self.fragments))]
        self.fragments[key] = (target, offset == 0)
        return target
