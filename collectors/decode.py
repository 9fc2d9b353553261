"""Hand-tuned header decoder for the fast path (no scapy: this runs for every packet).

Link layers: Ethernet (802.1Q/QinQ, 802.1ah PBB, MPLS, PPPoE, LLC/SNAP, Cisco FabricPath), raw IP, Linux
SLL/SLL2, null/loop, PPP, IEEE 802.11 data frames (bare or behind radiotap). Network: IPv4/IPv6 (extension
headers, fragment reassembly bounded in bytes). Transport: TCP, UDP, ICMP, ICMPv6, anything else as a port-less
flow. Tunnels (inner flows count, as Zeek does): GRE (incl. ERSPAN, PPTP, GRE-in-UDP), IP-in-IP, VXLAN, Geneve,
Teredo, GTP-U, AYIYA.

``Decoder.decode`` returns a list of :data:`Pkt` tuples, outermost first (a VXLAN frame gives the outer UDP
packet and then the inner packet), or an empty list for frames without an IP flow (ARP, STP, damage).
Damage is counted in ``Decoder.errors`` by reason, never raised.
"""

from __future__ import annotations

import struct
from collections import Counter
from typing import Final

from collectors.flowconst import (
    AYIYA_PORT,
    GENEVE_PORT,
    GRE_UDP_PORT,
    GTPU_PORT,
    ICMP,
    ICMP6,
    MAX_DEPTH,
    SCTP,
    TCP,
    TEREDO_PORT,
    UDP,
    VXLAN_PORT,
)

# Pkt fields (index constants keep the hot path free of attribute lookups; Final: compiled code inlines them)
SRC: Final = 0
DST: Final = 1
PROTO: Final = 2
SPORT: Final = 3
DPORT: Final = 4
IPLEN: Final = 5
FLAGS: Final = 6
SEQ: Final = 7
ACK: Final = 8
PLEN: Final = 9
ONEWAY: Final = 10
L4OFF: Final = 11
BUF: Final = 12
TUNNEL: Final = 13
CAPLEN: Final = 14
MAC: Final = 15
BADSUM: Final = 16
Pkt = tuple  # (src, dst, proto, sport, dport, ip_len, tcp_flags, seq, ack, payload_len, one_way,
#              l4_offset, buf, tunnel, captured_bytes (TCP: of the payload, else of L4), src_mac,
#              bad_checksum)

LINK_ETHERNET, LINK_NULL, LINK_LOOP, LINK_PPP = 1, 0, 108, 9
LINK_RAW = {101, 12, 14, 228, 229}
LINK_SLL, LINK_SLL2 = 113, 276
LINK_IEEE802_11, LINK_RADIOTAP = 105, 127

FRAG_TIMEOUT_NS = 60 * 1_000_000_000
FRAG_MAX = 10_000  # datagrams being reassembled at once
FRAG_DATAGRAM_MAX = 65_535  # a reassembled payload ends here at most (IP length fields are 16 bits)
FRAG_BYTES_MAX = 16 * 1024 * 1024  # reassembly buffers of all datagrams together

# ICMP type -> counterpart type, as Zeek (and the Community ID spec) pair them; others are one-way
ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
ICMP6_PAIRS = {128: 129, 129: 128, 130: 131, 131: 130, 133: 134, 134: 133, 135: 136, 136: 135,
               139: 140, 140: 139, 144: 145, 145: 144}
IPV6_EXT = {0, 43, 60, 135, 139, 140, 253, 254}

_u16 = struct.Struct("!H").unpack_from
_tcp = struct.Struct("!HHIIBB").unpack_from
_udp = struct.Struct("!HHH").unpack_from
_ip4 = struct.Struct("!BxHHHBB").unpack_from
_ip4fast = struct.Struct("!2xH2xH1xB2x4s4s").unpack_from
_pseudo4 = struct.Struct("!HH").pack
_pseudo6 = struct.Struct("!I3xB").pack


VLAN_TYPES = frozenset((0x8100, 0x88A8, 0x9100))  # 802.1Q, 802.1ad and the older QinQ tag


def ether_payload(buf: bytes, frame: int, end: int) -> tuple[int, int]:
    """(ethertype, offset of the payload) of the Ethernet frame at ``frame`` with its VLAN tags skipped; ethertype 0
    when the frame is shorter than its header. For quick looks outside the decoder (no counting, no FabricPath)."""
    if end - frame < 14:
        return 0, end
    off, etype = frame + 14, _u16(buf, frame + 12)[0]
    while etype in VLAN_TYPES and end - off >= 4:
        etype, off = _u16(buf, off + 2)[0], off + 4
    return etype, off


def icmp_ports(proto: int, itype: int, code: int) -> tuple[int, int, bool]:
    """(orig port, resp port, one_way) for an ICMP message, Zeek's conn_id convention."""
    pairs = ICMP4_PAIRS if proto == ICMP else ICMP6_PAIRS
    other = pairs.get(itype)
    if other is None:
        return itype, code, True
    return itype, other, False


class Decoder:
    """Stateful only for IP fragment reassembly; otherwise a pure function of the frame."""

    def __init__(self, verify_checksums: bool = False, frag_bytes_max: int = FRAG_BYTES_MAX) -> None:
        self.verify = verify_checksums
        self.frag_bytes_max = frag_bytes_max
        self.bad_checksums = 0
        self.errors: Counter[str] = Counter()
        self.frags: dict[tuple, _Reassembly] = {}
        self.frag_bytes = 0  # reassembly buffers held now (bounded by FRAG_BYTES_MAX)
        self.completed_datagram: _Reassembly | None = None  # the datagram the last whole payload came from
        self.arp_seen: set[tuple[bytes, bytes]] = set()
        self.arp_new: list[tuple[int, bytes, bytes]] = []  # drained by the pipeline

    # -- link layers -------------------------------------------------------------------------
    def decode(self, linktype: int, buf: bytes, off: int, caplen: int, ts: int = 0) -> list:
        end = off + caplen
        # fast path: Ethernet, IPv4 without options or fragmentation, TCP or UDP off the tunnel ports
        if linktype == 1 and caplen >= 54 and buf[off + 12] == 8 and buf[off + 13] == 0 and buf[off + 14] == 0x45 \
                and not self.verify:
            total, frag, proto, src, dst = _ip4fast(buf, off + 14)
            if not frag & 0x3FFF and total >= 28:
                l4 = off + 34
                if proto == TCP:
                    sport, dport, seq, ack, offres, flags = _tcp(buf, l4)
                    thl = (offres >> 4) * 4
                    if 20 <= thl <= total - 20:
                        avail = min(end, off + 14 + total) - l4
                        return [(src, dst, TCP, sport, dport, total, flags, seq, ack, total - 20 - thl, False, l4,
                                 buf, "", avail - thl, buf[off + 6:off + 12], False)]
                elif proto == UDP:
                    sport, dport, ulen = _udp(buf, l4)
                    if ulen >= 8 and sport not in TUNNEL_PORTS and dport not in TUNNEL_PORTS:
                        avail = min(end, off + 14 + total) - l4
                        return [(src, dst, UDP, sport, dport, total, 0, 0, 0, ulen - 8, False, l4, buf, "", avail,
                                 buf[off + 6:off + 12], False)]
        try:
            if linktype == LINK_ETHERNET:
                return self._ether(buf, off, end, ts, 0)
            if linktype in LINK_RAW:
                return self._ip(buf, off, end, ts, 0, "", None)
            if linktype == LINK_SLL:
                if caplen < 16:
                    self.errors["truncated_link"] += 1
                    return []
                return self._ethertype(_u16(buf, off + 14)[0], buf, off + 16, end, ts, 0, buf[off + 6:off + 12])
            if linktype == LINK_SLL2:
                if caplen < 20:
                    self.errors["truncated_link"] += 1
                    return []
                return self._ethertype(_u16(buf, off)[0], buf, off + 20, end, ts, 0, buf[off + 12:off + 18])
            if linktype in (LINK_NULL, LINK_LOOP):
                if caplen < 4:
                    self.errors["truncated_link"] += 1
                    return []
                return self._ip(buf, off + 4, end, ts, 0, "", None)
            if linktype == LINK_PPP:
                return self._ppp(buf, off, end, ts, 0)
            if linktype == LINK_RADIOTAP:
                if caplen < 4 or buf[off + 2] | buf[off + 3] << 8 >= caplen:
                    self.errors["truncated_link"] += 1
                    return []
                return self._ieee802_11(buf, off + (buf[off + 2] | buf[off + 3] << 8), end, ts)
            if linktype == LINK_IEEE802_11:
                return self._ieee802_11(buf, off, end, ts)
        except (struct.error, IndexError):
            self.errors["truncated_header"] += 1
            return []
        self.errors[f"unsupported_linktype_{linktype}"] += 1
        return []

    def _ether(self, buf: bytes, off: int, end: int, ts: int, depth: int) -> list:
        header = self._ether_header(buf, off, end)
        if header is None:
            return []
        etype, off, mac = header
        return self._ethertype(etype, buf, off, end, ts, depth, mac)

    def _ether_header(self, buf: bytes, off: int, end: int) -> tuple[int, int, bytes] | None:
        """(ethertype, offset after the header, source MAC) of the Ethernet header at ``off``."""
        if end - off < 14:
            self.errors["truncated_ethernet"] += 1
            return None
        etype = _u16(buf, off + 12)[0]
        mac = buf[off + 6:off + 12]
        if etype == 0x8903:  # Cisco FabricPath: 16-byte outer header, then a whole Ethernet frame
            off += 16
            if end - off < 14:
                self.errors["truncated_ethernet"] += 1
                return None
            etype = _u16(buf, off + 12)[0]
            mac = buf[off + 6:off + 12]
        return etype, off + 14, mac

    def _ethertype(self, etype: int, buf: bytes, off: int, end: int, ts: int, depth: int, mac) -> list:
        while True:
            if etype == 0x0800 or etype == 0x86DD:
                return self._ip(buf, off, end, ts, depth, "", mac)
            if etype in (0x8100, 0x88A8, 0x9100):
                if end - off < 4:
                    self.errors["truncated_vlan"] += 1
                    return []
                etype = _u16(buf, off + 2)[0]
                off += 4
                continue
            if etype in (0x8847, 0x8848):
                return self._mpls(buf, off, end, ts, depth, mac)
            if etype == 0x8864:  # PPPoE session: 6-byte header then PPP protocol
                return self._ppp_proto(buf, off + 6, end, ts, depth)
            if etype <= 1500:  # 802.3 length: LLC, maybe SNAP
                if end - off >= 8 and buf[off] == 0xAA and buf[off + 1] == 0xAA and buf[off + 2] == 3:
                    etype = _u16(buf, off + 6)[0]
                    off += 8
                    continue
                return []
            if etype == 0x88E7:  # 802.1ah provider backbone bridge: I-TAG, then the customer's Ethernet header
                if end - off < 18:
                    self.errors["truncated_pbb"] += 1
                    return []
                etype = _u16(buf, off + 16)[0]
                mac = buf[off + 10:off + 16]
                off += 18
                continue
            if etype == 0x6558:  # transparent Ethernet bridging: looped, not recursed (a frame can nest ~18000)
                header = self._ether_header(buf, off, end)
                if header is None:
                    return []
                etype, off, mac = header
                continue
            if etype == 0x0806:
                self._arp(buf, off, end, ts)
            return []

    def _ieee802_11(self, buf: bytes, off: int, end: int, ts: int) -> list:
        """An 802.11 data frame carrying LLC/SNAP (Zeek's IEEE802_11 analyzer); other frames carry no IP."""
        if end - off <= 24:
            self.errors["truncated_802_11"] += 1
            return []
        fc, flags = buf[off], buf[off + 1]
        if not fc >> 2 & 0x02 or fc >> 4 & 0x04:  # management/control frames, data subtypes without data
            return []
        hlen = 30 if flags & 0x03 == 0x03 else 24  # both DS bits: a fourth address
        if fc >> 4 & 0x08:  # QoS data: a QoS control field, and an HT control field when the order bit is set
            if end - off <= hlen or buf[off + hlen] & 0x80:  # A-MSDU aggregates are not unpacked
                return []
            hlen += 6 if flags & 0x80 else 2
        src = (10, 10, 16, 24)[flags & 0x03]
        if end - off <= hlen + 8:
            self.errors["truncated_802_11"] += 1
            return []
        llc = off + hlen
        if buf[llc] != 0xAA or buf[llc + 1] != 0xAA or buf[llc + 2] != 3:
            return []
        return self._ethertype(_u16(buf, llc + 6)[0], buf, llc + 8, end, ts, 0, buf[off + src:off + src + 6])

    def _arp(self, buf: bytes, off: int, end: int, ts: int) -> None:
        """Remember each new (sender IP, sender MAC) binding of Ethernet/IPv4 ARP: passive asset evidence."""
        if end - off >= 28 and buf[off:off + 6] == b"\x00\x01\x08\x00\x06\x04":
            mac, ip = buf[off + 8:off + 14], buf[off + 14:off + 18]
            if ip != b"\0\0\0\0" and (ip, mac) not in self.arp_seen and len(self.arp_seen) < 100_000:
                self.arp_seen.add((ip, mac))
                self.arp_new.append((ts, ip, mac))

    def _mpls(self, buf: bytes, off: int, end: int, ts: int, depth: int, mac) -> list:
        while True:
            if end - off < 4:
                self.errors["truncated_mpls"] += 1
                return []
            bottom = buf[off + 2] & 1
            off += 4
            if bottom:
                break
        if off >= end:
            self.errors["truncated_mpls"] += 1
            return []
        if buf[off] >> 4 in (4, 6):
            return self._ip(buf, off, end, ts, depth, "", mac)
        return []

    def _ppp(self, buf: bytes, off: int, end: int, ts: int, depth: int) -> list:
        if end - off >= 2 and buf[off] == 0xFF and buf[off + 1] == 0x03:
            off += 2
        return self._ppp_proto(buf, off, end, ts, depth)

    def _ppp_proto(self, buf: bytes, off: int, end: int, ts: int, depth: int) -> list:
        if end - off < 2:
            self.errors["truncated_ppp"] += 1
            return []
        proto = _u16(buf, off)[0]
        if proto == 0x0021 or proto == 0x0057:
            return self._ip(buf, off + 2, end, ts, depth, "", None)
        return []

    # -- network layer -----------------------------------------------------------------------
    def _ip(self, buf: bytes, off: int, end: int, ts: int, depth: int, tunnel: str, mac) -> list:
        if off >= end:
            self.errors["truncated_ip"] += 1
            return []
        ver = buf[off] >> 4
        if ver == 4:
            return self._ip4(buf, off, end, ts, depth, tunnel, mac)
        if ver == 6:
            return self._ip6(buf, off, end, ts, depth, tunnel, mac)
        self.errors["bad_ip_version"] += 1
        return []

    def _ip4(self, buf: bytes, off: int, end: int, ts: int, depth: int, tunnel: str, mac) -> list:
        if end - off < 20:
            self.errors["truncated_ip"] += 1
            return []
        vihl, total, ident, frag, _ttl, proto = _ip4(buf, off)
        hl = (vihl & 0x0F) * 4
        if total == 0:  # segmentation offload on the capturing host: the length field is left unset
            total = min(end - off, 0xFFFF)
        if hl < 20 or total < hl or end - off < hl:
            self.errors["bad_ip_header"] += 1
            return []
        if frag & 0x3FFF:  # MF set or offset > 0
            return self._frag4(buf, off, end, hl, total, ident, frag, proto, ts, depth, tunnel, mac)
        src = buf[off + 12:off + 16]
        dst = buf[off + 16:off + 20]
        l4 = off + hl
        l4end = min(end, off + total)
        return self._l4(proto, src, dst, buf, l4, l4end, total, total - hl, ts, depth, tunnel, mac)

    def _ip6(self, buf: bytes, off: int, end: int, ts: int, depth: int, tunnel: str, mac) -> list:
        if end - off < 40:
            self.errors["truncated_ip"] += 1
            return []
        plen = _u16(buf, off + 4)[0]
        nh = buf[off + 6]
        src = buf[off + 8:off + 24]
        dst = buf[off + 24:off + 40]
        total = plen + 40
        l4 = off + 40
        limit = min(end, off + total)
        while nh in IPV6_EXT or nh == 44 or nh == 51:
            if l4 + 8 > limit:
                self.errors["truncated_ipv6_ext"] += 1
                return []
            if nh == 44:
                return self._frag6(buf, off, l4, limit, total, src, dst, ts, depth, tunnel, mac)
            hlen = (buf[l4 + 1] + 2) * 4 if nh == 51 else (buf[l4 + 1] + 1) * 8
            nh = buf[l4]
            l4 += hlen
        if nh == 59:  # no next header
            return [(src, dst, 59, 0, 0, total, 0, 0, 0, 0, False, l4, buf, tunnel, 0, mac, False)]
        return self._l4(nh, src, dst, buf, l4, limit, total, total - (l4 - off), ts, depth, tunnel, mac)

    # -- fragment reassembly -----------------------------------------------------------------
    def _frag_add(self, key: tuple, ts: int, start: int, data: bytes, more: bool) -> bytes | None:
        """Add one fragment; the whole payload once every byte up to the last fragment's end is there.

        Each fragment costs time in proportion to its own length (bytes land in a buffer, a byte mask marks
        what arrived; the first copy of a byte wins, as in Zeek's reassembler), and buffers are bounded per
        datagram (FRAG_DATAGRAM_MAX) and in total (``frag_bytes_max``, oldest datagrams dropped first), each drop
        counted in ``errors``."""
        stop = start + len(data)
        if stop > FRAG_DATAGRAM_MAX:
            self.errors["fragment_oversized"] += 1
            return None
        frags = self.frags
        entry = frags.get(key)
        if entry is not None and ts - entry.first > FRAG_TIMEOUT_NS:
            self._frag_drop(key)
            entry = None
        if entry is None:
            if len(frags) >= FRAG_MAX:
                self.errors["fragment_table_full"] += 1
                self._frag_drop(next(iter(frags)))
            entry = frags[key] = _Reassembly(ts)
        if not more:
            if entry.total < 0:
                entry.total = stop
                entry.have_below = stop - entry.mask.count(0, 0, stop) if stop <= len(entry.mask) else \
                    len(entry.mask) - entry.mask.count(0)
            elif entry.total != stop:
                self.errors["fragment_inconsistent"] += 1
        buf, mask, total = entry.buf, entry.mask, entry.total
        size = len(buf)
        if stop > size:
            self.frag_bytes += 2 * (stop - size)
            while self.frag_bytes > self.frag_bytes_max and len(frags) > 1:
                self.errors["fragment_memory_cap"] += 1
                self._frag_drop(next(k for k in frags if k != key))
        if start >= size:  # past everything so far (fragments in order): append
            if start > size:
                buf.extend(bytes(start - size))
                mask.extend(bytes(start - size))
            buf += data
            mask += _ARRIVED[:stop - start]
            if 0 <= start < total:
                entry.have_below += min(stop, total) - start
        else:
            if stop > size:
                buf.extend(bytes(stop - size))
                mask.extend(bytes(stop - size))
            pos = start
            while pos < stop:  # fill the gaps of [start, stop) only
                gap = mask.find(0, pos, stop)
                if gap < 0:
                    break
                filled = mask.find(1, gap, stop)
                if filled < 0:
                    filled = stop
                buf[gap:filled] = data[gap - start:filled - start]
                mask[gap:filled] = _ARRIVED[:filled - gap]
                if gap < total:
                    entry.have_below += min(filled, total) - gap
                pos = filled
        if total < 0 or entry.have_below < total:
            return None
        self._frag_drop(key)
        self.completed_datagram = entry
        return bytes(buf[:total])

    def _frag_drop(self, key: tuple) -> None:
        self.frag_bytes -= 2 * len(self.frags.pop(key).buf)

    def _frag4(self, buf, off, end, hl, total, ident, frag, proto, ts, depth, tunnel, mac) -> list:
        start = (frag & 0x1FFF) * 8
        data = buf[off + hl:min(end, off + total)]
        if len(data) < total - hl:
            self.errors["truncated_fragment"] += 1
            return []
        key = (4, buf[off + 12:off + 20], ident, proto)
        payload = self._frag_add(key, ts, start, data, bool(frag & 0x2000))
        if payload is None:
            return []
        newtotal = hl + len(payload)
        header = bytearray(buf[off:off + hl])
        header[2:4] = struct.pack("!H", min(newtotal, 0xFFFF))
        header[6:8] = b"\0\0"
        whole = bytes(header) + payload
        src, dst = whole[12:16], whole[16:20]
        return self._l4(proto, src, dst, whole, hl, len(whole), newtotal, len(payload), ts, depth, tunnel, mac)

    def _frag6(self, buf, off, foff, limit, total, src, dst, ts, depth, tunnel, mac) -> list:
        nh = buf[foff]
        fo = _u16(buf, foff + 2)[0]
        ident = struct.unpack_from("!I", buf, foff + 4)[0]
        data = buf[foff + 8:limit]
        if len(data) < off + total - (foff + 8):
            self.errors["truncated_fragment"] += 1
            return []
        unfrag = foff - off  # IPv6 header + extension headers before the fragment header
        payload = self._frag_add((6, src + dst, ident), ts, fo & 0xFFF8, data, bool(fo & 1))
        if payload is None:
            return []
        newtotal = unfrag + len(payload)
        return self._l4(nh, src, dst, payload, 0, len(payload), newtotal, len(payload), ts, depth, tunnel, mac)

    # -- transport layer ---------------------------------------------------------------------
    def _l4(self, proto, src, dst, buf, l4, l4end, total, l4len, ts, depth, tunnel, mac) -> list:
        avail = l4end - l4
        if proto == TCP:
            if avail < 20:
                self.errors["truncated_tcp"] += 1
                return []
            sport, dport, seq, ack, offres, flags = _tcp(buf, l4)
            thl = (offres >> 4) * 4
            if thl < 20 or thl > l4len:
                self.errors["bad_tcp_header"] += 1
                return []
            bad = self.verify and avail >= l4len and not self._checksum_ok(src, dst, TCP, buf, l4, l4len)
            return [(src, dst, TCP, sport, dport, total, flags, seq, ack, l4len - thl, False, l4, buf, tunnel,
                     avail - thl, mac, bad)]
        if proto == UDP:
            if avail < 8:
                self.errors["truncated_udp"] += 1
                return []
            sport, dport, ulen = _udp(buf, l4)
            if ulen < 8:
                ulen = l4len  # jumbo / zero length field: trust IP
            bad = self.verify and avail >= l4len and (len(src) == 16 or buf[l4 + 6] or buf[l4 + 7]) and \
                not self._checksum_ok(src, dst, UDP, buf, l4, l4len)
            pkt = (src, dst, UDP, sport, dport, total, 0, 0, 0, ulen - 8, False, l4, buf, tunnel, avail, mac, bad)
            if bad:
                return [pkt]
            if depth < MAX_DEPTH and (sport in TUNNEL_PORTS or dport in TUNNEL_PORTS):
                inner = self._udp_tunnel(sport, dport, buf, l4 + 8, l4end, ts, depth + 1)
                if inner:
                    return [pkt, *inner]
            return [pkt]
        if proto in (ICMP, ICMP6):
            if avail < 4:
                self.errors["truncated_icmp"] += 1
                return []
            itype, code = buf[l4], buf[l4 + 1]
            sp, dp, one_way = icmp_ports(proto, itype, code)
            bad = self.verify and avail >= l4len and not self._checksum_ok(
                src, dst, proto, buf, l4, l4len, pseudo=proto == ICMP6)
            return [(src, dst, proto, sp, dp, total, 0, 0, 0, max(l4len - 8, 0), one_way, l4, buf, tunnel,
                     avail, mac, bad)]
        if proto == SCTP and avail >= 4:  # ports for the Community ID; the flow table keys it port-less (Zeek)
            sport, dport = _u16(buf, l4)[0], _u16(buf, l4 + 2)[0]
            return [(src, dst, proto, sport, dport, total, 0, 0, 0, 0, False, l4, buf, tunnel, avail, mac, False)]
        if depth < MAX_DEPTH:
            if proto == 47:
                return self._gre(buf, l4, l4end, ts, depth + 1)
            if proto == 4 or proto == 41:
                return self._ip(buf, l4, l4end, ts, depth + 1, "ip-in-ip", None)
        return [(src, dst, proto, 0, 0, total, 0, 0, 0, 0, False, l4, buf, tunnel, avail, mac, False)]

    def _checksum_ok(self, src: bytes, dst: bytes, proto: int, buf: bytes, off: int, length: int,
                     pseudo: bool = True) -> bool:
        """Internet checksum check: the ones' complement sum of 16-bit words is the value mod 0xFFFF."""
        data = buf[off:off + length]
        if length & 1:
            data += b"\0"
        if pseudo:
            head = src + dst + (_pseudo4(proto, length) if len(src) == 4 else _pseudo6(length, proto))
            ok = int.from_bytes(head + data, "big") % 0xFFFF == 0
        else:
            ok = int.from_bytes(data, "big") % 0xFFFF == 0
        if not ok:
            self.bad_checksums += 1
        return ok

    # -- tunnels -----------------------------------------------------------------------------
    def _udp_tunnel(self, sport: int, dport: int, buf: bytes, off: int, end: int, ts: int, depth: int) -> list:
        n = end - off
        if VXLAN_PORT in (sport, dport):
            if n >= 8 + 14 and buf[off] & 0x08:
                return self._ether(buf, off + 8, end, ts, depth)
            return []
        if GTPU_PORT in (sport, dport):
            return self._gtpu(buf, off, end, ts, depth)
        if TEREDO_PORT in (sport, dport):
            return self._teredo(buf, off, end, ts, depth)
        if AYIYA_PORT in (sport, dport):
            return self._ayiya(buf, off, end, ts, depth)
        if GRE_UDP_PORT in (sport, dport):  # GRE-in-UDP (RFC 8086): the datagram is a GRE header and payload
            return self._gre(buf, off, end, ts, depth)
        if GENEVE_PORT in (sport, dport) and n >= 8 and buf[off] >> 6 == 0:
            hlen = 8 + (buf[off] & 0x3F) * 4
            ptype = _u16(buf, off + 2)[0]
            if n > hlen and ptype == 0x6558:
                return self._ether(buf, off + hlen, end, ts, depth)
            if n > hlen and ptype in (0x0800, 0x86DD):
                return self._ip(buf, off + hlen, end, ts, depth, "geneve", None)
        return []

    def _gtpu(self, buf: bytes, off: int, end: int, ts: int, depth: int) -> list:
        n = end - off
        if n < 8:
            return []
        flags, mtype, glen = buf[off], buf[off + 1], _u16(buf, off + 2)[0]
        if flags >> 5 != 1 or not flags & 0x10 or mtype != 0xFF or glen + 8 != n:
            return []  # not GTPv1 G-PDU: leave it as plain UDP
        pos = off + 8
        if flags & 0x07:
            if n < 12:
                return []
            ext = buf[pos + 3]
            pos += 4
            while flags & 0x04 and ext:
                if pos >= end:
                    return []
                elen = buf[pos] * 4
                if elen == 0 or pos + elen > end:
                    return []
                ext = buf[pos + elen - 1]
                pos += elen
        if pos < end and buf[pos] >> 4 in (4, 6):
            return self._ip(buf, pos, end, ts, depth, "gtpv1", None)
        return []

    def _teredo(self, buf: bytes, off: int, end: int, ts: int, depth: int) -> list:
        pos = off
        if end - pos >= 2 and buf[pos] == 0 and buf[pos + 1] == 1:  # authentication indicator
            if end - pos < 4:
                return []
            pos += 13 + buf[pos + 2] + buf[pos + 3]
        if end - pos >= 2 and buf[pos] == 0 and buf[pos + 1] == 0:  # origin indication
            pos += 8
        if end - pos < 40 or buf[pos] >> 4 != 6 or _u16(buf, pos + 4)[0] + 40 != end - pos:
            return []
        return self._ip6(buf, pos, end, ts, depth, "teredo", None)

    def _ayiya(self, buf: bytes, off: int, end: int, ts: int, depth: int) -> list:
        """AYIYA (anything in anything): a forward message carries an IPv4 or IPv6 packet after the identity and
        signature, whose lengths the first two bytes give (Zeek's AYIYA analyzer)."""
        if end - off < 8:
            return []
        pos = off + 8 + (1 << (buf[off] >> 4)) + (buf[off + 1] >> 4) * 4
        if buf[off + 2] & 0x0F != 1 or buf[off + 3] not in (4, 41):  # not "forward", or not IP inside
            return []
        if end - pos < 20:
            self.errors["truncated_ayiya"] += 1
            return []
        return self._ip(buf, pos, end, ts, depth, "ayiya", None)

    def _gre(self, buf: bytes, off: int, end: int, ts: int, depth: int) -> list:
        if end - off < 4:
            self.errors["truncated_gre"] += 1
            return []
        flags, ptype = _u16(buf, off)[0], _u16(buf, off + 2)[0]
        version = flags & 0x7
        pos = off + 4
        if version == 0:
            pos += 4 * (bool(flags & 0x8000) + bool(flags & 0x2000) + bool(flags & 0x1000))
        elif version == 1:  # PPTP enhanced GRE: key always, seq/ack optional
            pos += 4 + 4 * (bool(flags & 0x1000) + bool(flags & 0x0080))
        else:
            self.errors["bad_gre_version"] += 1
            return []
        if pos > end:
            self.errors["truncated_gre"] += 1
            return []
        if ptype in (0x0800, 0x86DD):
            return self._ip(buf, pos, end, ts, depth, "gre", None)
        if ptype == 0x6558:
            return self._ether(buf, pos, end, ts, depth)
        if ptype == 0x88BE:  # ERSPAN type II
            return self._ether(buf, pos + 8, end, ts, depth)
        if ptype == 0x22EB:  # ERSPAN type III (optional 8-byte platform subheader)
            extra = 8 if end - pos > 12 and buf[pos + 11] & 1 else 0
            return self._ether(buf, pos + 12 + extra, end, ts, depth)
        if ptype == 0x880B:
            return self._ppp(buf, pos, end, ts, depth)
        if ptype in (0x8847, 0x8848):
            return self._mpls(buf, pos, end, ts, depth, None)
        return []


_ARRIVED = b"\x01" * FRAG_DATAGRAM_MAX  # mask bytes of arrived data


class _Reassembly:
    """One datagram being reassembled: its bytes so far, which of them arrived, and its length once known."""

    __slots__ = ("buf", "first", "have_below", "mask", "tags", "total")

    def __init__(self, ts: int) -> None:
        self.first = ts
        self.tags: list[int] = []  # what a caller notes about the datagram (reread: the frames of its fragments)
        self.buf = bytearray()
        self.mask = bytearray()
        self.total = -1  # payload length, known from the last fragment
        self.have_below = 0  # bytes arrived below total


TUNNEL_PORTS = frozenset({VXLAN_PORT, GENEVE_PORT, TEREDO_PORT, GTPU_PORT, AYIYA_PORT, GRE_UDP_PORT})
