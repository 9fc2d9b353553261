"""Hostile capture input: truncated files, random bytes, zero-length and oversized packets, fuzzed headers.

No crash, a counted warning, and every good packet still processed.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.decode import Decoder
from collectors.ingest import Pipeline
from collectors.pcapio import CaptureError, read_capture
from tests.support import TESTDATA

GET = TESTDATA / "zeek" / "traces" / "http" / "get.pcap"
NG = TESTDATA / "zeek" / "traces" / "pcapng-multi-interface.pcapng"


def ingest(path: Path) -> tuple[list[dict], list[str], Pipeline]:
    docs: list[dict] = []
    warnings: list[str] = []
    pipe = Pipeline(docs.append, deep=False, on_warning=warnings.append)
    pipe.process_file(path)
    pipe.finish()
    return docs, warnings, pipe


def conns(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["event"]["dataset"] == "secops.conn"]


def pcap_header(linktype: int = 1) -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)


def record(data: bytes, ts: int = 1, wirelen: int | None = None) -> bytes:
    return struct.pack("<IIII", ts, 0, len(data), len(data) if wirelen is None else wirelen) + data


@pytest.mark.parametrize("cut", [30, 100, 500, -1, -7])
def test_truncated_file_keeps_everything_before_the_damage(tmp_path: Path, cut: int) -> None:
    raw = GET.read_bytes()
    good_records = sum(1 for _ in read_capture(GET))
    bad = tmp_path / "cut.pcap"
    bad.write_bytes(raw[:cut])
    if 0 < cut <= 24:
        with pytest.raises(CaptureError):
            ingest(bad)
        return
    docs, warnings, pipe = ingest(bad)
    assert any("truncated" in w for w in warnings)
    assert pipe.stats.packets == sum(1 for _ in read_capture(bad))
    if cut < 0:  # only the last record is damaged: every other packet made it into the connection
        assert pipe.stats.packets == good_records - 1
        assert conns(docs)[0]["source"]["packets"] + conns(docs)[0]["destination"]["packets"] == good_records - 1


def test_truncated_gzip_and_pcapng(tmp_path: Path) -> None:
    gz = tmp_path / "x.pcap.gz"
    gz.write_bytes(gzip.compress(GET.read_bytes())[:-40])
    docs, warnings, _ = ingest(gz)
    assert warnings and conns(docs)
    ng = tmp_path / "x.pcapng"
    ng.write_bytes(NG.read_bytes()[:-10])
    docs, warnings, pipe = ingest(ng)
    assert any("truncated" in w for w in warnings) and pipe.stats.packets >= 1 and conns(docs)


@pytest.mark.parametrize("content", [b"", b"\x00", b"not a capture at all", bytes(range(256)) * 4])
def test_not_a_capture_is_one_clear_error(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "junk.pcap"
    p.write_bytes(content)
    with pytest.raises(CaptureError) as e:
        ingest(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_zero_length_and_oversized_packets_are_counted(tmp_path: Path) -> None:
    good = [r[2][r[3]:r[3] + r[4]] for r in read_capture(GET)]
    body = pcap_header() + record(b"") + b"".join(record(g) for g in good[:5]) + record(b"\x00" * 300_000)
    body += b"".join(record(g) for g in good[5:])
    p = tmp_path / "mixed.pcap"
    p.write_bytes(body)
    docs, warnings, pipe = ingest(p)
    assert pipe.stats.packets == len(good) + 2
    assert pipe.stats.decode_errors["oversized_packet"] == 1
    assert warnings and "damaged packets skipped" in warnings[-1]
    (c,) = conns(docs)
    assert c["source"]["packets"] + c["destination"]["packets"] == len(good)


def test_corrupt_record_length_stops_with_warning(tmp_path: Path) -> None:
    good = [r[2][r[3]:r[3] + r[4]] for r in read_capture(GET)]
    body = pcap_header() + b"".join(record(g) for g in good[:6]) + struct.pack("<IIII", 1, 0, 0x7FFFFFFF, 10)
    p = tmp_path / "corrupt.pcap"
    p.write_bytes(body + b"\x00" * 64)
    docs, warnings, pipe = ingest(p)
    assert pipe.stats.packets == 6 and any("corrupt record length" in w for w in warnings)
    assert len(conns(docs)) == 1


FRAMES = [r[2][r[3]:r[3] + r[4]] for r in read_capture(GET)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(FRAMES) - 1), flips=st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)),
                                                             max_size=8), cut=st.integers(0, 200),
       linktype=st.sampled_from([1, 0, 101, 113, 276, 9, 228, 229, 147]))
def test_fuzzed_headers_never_crash(index: int, flips: list, cut: int, linktype: int) -> None:
    frame = bytearray(FRAMES[index])
    for pos, val in flips:
        if pos < len(frame):
            frame[pos] = val
    frame = bytes(frame[: len(frame) - cut if cut < len(frame) else len(frame)])
    dec = Decoder(verify_checksums=True)
    for p in dec.decode(linktype, frame, 0, len(frame)):
        assert len(p) == 17


@settings(max_examples=150, deadline=None)
@given(junk=st.binary(min_size=0, max_size=400))
def test_random_records_between_good_ones(tmp_path_factory, junk: bytes) -> None:
    p = tmp_path_factory.mktemp("fz") / "f.pcap"
    p.write_bytes(pcap_header() + record(FRAMES[0]) + record(junk) + b"".join(record(f) for f in FRAMES[1:]))
    docs, _, pipe = ingest(p)
    assert pipe.stats.packets == len(FRAMES) + 1
    c = [d for d in conns(docs) if d["destination"]["port"] == 80 and d["source"]["ip"] == "141.142.228.5"]
    assert sum(d["source"]["packets"] + d["destination"]["packets"] for d in c) >= len(FRAMES)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=0, max_size=2000))
def test_random_files_fail_cleanly(tmp_path_factory, data: bytes) -> None:
    p = tmp_path_factory.mktemp("rnd") / "r.pcap"
    p.write_bytes(data)
    try:
        ingest(p)
    except CaptureError as e:
        assert "\n" not in str(e)
