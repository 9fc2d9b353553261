"""The connection table in Rust (``collectors._rs.TcpTable``, collectors/rust/src/tcp.rs) against native_tcp's
Python table and ``tcp_reassembly.Direction``, its reference (``native_tcp.RUST_TABLE = False``).

Both read the same selected-frame streams through ``NativeFrames``: every shared capture, and generated streams of
many connections (HTTP, FTP, TLS-like and other payloads on chosen ports) cut, reordered, duplicated, snap-cut, with
holes, closes, port reuse and idle gaps long enough for sweeps. They must give the same documents in the same order,
the same bytes to tshark, the same frame numbering, the same counters and the same warnings.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from collectors.pcapio import read_capture
from collectors.protocols import http_native, native_tcp, tcp_reassembly
from collectors.protocols.base import EngineDocuments
from collectors.protocols.expected import ExpectedConnections
from collectors.protocols.native import NativeFrames
from collectors.selection import interface_block, packet_block
from tests.unit.test_flowcore import CAPTURES
from tests.unit.test_tcp_native import pcapng, streams_cached, tcp_frame

pytestmark = pytest.mark.skipif(native_tcp.TABLE is None, reason="collectors._rs is not built")
SOURCE = Path(__file__).parents[2] / "collectors" / "rust" / "src" / "tcp.rs"

Run = tuple[bytes, list[bytes], list[str], Any, list[int], list[tuple[str, int, str, float]]]


def capture_stream(capture: Path) -> bytes:
    """A capture's frames as a selected-frame stream (one interface per link type)."""
    interfaces: dict[int, int] = {}
    blocks = []
    for ts, linktype, buf, off, caplen, wire in read_capture(capture, lambda _m: None):
        if linktype not in interfaces:
            interfaces[linktype] = len(interfaces)
            blocks.append(interface_block(linktype))
        blocks.append(packet_block(interfaces[linktype], ts, bytes(buf[off:off + caplen]), wire))
    return b"".join(blocks)


def run(data: bytes, table: bool, monkeypatch: pytest.MonkeyPatch, step: int = 1 << 16) -> Run:
    """(tshark's bytes, documents as JSON, warnings, counters, frame numbers taken, data channels announced)."""
    monkeypatch.setattr(native_tcp, "RUST_TABLE", table)
    warnings: list[str] = []
    expected = ExpectedConnections()
    announced: list[tuple[str, int, str, float]] = []
    expect = expected.expect

    def note(orig_h: str, host: str, port: int, service: str, ts: float) -> None:
        announced.append((host, port, service, ts))
        expect(orig_h, host, port, service, ts)

    expected.expect = note  # type: ignore[method-assign]
    native = NativeFrames("t", warnings.append, expected, raw=True)
    assert native.tcp is not None
    assert (native.tcp.table is not None) == table
    kept, docs = split_all(native, data, step)
    stats = native.tcp.stats
    return (kept, [orjson.dumps(d) for d in docs], warnings, stats, list(native.taken_at), announced)


def split_all(native: NativeFrames, data: bytes, step: int) -> tuple[bytes, list[Any]]:
    """(tshark's bytes, the documents) of a selected-frame stream fed ``step`` bytes at a time, then the run's end."""
    kept, docs = [], []
    for i in range(0, len(data), step):
        part, more = native.split(data[i:i + step])
        kept.append(part)
        docs += more
    docs += native.finish()
    return b"".join(kept), docs


def assert_same(data: bytes, monkeypatch: pytest.MonkeyPatch, step: int = 1 << 16) -> Run:
    python = run(data, False, monkeypatch, step)
    rust = run(data, True, monkeypatch, step)
    assert len(rust[1]) == len(python[1])
    for i, (a, b) in enumerate(zip(python[1], rust[1])):
        assert a == b, f"document {i}\nrust:   {b!r}\npython: {a!r}"
    assert rust[2] == python[2]
    assert rust[3] == python[3]
    assert rust[4] == python[4]
    assert rust[5] == python[5]
    assert rust[0] == python[0]
    return python


TCP_CAPTURES = CAPTURES


@pytest.mark.parametrize("capture", TCP_CAPTURES, ids=lambda c: c.name)
def test_shared_captures_read_alike(capture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_same(capture_stream(capture), monkeypatch)


def test_the_captures_exercise_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not vacuous: the captures give documents of every natively read kind, holes and hand-backs."""
    datasets: set[str] = set()
    frames = gaps = handed_back = 0
    for capture in TCP_CAPTURES:
        _kept, docs, _w, stats, _t, _a = run(capture_stream(capture), True, monkeypatch)
        datasets |= {m.group(1).decode() for d in docs if (m := re.search(rb'"dataset":"([a-z0-9_.]+)"', d))}
        frames, gaps, handed_back = frames + stats.frames, gaps + stats.gaps, handed_back + stats.handed_back
    assert {"secops.http", "secops.tls", "secops.ftp", "secops.dnp3", "secops.s7comm", "secops.modbus"} <= datasets
    assert frames > 3000 and gaps > 0 and handed_back > 0, (frames, gaps, handed_back)


# -- generated streams ---------------------------------------------------------------------------------------------
FTP_SESSION = (b"220 ready\r\n", b"USER anonymous\r\n", b"331 password\r\n", b"PASS x@y\r\n", b"230 in\r\n",
               b"PASV\r\n", b"227 Entering Passive Mode (10,0,0,2,19,137).\r\n", b"RETR f.txt\r\n",
               b"150 here\r\n226 done\r\n", b"PORT 10,0,0,1,200,10\r\n", b"200 ok\r\n", b"QUIT\r\n", b"221 bye\r\n")
TLS_HELLO = bytes.fromhex("16030100310100002d0303") + bytes(32) + bytes.fromhex("000002002f01000002ff01")


def conversation(rng: random.Random, sport: int, dport: int, kind: str) -> list[tuple[bool, bytes]]:
    if kind == "http":
        client, server = rng.choice(streams_cached())
        return [(True, client[:rng.randrange(1, len(client) + 1)]), (False, server)]
    if kind == "ftp":
        return [(i % 2 == 1, line) for i, line in enumerate(FTP_SESSION)]
    if kind == "tls":
        return [(True, TLS_HELLO), (False, rng.randbytes(rng.randrange(50, 400)))]
    return [(rng.random() < 0.5, rng.randbytes(rng.randrange(1, 300))) for _ in range(rng.randrange(1, 6))]


def segments(rng: random.Random, sport: int, dport: int, kind: str, isn: tuple[int, int]) -> list[bytes]:
    """One connection's frames: its conversation cut into segments, some duplicated, reordered, dropped (holes) or
    snap-cut, maybe a SYN first and a FIN or RST last."""
    seqs = {True: isn[0], False: isn[1]}
    out: list[bytes] = []
    if rng.random() < 0.5:
        out.append(tcp_frame(b"", seqs[True] - 1, True, sport, dport, flags=0x02))
    for from_client, data in conversation(rng, sport, dport, kind):
        pos = 0
        while pos < len(data):
            size = rng.randrange(1, 200)
            piece = data[pos:pos + size]
            frame = tcp_frame(piece, seqs[from_client] + pos, from_client, sport, dport, ack=seqs[not from_client])
            roll = rng.random()
            if roll < 0.04:
                pass  # lost: a hole
            elif roll < 0.08 and len(piece) > 2:
                out.append(frame[:len(frame) - len(piece) // 2])  # snap-cut (the block keeps the wire length)
            else:
                out.append(frame)
                if roll > 0.95:
                    out.append(frame)  # a retransmission
            pos += size
        seqs[from_client] += len(data)
    if rng.random() < 0.2 and len(out) > 2:
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    end = rng.random()
    if end < 0.3:
        out.append(tcp_frame(b"", seqs[True], True, sport, dport, flags=0x11, ack=seqs[False]))
        out.append(tcp_frame(b"", seqs[False], False, sport, dport, flags=0x11, ack=seqs[True]))
    elif end < 0.4:
        out.append(tcp_frame(b"", seqs[False], False, sport, dport, flags=0x04))
    return out


def generated_stream(seed: int, connections: int = 40) -> bytes:
    """Connections of many kinds interleaved, some reusing another's ports, with idle gaps that trigger sweeps."""
    rng = random.Random(seed)
    lanes = []
    for n in range(connections):
        kind = rng.choice(["http", "ftp", "tls", "other", "other"])
        dport = {"ftp": 21, "http": rng.choice([80, 8080, 22]), "tls": rng.choice([443, 2222])}.get(
            kind, rng.choice([502, 102, 20000, 2404, 9999, 80]))
        sport = 40000 + (n % 25)  # some connections reuse the endpoints of an earlier one
        isn = (rng.randrange(1 << 32), rng.randrange(1 << 32))
        lanes.append(segments(rng, sport, dport, kind, isn))
    frames: list[tuple[float, bytes]] = []
    clock = 1000.0
    while any(lanes):
        lane = rng.choice([lane for lane in lanes if lane])
        clock += rng.choice([0.001, 0.01, 0.5]) if rng.random() < 0.98 else rng.choice([6.0, 400.0])
        frames.append((clock, lane.pop(0)))
    blocks = [interface_block(1)]
    for ts, frame in frames:
        wire = len(frame)
        ip_total = int.from_bytes(frame[16:18], "big")
        if 14 + ip_total > len(frame):  # snap-cut: the wire length is the IP datagram's
            wire = 14 + ip_total
        blocks.append(packet_block(0, int(ts * 1e9), frame, wire))
    return b"".join(blocks)


@pytest.mark.parametrize("seed", range(12))
def test_generated_streams_read_alike(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    python = assert_same(generated_stream(seed), monkeypatch, step=997)
    assert python[3].connections > 0


@pytest.mark.parametrize("seed", range(6))
def test_a_small_table_under_pressure_reads_alike(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections closed to make room and tshark's decisions dropped by sweeps (the table over half full), in the
    same order as Python's dict."""
    monkeypatch.setattr(native_tcp, "MAX_CONNECTIONS", 12)
    assert_same(generated_stream(100 + seed, connections=60), monkeypatch, step=4093)


@pytest.mark.parametrize("seed", range(6))
def test_a_small_reassembly_budget_reads_alike(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_HELD_BYTES (what waits behind holes in all connections together, each segment charged its bytes and
    SEGMENT_OVERHEAD) the direction a segment would wait in skips its holes: at the same segments on both sides, the
    same holes, counters and warning (``budget_holes`` on both)."""
    monkeypatch.setattr(native_tcp, "MAX_HELD_BYTES", 600 + 100 * seed)
    assert_same(generated_stream(200 + seed, connections=60), monkeypatch, step=4093)


def test_the_small_reassembly_budget_is_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not vacuous: the budget skips holes in the streams above, and the warning says so."""
    monkeypatch.setattr(native_tcp, "MAX_HELD_BYTES", 600)
    _kept, _docs, warnings, stats, _t, _a = run(generated_stream(200, connections=60), True, monkeypatch)
    assert stats.budget_holes > 0 and stats.budget_hole_bytes > 0, stats
    assert any(f"{stats.budget_holes} of the holes ({stats.budget_hole_bytes} bytes) skipped early" in w
               for w in warnings), warnings


@pytest.mark.parametrize("table", [True, False], ids=["rust", "python"])
def test_the_reassembly_budget_counts_what_waits(table: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """What waits goes up with segments behind a hole and back to nothing as connections leave the table (handed
    back to tshark with segments still waiting, closed at the end)."""
    monkeypatch.setattr(native_tcp, "RUST_TABLE", table)
    native = NativeFrames("t", lambda _m: None, raw=True)
    assert native.tcp is not None and (native.tcp.table is not None) == table
    tcp = native.tcp
    frames = [tcp_frame(b"GET / HTTP/1.1\r\n", 1000, True, 40000 + n, 80, ack=5000) for n in range(3)]
    frames += [tcp_frame(b"x" * 10, 1020 + 20 * k, True, 40000 + n, 80, ack=5000) for n in (0, 2) for k in range(4)]
    frames += [tcp_frame(b"ade: TLS/1.2\r\n\r\n", 1020, True, 40001, 80, ack=5000),
               tcp_frame(b"x" * 10, 1050, True, 40001, 80, ack=5000)]
    native.split(pcapng(frames))

    def held() -> int:
        return tcp.table.held_bytes if tcp.table is not None else tcp.budget.held

    overhead = tcp_reassembly.SEGMENT_OVERHEAD
    assert held() == 2 * 4 * (10 + overhead) + 16 + 10 + 2 * overhead
    native.split(pcapng([tcp_frame(b"Upgr", 1016, True, 40001, 80, ack=5000)])[len(pcapng([])):])
    assert tcp.stats.handed_back == 1
    assert held() == 2 * 4 * (10 + overhead)  # the handed-back connection's segment left the budget
    native.finish()
    assert held() == 0


@pytest.mark.parametrize("rust", [True, False], ids=["rust", "python"])
def test_a_clock_jumping_a_minute_a_frame_costs_linear_time(rust: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every frame a minute after the last sweeps the table: a sweep costs what it closes and drops, not the
    table's size (both tables walked every key: 20,000 frames over a table of 10,000 decisions took seconds)."""
    monkeypatch.setattr(native_tcp, "MAX_CONNECTIONS", 20_000)
    frames = [tcp_frame(b"\x00" * 8, 1000, True, 1024 + n % 60000, 9999, ack=1) for n in range(20_000)]
    data = interface_block(1) + b"".join(packet_block(0, int((1000 + 61 * i) * 1e9), f, len(f))
                                         for i, f in enumerate(frames))
    monkeypatch.setattr(native_tcp, "RUST_TABLE", rust)
    native = NativeFrames("t", lambda _m: None, raw=True)
    started = time.process_time()
    native.split(data)
    native.finish()
    spent = time.process_time() - started
    assert native.tcp is not None and (native.tcp.table is not None) == rust
    assert spent < 1.0, f"{spent:.2f} s"


class FailingAtClose(EngineDocuments):
    """An engine's documents as the run hands them on, failing on the request marked ``/fail-at-close``."""

    def __init__(self, raw: bool) -> None:
        super().__init__(raw)
        hand_on = self.wrap

        def wrap(doc: bytes) -> Any:
            if b"/fail-at-close" in doc:
                raise RuntimeError("injected")
            return hand_on(doc)

        self.wrap = wrap


def test_a_failure_while_the_table_closes_a_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests never answered are logged as their connections close at the end of the run: one of them failing
    there is counted and reported once, and the connections after it are closed and logged on, alike in both
    tables."""
    for module in (native_tcp, http_native):
        monkeypatch.setattr(module, "EngineDocuments", FailingAtClose)
    frames = []
    for port, path in ((30001, b"before"), (30002, b"fail-at-close"), (30003, b"after")):
        request = b"GET /%s HTTP/1.1\r\nHost: h\r\n\r\n" % path
        frames += [tcp_frame(request, 1000, True, port, 80, ack=5000),  # the answer ends with the connection
                   tcp_frame(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", 5000, False, port, 80,
                             ack=1000 + len(request))]
    python = assert_same(pcapng(frames), monkeypatch)
    logged = [orjson.loads(d)["url"]["original"] for d in python[1]]
    assert logged == ["/before", "/after"]
    assert python[3].failures == 1
    assert [w for w in python[2] if "injected" in w and "what it had read is lost" in w] == python[2]
    assert len(python[2]) == 1


def test_the_generated_streams_hit_every_path(monkeypatch: pytest.MonkeyPatch) -> None:
    totals = {"connections": 0, "gaps": 0, "reused": 0, "frames": 0}
    for seed in range(12):
        stats = run(generated_stream(seed), True, monkeypatch)[3]
        for name in totals:
            totals[name] += getattr(stats, name)
    assert all(totals.values()), totals


def test_many_connections_past_the_table_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The oldest connection is closed when the table is full, in Python's dict order on both sides."""
    monkeypatch.setattr(native_tcp, "MAX_CONNECTIONS", 50)
    rng = random.Random(7)
    frames = []
    for n in range(200):
        frames += [tcp_frame(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % n, 1000, True, 30000 + n, 80, ack=5000)]
        if rng.random() < 0.5:
            frames.append(tcp_frame(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 5000, False, 30000 + n, 80,
                                    ack=1030))
    data = pcapng(frames)
    python = assert_same(data, monkeypatch)
    assert python[3].connections == 200


def test_constants_agree() -> None:
    source = SOURCE.read_text()
    for name, value in (("MAX_CONNECTIONS", native_tcp.MAX_CONNECTIONS), ("IDLE_SECONDS", native_tcp.IDLE_SECONDS),
                        ("SWEEP_SECONDS", native_tcp.SWEEP_SECONDS),
                        ("CLOSE_DELAY_SECONDS", native_tcp.CLOSE_DELAY_SECONDS),
                        ("MAX_WAITING_BYTES", tcp_reassembly.MAX_WAITING_BYTES),
                        ("MAX_WAITING_SEGMENTS", tcp_reassembly.MAX_WAITING_SEGMENTS)):
        rendered = f"{value:_}" if isinstance(value, int) and value >= 10_000 else str(value)
        assert re.search(rf"pub const {name}: \w+ = {re.escape(rendered)};", source) or \
            f"pub const {name}: usize = 256 * 1024;" in source, name
    assert "pub const REUSE_DISTANCE: i64 = 64 << 20;" in source and native_tcp.REUSE_DISTANCE == 64 << 20
    assert "pub const MAX_HELD_BYTES: usize = 64 << 20;" in source and native_tcp.MAX_HELD_BYTES == 64 << 20
    assert f"pub const SEGMENT_OVERHEAD: usize = {tcp_reassembly.SEGMENT_OVERHEAD};" in source


def test_a_server_first_connection_is_named_by_its_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """A response seen first makes the receiver the client (the documents name it as the originator)."""
    frames = [tcp_frame(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", 5000, False, 40000, 80, ack=1000),
              tcp_frame(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 1000, True, 40000, 80, ack=5040)]
    data = pcapng(frames)
    python = assert_same(data, monkeypatch)
    assert python[3].connections == 1
