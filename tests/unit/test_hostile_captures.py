"""Captures built to hurt the sensor (issue 17): fragment floods that must cost linear time and bounded memory,
and pcapng files with every block type, well-formed and broken, on both engines."""

from __future__ import annotations

import struct
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.decode import Decoder
from collectors.ingest import Pipeline
from tests.support import TESTDATA
from tests.unit.test_flowcore import mutate

GET = TESTDATA / "zeek" / "traces" / "http" / "get.pcap"
ETHER = bytes.fromhex("020000000002 020000000001 0800")


def ipv4_fragment(ident: int, offset: int, payload: bytes, more: bool, src: int = 1) -> bytes:
    """An Ethernet frame holding one IPv4/UDP fragment (offset in bytes, a multiple of 8)."""
    total = 20 + len(payload)
    flags = (0x2000 if more else 0) | (offset // 8)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident, flags, 64, 17, 0, bytes([198, 18, 0, src]),
                         bytes([198, 18, 1, 1]))
    return ETHER + header + payload


def decode_all(frames: list[bytes], **decoder_options: int) -> Decoder:
    dec = Decoder(**decoder_options)
    for i, fr in enumerate(frames):
        dec.decode(1, fr, 0, len(fr), i)
    return dec


def hole_flood(keys: int, per_key: int) -> list[bytes]:
    """Per reassembly key: the last fragment first, then small fragments that always leave a hole before them
    (a datagram that never completes, so every fragment is another reassembly attempt)."""
    frames = []
    for k in range(keys):
        frames.append(ipv4_fragment(k, 65_000, b"z" * 8, more=False))
        frames += [ipv4_fragment(k, 16 + 16 * (i % 4000), b"x" * 8, more=True) for i in range(per_key)]
    return frames


def best_of(runs: int, fn) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def test_fragment_flood_costs_linear_time() -> None:
    """4x the fragments on 15 keys costs about 4x the time, not 16x (each fragment used to sort every offset
    of its datagram)."""
    small, large = hole_flood(15, 500), hole_flood(15, 2000)
    t_small = best_of(3, lambda: decode_all(small))
    t_large = best_of(3, lambda: decode_all(large))
    assert t_large / t_small < 8, f"{t_small:.3f}s -> {t_large:.3f}s for 4x the fragments"


def big_fragment_flood(keys: int) -> list[bytes]:
    """Per key, 1480-byte fragments at every offset up to 64 KiB, the first one missing: ~128 KiB buffered each."""
    return [ipv4_fragment(k, off, b"y" * 1480, more=True, src=k % 200)
            for k in range(keys) for off in range(1480, 64_000, 1480)]


CAP = 2 << 20


def peak_bytes(frames: list[bytes]) -> tuple[int, Decoder]:
    tracemalloc.start()
    try:
        dec = decode_all(frames, frag_bytes_max=CAP)
        return tracemalloc.get_traced_memory()[1], dec
    finally:
        tracemalloc.stop()


def test_fragment_memory_is_bounded_in_bytes_and_truncation_is_counted() -> None:
    """20 or 80 never-completing 64 KiB datagrams under a 2 MiB cap: the reassembly buffers stop at the cap
    either way, and every datagram dropped for room is counted (the pipeline reports counted damage as a
    warning). The default cap is FRAG_BYTES_MAX (16 MiB); the frames alone are 4x that here."""
    small_frames = big_fragment_flood(20)
    peak_small, dec_small = peak_bytes(small_frames)
    del small_frames
    large_frames = big_fragment_flood(80)
    frame_bytes = sum(len(f) for f in large_frames)
    peak_large, dec_large = peak_bytes(large_frames)
    for dec in (dec_small, dec_large):
        assert dec.frag_bytes <= CAP and dec.errors["fragment_memory_cap"] > 0
    assert dec_large.errors["fragment_memory_cap"] > dec_small.errors["fragment_memory_cap"]
    assert peak_large < 1.5 * peak_small, f"peak {peak_small >> 20} MiB -> {peak_large >> 20} MiB"
    assert peak_large < 2 * CAP < frame_bytes


def test_fragments_still_reassemble_across_overlaps_and_duplicates() -> None:
    """Overlapping and repeated fragments complete the datagram once, the first copy of each byte winning."""
    udp = struct.pack("!HHHH", 1000, 2000, 8 + 40, 0) + b"A" * 40
    frames = [ipv4_fragment(9, 16, udp[16:], more=False), ipv4_fragment(9, 8, b"B" * 16, more=True),
              ipv4_fragment(9, 8, b"C" * 8, more=True), ipv4_fragment(9, 0, udp[:16], more=True)]
    dec = Decoder()
    out = [p for i, fr in enumerate(frames) for p in dec.decode(1, fr, 0, len(fr), i)]
    assert len(out) == 1 and out[0][3:5] == (1000, 2000) and out[0][9] == 40
    assert not dec.frags and dec.frag_bytes == 0


# -- pcapng: every block type ------------------------------------------------------------------------------------
FRAMES = []


def _frames() -> list[bytes]:
    from collectors.pcapio import read_capture

    if not FRAMES:
        FRAMES.extend(bytes(buf[off:off + cap]) for _, _, buf, off, cap, _ in read_capture(GET))
    return FRAMES


def block(btype: int, body: bytes, length: int | None = None) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12 if length is None else length
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def shb() -> bytes:
    return block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(options: bytes = b"") -> bytes:
    return block(1, struct.pack("<HHI", 1, 0, 0) + options)


def epb(frame: bytes, iface: int = 0, ticks: int = 1_700_000_000_000_000, caplen: int | None = None) -> bytes:
    cap = len(frame) if caplen is None else caplen
    return block(6, struct.pack("<IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, cap, len(frame)) + frame)


def spb(frame: bytes) -> bytes:
    return block(3, struct.pack("<I", len(frame)) + frame)


def obsolete_pb(frame: bytes) -> bytes:
    ticks = 10**15 + 1
    return block(2, struct.pack("<HHIIII", 0, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)) + frame)



def other_blocks() -> bytes:
    """Name resolution, interface statistics, decryption secrets, systemd journal, custom and unknown blocks."""
    nrb = block(4, struct.pack("<HH", 1, 8) + bytes([198, 18, 0, 1]) + b"a.b\0" + struct.pack("<HH", 0, 0))
    isb = block(5, struct.pack("<III", 0, 0, 0))
    dsb = block(0x0A, struct.pack("<II", 0x544C534B, 4) + b"key!")
    journal = block(9, b"MESSAGE=x\n")
    custom = block(0x00000BAD, struct.pack("<I", 32473) + b"data")
    custom_nocopy = block(0x40000BAD, struct.pack("<I", 32473) + b"data")
    return nrb + isb + dsb + journal + custom + custom_nocopy + block(0x12345678, b"????")


def valid_corpus() -> bytes:
    f = _frames()
    return (shb() + idb(struct.pack("<HHB3x", 9, 1, 6) + b"\0" * 4) + other_blocks() + epb(f[0], ticks=10**15)
            + obsolete_pb(f[1]) + spb(f[2]) + b"".join(epb(x, ticks=10**15 + i) for i, x in enumerate(f[3:], 3)))


MALFORMED = {
    "spb-length-12": lambda f: block(3, b"", length=12),
    "epb-length-12": lambda f: block(6, b"", length=12),
    "epb-length-28": lambda f: block(6, b"\0" * 16, length=28),
    "idb-length-12": lambda f: block(1, b"", length=12),
    "obsolete-pb-length-16": lambda f: block(2, b"\0" * 4, length=16),
    "epb-caplen-past-block": lambda f: epb(f[0], caplen=len(f[0]) + 64),
    "epb-unknown-interface": lambda f: epb(f[0], iface=7),
    "epb-time-past-2262": lambda f: epb(f[0], ticks=2**64 - 1),
    "idb-option-past-block": lambda f: idb(struct.pack("<HH", 14, 200)),
}


def engines(paths: list[Path]) -> list[tuple[list[dict], object, list[str]]]:
    out = []
    for engine in ("python", "native"):
        docs: list[dict] = []
        warnings: list[str] = []
        pipe = Pipeline(docs.append, deep=False, engine=engine, on_warning=warnings.append)
        for p in paths:
            pipe.process_file(p)
        out.append((docs, pipe.finish(), warnings))
    return out


def test_every_block_type_reads_identically(tmp_path: Path) -> None:
    path = tmp_path / "all.pcapng"
    path.write_bytes(valid_corpus())
    (docs, stats, warnings), native = engines([path])
    assert (docs, stats, warnings) == native
    assert stats.packets == len(_frames()) and not warnings
    (conn,) = [d for d in docs if d["event"]["dataset"] == "secops.conn"]
    assert conn["source"]["packets"] + conn["destination"]["packets"] == len(_frames())


@pytest.mark.parametrize("damage", sorted(MALFORMED))
def test_malformed_block_skipped_and_the_next_file_still_read(tmp_path: Path, damage: str) -> None:
    """A broken block is skipped with a counted warning; the packets around it and the next file are kept, on
    both engines (the native engine used to abort the whole ingest on a 12-byte simple packet block)."""
    f = _frames()
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(shb() + idb() + epb(f[0], ticks=10**15) + MALFORMED[damage](f) + epb(f[1], ticks=10**15 + 1))
    good = tmp_path / "good.pcap"
    good.write_bytes(GET.read_bytes())
    (docs, stats, warnings), native = engines([bad, good])
    assert (docs, stats, warnings) == native
    assert stats.packets == 2 + len(f)
    assert any("skipped" in w for w in warnings)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255), st.integers(-1, 1)), min_size=1,
                     max_size=12))
def test_fuzzed_pcapng_identical_on_both_engines(tmp_path_factory: pytest.TempPathFactory, cuts: list) -> None:
    """The all-block-types file with bytes overwritten, inserted or removed anywhere: no crash, the same
    documents, counters and warnings from both engines."""
    raw = valid_corpus()
    for pos, value, op in cuts:
        raw = mutate(raw, pos, value, op)
    path = tmp_path_factory.mktemp("ng") / "f.pcapng"
    path.write_bytes(bytes(raw))
    try:
        python, native = engines([path])
    except Exception as e:  # only the one-line "not a capture" error is acceptable, and from both engines alike
        from collectors.pcapio import CaptureError

        assert isinstance(e, CaptureError) and "\n" not in str(e)
        return
    assert python == native


# -- one endless HTTP header line (issue 17 item 5) ------------------------------------------------------------

def tcp_frame(client: bool, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    """An Ethernet/IPv4/TCP frame between 198.18.0.1:40000 (client) and 198.18.1.1:80."""
    ports, addrs = ((40000, 80), (b"\xc6\x12\x00\x01", b"\xc6\x12\x01\x01"))
    if not client:
        ports, addrs = ports[::-1], addrs[::-1]
    tcp = struct.pack("!HHIIBBHHH", *ports, seq, ack, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, *addrs)
    return ETHER + ip + tcp + payload


def long_header_capture(path: Path, line_bytes: int) -> Path:
    """A handshake, then one HTTP request whose single header line is ``line_bytes`` long, in 1460-byte
    segments (a hostile client keeping tshark's reassembly busy)."""
    frames = [tcp_frame(True, 1000, 0, 0x02), tcp_frame(False, 5000, 1001, 0x12), tcp_frame(True, 1001, 5001, 0x10)]
    request = b"GET /long HTTP/1.1\r\nHost: example.test\r\nX-Pad: " + b"a" * line_bytes + b"\r\n\r\n"
    frames += [tcp_frame(True, 1001 + i, 5001, 0x18, request[i:i + 1460]) for i in range(0, len(request), 1460)]
    records = [struct.pack("<IIII", 1_700_000_000, i, len(fr), len(fr)) + fr for i, fr in enumerate(frames)]
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(records))
    return path


def ingest_with_metadata(path: Path) -> tuple[float, list[dict], list[str], object]:
    docs: list[dict] = []
    warnings: list[str] = []
    start = time.perf_counter()
    pipe = Pipeline(docs.append, on_warning=warnings.append)
    pipe.process_file(path)
    stats = pipe.finish()
    return time.perf_counter() - start, docs, warnings, stats


def test_one_endless_header_line_costs_bounded_time_and_the_cut_is_reported(tmp_path: Path) -> None:
    """tshark's reassembly of one header line costs time quadratic in its length (4 MiB took 27 s of deep
    path): each TCP direction hands the analyzers at most sensor.deep_bytes_per_direction payload bytes. 4x the
    line costs about the same as 1x (the cap holds), the request is still logged, and the cut is counted in
    a warning, the ingest stats and the connection."""
    mib = 1 << 20
    t_small, docs_small, warnings_small, _ = ingest_with_metadata(long_header_capture(tmp_path / "s.pcap", mib // 2))
    t_large, docs, warnings, stats = ingest_with_metadata(long_header_capture(tmp_path / "l.pcap", 4 * mib))
    assert t_large < 20 and t_large / t_small < 3, f"{t_small:.1f}s -> {t_large:.1f}s for 8x the line"
    (conn,) = [d for d in docs if d["event"]["dataset"] == "secops.conn"]
    (http,) = [d for d in docs if d["event"]["dataset"] == "secops.http"]
    assert http["http"]["request"]["method"] == "GET" and http["url"]["domain"] == "example.test"
    cut = conn["secops"]["conn"]["deep_cut_bytes"]
    assert 3 * mib <= cut <= 4 * mib and stats.deep_cut_bytes == cut
    assert any("cut on 1 flow direction" in w for w in warnings), warnings
    assert not any("cut on" in w for w in warnings_small)
    conn_small = next(d for d in docs_small if d["event"]["dataset"] == "secops.conn")
    assert "deep_cut_bytes" not in conn_small["secops"]["conn"]
