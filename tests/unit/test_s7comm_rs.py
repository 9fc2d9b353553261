"""Differential test of the Rust S7comm reader (``collectors._rs.S7commEngine`` behind ``s7comm_native.RustS7comm``)
against the Python reference (``s7comm_native.PythonS7comm``: ``s7comm_wire.S7commReader`` per connection, each
frame's fields through ``S7commAnalyzer``): the same calls on both, every document's bytes equal, in order, after
every call; each connection's damage (``native_tcp.ics_damage``), the run's ``S7commStats`` counters and the
warnings equal.

Inputs: every shared capture with a TCP connection on port 102 and the S7comm connections of a real analyzer
process's input (/var/tmp/child-in-0.bin, where present), read by ``native_tcp.TcpNative`` with
``s7comm_native.RUST`` on and off (the whole native TCP path: documents of every protocol, warnings, counters); the
generated sessions of tests/unit/test_s7comm_wire.py (setup communication, read/write var, PI services, PLC stop,
user data of every function group, COTP fragments and reassembly, class 2-4 DTs, CR/CC user data, TPDUs before the
DT, bad TPKT versions and lengths, truncated PDUs, the session layer's claims, tshark's throw quirk) and seeded
random and mutated ones, cut into random frames with holes, over interleaved connections (some on port 102 at both
ends), through the pair directly and through ``TcpNative`` (idle connections swept, holes flushed at close, open
state at finish).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from collectors.decode import DPORT, PLEN, PROTO, SPORT, Decoder
from collectors.flowconst import TCP
from collectors.pcapio import CaptureError, read_capture
from collectors.protocols import native_tcp, s7comm_native
from collectors.protocols.documents import Flow
from collectors.protocols.s7comm_native import STATS, PythonS7comm, RustS7comm
from collectors.protocols.s7comm_wire import S7commStats
from tests.support import TESTDATA
from tests.unit.test_s7comm_wire import Segment, labelled_sessions, random_sessions, write_pcap

ENGINE = s7comm_native.ENGINE
pytestmark = pytest.mark.skipif(ENGINE is None, reason="collectors._rs lacks S7commEngine")

CHILD_INPUT = Path("/var/tmp/child-in-0.bin")  # a real analyzer process's input: pcapng blocks after the header


def dumped(docs: list[Any]) -> list[bytes]:
    """Documents (orjson.Fragment or dict) as the JSON bytes their consumer writes."""
    return [orjson.dumps(d) for d in docs]


def counters(stats: S7commStats) -> tuple[int, ...]:
    return tuple(getattr(stats, name) for name in STATS)


class Pair:
    """The reference and the engine, fed the same calls; every call's documents, warnings and counters compared."""

    def __init__(self, raw: bool = True) -> None:
        assert ENGINE is not None
        self.py_warnings: list[str] = []
        self.rs_warnings: list[str] = []
        self.py = PythonS7comm(self.py_warnings.append, raw)
        self.rs = RustS7comm(ENGINE, self.rs_warnings.append, raw)
        self.docs = 0
        self.calls = 0

    def check(self, py_docs: list[Any], rs_docs: list[Any], what: str) -> list[Any]:
        self.calls += 1
        assert dumped(rs_docs) == dumped(py_docs), what
        assert self.rs_warnings == self.py_warnings, what
        assert counters(self.rs.counters) == counters(self.py.counters), what
        self.docs += len(py_docs)
        return py_docs

    def open(self, conn_id: int, flow: Flow) -> None:
        self.py.open(conn_id, flow)
        self.rs.open(conn_id, flow)

    def feed(self, conn_id: int, from_client: bool, chunks: list[bytes | int], ts: float, seq: int) -> list[Any]:
        what = f"feed({conn_id}, {from_client}, {[c if isinstance(c, int) else c.hex() for c in chunks]}, {ts!r})"
        py_docs = self.py.feed(conn_id, from_client, chunks, ts, seq)
        docs = self.check(py_docs, self.rs.feed(conn_id, from_client, chunks, ts, seq), what)
        assert self.rs.damage(conn_id) == self.py.damage(conn_id), what
        return docs

    def end(self, conn_id: int, ts: float) -> list[Any]:
        assert self.rs.damage(conn_id) == self.py.damage(conn_id)
        return self.check(self.py.end(conn_id, ts), self.rs.end(conn_id, ts), f"end({conn_id})")

    def expire(self, now: float) -> list[Any]:
        return self.check(self.py.expire(now), self.rs.expire(now), "expire")

    def finish(self) -> list[Any]:
        return self.check(self.py.finish(), self.rs.finish(), "finish")


# -- TcpNative both ways ---------------------------------------------------------------------------------------------
def tcp_packets(capture: Path) -> Iterator[tuple[tuple[Any, ...], float]]:
    decoder = Decoder()
    try:
        for ts, linktype, buf, off, caplen, _wire in read_capture(capture, lambda _m: None):
            packets = decoder.decode(linktype, buf, off, caplen, ts)
            if packets and packets[-1][PROTO] == TCP:
                yield packets[-1], ts / 1_000_000_000  # as NativeFrames hands them on
    except CaptureError:  # a baseline's text beside the captures
        return


def native_run(packets: list[tuple[tuple[Any, ...], float]], rust: bool, monkeypatch: pytest.MonkeyPatch,
               raw: bool = True) -> tuple[list[bytes], list[str], tuple[Any, ...]]:
    monkeypatch.setattr(s7comm_native, "RUST", rust)
    warnings: list[str] = []
    native = native_tcp.TcpNative("deep", warnings.append, None, raw=raw)
    assert isinstance(native.ics_engines[native_tcp.S7COMM], RustS7comm if rust else PythonS7comm)
    docs: list[Any] = []
    for p, ts in packets:
        native.take(p, ts, docs)
    docs += native.finish()
    s, s7 = native.stats, native.ics_engines[native_tcp.S7COMM].counters
    return dumped(docs), warnings, (s.frames, s.connections, s.gaps, s.gap_bytes, s.failures, s.ics_damaged,
                                    counters(s7), s7.pdus)


def both_ways(packets: list[tuple[tuple[Any, ...], float]], monkeypatch: pytest.MonkeyPatch,
              raw: bool = True) -> tuple[list[bytes], tuple[Any, ...]]:
    py = native_run(packets, False, monkeypatch, raw)
    rs = native_run(packets, True, monkeypatch, raw)
    assert rs[0] == py[0]
    assert rs[1] == py[1]
    assert rs[2] == py[2]
    return py[0], py[2]


def on_port_102(packets: list[tuple[tuple[Any, ...], float]]) -> bool:
    return any(102 in (p[SPORT], p[DPORT]) and p[PLEN] > 0 for p, _ts in packets)


CAPTURES = sorted(p for p in TESTDATA.rglob("*") if p.is_file() and (".pcap" in p.name or p.suffix == ".cap"))


@cache
def packets_of(capture: Path) -> list[tuple[tuple[Any, ...], float]]:
    return list(tcp_packets(capture))


@cache
def s7_captures() -> list[Path]:
    return [c for c in CAPTURES if on_port_102(packets_of(c))]


def test_captures_found() -> None:
    names = {c.name for c in s7_captures()}
    assert {"snap7.pcap", "s7comm_plus.pcap"} <= names


@pytest.mark.parametrize("name", ["attacks/ics/s7comm/snap7.pcap", "attacks/ics/s7comm/s7comm_plus.pcap"])
@pytest.mark.parametrize("raw", [True, False])
def test_s7comm_captures_both_ways(name: str, raw: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    docs, stats = both_ways(packets_of(TESTDATA / name), monkeypatch, raw)
    s7_docs = sum(b'"secops.s7comm"' in d for d in docs)
    assert s7_docs > 20 and stats[7] > 20, (s7_docs, stats)


def test_every_shared_capture_on_port_102_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every shared capture with a TCP payload on port 102 (S7comm, S7comm-plus, other traffic on the port)."""
    captures = s7_captures()
    assert len(captures) >= 2, captures  # snap7.pcap and s7comm_plus.pcap at least
    for capture in captures:
        both_ways(packets_of(capture), monkeypatch)


@pytest.mark.parametrize("name", ["attacks/ics/s7comm/snap7.pcap", "attacks/ics/s7comm/s7comm_plus.pcap"])
def test_whole_pipeline_both_ways(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole ingest run (tshark for the rest, the analyzers in this process): the same documents in the same
    order, and the same warnings."""
    from collectors.ingest import Pipeline
    from collectors.protocols import stream

    monkeypatch.setattr(stream, "NATIVE_TCP", True)
    runs = []
    for rust in (False, True):
        monkeypatch.setattr(s7comm_native, "RUST", rust)
        docs: list[dict[str, Any]] = []
        warnings: list[str] = []
        pipe = Pipeline(docs.append, on_warning=warnings.append, deep_process_min_bytes=None)
        pipe.process_file(TESTDATA / name)
        pipe.finish()
        runs.append(([orjson.dumps(d) for d in docs], warnings))
    assert runs[1] == runs[0]
    assert any(b'"secops.s7comm"' in d for d in runs[0][0])


@cache
def child_packets() -> list[tuple[tuple[Any, ...], float]]:
    """The TCP frames on port 102 of the real analyzer process's input (the selected frames of real traces)."""
    import tempfile

    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
    with tempfile.NamedTemporaryFile(suffix=".pcapng") as f:
        f.write(shb)
        with CHILD_INPUT.open("rb") as src:
            while block := src.read(1 << 20):
                f.write(block)
        f.flush()
        return [(p, ts) for p, ts in tcp_packets(Path(f.name)) if 102 in (p[SPORT], p[DPORT])]


@pytest.mark.skipif(not CHILD_INPUT.is_file(), reason="no /var/tmp/child-in-0.bin")
def test_real_analyzer_input_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    packets = child_packets()
    docs, stats = both_ways(packets, monkeypatch)
    assert sum(b'"secops.s7comm"' in d for d in docs) > 0, stats


# -- generated sessions ----------------------------------------------------------------------------------------------
def mutated(segments: list[Segment], rng: random.Random) -> list[Segment]:
    """Bytes flipped, set, cut or inserted (bad versions and lengths, truncated PDUs, COTP/S7 header damage)."""
    out = []
    for side, data in segments:
        b = bytearray(data)
        for _ in range(rng.randint(0, 3)):
            if not b:
                break
            pos = rng.randrange(len(b))
            kind = rng.randrange(4)
            if kind == 0:
                b[pos] ^= 1 << rng.randrange(8)
            elif kind == 1:
                b[pos] = rng.choice((0, 1, 2, 3, 4, 0x32, 0x7F, 0x80, 0xF0, 0xFF))
            elif kind == 2:
                del b[pos:pos + rng.randint(1, 8)]
            else:
                b[pos:pos] = rng.randbytes(rng.randint(1, 4))
        out.append((side, bytes(b)))
    return out


def sessions_for(seed: int) -> list[list[Segment]]:
    rng = random.Random(seed)
    sessions = [s for _, s in labelled_sessions()] if seed == 0 else []
    sessions += [s for _, s in random_sessions(seed, 40)]
    sessions += [mutated(s, rng) for _, s in random_sessions(seed + 1000, 30)]
    return sessions


def frames_of(segments: list[Segment], rng: random.Random) -> list[tuple[bool, list[bytes | int]]]:
    """Segments as frames: a segment in one or more chunks, sometimes behind a hole, sometimes two segments of a
    side in one frame (what a hole filled hands on)."""
    out: list[tuple[bool, list[bytes | int]]] = []
    for side, data in segments:
        chunks: list[bytes | int] = []
        if rng.random() < 0.04:
            chunks.append(rng.randint(1, 3000))
        if rng.random() < 0.15 and len(data) > 1:
            cut = rng.randrange(1, len(data))
            chunks += [data[:cut], data[cut:]]
        else:
            chunks.append(data)
        if out and out[-1][0] == side and rng.random() < 0.1:
            out[-1][1].extend(chunks)
        else:
            out.append((side, chunks))
    return out


FLOWS = (("10.0.0.1", 40001, "10.0.0.2", 102), ("2001:db8::1", 102, "2001:db8::2", 102),
         ("192.0.2.9", 102, "192.0.2.10", 102), ("198.51.100.1", 1024, "198.51.100.2", 102),
         ("203.0.113.1", 102, "203.0.113.2", 502))  # the last: the server on 502 (orientation by port 102)


@pytest.mark.parametrize("raw", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_generated_sessions_through_the_pair(seed: int, raw: bool) -> None:
    rng = random.Random(seed)
    pair = Pair(raw)
    queues: dict[int, list[tuple[bool, list[bytes | int]]]] = {}
    for conn_id, segments in enumerate(sessions_for(seed)):
        orig_h, orig_p, resp_h, resp_p = FLOWS[conn_id % len(FLOWS)]
        pair.open(conn_id, Flow("tcp", orig_h, orig_p, resp_h, resp_p, f"native-{conn_id}"))
        queues[conn_id] = frames_of(segments, rng)
    ts = 1_700_000_000.0 + seed
    seqs = {c: [rng.getrandbits(32), rng.getrandbits(32)] for c in queues}
    while queues:
        conn_id = rng.choice(list(queues))
        side, chunks = queues[conn_id].pop(0)
        ts += rng.choice((0.000001, 0.25, 1.5))
        seq = seqs[conn_id][0 if side else 1]
        pair.feed(conn_id, side, chunks, ts, seq)
        seqs[conn_id][0 if side else 1] = (seq + sum(len(c) for c in chunks if isinstance(c, bytes))) & 0xFFFFFFFF
        if not queues[conn_id]:
            del queues[conn_id]
            if rng.random() < 0.8:  # the others stay open until finish
                pair.end(conn_id, ts)
        if rng.random() < 0.01:
            pair.expire(ts)
    pair.finish()
    assert pair.docs > 100, pair.docs
    totals = pair.py.counters
    assert totals.bad_versions and totals.bad_lengths and totals.holes and totals.pdus > 100


def test_reassembly_eviction_and_damage_per_connection() -> None:
    """More COTP reassemblies than MAX_REASSEMBLIES (class 2-4 references), class 0 ones replacing each other, a
    bad version and a bad length: each connection's damage, as ics_damage reads it."""
    pair = Pair()
    pair.open(1, Flow("tcp", "10.0.0.1", 40000, "10.0.0.2", 102, "native-1"))
    pair.open(2, Flow("tcp", "10.0.0.3", 40000, "10.0.0.2", 102, "native-2"))
    ts = 1000.0
    for ref in range(7):
        pair.feed(1, True, [b"\x03\x00\x00\x0d" + bytes([4, 0xF0, 0, ref, 0]) + b"\x32\x01\x00\x00"], ts, ref)
    for _ in range(3):
        pair.feed(1, True, [b"\x03\x00\x00\x0a\x02\xf0\x00\x32\x01\x00"], ts, 0)
    pair.feed(2, True, [b"\x04\x00\x00\x10" + bytes(12), b"\x03\x00\x00\x01"], ts, 5)
    pair.feed(2, False, [b"\x03\x00\x00\x02\x00", 17, b"\x03\x00"], ts, 6)
    assert pair.py.damage(1) == 4 == pair.rs.damage(1)  # 3 class 2-4 evicted, then one for the class 0 one
    assert pair.py.damage(2) == 3 == pair.rs.damage(2)  # a bad version, two bad lengths
    pair.end(1, ts)
    pair.end(2, ts)
    assert counters(pair.rs.counters) == counters(pair.py.counters)
    pair.finish()


def timed_packets(sessions: list[list[Segment]], tmp_path: Path, seed: int) -> list[tuple[tuple[Any, ...], float]]:
    """The sessions as a capture (interleaved), read back; some data frames dropped (holes), the clock spread so
    that sweeps close idle connections (what waited behind a hole read then) while others go on."""
    rng = random.Random(seed)
    order = [(n, i) for n, segments in enumerate(sessions) for i in range(len(segments))]
    by_session: dict[int, list[tuple[int, int]]] = {}
    for n, i in order:
        by_session.setdefault(n, []).append((n, i))
    interleaved = []
    while by_session:
        n = rng.choice(list(by_session))
        interleaved.append(by_session[n].pop(0))
        if not by_session[n]:
            del by_session[n]
    pcap = tmp_path / f"s7-{seed}.pcap"
    write_pcap(pcap, sessions, interleaved)
    out = []
    ts = 1_600_000_000.0
    for p, _ts in tcp_packets(pcap):
        if p[PLEN] > 0 and rng.random() < 0.03:
            continue
        ts += rng.choice((0.001, 0.5, 2.0, 30.0)) if rng.random() < 0.98 else 400.0
        out.append((p, ts))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_sessions_through_tcp_native(seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = sessions_for(seed)
    docs, stats = both_ways(timed_packets(sessions, tmp_path, seed), monkeypatch)
    assert sum(b'"secops.s7comm"' in d for d in docs) > 100
    _frames, connections, gaps, _gap_bytes, failures, damaged, _counters, _pdus = stats
    assert connections >= len(sessions) and gaps > 0 and damaged > 0 and failures == 0
