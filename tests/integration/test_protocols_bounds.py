"""Hostile HTTP input against the deep path's bounds (issue 17, items 4 and 5): each flood is run at
two sizes and must grow linearly in CPU time (this process and tshark together) and stay bounded in
memory; cut values are visible in the document and counted as a warning.

Captures are written here byte by byte (Ethernet/IPv4/TCP), small enough to keep the suite fast.
"""

from __future__ import annotations

import resource
import struct
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path

import pytest

from collectors.protocols import extract_metadata
from collectors.protocols.http import MAX_PENDING, MAX_VALUE_CHARS
from secops.ecs import get

pytestmark = pytest.mark.integration
CLIENT, SERVER = bytes((10, 0, 0, 1)), bytes((10, 0, 0, 2))
SEGMENT = 1400


def tcp_frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, payload: bytes) -> bytes:
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, 0x18, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0, 64, 6, 0, src, dst)
    return b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00" + ip + header + payload


def write_pcap(path: Path, frames: Iterable[tuple[float, bytes]]) -> Path:
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, data in frames:
            f.write(struct.pack("<IIII", int(ts), int(ts % 1 * 1e6), len(data), len(data)))
            f.write(data)
    return path


def stream(src: bytes, dst: bytes, sport: int, dport: int, data: bytes, ts: float, seq: int = 1):
    """One direction of a connection cut into full-size segments."""
    for off in range(0, len(data), SEGMENT):
        chunk = data[off:off + SEGMENT]
        yield ts + off * 1e-9, tcp_frame(src, dst, sport, dport, seq + off, 1, chunk)


def measure(path: Path) -> dict:
    """Documents (counted, the largest kept), warnings, CPU seconds of this process and tshark, and
    the peak of Python allocations while the deep path ran."""
    warnings: list[str] = []
    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    tracemalloc.start()
    count, largest, started = 0, None, time.monotonic()
    try:
        for doc in extract_metadata(path, on_warning=warnings.append):
            count += 1
            if largest is None or len(str(doc)) > len(str(largest)):
                largest = doc
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before, strict=True))
    return {"docs": count, "largest": largest, "warnings": warnings, "cpu": cpu, "peak": peak,
            "wall": time.monotonic() - started}


def assert_linear(small: dict, large: dict, *, ratio: float = 2.6) -> None:
    """Twice the input costs at most ``ratio`` times the CPU (quadratic work would cost four times)."""
    assert large["cpu"] <= ratio * max(small["cpu"], 0.05), (small["cpu"], large["cpu"])


def orphan_flood(tmp_path: Path, n: int) -> Path:
    """A one-way capture (SPAN seeing the server side only): n responses on n connections."""
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
    frames = [(1000 + i * 1e-3, tcp_frame(SERVER, CLIENT, 80, 10_000 + i, 1, 1, reply)) for i in range(n)]
    return write_pcap(tmp_path / f"orphans-{n}.pcap", frames)


def test_orphan_response_flood_second_look_is_one_linear_pass(tmp_path):
    small, large = measure(orphan_flood(tmp_path, 1500)), measure(orphan_flood(tmp_path, 3000))
    # every response is logged, and the second look ran without a tshark error (its old stream
    # filter "tcp.stream in {0 1 ...}" is refused by tshark 4.0)
    assert (small["docs"], large["docs"]) == (1500, 3000)
    assert small["warnings"] == [] and large["warnings"] == []
    assert get(large["largest"], "http.response.status_code") == 200
    assert_linear(small, large)
    assert large["peak"] <= 2.6 * small["peak"]


def request_flood(tmp_path: Path, n: int) -> Path:
    """n pipelined header-only requests on one connection that the server never answers."""
    requests = b"".join(b"GET /item/%d HTTP/1.1\r\nHost: flood.example\r\nUser-Agent: f\r\nX-N: %d\r\n\r\n" % (i, i)
                        for i in range(n))
    return write_pcap(tmp_path / f"requests-{n}.pcap", stream(CLIENT, SERVER, 40_000, 80, requests, 1000.0))


def test_pipelined_request_flood_keeps_pending_requests_bounded(tmp_path):
    small, large = measure(request_flood(tmp_path, 2000)), measure(request_flood(tmp_path, 4000))
    assert (small["docs"], large["docs"]) == (2000, 4000)  # every request logged (unanswered)
    assert_linear(small, large)
    # at most MAX_PENDING requests wait per connection: memory does not follow the flood
    assert large["peak"] <= 1.5 * small["peak"], (small["peak"], large["peak"])
    assert MAX_PENDING < 2000


def long_uri(tmp_path: Path, n: int) -> Path:
    """One request whose URI and User-Agent are n bytes long, spanning many segments."""
    target = b"/" + b"a" * n
    request = b"GET " + target + b" HTTP/1.1\r\nHost: long.example\r\nUser-Agent: " + b"u" * n + b"\r\n\r\n"
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    frames = [*stream(CLIENT, SERVER, 40_000, 80, request, 1000.0),
              (1001.0, tcp_frame(SERVER, CLIENT, 80, 40_000, 1, 1 + len(request), reply))]
    return write_pcap(tmp_path / f"long-{n}.pcap", frames)


def test_long_values_are_cut_flagged_and_counted(tmp_path):
    small, large = measure(long_uri(tmp_path, 100_000)), measure(long_uri(tmp_path, 200_000))
    for run in (small, large):
        doc = run["largest"]
        assert run["docs"] == 1 and get(doc, "http.response.status_code") == 200
        assert len(get(doc, "url.original")) == MAX_VALUE_CHARS
        assert len(get(doc, "user_agent.original")) == MAX_VALUE_CHARS
        cuts = {c["field"]: c["length"] for c in get(doc, "secops.truncated")}
        assert cuts["url.original"] > MAX_VALUE_CHARS and cuts["user_agent.original"] > MAX_VALUE_CHARS
        assert len(str(doc)) < 4 * MAX_VALUE_CHARS  # the document does not carry the whole value
        assert any("truncated" in w for w in run["warnings"]), run["warnings"]
    assert_linear(small, large)
