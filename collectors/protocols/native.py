"""Selected frames the deep path reads itself instead of handing them to tshark: DNS, mDNS and LLMNR over UDP, and
the TCP connections ``collectors.protocols.native_tcp`` takes (FTP control, HTTP/1.x and TLS on any port).

:class:`NativeFrames` sits in front of a tshark run's input (``collectors.protocols.stream.TsharkStdinRun.feed``):
it walks the pcapng blocks of the selected-frame stream (interface and enhanced packet blocks, in any chunking),
decodes each frame with the flow path's decoder (tunnels, VLAN/MPLS, IP fragments reassembled), and takes out
the frames whose innermost transport is UDP with 53, 5353 or 5355 as the lower port: the ports tshark decodes DNS
on, tried lower port first as tshark's UDP dissector does, so every frame taken is one tshark would have read as
DNS. Their messages go through ``dns_wire`` to a ``DnsAnalyzer`` of their own; everything else (NetBIOS-NS, DNS
over TCP, DNS on another lower port) still goes to tshark and its analyzers. Decoded TCP frames go to
:class:`~collectors.protocols.native_tcp.TcpNative`, which keeps those of the connections it reads.

UDP flows on any other port whose first datagram is a client's QUIC Initial of a version ``quic_wire`` decrypts (v1,
v2, drafts 29-32) are read here too, both directions, every datagram (``READ_QUIC``): the TLS handshake messages of
their Initial packets reach a ``TlsAnalyzer`` of this class's own as the fields tshark's QUIC dissector prints
(tshark decodes QUIC on 443 and, by its heuristic, on other ports; the Initial's AEAD tag must check here, so nothing
else passes for QUIC). A flow whose first datagram is a DTLS handshake record or a STUN message (WebRTC's DTLS-SRTP
opens with STUN) is read as DTLS by ``dtls_wire``, on any port, its handshakes reaching the same ``TlsAnalyzer``
as the fields tshark's DTLS dissector prints (``READ_DTLS``; on the 1M-packet benchmark about 1,200 of the roughly
10,700 frames each analyzer process still gave tshark, and 0.19 of its 0.67 s of CPU on them). A flow whose first
datagram is anything else stays tshark's throughout.

A datagram's fragments (IPv4, or IPv6 with the fragment header next to the fixed one) are kept from tshark while the
decoder puts them together; the whole datagram is then read here, or given to tshark as one frame in its last
fragment's place (tshark read the first fragments of datagrams read here for nothing: 6,874 of them, 10 MB, per
analyzer process on the 1M-packet benchmark; with IPv6, 474 more frames, 536 kB).

Pairing stays per connection: every message of a UDP conversation on those ports reaches the same analyzer, in
capture order. Open queries time out on capture time (``dns_udp.SWEEP_SECONDS``), not on how many other frames
tshark printed. Damage is counted and reported once per run, never raised. With the Rust engine, a plain Ethernet,
IPv4 and UDP frame on a DNS port is read in place (``RustDns.frame``), without being decoded here.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable, Iterable, Iterator
from operator import truediv

from collectors.conn import ip_str
from collectors.decode import (
    BUF,
    CAPLEN,
    DPORT,
    DST,
    L4OFF,
    LINK_ETHERNET,
    PLEN,
    PROTO,
    SPORT,
    SRC,
    TUNNEL_PORTS,
    Decoder,
    ether_payload,
)
from collectors.flowconst import TCP, UDP
from collectors.protocols.detect import dtls_hello, stun
from collectors.protocols.dhcp import DhcpAnalyzer
from collectors.protocols.dhcp_wire import dhcp_fields, dhcp_port
from collectors.protocols.dns_udp import RustDns, udp_dns
from collectors.protocols.dns_wire import PORT_KINDS
from collectors.protocols.documents import Written
from collectors.protocols.dtls_wire import DtlsFlow
from collectors.protocols.expected import ExpectedConnections
from collectors.protocols.native_tcp import TcpNative
from collectors.protocols.outer_ip import IPV6_FRAGMENT, ip_fragment, ip_offset
from collectors.protocols.quic_wire import QuicConnection, QuicStats, client_initial
from collectors.protocols.tls import TlsAnalyzer
from collectors.protocols.tls_wire import Frame, TlsStats
from collectors.protocols.tshark import Packet, udp_packet
from collectors.selection import packet_block

Warn = Callable[[str], None]

BLOCK_IDB, BLOCK_EPB = 1, 6
_u16 = struct.Struct("!H").unpack_from
LINK_CONTROL = frozenset((0x0806, 0x8035, 0x8863, 0x88CC, 0x8809))  # ARP, RARP, PPPoE discovery, LLDP, LACP
READ_QUIC = True  # False: QUIC flows stay with tshark (the oracle's peer)
READ_DHCP = True  # False: DHCP stays with tshark (the oracle's peer)
DHCP_LAYERS = ["dhcp"]
READ_DTLS = True  # False: DTLS and STUN flows stay with tshark (the oracle's peer)
MAX_UDP_FLOWS = 65_536  # UDP flows remembered (QUIC or DTLS read here, or left to tshark); the oldest go first
QUIC_LAYERS = ["quic", "tls"]
DTLS_LAYERS = ["dtls"]
STUN_LAYERS = ["stun"]
TAKEN, DECODE_HERE = 1, 2  # verdicts of TcpTable.frame (0: tshark reads the frame)
UdpKey = tuple[bytes, int, bytes, int]  # the lower (address, port) first


class QuicFlow:
    """A UDP flow read here: its QUIC connection, the client's end, the stream name its packets carry."""

    __slots__ = ("client", "conn", "stream")

    def __init__(self, conn: QuicConnection, client: tuple[bytes, int], stream: str) -> None:
        self.conn, self.client, self.stream = conn, client, stream


class DtlsSession:
    """A UDP flow read here as DTLS (``dtls_wire``): its reader, the first sender's end, the stream name."""

    __slots__ = ("first", "flow", "stream")

    def __init__(self, flow: DtlsFlow, first: tuple[bytes, int], stream: str) -> None:
        self.flow, self.first, self.stream = flow, first, stream


class NativeFrames:
    """Takes the DNS frames (and the TCP connections and QUIC flows read natively) out of a selected-frame stream and
    analyses them here."""

    def __init__(self, name: str, warn: Warn, expected: ExpectedConnections | None = None, tcp: bool = True,
                 raw: bool = False) -> None:
        """``tcp``: also read the TCP connections ``native_tcp`` takes (FTP control); False leaves them to tshark.
        ``raw``: documents are passed on as JSON text where a native writer made them (``dns_udp``,
        ``Analyzer.raw``), for a process pipe."""
        self.name = name
        self.warn = warn
        self.decoder = Decoder()
        self.dns = udp_dns(warn, raw)
        self.tcp = TcpNative(name, warn, expected, raw) if tcp else None
        self.tls = TlsAnalyzer(warn)  # the TLS handshakes of the QUIC Initials read here
        self.tls.raw = raw
        self.quic_stats = QuicStats()
        self.quic_tls_stats = TlsStats()
        self.udp_flows: dict[UdpKey, QuicFlow | DtlsSession | None] = {}  # None: the flow is tshark's
        self.quic_frames = 0  # QUIC frames taken out of tshark's input
        self.dtls_stats = TlsStats()
        self.dtls_frames = 0  # DTLS and STUN frames taken out of tshark's input
        self.dhcp = DhcpAnalyzer(warn) if READ_DHCP else None  # BOOTP/DHCP on its ports (``dhcp_wire``)
        if self.dhcp is not None:
            self.dhcp.raw = raw
        self.dhcp_frames = 0  # DHCP frames taken out of tshark's input
        self.frames = 0  # DNS frames taken out of tshark's input
        self.blocks = 0  # packet blocks seen
        self.taken_at = array("I")  # number (from 1, in this stream) of each frame taken out, ascending
        self._linktypes: list[int] = []
        self._carry = b""
        self._broken = False  # the stream stopped parsing as pcapng blocks: everything goes to tshark
        # plain Ethernet/IPv4 frames of DNS datagrams read in place by the Rust engine (None: decoded here)
        self._rust_dns = self.dns if isinstance(self.dns, RustDns) else None
        self._whole: bytes | None = None  # the block standing for the frame just taken (``whole_datagram_frame``)

    def split(self, data: bytes) -> tuple[bytes, list[Written]]:
        """(the bytes of ``data`` tshark still gets, the documents of the frames taken out). A block cut at the
        end of ``data`` waits for the next call."""
        if self._broken:
            return data, []
        buf = self._carry + data if self._carry else data
        docs: list[Written] = []
        kept: list[tuple[int, int] | bytes] = []  # spans of buf that go to tshark, and whole datagrams' blocks
        keep_from = 0
        pos, end = 0, len(buf)
        while end - pos >= 8:
            btype, length = _le32(buf, pos), _le32(buf, pos + 4)
            if length < 12 or length % 4:
                self._broken = True
                self.warn(f"{self.name}: selected-frame stream not in pcapng blocks; DNS left to tshark")
                kept.append((keep_from, end))
                self._carry = b""
                return _join(buf, kept), docs
            if end - pos < length:
                break
            if btype == BLOCK_IDB and length >= 12:
                self._linktypes.append(buf[pos + 8] | buf[pos + 9] << 8)
            elif btype == BLOCK_EPB and length >= 32:
                self.blocks += 1
                if self._take(buf, pos, length, docs):
                    if pos > keep_from:
                        kept.append((keep_from, pos))
                    keep_from = pos + length
                    if self._whole is not None:  # tshark reads the datagram this fragment completed, whole, here
                        kept.append(self._whole)
                        self._whole = None
                    else:
                        self.taken_at.append(self.blocks)
            pos += length
        if pos > keep_from:
            kept.append((keep_from, pos))
        self._carry = buf[pos:]
        if not docs and len(kept) == 1 and kept[0] == (0, len(buf)):
            return buf, docs
        return _join(buf, kept), docs

    def renumber(self, packets: Iterable[Packet]) -> Iterator[Packet]:
        """tshark's packets with the frame numbers they have in the whole selected stream (modules use them in
        document ids), as if the frames taken out had been there."""
        taken = self.taken_at
        before = 0  # frames taken out before the current one
        for pkt in packets:
            number = pkt.number
            while before < len(taken) and taken[before] <= number + before:
                before += 1
            if before:
                pkt.layers["frame_number"] = [str(number + before)]
            yield pkt

    def _take(self, buf: bytes, pos: int, length: int, docs: list[Written]) -> bool:
        """Whether the packet block at ``pos`` is kept from tshark: read here (its documents into ``docs``), a
        fragment of a datagram not yet whole, or the last one of a datagram tshark is given whole (``_whole``)."""
        interface, high, low, caplen = _le32(buf, pos + 8), _le32(buf, pos + 12), _le32(buf, pos + 16), \
            _le32(buf, pos + 20)
        if interface >= len(self._linktypes) or 28 + caplen > length:
            return False
        linktype = self._linktypes[interface]
        frame = pos + 28
        plain_ip = linktype == 1 and caplen >= 54 and buf[frame + 12] == 8 and buf[frame + 13] == 0 \
            and buf[frame + 14] == 0x45 and not buf[frame + 20] & 0x3F and not buf[frame + 21]
        plain_tcp = plain_ip and buf[frame + 23] == TCP
        ts_ns = high << 32 | low
        # Ethernet, IPv4 without options, unfragmented TCP (the common case): no decoding when tshark reads it, and
        # none at all with the Rust table, which reads such a frame in place; the Rust DNS engine reads UDP ones
        rust_dns = self._rust_dns
        if plain_ip and buf[frame + 23] == UDP:
            if rust_dns is not None:
                read = rust_dns.frame(buf, frame, caplen, truediv(ts_ns, 1_000_000_000))
                if read is not None:
                    self.frames += 1
                    docs += read
                    return True
            if self._tshark_udp(buf, frame):
                return False
        elif plain_tcp:
            tcp = self.tcp
            if tcp is None:
                return False
            table = tcp.table
            if table is not None:
                verdict = table.frame(buf, frame, caplen, truediv(ts_ns, 1_000_000_000), docs)
                if verdict != DECODE_HERE:
                    return verdict == TAKEN
            elif tcp.tshark_reads(buf[frame + 26:frame + 30], buf[frame + 30:frame + 34],
                                  buf[frame + 34] << 8 | buf[frame + 35], buf[frame + 36] << 8 | buf[frame + 37]):
                return False
        packets = self.decoder.decode(linktype, buf, frame, caplen, ts_ns)
        if not packets:
            if outer_fragment(linktype, buf, frame, frame + caplen):
                return True  # the decoder holds it until its datagram is whole (then read here or given to tshark)
            # no analyzer reads link control (ARP, PPPoE discovery, LCP, ...): kept from tshark too
            return linktype == LINK_ETHERNET and link_control(buf, frame, frame + caplen)
        # in seconds by Python's own division (correctly rounded): mypyc divides an int it knows as doubles, and the
        # last bit of a reply time, and so a DNS document's id, would change
        if self._read(packets[-1], truediv(ts_ns, 1_000_000_000), docs):
            return True
        datagram = packets[0][BUF]
        if datagram is buf:  # not put together from fragments: the frame goes to tshark as it is
            return False
        whole = whole_datagram_frame(linktype, buf, frame, frame + caplen, datagram)
        if whole is None:
            return False
        self._whole = packet_block(interface, ts_ns, whole, len(whole))
        return True

    def _tshark_udp(self, buf: bytes, frame: int) -> bool:
        """Whether the plain Ethernet/IPv4 UDP frame at ``frame`` belongs to a flow already left to tshark (its first
        datagram opened no QUIC connection), off the DNS, DHCP and tunnel ports: it goes to tshark undecoded, as
        ``_read`` would send it after decoding. On the 1M-packet benchmark about 10k frames per analyzer process
        (then DHCP too, STUN, DTLS, other UDP) were decoded here only to be given to tshark."""
        sport, dport = buf[frame + 34] << 8 | buf[frame + 35], buf[frame + 36] << 8 | buf[frame + 37]
        if sport in TUNNEL_PORTS or dport in TUNNEL_PORTS or (sport if sport < dport else dport) in PORT_KINDS or \
                (self.dhcp is not None and dhcp_port(sport, dport)):
            return False
        key = udp_key(buf[frame + 26:frame + 30], sport, buf[frame + 30:frame + 34], dport)
        return key in self.udp_flows and self.udp_flows[key] is None

    def _read(self, p: tuple, ts: float, docs: list[Written]) -> bool:
        """Whether the decoded packet is read here (its documents into ``docs``)."""
        if p[PROTO] == TCP:
            return self.tcp is not None and self.tcp.take(p, ts, docs)
        if p[PROTO] != UDP:
            return False
        sport, dport = p[SPORT], p[DPORT]
        kind = PORT_KINDS.get(sport if sport < dport else dport)
        if kind is None:
            if self.dhcp is not None and dhcp_port(sport, dport):
                return self._dhcp(p, ts, docs)
            return self._udp_flow(p, ts, docs)
        l4 = p[L4OFF]
        payload = p[BUF][l4 + 8:l4 + min(p[CAPLEN], 8 + p[PLEN])]
        self.frames += 1
        docs += self.dns.read(payload, kind, ip_str(p[SRC]), sport, ip_str(p[DST]), dport, ts)
        return True

    def _dhcp(self, p: tuple, ts: float, docs: list[Written]) -> bool:
        """Whether the BOOTP/DHCP datagram is read here: all but those tshark reads differently (``dhcp_fields``)."""
        assert self.dhcp is not None
        l4 = p[L4OFF]
        fields = dhcp_fields(p[BUF][l4 + 8:l4 + min(p[CAPLEN], 8 + p[PLEN])])
        if fields is None:
            return False
        self.dhcp_frames += 1
        docs += self.dhcp.handle(udp_packet(ts, ip_str(p[SRC]), ip_str(p[DST]), p[SPORT], p[DPORT], "native-dhcp",
                                            fields, DHCP_LAYERS))
        return True

    def _udp_flow(self, p: tuple, ts: float, docs: list[Written]) -> bool:
        """Whether the UDP datagram belongs to a flow read here: one whose first datagram was a client Initial that
        decrypted (QUIC), or a DTLS handshake record or STUN message (``dtls_wire``). The others stay tshark's, every
        datagram of them."""
        src, dst, sport, dport = p[SRC], p[DST], p[SPORT], p[DPORT]
        key = udp_key(src, sport, dst, dport)
        flow = self.udp_flows.get(key)
        if flow is None and key in self.udp_flows:  # tshark's: no text, no copy of the payload
            return False
        l4 = p[L4OFF]
        payload = p[BUF][l4 + 8:l4 + min(p[CAPLEN], 8 + p[PLEN])]
        if flow is None:  # first seen
            if len(self.udp_flows) >= MAX_UDP_FLOWS:
                del self.udp_flows[next(iter(self.udp_flows))]
            frame = Frame()
            conn = self._open(payload, frame) if READ_QUIC else None
            if conn is not None:
                stream = udp_stream(src, sport, dst, dport)
                self.udp_flows[key] = QuicFlow(conn, (src, sport), stream)
                return self._quic_read(frame, ts, p, stream, docs)
            if READ_DTLS and (dtls_hello(payload, len(payload)) or stun(payload, len(payload))):
                session = self.udp_flows[key] = DtlsSession(DtlsFlow(self.dtls_stats), (src, sport),
                                                            udp_stream(src, sport, dst, dport))
                return self._dtls(session, payload, ts, p, docs)
            self.udp_flows[key] = None
            return False
        if isinstance(flow, DtlsSession):
            return self._dtls(flow, payload, ts, p, docs)
        frame = Frame()
        from_client = (src, sport) == flow.client
        if not flow.conn.feed(from_client, payload, frame) and from_client:
            fresh = Frame()  # a new connection on the same ports (its own DCID): read it if it decrypts
            conn = self._open(payload, fresh)
            if conn is not None:
                flow.conn, frame = conn, fresh
        return self._quic_read(frame, ts, p, flow.stream, docs)

    def _quic_read(self, frame: Frame, ts: float, p: tuple, stream: str, docs: list[Written]) -> bool:
        self.quic_frames += 1
        if frame:
            docs += self.tls.handle(udp_packet(ts, ip_str(p[SRC]), ip_str(p[DST]), p[SPORT], p[DPORT], stream,
                                               frame.fields, QUIC_LAYERS))
        return True

    def _dtls(self, session: DtlsSession, payload: bytes, ts: float, p: tuple, docs: list[Written]) -> bool:
        frame = Frame("dtls")
        stun_request = session.flow.feed((p[SRC], p[SPORT]) == session.first, payload, frame)
        self.dtls_frames += 1
        if frame or stun_request:
            docs += self.tls.handle(udp_packet(ts, ip_str(p[SRC]), ip_str(p[DST]), p[SPORT], p[DPORT], session.stream,
                                               frame.fields, DTLS_LAYERS if frame else STUN_LAYERS))
        return True

    def _open(self, payload: bytes, frame: Frame) -> QuicConnection | None:
        """The QUIC connection a client's datagram opens, when it starts with an Initial that decrypts."""
        opener = client_initial(payload)
        if opener is None:
            return None
        conn = QuicConnection(opener[0], opener[1], self.quic_stats, self.quic_tls_stats)
        return conn if conn.feed(True, payload, frame) else None

    def finish(self) -> list[Written]:
        """End of the run: the queries still open, and one warning for the damage seen."""
        docs = self.dns.finish()
        docs += self.tls.finish()
        if self.dhcp is not None:
            docs += self.dhcp.finish()
        q = self.quic_stats
        if q.malformed + q.oversized + q.undecryptable:
            self.warn(f"{self.name}: QUIC read here: {q.malformed} malformed packet(s), {q.undecryptable} Initial(s) "
                      f"not decryptable, {q.oversized} CRYPTO piece(s) past the buffering bound")
        d = self.dtls_stats
        if d.malformed + d.oversized:
            self.warn(f"{self.name}: DTLS read here: {d.malformed} record(s), fragment(s) or hello(s) malformed, "
                      f"{d.oversized} past their bounds")
        if self.tcp is not None:
            docs += self.tcp.finish()
        damaged, headless = self.dns.damaged
        if damaged:
            self.warn(f"{self.name}: {damaged} of {self.frames} DNS datagram(s) truncated or malformed "
                      f"({headless} without a header); what they held is logged")
        return docs


def udp_key(src: bytes, sport: int, dst: bytes, dport: int) -> UdpKey:
    """A UDP flow's key in ``NativeFrames.quic_flows``, the same both ways: the lower (address, port) first."""
    return (src, sport, dst, dport) if (src, sport) < (dst, dport) else (dst, dport, src, sport)


def udp_stream(src: bytes, sport: int, dst: bytes, dport: int) -> str:
    """The stream name the packets of a UDP flow read here carry (the same both ways)."""
    a, b = f"{ip_str(src)}:{sport}", f"{ip_str(dst)}:{dport}"
    return f"{a}-{b}" if a < b else f"{b}-{a}"


def link_control(buf: bytes, frame: int, end: int) -> bool:
    """Whether the Ethernet frame at ``frame`` (VLAN tags skipped) carries link control rather than a network
    protocol: ARP and RARP, PPPoE discovery, a PPPoE session's PPP control (LCP, PAP, CHAP, IPCP, ...), LLDP,
    LACP. The flow path learns addresses from ARP itself; tshark reading these only cost time, and every second
    look re-read them (frames that belong to no connection go into each one's capture)."""
    etype, off = ether_payload(buf, frame, end)
    if etype == 0x8864:  # PPPoE session: 6-byte header, then the PPP protocol number
        return end - off >= 8 and _u16(buf, off + 6)[0] >= 0x8000
    return etype in LINK_CONTROL


def outer_fragment(linktype: int, buf: bytes, frame: int, end: int) -> bool:
    """Whether the frame's outermost IP header is a fragment's (IPv4, or IPv6 with the fragment header right after
    the fixed one). Its datagram's fragments are kept from tshark: once the decoder has put it together, it is read
    here, or tshark is given it whole in the last fragment's place (``whole_datagram_frame``). tshark was given
    every fragment, even of a datagram read here."""
    return ip_fragment(linktype, buf, frame, end) is not None


def whole_datagram_frame(linktype: int, buf: bytes, frame: int, end: int, datagram: bytes) -> bytes | None:
    """The frame that stands for a datagram the frame at ``frame`` (its last fragment) completed: the frame's link
    header and the decoder's reassembled datagram. IPv4: ``datagram`` is the whole datagram (header fixed), and its
    checksum is recomputed. IPv6: ``datagram`` is the fragmentable part, behind the fixed header with the fragment
    header taken out (its next header and the payload length put in). None when the frame is no outermost fragment
    (it goes to tshark as it is)."""
    found = ip_offset(linktype, buf, frame, end)
    if found is None:
        return None
    off, etype = found
    if etype == 0x86DD:
        if end - off < 48 or buf[off + 6] != IPV6_FRAGMENT or len(datagram) > 0xFFFF:
            return None
        fixed = bytearray(buf[off:off + 40])
        fixed[4:6] = len(datagram).to_bytes(2, "big")
        fixed[6] = buf[off + 40]  # the fragment header's next header
        return bytes(buf[frame:off]) + bytes(fixed) + bytes(datagram)
    if etype != 0x0800:
        return None
    if end - off < 20 or not _u16(buf, off + 6)[0] & 0x3FFF:  # no fragment: the frame goes as it is
        return None
    if len(datagram) < 20 or datagram[0] >> 4 != 4 or datagram[12:20] != buf[off + 12:off + 20]:
        return None
    header = bytearray(datagram[:(datagram[0] & 0x0F) * 4])
    header[10:12] = b"\0\0"
    header[10:12] = ip_checksum(header).to_bytes(2, "big")
    return bytes(buf[frame:off]) + bytes(header) + bytes(datagram[len(header):])


def ip_checksum(header: bytes | bytearray) -> int:
    """RFC 791's header checksum (the ones' complement of the ones' complement sum of its 16-bit words)."""
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _le32(buf: bytes, at: int) -> int:
    """The little-endian 32-bit word at ``at`` (the byte order this writer's pcapng blocks are in). Compiled, four
    byte reads cost less than ``struct.unpack_from`` and its tuple: once per block header field, 6 per frame."""
    return buf[at] | buf[at + 1] << 8 | buf[at + 2] << 16 | buf[at + 3] << 24


def _join(buf: bytes, pieces: list[tuple[int, int] | bytes]) -> bytes:
    return b"".join(piece if isinstance(piece, bytes) else buf[piece[0]:piece[1]] for piece in pieces)
