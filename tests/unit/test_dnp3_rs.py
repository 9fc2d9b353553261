"""Differential test of the Rust DNP3 reader (``collectors._rs.Dnp3Engine`` behind ``dnp3_native.RustDnp3``) against
the Python reference (``dnp3_native.PythonDnp3``: ``dnp3_wire.Dnp3Reader`` frames, shaped as tshark prints them, into
``Dnp3Analyzer``): the same calls on both, every document's bytes equal, in order, after every call; the warnings,
every ``Dnp3Stats`` counter of every connection and the exceptions (type and text) equal.

Inputs: the shared captures with DNP3 over TCP and the DNP3 connections of the benchmark input
(/var/tmp/child-in-0.bin, when present), read by ``native_tcp.TcpNative`` with ``dnp3_native.RUST`` on and off (the
whole native TCP path: documents, warnings, counters); then generated connections (``random_run``: requests,
responses and unsolicited responses, messages of many transport segments with wrong flags, skips and repeats, bad
header and block CRCs, short and random LENs, garbage, truncated frames, holes, both sides on 20000 or the server on
either side, reused streams) cut into random frames, several seeds, ``end`` at random and ``finish`` with exchanges
still open; and the reassembly bounds.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from collectors.decode import DPORT, PROTO, SPORT, Decoder
from collectors.flowconst import TCP
from collectors.pcapio import CaptureError, read_capture
from collectors.protocols import dnp3_native, native_tcp
from collectors.protocols.dnp3_native import STATS, PythonDnp3, RustDnp3
from collectors.protocols.dnp3_wire import MAX_MESSAGE_BYTES, MAX_TABLE_BYTES
from collectors.protocols.documents import Flow
from tests.support import TESTDATA
from tests.unit.test_dnp3_wire import fir_fin, link

ENGINE = dnp3_native.ENGINE
pytestmark = pytest.mark.skipif(ENGINE is None, reason="collectors._rs lacks Dnp3Engine")

BENCH_INPUT = Path("/var/tmp/child-in-0.bin")  # pcapng blocks after the section header (deep_process's stdin)
FUNCS = (0, 1, 2, 3, 4, 5, 6, 13, 20, 21, 23, 33, 34, 99, 128, 129, 130, 131, 132, 255)


def dumped(docs: list[Any]) -> list[bytes]:
    """Documents (orjson.Fragment or dict) as the JSON bytes their consumer writes."""
    return [orjson.dumps(d) for d in docs]


class Pair:
    """The reference and the engine, fed the same calls; every call's documents, warnings, counters and exceptions
    compared."""

    def __init__(self, raw: bool = True) -> None:
        assert ENGINE is not None
        self.py_warnings: list[str] = []
        self.rs_warnings: list[str] = []
        self.py = PythonDnp3(self.py_warnings.append, raw)
        self.rs = RustDnp3(ENGINE, self.rs_warnings.append, raw)
        self.opened: set[int] = set()
        self.docs = 0
        self.failures = 0

    def check(self, py_docs: list[Any], rs_docs: list[Any], what: str) -> list[Any]:
        assert dumped(rs_docs) == dumped(py_docs), what
        assert self.rs_warnings == self.py_warnings, what
        for conn_id in self.opened:
            assert self.rs.stats(conn_id) == self.py.stats(conn_id), (what, conn_id, STATS)
            assert self.rs.damage(conn_id) == self.py.damage(conn_id), (what, conn_id)
        self.docs += len(py_docs)
        return py_docs

    def open(self, conn_id: int, flow: Flow) -> None:
        self.py.open(conn_id, flow)
        self.rs.open(conn_id, flow)
        self.opened.add(conn_id)

    def feed(self, conn_id: int, from_client: bool, chunks: list[bytes | int], ts: float, seq: int = 0) -> list[Any]:
        what = f"feed({conn_id}, {from_client}, {[c if isinstance(c, int) else c.hex() for c in chunks]}, {ts!r})"
        try:
            py_docs = self.py.feed(conn_id, from_client, chunks, ts, seq)
        except Exception as exc:  # the reference's own failure: the engine fails the same way (native_tcp's take)
            with pytest.raises(type(exc)) as got:
                self.rs.feed(conn_id, from_client, chunks, ts, seq)
            assert str(got.value) == str(exc), what
            self.failures += 1
            self.end(conn_id)
            return []
        return self.check(py_docs, self.rs.feed(conn_id, from_client, chunks, ts, seq), what)

    def end(self, conn_id: int) -> None:
        assert self.rs.damage(conn_id) == self.py.damage(conn_id)
        self.py.end(conn_id)
        self.rs.end(conn_id)
        self.opened.discard(conn_id)

    def finish(self) -> list[Any]:
        return self.check(self.py.finish(), self.rs.finish(), "finish")


# -- captures through the whole native TCP path ---------------------------------------------------------------------
def dnp3_packets(capture: Path) -> Iterator[tuple[tuple[Any, ...], float]]:
    """The TCP packets of a capture with a side on 20000, as NativeFrames hands them on."""
    decoder = Decoder()
    try:
        for ts, linktype, buf, off, caplen, _wire in read_capture(capture, lambda _m: None):
            packets = decoder.decode(linktype, buf, off, caplen, ts)
            if packets and packets[-1][PROTO] == TCP and 20000 in (packets[-1][SPORT], packets[-1][DPORT]):
                yield packets[-1], ts / 1_000_000_000
    except CaptureError:
        return


def native_run(packets: list[tuple[tuple[Any, ...], float]], rust: bool,
               monkeypatch: pytest.MonkeyPatch) -> tuple[list[bytes], list[str], tuple[Any, ...]]:
    monkeypatch.setattr(dnp3_native, "RUST", rust)
    warnings: list[str] = []
    native = native_tcp.TcpNative("deep", warnings.append, None, raw=True)
    assert isinstance(native.ics_engines[native_tcp.DNP3], RustDnp3 if rust else PythonDnp3)
    docs: list[Any] = []
    for p, ts in packets:
        native.take(p, ts, docs)
    docs += native.finish()
    s = native.stats
    return dumped(docs), warnings, (s.frames, s.connections, s.gaps, s.gap_bytes, s.failures, s.ics_damaged)


def dnp3_captures() -> list[Path]:
    """The shared captures named for DNP3, and every other with a TCP payload starting a DNP3 link frame."""
    from tests.unit.test_dnp3_wire import dnp3_captures as found

    return sorted({*found(), *(p for p in TESTDATA.rglob("*dnp3*") if p.is_file() and ".pcap" in p.name)})


CAPTURES = dnp3_captures()


def test_captures_found() -> None:
    assert len(CAPTURES) >= 2


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda c: str(c.relative_to(TESTDATA)))
def test_shared_captures_native_path_both_ways(capture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packets = list(dnp3_packets(capture))
    py = native_run(packets, False, monkeypatch)
    rs = native_run(packets, True, monkeypatch)
    assert rs == py, capture.name
    assert any(b'"secops.dnp3"' in d for d in py[0])


@pytest.fixture(scope="module")
def bench_packets(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[tuple[Any, ...], float]]:
    if not BENCH_INPUT.is_file():
        pytest.skip(f"{BENCH_INPUT} not here")
    path = tmp_path_factory.mktemp("bench") / "child-in.pcapng"
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
    with path.open("wb") as out, BENCH_INPUT.open("rb") as blocks:
        out.write(shb)
        while piece := blocks.read(1 << 22):
            out.write(piece)
    packets = list(dnp3_packets(path))
    path.unlink()
    return packets


def test_benchmark_input_native_path_both_ways(bench_packets: list[tuple[tuple[Any, ...], float]],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    py = native_run(bench_packets, False, monkeypatch)
    rs = native_run(bench_packets, True, monkeypatch)
    assert rs == py
    assert sum(b'"secops.dnp3"' in d for d in py[0]) >= 100


# -- generated connections ------------------------------------------------------------------------------------------
def message_frames(rng: random.Random, side: int, seq: list[int]) -> list[bytes]:
    """One application message from ``side`` (0: master) as 1-n link frames, with damage now and then."""
    ctrl, dst, src = (0xC4, 10, 1) if side == 0 else (0x44, 1, 10)
    r = rng.random()
    if side == 0:
        func = rng.choice(FUNCS[:15]) if r < 0.9 else rng.choice(FUNCS)
    else:
        func = rng.choice((129, 129, 129, 130, 131)) if r < 0.9 else rng.choice(FUNCS)
    body = bytes([0xC0 | rng.randrange(16), func])
    if func >= 129:
        body += rng.randbytes(rng.choice((0, 1, 2, 2, 2, 2)))
    body += rng.randbytes(rng.choice((0, 0, 3, 10, 30, 120, 240, 600, 2000)))
    size = rng.choice((249, 249, 100, 30, 7, max(1, len(body) // 3)))
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    frames = []
    for i, part in enumerate(parts):
        tr = fir_fin(seq[side], i == 0, i == len(parts) - 1)
        r = rng.random()
        if r < 0.04:
            tr ^= 0x40
        elif r < 0.08:
            tr ^= 0x80
        elif r < 0.12:
            seq[side] += rng.randrange(1, 5)
        elif r < 0.14:
            seq[side] -= rng.randrange(1, 5)
        seq[side] += 1
        r = rng.random()
        frame = link(ctrl, dst, src, bytes([tr]) + part, bad_header=r < 0.03,
                     bad_block=rng.randrange(1 + len(part) // 16) if 0.03 <= r < 0.06 else None)
        frames.append(frame)
        if rng.random() < 0.04:
            frames.append(frame)
        if rng.random() < 0.03:
            frames.reverse()
    return frames


def unit(rng: random.Random, side: int, seq: list[int]) -> bytes:
    r = rng.random()
    if r < 0.75:
        return b"".join(message_frames(rng, side, seq))
    ctrl, dst, src = (0xC4, 10, 1) if side == 0 else (0x44, 1, 10)
    if r < 0.83:  # a random transport byte and a short message
        tr = rng.randrange(256)
        seq[side] = tr & 63
        return link(ctrl, dst, src, bytes([tr, 0xC0, rng.choice(FUNCS)])[:rng.choice((1, 2, 3, 3))]
                    + rng.randbytes(rng.choice((0, 2, 20))))
    if r < 0.87:  # link-only functions
        return link(ctrl & 0xF0 | rng.choice((0, 9, 11, 1, 2)), dst, src,
                    b"" if rng.random() < 0.7 else bytes([fir_fin(seq[side]), 0xC0, 1]))
    if r < 0.91:
        return rng.randbytes(rng.choice((1, 3, 9, 10, 12, 40)))
    if r < 0.95:
        return link(ctrl, dst, src, length=rng.randrange(6))
    return bytes([5, 0x64, rng.randrange(256)]) + rng.randbytes(rng.randrange(7, 60))


PORTS = ((40000, 20000), (20000, 20000), (20000, 40001), (502, 20000), (30000, 20000))
ADDRESSES = (("198.18.0.1", "198.18.0.2"), ("2001:db8::1", "2001:db8::2"), ("10.0.0.1", "10.0.0.1"))


def random_run(seed: int, conns: int = 6, units: int = 60, raw: bool = True) -> Pair:
    """Connections of random DNP3 traffic cut into frames, interleaved, some ended early, then ``finish``."""
    rng = random.Random(seed)
    pair = Pair(raw)
    ts = 1_700_000_000.0 + rng.random()
    live: dict[int, tuple[list[list[bytes | int]], list[int]]] = {}
    next_id = 0
    for _ in range(conns * units):
        if len(live) < 3 and next_id < conns:
            cport, sport = rng.choice(PORTS)
            client, server = rng.choice(ADDRESSES)
            stream = f"native-{next_id if rng.random() < 0.9 else max(next_id - 1, 0)}"  # a reused stream now and then
            pair.open(next_id, Flow("tcp", client, cport, server, sport, stream))
            live[next_id] = ([[], []], [rng.randrange(64), rng.randrange(64)])
            next_id += 1
        if not live:
            break
        conn_id = rng.choice(sorted(live))
        queues, seq = live[conn_id]
        side = rng.randrange(2) if rng.random() < 0.8 else 1
        data = unit(rng, side, seq)
        r = rng.random()
        if r < 0.5:  # cut into segments
            pos = 0
            while pos < len(data):
                step = rng.choice((1, 2, 5, 9, 10, 11, 17, 30, 100, 292, 1000))
                queues[side].append(data[pos:pos + step])
                pos += step
        elif r < 0.6 and queues[side] and isinstance(queues[side][-1], bytes):
            queues[side][-1] += data
        else:
            queues[side].append(data)
        if rng.random() < 0.03:
            queues[side].append(rng.choice((1, 7, 300, 5000)))  # a hole
        while rng.random() < 0.7 and (queues[0] or queues[1]):  # frames of one or more chunks
            s = rng.randrange(2) if queues[0] and queues[1] else int(not queues[0])
            n = min(len(queues[s]), rng.choice((0, 1, 1, 1, 2, 3)))
            frame, queues[s][:n] = queues[s][:n], []
            ts += rng.choice((0.0, 0.001, 0.5, 3.0))
            pair.feed(conn_id, s == 0, frame, ts, rng.randrange(1 << 32))
            if conn_id not in pair.opened:
                del live[conn_id]
                break
        if conn_id in live and rng.random() < 0.02:
            pair.end(conn_id)
            del live[conn_id]
    for conn_id in sorted(live):
        for s in (0, 1):
            if live[conn_id][0][s]:
                pair.feed(conn_id, s == 0, live[conn_id][0][s], ts, 0)
        if conn_id in pair.opened:
            pair.end(conn_id)
    pair.finish()
    return pair


@pytest.mark.parametrize("seed", range(40))
def test_random_connections(seed: int) -> None:
    pair = random_run(seed, raw=seed % 4 != 0)
    assert pair.docs > 0


def test_random_connections_gave_every_kind() -> None:
    """Across the seeds: documents (a failure of the reference would be mirrored by the engine: ``Pair.feed``; no
    seed here makes one)."""
    docs = 0
    for seed in range(40, 60):
        pair = random_run(seed, conns=4, units=80)
        docs += pair.docs
    assert docs > 500


def test_open_exchanges_at_finish_in_time_order() -> None:
    pair = Pair()
    for i, (cport, sport) in enumerate(PORTS):
        pair.open(i, Flow("tcp", "10.0.0.1", cport, "10.0.0.2", sport, f"native-{i}"))
    for i in reversed(range(len(PORTS))):  # requests never answered, opened out of time order
        pair.feed(i, i % 2 == 0, [link(0xC4, 10, 1, bytes([fir_fin(i), 0xC0, 1 + i]))], 100.0 - i // 2)
    pair.feed(0, False, [link(0x44, 1, 10, bytes([fir_fin(9), 0xC0, 129, 0x12, 0x34]))], 200.0)  # answers one
    docs = pair.finish()
    assert len(docs) == len(PORTS) - 1


def test_multi_segment_message_and_iins() -> None:
    pair = Pair()
    pair.open(1, Flow("tcp", "10.0.0.1", 40000, "10.0.0.2", 20000, "native-1"))
    body = bytes([0xC0, 129, 0x80, 0x01]) + bytes(range(256)) * 3
    parts = [body[i:i + 249] for i in range(0, len(body), 249)]
    frames = [link(0x44, 1, 10, bytes([fir_fin(5 + i, i == 0, i == len(parts) - 1)]) + p) for i, p in enumerate(parts)]
    pair.feed(1, True, [link(0xC4, 10, 1, bytes([fir_fin(3), 0xC0, 1]))], 1.0)
    stream = b"".join(frames)
    for i in range(0, len(stream), 100):
        pair.feed(1, False, [stream[i:i + 100]], 2.0 + i)
    # two responses in one frame, the first without IIN: the analyzer gives the second's IIN to the first
    pair.feed(1, True, [link(0xC4, 10, 1, bytes([fir_fin(4), 0xC0, 2]))], 3000.0)
    two = link(0x44, 1, 10, bytes([fir_fin(20), 0xC0, 129])) + link(0x44, 1, 10, bytes([fir_fin(21), 0xC0, 130, 0, 4]))
    docs = pair.feed(1, False, [two], 3001.0)
    assert len(docs) == 2
    assert pair.docs == 3
    pair.finish()


def test_reassembly_bounds() -> None:
    pair = Pair()
    pair.open(1, Flow("tcp", "10.0.0.1", 40000, "10.0.0.2", 20000, "native-1"))
    seg = bytes(249)
    n = MAX_MESSAGE_BYTES // 249 + 3
    data = b"".join(link(0x44, 1, 10, bytes([fir_fin(i, i == 0, False)]) + seg) for i in range(n))
    pair.feed(1, False, [data], 1.0)
    # many messages in progress at once: the table bound
    for k in range(MAX_TABLE_BYTES // (249 * 50) + 2):
        data = b"".join(link(0x44, 1, 10, bytes([fir_fin(i * 2 + k, True, False)]) + seg) for i in range(30))
        pair.feed(1, False, [data], 2.0 + k)
    assert pair.py.stats(1)[STATS.index("table_segments_dropped")] > 0
    pair.finish()


def test_holes_and_hunting() -> None:
    pair = Pair()
    pair.open(1, Flow("tcp", "10.0.0.1", 40000, "10.0.0.2", 20000, "native-1"))
    req = link(0xC4, 10, 1, bytes([fir_fin(1), 0xC0, 1]) + bytes(40))
    pair.feed(1, True, [req[:15], 30, b"\x05\x64garbage" + req[3:], req[:5]], 1.0)
    pair.feed(1, True, [req[5:], b"\x05", 4, req[:9]], 2.0)
    pair.feed(1, True, [req[9:] + req], 3.0)
    assert pair.py.stats(1)[STATS.index("hunted_bytes")] > 0
    pair.finish()


def test_oldest_open_exchanges_evicted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound of exchanges waiting for a reply (``evict_oldest``; 3 here) the oldest are logged."""
    from collectors.protocols import base, dnp3

    monkeypatch.setattr(dnp3, "evict_oldest", lambda records: base.evict_oldest(records, 3))
    assert ENGINE is not None
    pair = Pair()
    pair.rs.engine = ENGINE(max_open=3)
    for i in range(8):
        pair.open(i, Flow("tcp", "10.0.0.1", 40000 + i, "10.0.0.2", 20000, f"native-{i}"))
    docs = []
    for k in range(3):
        for i in (5, 1, 7, 0, 3, 2, 6, 4)[k:]:
            docs += pair.feed(i, True, [link(0xC4, 10, 1, bytes([fir_fin(k), 0xC0, 1 + k]))], 10.0 * k + i)
    assert len(docs) >= 5
    pair.finish()
