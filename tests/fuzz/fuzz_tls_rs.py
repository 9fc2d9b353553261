"""The Rust TLS reader (``collectors._rs.TlsEngine`` behind ``tls_native.RustTls``) against the Python reference
(``tls_native.PythonTls``: ``tls_wire.TlsConnection`` frames into ``TlsAnalyzer``), on the same frames.

Input: one byte of options (bit 0: documents as JSON text, else dicts; bit 1: each segment fed in random pieces of
1-40 bytes; bits 2-3: the connections' address pair), then segments in the framing of ``seeds.pack_frames``, each
opening with one byte of kind: bit 0 from the server, bit 1 a hole (two bytes of size follow), bits 2-3 the
connection (up to four, opened at their first segment), bit 4 the next segment joins this one's frame. Contract:
after every call (``feed``, ``close`` of the connections at the end, ``finish``) both return the same documents
(as the JSON bytes their consumer writes, in order), the same warnings and the same ``TlsStats`` counters.
Coverage guides on the reference modules (the Rust side is not instrumented).
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from collectors.protocols.documents import Flow
from collectors.protocols.tls_native import ENGINE, PythonTls, RustTls
from tests.fuzz.fuzz_http_wire import pieces
from tests.fuzz.seeds import pack_frames, payloads, unpack_frames

ADDRESSES = (("198.18.0.1", "198.18.0.2"), ("2001:db8::1", "2001:db8::2"), ("10.0.0.1", "10.0.0.1"),
             ("192.0.2.9", "203.0.113.4"))
CAPTURES = ("tls/tls1.2.pcap", "tls/tls13_wolfssl.pcap", "tls/tls1_1.pcap", "tls/dhe.pcap",
            "tls/tls-conn-with-extensions.pcap", "tls/tls13draft23-chrome67.0.3368.0-canary.pcap",
            "tls/chrome-63.0.3211.0-canary-tls_experiment.pcap", "tls/google-cert-repeat.pcap",
            "tls/tls-1.2-handshake-failure.pcap", "tls/certificate-request-failed.pcap", "tls/ml-dsa-44-cert.pcap",
            "tls/tls1.2-late-protocol-error.pcap")


def _same(py: list[Any], rs: list[Any], pw: list[str], rw: list[str], a: PythonTls, b: RustTls, what: str) -> None:
    assert [orjson.dumps(d) for d in rs] == [orjson.dumps(d) for d in py], what
    assert rw == pw, what
    assert b.counters == a.counters, what


def TestOneInput(data: bytes) -> None:
    if not data or ENGINE is None:
        return
    options = data[0]
    raw = bool(options & 1)
    rng = random.Random(data[:8]) if options & 2 else None
    client, server = ADDRESSES[options >> 2 & 3]
    pw: list[str] = []
    rw: list[str] = []
    py, rs = PythonTls(pw.append, raw), RustTls(ENGINE, rw.append, raw)
    opened: set[int] = set()
    frame: list[bytes | int] = []
    ts = 1_000.0
    for f in unpack_frames(data[1:]):
        if not f:
            continue
        kind = f[0]
        conn = kind >> 2 & 3
        if conn not in opened:
            flow = Flow("tcp", client, 40000 + conn, server, 443, f"native-{conn}")
            py.open(conn, flow)
            rs.open(conn, flow)
            opened.add(conn)
        chunk: bytes | int = 1 + int.from_bytes(f[1:3], "big") if kind & 2 else f[1:]
        frame += list(pieces(chunk, rng)) if rng else [chunk]
        if kind & 16:
            continue
        ts += 0.25
        from_client = not kind & 1
        _same(py.feed(conn, from_client, frame, ts), rs.feed(conn, from_client, frame, ts), pw, rw, py, rs, "feed")
        frame = []
    for conn in sorted(opened):
        py.close(conn)
        rs.close(conn)
    _same(py.finish(), rs.finish(), pw, rw, py, rs, "finish")


def seeds() -> list[bytes]:
    """The TLS segments of the shared captures, each capture as one connection (client: the higher port), and
    generated handshakes of tests/unit/test_tls_rs.py."""
    out = []
    for i, name in enumerate(CAPTURES):
        parts = [bytes([0 if sport > dport else 1]) + payload for sport, dport, payload in payloads([name], 6)]
        if parts:
            out.append(bytes([i & 3]) + pack_frames(parts))
    from tests.unit.test_tls_rs import flight

    for seed in range(24):
        g = random.Random(seed)
        sid = g.randbytes(32) if seed & 1 else b""
        tls13 = seed % 3 == 0
        sides = [flight(g, True, sid, tls13), flight(g, False, sid, tls13)]
        parts = []
        while sides[0] or sides[1]:
            side = g.choice([s for s in (0, 1) if sides[s]])
            n = g.randrange(1, 300)
            parts.append(bytes([side]) + sides[side][:n])
            sides[side] = sides[side][n:]
        out.append(bytes([seed & 3]) + pack_frames(parts))
    return out
