"""The outermost IP header of a captured frame, read without the decoder: where it is, whether it is a fragment's,
and a first fragment's datagram made to look whole (so the decoder reads the headers inside it).

The analyzer-process router (``deep_fanout``) places fragments with these, and the analyzer process
(``native``) keeps a datagram's fragments from tshark until it is whole.
"""

from __future__ import annotations

import struct

from collectors.decode import LINK_ETHERNET, LINK_LOOP, LINK_NULL, LINK_RAW, LINK_SLL, LINK_SLL2, ether_payload
from collectors.flowconst import UDP

IPV6_FRAGMENT = 44
_u16 = struct.Struct("!H").unpack_from
_u32 = struct.Struct("!I").unpack_from
Fragment = tuple[tuple[int, bytes, bytes, int, int], int]  # (version, source, destination, IP ID, protocol), offset


def ip_offset(linktype: int, buf: bytes, frame: int, end: int) -> tuple[int, int] | None:
    """(offset of the outermost IP header, its ethertype 0x0800/0x86DD) of the frame at ``frame``, where it is at a
    place read here (Ethernet with VLAN tags, Linux cooked, raw IP, BSD loopback); else None."""
    if linktype == LINK_ETHERNET:
        etype, off = ether_payload(buf, frame, end)
    elif linktype == LINK_SLL and end - frame >= 16:
        off, etype = frame + 16, _u16(buf, frame + 14)[0]
    elif linktype == LINK_SLL2 and end - frame >= 20:
        off, etype = frame + 20, _u16(buf, frame)[0]
    elif linktype in LINK_RAW or linktype in (LINK_NULL, LINK_LOOP):
        off = frame + (4 if linktype in (LINK_NULL, LINK_LOOP) else 0)
        version = buf[off] >> 4 if off < end else 0
        etype = 0x0800 if version == 4 else 0x86DD if version == 6 else 0
    else:
        return None
    return (off, etype) if etype in (0x0800, 0x86DD) else None


def ip_fragment(linktype: int, buf: bytes, frame: int, end: int) -> Fragment | None:
    """((version, source, destination, IP ID, protocol), fragment offset) of a frame whose outermost IP header is a
    fragment's (IPv4 MF or offset, an IPv6 fragment header right after the fixed header); else None."""
    found = ip_offset(linktype, buf, frame, end)
    if found is None:
        return None
    off, etype = found
    if etype == 0x0800:
        if end - off < 20 or not _u16(buf, off + 6)[0] & 0x3FFF:
            return None
        flags = _u16(buf, off + 6)[0]
        return (4, buf[off + 12:off + 16], buf[off + 16:off + 20], _u16(buf, off + 4)[0], buf[off + 9]), \
            (flags & 0x1FFF) * 8
    if end - off < 48 or buf[off + 6] != IPV6_FRAGMENT:
        return None
    return (6, buf[off + 8:off + 24], buf[off + 24:off + 40], _u32(buf, off + 44)[0], buf[off + 40]), \
        _u16(buf, off + 42)[0] & 0xFFF8


def whole_looking(linktype: int, buf: bytes, frame: int, end: int) -> bytes | None:
    """The frame of an IPv4 datagram's first fragment as if the datagram were whole, so that the decoder reads the
    headers inside it (a tunnel's, the flow's): more-fragments cleared and, for UDP, the datagram padded with zeros
    to the length its UDP header gives (tunnel headers check their lengths against the datagram's). None when the
    first fragment does not hold its transport header."""
    found = ip_offset(linktype, buf, frame, end)
    if found is None or found[1] != 0x0800:
        return None
    off = found[0]
    ihl = (buf[off] & 0x0F) * 4
    total = _u16(buf, off + 2)[0]
    if ihl < 20 or total < ihl + 8 or off + total > end:
        return None
    length = total - ihl
    if buf[off + 9] == UDP:
        length = max(length, _u16(buf, off + ihl + 4)[0])
    header = bytearray(buf[off:off + ihl])
    header[2:4] = (ihl + length).to_bytes(2, "big") if ihl + length <= 0xFFFF else b"\xff\xff"
    header[6:8] = b"\0\0"
    payload = buf[off + ihl:off + total]
    return buf[frame:off] + bytes(header) + payload + bytes(length - len(payload))
