"""TCP connections read natively (``collectors.protocols.native_tcp`` over ``tcp_reassembly``, into the FTP, HTTP
and TLS readers), from Ethernet/IPv4/TCP frames decoded as the deep path decodes them.

Input: one byte of options (bits 0-1: the server's port, 21, 80, 443 or the next two bytes), two 32-bit initial
sequence numbers (client, server: near 2^32 they wrap), then segments in the framing of ``seeds.pack_frames``: one
byte of flags (bit 0 from the server, bit 1 SYN, bit 2 FIN, bit 3 RST, bit 4 ACK of the peer's first byte), a
16-bit offset from the sender's first byte, the payload. Contract: nothing raises and no reader fails (``TcpNative``
catches a reader's exception: ``failures`` must stay 0); the state stays within its bounds (connections, bytes and
segments waiting behind holes, partial lines); the documents serialise and hold no string longer than
``MAX_VALUE_CHARS``. Reassembly (``Direction``, each direction alone): the first copy of a byte wins, so when no
hole was skipped the bytes handed on are those of a reference built here from the segments, byte by byte. Those
checks hold the Python table (``RUST_TABLE = False``); the Rust table (``collectors._rs.TcpTable``) must then give
the same documents, counters, warnings and bytes for tshark as the Python one, frame for frame through
``NativeFrames``.
"""

from __future__ import annotations

import orjson

from collectors.decode import PROTO, TCP, Decoder
from collectors.protocols import native_tcp
from collectors.protocols.documents import fits
from collectors.protocols.native import NativeFrames
from collectors.protocols.native_tcp import MAX_CONNECTIONS, MAX_LINE_BYTES, Connection, TcpNative
from collectors.protocols.tcp_reassembly import MAX_WAITING_BYTES, MAX_WAITING_SEGMENTS, Direction
from tests.fuzz.fuzz_http_wire import CAPTURES as HTTP_CAPTURES
from tests.fuzz.fuzz_tls_wire import CAPTURES as TLS_CAPTURES
from tests.fuzz.seeds import pack_frames, payloads, unpack_frames
from tests.unit.test_tcp_native import pcapng, tcp_frame

PORTS = (21, 80, 443)
SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10
Seg = tuple[int, int, int, bytes]  # side, flags (TCP), offset from the first byte, payload


def parse(data: bytes) -> tuple[int, tuple[int, int], list[Seg]]:
    options = data[0]
    port, pos = PORTS[options & 3] if options & 3 != 3 else int.from_bytes(data[1:3], "big") or 1, 1
    if options & 3 == 3:
        pos = 3
    isn = (int.from_bytes(data[pos:pos + 4], "big"), int.from_bytes(data[pos + 4:pos + 8], "big"))
    segs = []
    for f in unpack_frames(data[pos + 8:]):
        if len(f) < 3:
            continue
        bits = f[0]
        flags = (SYN if bits & 2 else 0) | (FIN if bits & 4 else 0) | (RST if bits & 8 else 0) | (
            ACK if bits & 16 else 0) | 0x08
        segs.append((bits & 1, flags, int.from_bytes(f[1:3], "big"), f[3:]))
    return port, isn, segs


def seq_of(isn: int, flags: int, offset: int) -> int:
    """A SYN carries the initial sequence number; data starts one after it."""
    return isn if flags & SYN else (isn + 1 + offset) & 0xFFFFFFFF


def check_reassembly(isn: tuple[int, int], segs: list[Seg]) -> None:
    """Each direction alone through ``Direction``, against first-copy-wins byte by byte."""
    for side in (0, 1):
        direction = Direction()
        reference: dict[int, int] = {}
        start: int | None = None
        out = []
        for s, flags, offset, payload in segs:
            if s != side:
                continue
            if flags & SYN and not flags & RST:
                direction.syn(isn[side])
                start = 0 if start is None else start
            seq = seq_of(isn[side], flags, offset)
            if payload and not flags & SYN:
                if start is None:
                    start = offset
                for i, b in enumerate(payload):
                    reference.setdefault(offset + i, b)
                out += direction.add(seq, payload)
                assert direction.waiting_bytes <= MAX_WAITING_BYTES + len(payload)
        out += direction.flush()
        assert not direction.waiting and direction.waiting_bytes == 0
        got = b"".join(c for c in out if isinstance(c, bytes))
        assert direction.delivered == len(got)
        if start is None or any(isinstance(c, int) for c in out):
            continue
        expected = bytes(reference[o] for o in range(start, max(reference, default=start - 1) + 1) if o in reference)
        assert all(o in reference for o in range(start, start + len(expected))), "no hole, yet bytes missing"
        assert got == expected, (got, expected)


def frames_of(port: int, isn: tuple[int, int], segs: list[Seg]) -> list[bytes]:
    out = []
    for side, flags, offset, payload in segs:
        payload = b"" if flags & SYN else payload
        ack = (isn[1 - side] + 1) & 0xFFFFFFFF if flags & ACK else None
        out.append(tcp_frame(payload, seq_of(isn[side], flags, offset), side == 0, 40000, port, flags, ack))
    return out


def through_native_frames(frames: list[bytes], table: bool) -> tuple:
    native_tcp.RUST_TABLE = table
    warnings: list[str] = []
    native = NativeFrames("fuzz", warnings.append, None, raw=True)
    assert native.tcp is not None and (native.tcp.table is not None) == (table and native_tcp.TABLE is not None)
    kept, docs = native.split(pcapng(frames, start=1000.0))
    docs += native.finish()
    return kept, [orjson.dumps(d) for d in docs], warnings, native.tcp.stats, list(native.taken_at)


def TestOneInput(data: bytes) -> None:
    if len(data) < 11:
        return
    port, isn, segs = parse(data)
    check_reassembly(isn, segs)
    frames = frames_of(port, isn, segs)
    if native_tcp.TABLE is not None:
        assert through_native_frames(frames, True) == through_native_frames(frames, False)
    native_tcp.RUST_TABLE = False  # the checks below look inside the Python table
    decoder = Decoder()
    native = TcpNative("fuzz", lambda _text: None, None)
    docs: list[dict] = []
    for i, frame in enumerate(frames):
        pkts = decoder.decode(1, frame, 0, len(frame))
        assert pkts and pkts[-1][PROTO] == TCP
        native.take(pkts[-1], 1000.0 + i * 0.5, docs)
        assert native.stats.failures == 0
        assert len(native.conns) <= MAX_CONNECTIONS + 1
        for conn in native.conns.values():
            if isinstance(conn, Connection):
                for d in conn.dirs:
                    assert d.waiting_bytes <= MAX_WAITING_BYTES and len(d.waiting) <= MAX_WAITING_SEGMENTS
        assert native.ftp.longest_line <= MAX_LINE_BYTES
    docs += native.finish()
    assert native.stats.failures == 0
    for doc in docs:
        orjson.dumps(doc)
        assert fits(doc)


def _connection(port: int, parts: list[tuple[int, bytes]], handshake: bool = True, shuffle: bool = False) -> bytes:
    offsets = [0, 0]
    frames = [bytes([0x02]) + bytes(2), bytes([0x13]) + bytes(2)] if handshake else []
    for side, payload in parts:
        frames.append(bytes([side | 0x10]) + offsets[side].to_bytes(2, "big") + payload[:0xFFFF - 3])
        offsets[side] = (offsets[side] + len(payload)) & 0xFFFF
    if shuffle:  # reordered, and the third segment sent again with other bytes
        frames = [*frames[::-1], frames[2][:3] + bytes(len(frames[2]) - 3)] if len(frames) > 2 else frames
    options = PORTS.index(port) if port in PORTS else 3
    head = bytes([options]) + (port.to_bytes(2, "big") if options == 3 else b"")
    return head + (1000).to_bytes(4, "big") + (0xFFFFFF00).to_bytes(4, "big") + pack_frames(frames)


def seeds() -> list[bytes]:
    """The FTP, HTTP and TLS segments of the shared captures as one connection each (in order, after a handshake;
    the server's sequence numbers wrap), on their port and on another; then the same with the segments reordered
    and one retransmitted with other bytes."""
    out = []
    for names, port in (((("ftp/ipv4.pcap",), 21)), (HTTP_CAPTURES[:6], 80), (TLS_CAPTURES[:6], 443)):
        for name in names:
            parts = [(0 if dport == port or (sport != port and sport > dport) else 1, payload)
                     for sport, dport, payload in payloads([name], TCP, per_file=40)]
            if not parts:
                continue
            out.append(_connection(port, parts))
            out.append(_connection(8080 if port != 21 else 21, parts, handshake=port != 21, shuffle=True))
    return out
