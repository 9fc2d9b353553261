"""The Rust S7comm reader (``collectors._rs.S7commEngine`` behind ``s7comm_native.RustS7comm``) against the Python
reference (``s7comm_native.PythonS7comm``: ``s7comm_wire.S7commReader`` per connection into ``S7commAnalyzer``), on
the same frames.

Input: one byte of options (bit 0: documents as JSON text, else dicts; bit 1: each segment fed in random pieces of
1-40 bytes; bits 2-3: the connections' addresses and ports, some with port 102 at both ends), then segments in the
framing of ``seeds.pack_frames``, each opening with one byte of kind: bit 0 from the server, bit 1 a hole (two
bytes of size follow), bits 2-3 the connection (up to four, opened at their first segment), bit 4 the next segment
joins this one's frame, bit 5 the connection ends after this frame (a later segment opens it again). Contract: after
every call (``feed``, ``end``, ``finish``) both return the same documents (as the JSON bytes their consumer writes,
in order), the same warnings, the same ``S7commStats`` counters and each connection the same damage. Coverage guides
on the reference modules (the Rust side is not instrumented).
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from collectors.protocols.documents import Flow
from collectors.protocols.s7comm_native import ENGINE, STATS, PythonS7comm, RustS7comm
from tests.fuzz.fuzz_http_wire import pieces
from tests.fuzz.seeds import pack_frames, unpack_frames

FLOWS = (("198.18.0.1", 40000, "198.18.0.2", 102), ("2001:db8::1", 102, "2001:db8::2", 102),
         ("10.0.0.1", 102, "10.0.0.1", 102), ("192.0.2.9", 102, "203.0.113.4", 502))


def _same(py: list[Any], rs: list[Any], pw: list[str], rw: list[str], a: PythonS7comm, b: RustS7comm,
          what: str) -> None:
    assert [orjson.dumps(d) for d in rs] == [orjson.dumps(d) for d in py], what
    assert rw == pw, what
    assert [getattr(b.counters, n) for n in STATS] == [getattr(a.counters, n) for n in STATS], what


def TestOneInput(data: bytes) -> None:
    if not data or ENGINE is None:
        return
    options = data[0]
    raw = bool(options & 1)
    rng = random.Random(data[:8]) if options & 2 else None
    orig_h, orig_p, resp_h, resp_p = FLOWS[options >> 2 & 3]
    pw: list[str] = []
    rw: list[str] = []
    py, rs = PythonS7comm(pw.append, raw), RustS7comm(ENGINE, rw.append, raw)
    opened: set[int] = set()
    frame: list[bytes | int] = []
    ts = 1_000.0
    seq = 0
    for f in unpack_frames(data[1:]):
        if not f:
            continue
        kind = f[0]
        conn = kind >> 2 & 3
        if conn not in opened:
            flow = Flow("tcp", orig_h, orig_p + conn, resp_h, resp_p, f"native-{conn}")
            py.open(conn, flow)
            rs.open(conn, flow)
            opened.add(conn)
        chunk: bytes | int = 1 + int.from_bytes(f[1:3], "big") if kind & 2 else f[1:]
        frame += list(pieces(chunk, rng)) if rng else [chunk]
        if kind & 16:
            continue
        ts += 0.25
        seq = (seq * 31 + len(f)) & 0xFFFFFFFF
        from_client = not kind & 1
        _same(py.feed(conn, from_client, frame, ts, seq), rs.feed(conn, from_client, frame, ts, seq), pw, rw, py, rs,
              "feed")
        assert rs.damage(conn) == py.damage(conn), "damage"
        frame = []
        if kind & 32:
            _same(py.end(conn, ts), rs.end(conn, ts), pw, rw, py, rs, "end")
            opened.discard(conn)
    for conn in sorted(opened):
        assert rs.damage(conn) == py.damage(conn), "damage"
        _same(py.end(conn, ts), rs.end(conn, ts), pw, rw, py, rs, "end")
    _same(py.expire(ts + 1000), rs.expire(ts + 1000), pw, rw, py, rs, "expire")
    _same(py.finish(), rs.finish(), pw, rw, py, rs, "finish")


def seeds() -> list[bytes]:
    """The S7comm segments of the shared captures, each as one connection, and the generated sessions of
    tests/unit/test_s7comm_wire.py (labelled and random), a few per input."""
    from collectors.decode import BUF, CAPLEN, DPORT, L4OFF, PLEN, SPORT
    from tests.unit.test_s7comm_rs import TESTDATA, packets_of
    from tests.unit.test_s7comm_wire import labelled_sessions, random_sessions

    out = []
    for i, name in enumerate(("attacks/ics/s7comm/snap7.pcap", "attacks/ics/s7comm/s7comm_plus.pcap")):
        parts = []
        for p, _ts in packets_of(TESTDATA / name):
            if p[PLEN] <= 0 or 102 not in (p[SPORT], p[DPORT]):
                continue
            buf, l4 = p[BUF], p[L4OFF]
            start = l4 + (buf[l4 + 12] >> 4) * 4
            parts.append(bytes([0 if p[DPORT] == 102 else 1]) + bytes(buf[start:start + min(p[CAPLEN], p[PLEN])]))
        if parts:
            out.append(bytes([i & 3]) + pack_frames(parts[:60]))
    sessions = [s for _, s in labelled_sessions()] + [s for _, s in random_sessions(3, 24)]
    for n in range(0, len(sessions), 3):
        parts = []
        for k, segments in enumerate(sessions[n:n + 3]):
            parts += [bytes([(0 if side else 1) | k << 2]) + data for side, data in segments]
        out.append(bytes([n & 15]) + pack_frames(parts[:60]))
    return out
