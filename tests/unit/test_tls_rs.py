"""Differential test of the Rust TLS reader (``collectors._rs.TlsEngine`` behind ``tls_native.RustTls``) against the
Python reference (``tls_native.PythonTls``: ``tls_wire.TlsConnection`` frames into ``TlsAnalyzer``): the same calls
on both, every document's bytes equal, in order, after every call; the warnings and the ``TlsStats`` counters equal.

Inputs: every shared capture with TLS over TCP, read by ``native_tcp.TcpNative`` with ``tls_native.RUST`` on and off
(the whole native TCP path: documents of every protocol, warnings, counters); then generated handshakes
(``random_run``: SSLv3 to TLS 1.3 and its drafts, HelloRetryRequest, GREASE, every extension the reference reads,
resumption, certificates good, bad and cut, ServerKeyExchange, alerts, heartbeats of every claimed length,
ChangeCipherSpec in any order, server-first streams, records and handshake messages past their bounds, unknown
record types, many connections, holes) cut into random frames, and ``finish`` with sessions still open.
"""

from __future__ import annotations

import datetime
import random
import struct
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from collectors.decode import PROTO, Decoder
from collectors.flowconst import TCP
from collectors.pcapio import CaptureError, read_capture
from collectors.protocols import native_tcp, tls_native
from collectors.protocols.documents import Flow
from collectors.protocols.tls_heartbeat import MAX_CIPHERTEXT as MAX_RECORD
from collectors.protocols.tls_native import PythonTls, RustTls
from collectors.protocols.tls_wire import MAX_HANDSHAKE_BYTES
from tests.support import TESTDATA

ENGINE = tls_native.ENGINE
pytestmark = pytest.mark.skipif(ENGINE is None, reason="collectors._rs lacks TlsEngine")

COUNTERS = ("oversized", "unknown_records", "holes", "malformed")


def dumped(docs: list[Any]) -> list[bytes]:
    """Documents (orjson.Fragment or dict) as the JSON bytes their consumer writes."""
    return [orjson.dumps(d) for d in docs]


class Pair:
    """The reference and the engine, fed the same calls; every call's documents, warnings and counters compared."""

    def __init__(self, raw: bool = True) -> None:
        assert ENGINE is not None
        self.py_warnings: list[str] = []
        self.rs_warnings: list[str] = []
        self.py = PythonTls(self.py_warnings.append, raw)
        self.rs = RustTls(ENGINE, self.rs_warnings.append, raw)
        self.docs = 0
        self.calls = 0

    def check(self, py_docs: list[Any], rs_docs: list[Any], what: str) -> list[Any]:
        self.calls += 1
        assert dumped(rs_docs) == dumped(py_docs), what
        assert self.rs_warnings == self.py_warnings, what
        assert self.rs.counters == self.py.counters, what
        self.docs += len(py_docs)
        return py_docs

    def open(self, conn_id: int, flow: Flow) -> None:
        self.py.open(conn_id, flow)
        self.rs.open(conn_id, flow)

    def feed(self, conn_id: int, from_client: bool, chunks: list[bytes | int], ts: float) -> list[Any]:
        what = f"feed({conn_id}, {from_client}, {[c if isinstance(c, int) else c.hex() for c in chunks]}, {ts!r})"
        py_docs = self.py.feed(conn_id, from_client, chunks, ts)
        return self.check(py_docs, self.rs.feed(conn_id, from_client, chunks, ts), what)

    def close(self, conn_id: int) -> None:
        self.py.close(conn_id)
        self.rs.close(conn_id)

    def finish(self) -> list[Any]:
        return self.check(self.py.finish(), self.rs.finish(), "finish")


# -- the shared captures through the whole native TCP path -------------------------------------------------------
def tcp_packets(capture: Path) -> Iterator[tuple[tuple[Any, ...], float]]:
    decoder = Decoder()
    try:
        for ts, linktype, buf, off, caplen, _wire in read_capture(capture, lambda _m: None):
            packets = decoder.decode(linktype, buf, off, caplen, ts)
            if packets and packets[-1][PROTO] == TCP:
                yield packets[-1], ts / 1_000_000_000  # as NativeFrames hands them on
    except CaptureError:  # a baseline's text beside the captures
        return


def native_run(capture: Path, rust: bool,
               monkeypatch: pytest.MonkeyPatch) -> tuple[list[bytes], list[str], tuple[Any, ...]]:
    monkeypatch.setattr(tls_native, "RUST", rust)
    warnings: list[str] = []
    native = native_tcp.TcpNative("deep", warnings.append, None, raw=True)
    assert isinstance(native.tls, RustTls if rust else PythonTls)
    docs: list[Any] = []
    for p, ts in tcp_packets(capture):
        native.take(p, ts, docs)
    docs += native.finish()
    s = native.stats
    return dumped(docs), warnings, (s.frames, s.connections, s.gaps, s.failures, native.tls.counters)


CAPTURES = sorted(p for p in TESTDATA.rglob("*") if p.is_file() and (".pcap" in p.name or p.suffix == ".cap"))


def tls_captures() -> list[Path]:
    """Every shared capture (the native TCP path decides which connections are TLS)."""
    return CAPTURES


def test_captures_found() -> None:
    assert len(CAPTURES) >= 100


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda c: str(c.relative_to(TESTDATA)))
def test_shared_captures_native_path_both_ways(capture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    py = native_run(capture, False, monkeypatch)
    rs = native_run(capture, True, monkeypatch)
    assert rs[0] == py[0], capture.name
    assert rs[1] == py[1], capture.name
    assert rs[2] == py[2], capture.name
    TLS_DOCS[str(capture)] = sum(b'"secops.tls"' in d for d in py[0])


TLS_DOCS: dict[str, int] = {}


def test_shared_captures_gave_tls_documents() -> None:
    """Run after the captures' test (the same module): most of them log TLS sessions read natively (STARTTLS
    sessions and TLS inside other protocols go to tshark)."""
    if len(TLS_DOCS) < len(tls_captures()):
        pytest.skip("the captures' test did not run")
    assert sum(1 for n in TLS_DOCS.values() if n) >= 15 and sum(TLS_DOCS.values()) >= 20, TLS_DOCS


PIPELINE_CAPTURES = ("zeek/traces/tls/google-cert-repeat.pcap", "zeek/traces/tls/tls13_wolfssl.pcap",
                     "zeek/traces/tls/tls1.2-late-protocol-error.pcap", "zeek/traces/tls/https-to-http.pcap")


@pytest.mark.parametrize("name", PIPELINE_CAPTURES)
def test_whole_pipeline_both_ways(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole ingest run (tshark for the rest, the analyzers in this process): the same documents in the same
    order, and the same warnings."""
    from collectors.ingest import Pipeline
    from collectors.protocols import stream

    monkeypatch.setattr(stream, "NATIVE_TCP", True)
    runs = []
    for rust in (False, True):
        monkeypatch.setattr(tls_native, "RUST", rust)
        docs: list[dict[str, Any]] = []
        warnings: list[str] = []
        pipe = Pipeline(docs.append, on_warning=warnings.append, deep_process_min_bytes=None)
        pipe.process_file(TESTDATA / name)
        pipe.finish()
        runs.append(([orjson.dumps(d) for d in docs], warnings))
    assert runs[1] == runs[0]
    assert any(b'"secops.tls"' in d for d in runs[0][0])


# -- generated handshakes -------------------------------------------------------------------------------------------
def record(kind: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", kind, version, len(body) & 0xFFFF) + body


def message(kind: int, body: bytes) -> bytes:
    return struct.pack("!B", kind) + len(body).to_bytes(3, "big") + body


def extension(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body) & 0xFFFF) + body


def vec(body: bytes, size: int) -> bytes:
    return (len(body) % (1 << (8 * size))).to_bytes(size, "big") + body


@cache
def good_der() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rs.example")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(77).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=400))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("rs.example")]), False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


VERSIONS = (0x0300, 0x0301, 0x0302, 0x0303, 0x0304, 0x7F17, 0x7F12, 0x7E02, 0xFEFD, 0x0002, 0x1234)
GREASE = (0x0A0A, 0x1A1A, 0xFAFA, 0x2A2A)
HRR = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
NAMES = (b"example.com", b"", b"h2", b"http/1.1", "\u00e9t\u00e9.example".encode(), b"\xff\xfe\xc3", b"a\x00b",
         b"\xed\xa0\x80x", b"x" * 300)


def name(rng: random.Random) -> bytes:
    if rng.random() < 0.02:
        return b"n" * rng.choice((4097, 5000))  # past MAX_KEYWORD_CHARS: the value is cut
    return rng.choice(NAMES) if rng.random() < 0.8 else rng.randbytes(rng.randrange(0, 12))


def u16s(values: list[int]) -> bytes:
    return b"".join(struct.pack("!H", v) for v in values)


def maybe_cut(rng: random.Random, body: bytes) -> bytes:
    """Now and then a body cut short or grown (malformed vectors)."""
    r = rng.random()
    if r < 0.04 and body:
        return body[:rng.randrange(len(body))]
    if r < 0.06:
        return body + rng.randbytes(rng.randrange(1, 4))
    return body


def client_hello(rng: random.Random, sid: bytes) -> bytes:
    exts: list[bytes] = []
    pool = [0, 10, 11, 13, 16, 43, 15, 51, 34, 50, 23, 35, 65281, 40, 21]
    for kind in rng.sample(pool, rng.randrange(0, len(pool))):
        if kind == 0:
            names = b"".join(bytes([rng.choice((0, 0, 1))]) + vec(name(rng), 2) for _ in range(rng.randrange(1, 3)))
            body = vec(names, 2)
        elif kind == 10:
            body = vec(u16s([rng.choice((29, 23, 24, 25, 0x11EC, *GREASE)) for _ in range(rng.randrange(4))]), 2)
        elif kind == 11:
            body = vec(bytes(rng.randrange(3) for _ in range(rng.randrange(3))), 1)
        elif kind in (13, 34, 50):
            body = vec(u16s([rng.choice((0x0403, 0x0804, 0x0401, 0x0201, *GREASE)) for _ in range(rng.randrange(5))])
                       + (b"\x01" if rng.random() < 0.05 else b""), 2)
        elif kind == 16:
            body = vec(b"".join(vec(name(rng), 1) for _ in range(rng.randrange(0, 3))), 2)
        elif kind == 43:
            body = vec(u16s([rng.choice(VERSIONS + GREASE) for _ in range(rng.randrange(4))]), 1)
        elif kind == 15:
            body = b"\x01"
        else:
            body = rng.randbytes(rng.randrange(0, 8))
        exts.append(extension(kind, maybe_cut(rng, body)))
    for _ in range(rng.randrange(0, 2)):
        exts.insert(rng.randrange(len(exts) + 1), extension(rng.choice(GREASE), b""))
    ciphers = [rng.choice((0xC02F, 0xC030, 0x1301, 0x1302, 0x009C, 0x0005, 0x0000, *GREASE))
               for _ in range(rng.randrange(0, 6))]
    hello = struct.pack("!H", rng.choice(VERSIONS)) + rng.randbytes(32) + vec(sid, 1) + vec(u16s(ciphers), 2) + \
        vec(b"\x00", 1)
    if rng.random() < 0.9:
        hello += vec(b"".join(exts), 2)
    return maybe_cut(rng, hello)


def server_hello(rng: random.Random, sid: bytes, tls13: bool, retry: bool) -> bytes:
    exts: list[bytes] = []
    for kind in rng.sample([43, 51, 40, 16, 15, 65281, 11], rng.randrange(0, 7)):
        if kind == 43:
            body = struct.pack("!H", 0x0304 if tls13 else rng.choice(VERSIONS))
            body = body[:1] if rng.random() < 0.05 else body
        elif kind in (51, 40):
            body = struct.pack("!H", rng.choice((29, 23, 4588, 0, 999))) + rng.randbytes(rng.randrange(0, 3))
        elif kind == 16:
            body = vec(vec(name(rng), 1), 2)
        elif kind == 15:
            body = b"\x01"
        else:
            body = rng.randbytes(rng.randrange(0, 3))
        exts.append(extension(kind, maybe_cut(rng, body)))
    if tls13 and rng.random() < 0.7:
        exts.insert(0, extension(43, struct.pack("!H", rng.choice((0x0304, 0x7F17, 0x7F12, 0x7E02)))))
    cipher = rng.choice((0xC02F, 0xC030, 0xC013, 0x1301, 0x009C, 0x0005, 0x0000, 0xABCD, 0xCCA8))
    hello = struct.pack("!H", rng.choice((0x0303, 0x0301, 0x0300, 0x0302))) + (HRR if retry else rng.randbytes(32)) \
        + vec(sid, 1) + struct.pack("!HB", cipher, 0)
    if rng.random() < 0.9:
        hello += vec(b"".join(exts), 2)
    return maybe_cut(rng, hello)


def certificate(rng: random.Random, tls13: bool) -> bytes:
    ders = [rng.choice((good_der(), good_der(), b"", rng.randbytes(rng.randrange(1, 40)), good_der()[:100]))
            for _ in range(rng.randrange(0, 4) if rng.random() > 0.02 else 20)]
    entries = b"".join(vec(d, 3) + (vec(b"", 2) if tls13 else b"") for d in ders)
    body = (vec(b"", 1) if tls13 else b"") + vec(entries, 3)
    return maybe_cut(rng, body)


def heartbeat(rng: random.Random) -> bytes:
    kind = rng.choice((1, 1, 2, 3))
    claimed = rng.choice((0, 16, 100, 0x4000, 0xFFFF, rng.randrange(0x10000)))
    payload = rng.randbytes(rng.choice((0, 3, 16, 40)))
    return bytes([kind]) + struct.pack("!H", claimed) + payload + bytes(rng.choice((0, 16)))


def flight(rng: random.Random, client: bool, sid: bytes, tls13: bool) -> bytes:
    """One side's bytes: its handshake messages cut into records, then CCS, encrypted records, alerts, heartbeats."""
    msgs: list[bytes] = []
    if client:
        msgs.append(message(1, client_hello(rng, sid)))
        if rng.random() < 0.2:
            msgs.append(message(1, client_hello(rng, sid)))  # after a HelloRetryRequest
        if rng.random() < 0.5:
            msgs.append(message(16, vec(rng.randbytes(rng.randrange(0, 70)), 1)))
    else:
        retry = rng.random() < 0.15
        msgs.append(message(2, server_hello(rng, sid, tls13, retry)))
        if retry:
            msgs.append(message(2, server_hello(rng, sid, tls13, False)))
        if rng.random() < 0.7:
            msgs.append(message(11, certificate(rng, tls13)))
        if rng.random() < 0.5:
            msgs.append(message(12, bytes([rng.choice((3, 3, 1))]) + struct.pack("!H", rng.choice((23, 29, 0, 4588)))
                                + rng.randbytes(rng.randrange(0, 10))))
        if rng.random() < 0.5:
            msgs.append(message(14, b""))
    if rng.random() < 0.03:
        msgs += [message(0, b"")] * rng.choice((63, 64, 65, 70))  # a flood of empty messages
    if rng.random() < 0.02:
        msgs.append(b"\x0b" + (MAX_HANDSHAKE_BYTES + 1).to_bytes(3, "big"))
    stream = b"".join(msgs)
    out = b""
    while stream:
        n = rng.randrange(1, len(stream) + 1) if rng.random() < 0.5 else len(stream)
        out += record(22, stream[:n], rng.choice((0x0301, 0x0303, 0x0300)))
        stream = stream[n:]
    tail: list[bytes] = []
    for _ in range(rng.randrange(0, 7)):
        r = rng.random()
        if r < 0.25:
            tail.append(record(20, b"\x01"))
        elif r < 0.45:
            tail.append(record(23, rng.randbytes(rng.randrange(1, 60))))
        elif r < 0.55:
            tail.append(record(22, rng.randbytes(rng.randrange(0, 40))))
        elif r < 0.7:
            tail.append(record(21, bytes([rng.choice((1, 2)), rng.choice((0, 40, 42, 48, 70, 112, 200))])
                               + (b"\x00" if rng.random() < 0.1 else b"")))
        elif r < 0.9:
            tail.append(record(24, heartbeat(rng) if rng.random() < 0.9 else rng.randbytes(rng.randrange(0, 3))))
        elif r < 0.93:
            tail.append(record(24, bytes([1]) + struct.pack("!H", 0x4000) + bytes(rng.choice((MAX_RECORD, 17000)))))
        elif r < 0.95:
            tail.append(struct.pack("!BHH", 23, 0x0303, MAX_RECORD + 1) + bytes(10))  # past the record bound
        elif r < 0.97:
            tail.append(record(rng.choice((0, 19, 25, 99)), rng.randbytes(5)))  # record sync lost
        else:
            tail.append(record(22, message(1, client_hello(rng, sid))))  # a hello after CCS (or a new one)
    return out + b"".join(tail)


ADDRESSES = (("192.0.2.1", "198.51.100.7"), ("2001:db8::1", "2001:db8::443"))


def random_run(rng: random.Random, pair: Pair, connections: int | None = None) -> None:
    """Generated connections (each both sides' flights), cut into frames of both directions in random order with
    holes, interleaved across connections; some closed, ``finish`` at the end."""
    ts = 1_600_000_000.0 + rng.randrange(0, 10**6) / 7
    streams: dict[int, list[bytearray]] = {}
    for conn_id in range(1, (connections or rng.randrange(1, 5)) + 1):
        client, server = rng.choice(ADDRESSES)
        flow = Flow("tcp", client, rng.choice((40000, 443, 50001)), server, rng.choice((443, 8443, 40000)),
                    f"native-{conn_id}")
        pair.open(conn_id, flow)
        sid = rng.choice((b"", rng.randbytes(32), b"\x11" * 32))
        tls13 = rng.random() < 0.35
        streams[conn_id] = [bytearray(flight(rng, True, sid, tls13)), bytearray(flight(rng, False, sid, tls13))]
        if rng.random() < 0.2:  # a second handshake on the same connection (held heartbeat sessions end there)
            streams[conn_id][0] += flight(rng, True, sid, tls13)
            streams[conn_id][1] += flight(rng, False, sid, tls13)
    server_first = rng.random() < 0.2
    steps = 0
    while streams and steps < 400:
        steps += 1
        conn_id = rng.choice(list(streams))
        sides = streams[conn_id]
        side = rng.choice([i for i in (0, 1) if sides[i]] or [0])
        if server_first and sides[1] and steps < 3:
            side = 1
        chunks: list[bytes | int] = []
        for _ in range(rng.choice((0, 1, 1, 1, 2, 3))):
            data = sides[side]
            if not data:
                break
            if rng.random() < 0.02:
                chunks.append(rng.randrange(1, 100))  # a hole
                continue
            n = rng.choice((1, 2, 5, 6, 50, 200, len(data), rng.randrange(1, len(data) + 1)))
            chunks.append(bytes(data[:n]))
            del data[:n]
        ts += rng.choice((0.0, 0.001, 0.5, 30.0))
        pair.feed(conn_id, side == 0, chunks, ts)
        if not sides[0] and not sides[1]:
            del streams[conn_id]
            if rng.random() < 0.7:
                pair.close(conn_id)
    pair.finish()


@pytest.mark.parametrize("seed", range(150))
def test_generated_handshakes(seed: int) -> None:
    pair = Pair(raw=seed % 5 != 0)
    random_run(random.Random(seed), pair)


def test_generated_handshakes_produce_documents_and_damage() -> None:
    """The generator reaches what it is meant to: sessions logged, every counter, heartbeat and certificate fields."""
    pair = Pair()
    for seed in range(1000, 1120):
        random_run(random.Random(seed), pair)
    c = pair.py.counters
    assert pair.docs > 150
    assert c.oversized and c.unknown_records and c.holes and c.malformed
    assert any("not readable" in w for w in pair.py_warnings)


@pytest.mark.parametrize("seed", range(20))
def test_a_small_held_budget_reads_alike(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past tls_wire.MAX_HELD_BYTES (the incomplete records and handshake messages of all connections together)
    the direction whose chunk took the total over is read no further, counted as oversized, in both (the engine
    takes the bound when made); closed connections give theirs back."""
    from collectors.protocols import tls_wire
    monkeypatch.setattr(tls_wire, "MAX_HELD_BYTES", 300 + 40 * seed)
    pair = Pair()
    random_run(random.Random(2000 + seed), pair, connections=6)


def test_the_small_held_budget_is_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not vacuous: the budget stops directions (more oversized than without it)."""
    from collectors.protocols import tls_wire
    unbounded = Pair()
    for seed in range(2000, 2020):
        random_run(random.Random(seed), unbounded, connections=6)
    monkeypatch.setattr(tls_wire, "MAX_HELD_BYTES", 300)
    bounded = Pair()
    for seed in range(2000, 2020):
        random_run(random.Random(seed), bounded, connections=6)
    assert bounded.py.counters.oversized > unbounded.py.counters.oversized + 5
    assert bounded.py.held.held == 0 or bounded.py.conns  # what is left is the connections' never closed


def test_heartbleed_held_session_and_renegotiation() -> None:
    """Heartbeats negotiated hold a session (TLS 1.3: established by application data), a second ClientHello on the
    connection logs it; an overclaiming request and a long response are read alike."""
    pair = Pair()
    hb = extension(15, b"\x01")
    ch = struct.pack("!H", 0x0303) + bytes(32) + vec(b"", 1) + vec(u16s([0x1301]), 2) + vec(b"\x00", 1) + \
        vec(hb + extension(43, vec(u16s([0x0304]), 1)), 2)
    sh = struct.pack("!H", 0x0303) + bytes(range(32)) + vec(b"", 1) + struct.pack("!HB", 0x1301, 0) + \
        vec(hb + extension(43, struct.pack("!H", 0x0304)) + extension(51, struct.pack("!H", 29)), 2)
    flow = Flow("tcp", "192.0.2.1", 40000, "198.51.100.7", 443, "native-1")
    pair.open(1, flow)
    pair.feed(1, True, [record(22, message(1, ch))], 1.0)
    pair.feed(1, False, [record(22, message(2, sh)) + record(23, bytes(50))], 1.1)
    pair.feed(1, True, [record(23, bytes(40)) + record(24, b"\x01\xff\xff" + bytes(16))], 1.2)
    pair.feed(1, False, [record(24, b"\x02" + bytes(2000))], 1.3)
    assert pair.feed(1, True, [record(22, message(1, ch))], 2.0)  # the held session is logged
    docs = pair.finish()
    assert len(docs) == 1


def test_finish_with_open_sessions_in_time_order() -> None:
    pair = Pair()
    for conn_id, ts in ((1, 5.0), (2, 3.0), (3, 5.0), (4, 1.0)):
        pair.open(conn_id, Flow("tcp", "192.0.2.1", 40000 + conn_id, "198.51.100.7", 443, f"native-{conn_id}"))
        rng = random.Random(conn_id)
        pair.feed(conn_id, True, [record(22, message(1, client_hello(rng, b"")))], ts)
    assert len(pair.finish()) == 4


def test_bad_chunks_are_refused() -> None:
    assert ENGINE is not None
    engine = ENGINE(lambda *a: None, lambda *a: ({}, 0))
    engine.open(1, "192.0.2.1", 1, "192.0.2.2", 2)
    with pytest.raises(TypeError):
        engine.feed(1, True, ["text"], 1.0)  # type: ignore[list-item]
    with pytest.raises(KeyError):
        engine.feed(2, True, [b""], 1.0)
    with pytest.raises(ValueError):
        engine.feed(1, True, [b""], float("nan"))


def test_the_engine_s_name_tables_are_the_python_ones() -> None:
    """collectors/rust/src/tls_names.rs is generated from tls_ciphers.CIPHER_NAMES and tls.ALERTS/CURVES: a name
    changed on one side only fails here (the differential tests meet only the codes the captures use)."""
    import re

    from collectors.protocols.tls import ALERTS, CURVES
    from collectors.protocols.tls_ciphers import CIPHER_NAMES

    source = (Path(__file__).parents[2] / "collectors" / "rust" / "src" / "tls_names.rs").read_text()
    tables = {}
    for function, body in re.findall(r"pub fn (\w+)\(code: u\d+\) -> Option<&'static str> \{(.*?)\n\}", source, re.S):
        tables[function] = {int(code): name for code, name in re.findall(r'(\d+) => "([^"]*)"', body)}
    assert tables == {"cipher_name": CIPHER_NAMES, "alert_name": ALERTS, "curve_name": CURVES}
