"""The Rust FTP reader (``collectors._rs.FtpEngine`` behind ``ftp_native.RustFtp``) against the Python reference
(``ftp_native.PythonFtp``: ``native_tcp.LineReader`` lines into ``FtpAnalyzer.line``), on the same calls.

Input: one byte of options (bit 0: documents as JSON text, else dicts; bit 1: each segment fed in random pieces of
1-40 bytes; bits 2-3: the connections' address pair), then segments in the framing of ``seeds.pack_frames``, each
opening with one byte of kind: bit 0 from the server, bit 1 a hole (two bytes of size follow), bits 2-3 the
connection (up to four, opened at their first segment), bit 4 the connection ends after this segment (each direction
in turn, then forgotten; a later segment opens a new one). A feed that stops at the client's AUTH hands the
connection back (forgotten). Contract: after every call both return the same documents (as the JSON bytes their
consumer writes, in order), the same hand-backs, the same announcements into ``ExpectedConnections``, the same
warnings and cut-line count. Coverage guides on the reference modules (the Rust side is not instrumented).
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from collectors.protocols import ftp as ftp_module
from collectors.protocols.documents import Flow
from collectors.protocols.expected import ExpectedConnections
from collectors.protocols.ftp_native import ENGINE, PythonFtp, RustFtp
from tests.fuzz.fuzz_http_wire import pieces
from tests.fuzz.seeds import pack_frames, payloads, unpack_frames

ADDRESSES = (("198.18.0.1", "198.18.0.2"), ("2001:db8::1", "2001:db8::2"), ("10.0.0.1", "10.0.0.1"),
             ("192.0.2.9", "203.0.113.4"))
CAPTURES = ("ftp/ipv4.pcap", "ftp/ipv6.pcap", "ftp/bigtransfer.pcap")

# The compiled reference lower-cases each character on its own (mypyc's str.lower: no final-sigma rule), as the
# engine does; interpreted, Python lower-cases a final capital sigma to U+03C2. Under atheris the reference runs from
# its source, so inputs whose segments hold a sigma (capital, or small: upper-cased to capital) are left out there.
INTERPRETED = not str(ftp_module.__file__).endswith(".so")
SIGMAS = ("\u03a3".encode(), "\u03c2".encode(), "\u03c3".encode())


def holds_sigma(frames: list[bytes]) -> bool:
    streams: dict[int, bytes] = {}
    for f in frames:
        if f and not f[0] & 2:
            streams[f[0] & 13] = streams.get(f[0] & 13, b"") + f[1:]
    return any(s in stream for stream in streams.values() for s in SIGMAS)


class Recorder(ExpectedConnections):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    def expect(self, orig_h: str, resp_h: str, resp_p: int, service: str, ts: float) -> None:
        self.calls.append((orig_h, resp_h, resp_p, service, ts))
        super().expect(orig_h, resp_h, resp_p, service, ts)


class Pair:
    def __init__(self, raw: bool) -> None:
        assert ENGINE is not None
        self.pw: list[str] = []
        self.rw: list[str] = []
        self.pe, self.re = Recorder(), Recorder()
        self.py, self.rs = PythonFtp(self.pw.append, self.pe, raw), RustFtp(ENGINE, self.rw.append, self.re, raw)

    def same(self, py: list[Any], rs: list[Any], what: str) -> None:
        assert [orjson.dumps(d) for d in rs] == [orjson.dumps(d) for d in py], what
        assert self.rw == self.pw, what
        assert self.re.calls == self.pe.calls, what
        assert self.rs.cut_lines == self.py.cut_lines, what
        assert self.rs.longest_line == self.py.longest_line, what


def TestOneInput(data: bytes) -> None:
    if not data or ENGINE is None:
        return
    options = data[0]
    rng = random.Random(data[:8]) if options & 2 else None
    client, server = ADDRESSES[options >> 2 & 3]
    frames = unpack_frames(data[1:])
    if INTERPRETED and holds_sigma(frames):
        return
    pair = Pair(bool(options & 1))
    py, rs = pair.py, pair.rs
    opened: dict[int, int] = {}  # connection slot -> its current id
    next_id = 0
    ts = 1_000.0
    for f in frames:
        if not f:
            continue
        kind = f[0]
        slot = kind >> 2 & 3
        if slot not in opened:
            next_id += 1
            opened[slot] = next_id
            flow = Flow("tcp", client, 40000 + slot, server, 21, f"native-{next_id}")
            py.open(next_id, flow)
            rs.open(next_id, flow)
        conn = opened[slot]
        chunk: bytes | int = 1 + int.from_bytes(f[1:3], "big") if kind & 2 else f[1:]
        from_client = not kind & 1
        ts += 0.25
        switched = False
        for piece in (pieces(chunk, rng) if rng else [chunk]):
            pair.same(py.feed(conn, from_client, piece, ts), rs.feed(conn, from_client, piece, ts), "feed")
            switched = py.switched(conn)
            assert rs.switched(conn) == switched, "switched"
            if switched:
                break
        if switched or kind & 16:
            if not switched:
                for side in (True, False):
                    pair.same(py.end(conn, side, ts), rs.end(conn, side, ts), "end")
            py.forget(conn)
            rs.forget(conn)
            del opened[slot]
    pair.same(py.expire(ts), rs.expire(ts), "expire")
    pair.same(py.finish(), rs.finish(), "finish")


def seeds() -> list[bytes]:
    """The FTP control segments of the shared captures, each capture as one connection (client: the higher port),
    and generated sessions of tests/unit/test_ftp_rs.py."""
    out = []
    for i, name in enumerate(CAPTURES):
        parts = [bytes([0 if sport > dport else 1]) + payload
                 for sport, dport, payload in payloads([name], 6, frozenset({21}))]
        if parts:
            out.append(bytes([i & 3]) + pack_frames(parts))
    from tests.unit.test_ftp_rs import session

    for seed in range(24):
        g = random.Random(seed)
        sides = list(session(g))
        parts = []
        while sides[0] or sides[1]:
            side = g.choice([s for s in (0, 1) if sides[s]])
            n = g.randrange(1, 300)
            kind = side | (4 * (seed & 1)) | (2 if g.random() < 0.02 else 0)
            parts.append(bytes([kind]) + (b"\x00\x10" if kind & 2 else sides[side][:n]))
            sides[side] = sides[side][n:]
        out.append(bytes([seed & 15]) + pack_frames(parts))
    return out
