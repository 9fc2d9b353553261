"""The Rust DNP3 reader (``collectors._rs.Dnp3Engine`` behind ``dnp3_native.RustDnp3``) against the Python reference
(``dnp3_native.PythonDnp3``: ``dnp3_wire.Dnp3Reader`` frames into ``Dnp3Analyzer``), on the same frames.

Input: one byte of options (bit 0: documents as JSON text, else dicts; bit 1: each segment fed in random pieces of
1-40 bytes; bits 2-3: the connections' addresses and ports), then segments in the framing of ``seeds.pack_frames``,
each opening with one byte of kind: bit 0 from the server, bit 1 a hole (two bytes of size follow), bits 2-3 the
connection (up to four, opened at their first segment), bit 4 the next segment joins this one's frame, bit 5 the
connection ends after this frame (opened again, as a new one, at its next segment), bit 6 the CRCs of the link frames
the segment starts with are made right (so that mutations reach the transport and application layers). Contract:
after every call (``feed``, ``end``, ``finish``) both return the same documents (as the JSON bytes their consumer
writes, in order), the same warnings and the same ``Dnp3Stats`` counters of every connection; where the reference
raises, the engine raises the same exception with the same text.
Coverage guides on the reference modules (the Rust side is not instrumented).
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from collectors.protocols.dnp3_native import ENGINE, PythonDnp3, RustDnp3
from collectors.protocols.dnp3_wire import crc_dnp, frame_length
from collectors.protocols.documents import Flow
from tests.fuzz.fuzz_http_wire import pieces
from tests.fuzz.seeds import pack_frames, payloads, unpack_frames

ENDS = ((("198.18.0.1", 40000), ("198.18.0.2", 20000)), (("2001:db8::1", 20000), ("2001:db8::2", 20000)),
        (("10.0.0.1", 20000), ("10.0.0.1", 41000)), (("192.0.2.9", 502), ("203.0.113.4", 20000)))
CAPTURES = ("../../attacks/ics/dnp3/dnp3.pcap", "../../attacks/ics/dnp3/dnp3_select_operate.pcap")  # from zeek/traces


def fix_crcs(chunk: bytes) -> bytes:
    """The link frames at the start of ``chunk`` (one after the other while they fit) with their CRCs made right."""
    out = bytearray(chunk)
    off = 0
    while off + 10 <= len(out) and out[off] == 0x05 and out[off + 1] == 0x64:
        size = frame_length(out[off + 2])
        if size < 10 or off + size > len(out):
            break
        out[off + 8:off + 10] = crc_dnp(bytes(out), off, off + 8).to_bytes(2, "little")
        pos, end = off + 10, off + size
        while pos < end:
            stop = min(pos + 16, end - 2)
            out[stop:stop + 2] = crc_dnp(bytes(out), pos, stop).to_bytes(2, "little")
            pos = stop + 2
        off += size
    return bytes(out)


class Both:
    def __init__(self, raw: bool) -> None:
        assert ENGINE is not None
        self.pw: list[str] = []
        self.rw: list[str] = []
        self.py = PythonDnp3(self.pw.append, raw)
        self.rs = RustDnp3(ENGINE, self.rw.append, raw)
        self.open: set[int] = set()

    def same(self, py: list[Any], rs: list[Any], what: str) -> None:
        assert [orjson.dumps(d) for d in rs] == [orjson.dumps(d) for d in py], what
        assert self.rw == self.pw, what
        for conn in self.open:
            assert self.rs.stats(conn) == self.py.stats(conn), what
            assert self.rs.damage(conn) == self.py.damage(conn), what

    def feed(self, conn: int, from_client: bool, frame: list[bytes | int], ts: float) -> None:
        try:
            py = self.py.feed(conn, from_client, frame, ts, 0)
        except Exception as exc:  # the reference's failure: the engine's is the same
            try:
                self.rs.feed(conn, from_client, frame, ts, 0)
            except Exception as got:
                assert (type(got), str(got)) == (type(exc), str(exc)), (got, exc)
            else:
                raise AssertionError(f"the reference raised {exc!r}, the engine did not") from exc
            self.end(conn)
            return
        self.same(py, self.rs.feed(conn, from_client, frame, ts, 0), "feed")

    def end(self, conn: int) -> None:
        self.py.end(conn)
        self.rs.end(conn)
        self.open.discard(conn)


def TestOneInput(data: bytes) -> None:
    if not data or ENGINE is None:
        return
    options = data[0]
    raw = bool(options & 1)
    rng = random.Random(data[:8]) if options & 2 else None
    client, server = ENDS[options >> 2 & 3]
    both = Both(raw)
    ids = [0, 1, 2, 3]  # the current id of each of the four connections
    frame: list[bytes | int] = []
    ts = 1_000.0
    for f in unpack_frames(data[1:]):
        if not f:
            continue
        kind = f[0]
        slot = kind >> 2 & 3
        conn = ids[slot]
        if conn not in both.open:
            flow = Flow("tcp", client[0], client[1] + slot, server[0], server[1], f"native-{conn}")
            both.py.open(conn, flow)
            both.rs.open(conn, flow)
            both.open.add(conn)
        body = fix_crcs(f[1:]) if kind & 64 else f[1:]
        chunk: bytes | int = 1 + int.from_bytes(f[1:3], "big") if kind & 2 else body
        frame += list(pieces(chunk, rng)) if rng else [chunk]
        if kind & 16:
            continue
        ts += 0.25
        both.feed(conn, not kind & 1, frame, ts)
        frame = []
        if kind & 32 and conn in both.open:
            both.end(conn)
            ids[slot] += 4
    for conn in sorted(both.open):
        both.end(conn)
    both.same(both.py.finish(), both.rs.finish(), "finish")


def seeds() -> list[bytes]:
    """The DNP3 segments of the shared captures, each capture as one connection (client: the higher port), and
    generated connections of tests/unit/test_dnp3_rs.py's kind."""
    out = []
    for i, name in enumerate(CAPTURES):
        parts = [bytes([0 if sport > dport else 1]) + payload
                 for sport, dport, payload in payloads([name], 6, frozenset({20000}))]
        if parts:
            out.append(bytes([i & 3]) + pack_frames(parts[:60]))
    from tests.unit.test_dnp3_rs import unit

    for seed in range(24):
        g = random.Random(seed)
        seq = [g.randrange(64), g.randrange(64)]
        parts = []
        for _ in range(g.randrange(2, 12)):
            side = g.randrange(2)
            data = unit(g, side, seq)
            while data:
                n = g.choice((len(data), len(data), g.randrange(1, 300)))
                flags = side | (4 * g.randrange(2)) | (16 if g.random() < 0.1 else 0) | (64 if g.random() < 0.2 else 0)
                parts.append(bytes([flags]) + data[:n])
                data = data[n:]
            if g.random() < 0.1:
                parts.append(bytes([side | 2]) + g.randbytes(2))
        out.append(bytes([seed & 15]) + pack_frames(parts))
    return out
