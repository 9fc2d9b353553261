"""The C flow core (collectors._flowcore) against the Python reference engine: the same documents, in the same
order, with the same counters, for every shared capture, damaged copies of them and fuzzed frames."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors import flowconst
from collectors.flowpath import FlowCore, native_available, open_flow_path
from collectors.flows import HISTORY_MAX, LIKELY_SERVER_PORTS, ConnRecord
from collectors.ingest import IngestStats, Pipeline
from tests.support import TESTDATA

CAPTURES = sorted(p for p in [*TESTDATA.glob("zeek/traces/**/*.pcap*"), *TESTDATA.glob("attacks/**/*.pcap*")]
                  if p.is_file())


def both(paths: list[Path], **kw) -> tuple[tuple, tuple]:
    """(docs, stats, warnings) from each engine."""
    out = []
    for engine in ("python", "native"):
        docs: list[dict] = []
        warnings: list[str] = []
        pipe = Pipeline(docs.append, deep=False, engine=engine, on_warning=warnings.append, **kw)
        for p in paths:
            pipe.process_file(p)
        out.append((docs, pipe.finish(), warnings))
    return out[0], out[1]


def assert_same(paths: list[Path], **kw) -> IngestStats:
    (docs_py, stats_py, warn_py), (docs_c, stats_c, warn_c) = both(paths, **kw)
    assert docs_c == docs_py
    assert stats_c == stats_py
    assert warn_c == warn_py
    return stats_py


def test_native_core_is_built() -> None:
    """CI installs a compiler, so the extension must be there (a silent fallback would hide a 4x slowdown)."""
    assert native_available(), "collectors._flowcore did not build: is gcc installed? (pip install -e . warns)"


def test_c_constants_match_the_shared_table() -> None:
    """TCP flags, protocols, endpoint states, timers, caps and tunnel ports: the C core compiles in the values
    of collectors/flowconst.py, name for name."""
    from collectors import _flowcore

    assert _flowcore.constants() == flowconst.SHARED


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: str(p.relative_to(TESTDATA)))
def test_every_shared_capture_identical(capture: Path) -> None:
    assert_same([capture])


def test_all_captures_in_one_pipeline_with_checksums_and_a_tiny_table() -> None:
    """Across files (flows span them), verified checksums, and eviction from a 50-flow table."""
    stats = assert_same(CAPTURES, verify_checksums=True, max_flows=50)
    assert stats.packets > 3000 and stats.conns > 200 and stats.flows_evicted > 0


def test_damaged_copies_identical(tmp_path: Path) -> None:
    """Truncated at many points and gzip'd-then-truncated: same documents and the same warning text."""
    raw = (TESTDATA / "zeek" / "traces" / "http" / "get.pcap").read_bytes()
    for cut in (30, 40, 57, 100, 333, len(raw) // 2, len(raw) - 7):
        p = tmp_path / f"cut{cut}.pcap"
        p.write_bytes(raw[:cut])
        assert_same([p])
    gz = tmp_path / "cut.pcap.gz"
    gz.write_bytes(gzip.compress(raw)[:-40])
    assert_same([gz])


def _pcap(frames: list[bytes], linktype: int = 1) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)]
    for i, fr in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000 + i // 50, (i % 50) * 1000, len(fr), len(fr)))
        out.append(fr)
    return b"".join(out)


def _seed_frames() -> list[bytes]:
    """Real frames of every kind the decoder knows (tunnels, VLAN, IPv6, fragments, ICS), to mutate."""
    from collectors.pcapio import read_capture

    frames: list[bytes] = []
    for name in ("tunnels/vxlan.pcap", "tunnels/gre-sample.pcap", "tunnels/Teredo.pcap",
                 "tunnels/gtp/gtp1_gn_normal_incl_fragmentation.pcap", "ipv6-fragmented-dns.pcap",
                 "http/get.pcap", "cisco-fabric-path.pcap", "tunnels/ayiya3.pcap", "tunnels/gre-over-udp-4754.pcap",
                 "pbb.pcap", "tunnels/gre-pptp.pcap", "tunnels/geneve.pcap", "mpls-in-vlan.pcap"):
        path = TESTDATA / "zeek" / "traces" / name
        if path.exists():
            frames += [bytes(buf[off:off + cap]) for _, lt, buf, off, cap, _ in read_capture(path) if lt == 1][:40]
    assert len(frames) > 100
    return frames


def _radiotap_frames() -> list[bytes]:
    from collectors.pcapio import read_capture

    path = TESTDATA / "zeek" / "traces" / "radiotap.pcap"
    return [bytes(buf[off:off + cap]) for _, lt, buf, off, cap, _ in read_capture(path) if lt == 127]


SEEDS = _seed_frames()
RADIOTAP = _radiotap_frames()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(SEEDS) - 1), st.integers(0, 1500), st.integers(0, 255),
                          st.integers(-1, 1)), min_size=1, max_size=60),
       st.sampled_from([1, 101, 113, 276, 0, 9]), st.booleans())
def test_fuzzed_frames_identical(tmp_path_factory: pytest.TempPathFactory, edits: list[tuple], linktype: int,
                                 verify: bool) -> None:
    """Frames with one byte overwritten, inserted or removed at any offset, under any link type."""
    _fuzz(tmp_path_factory, SEEDS, edits, linktype, verify)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(RADIOTAP) - 1), st.integers(0, 400), st.integers(0, 255),
                          st.integers(-1, 1)), min_size=1, max_size=30),
       st.sampled_from([127, 105]), st.booleans())
def test_fuzzed_radiotap_frames_identical(tmp_path_factory: pytest.TempPathFactory, edits: list[tuple],
                                          linktype: int, verify: bool) -> None:
    """802.11 frames behind radiotap (and bare, link type 105) mutated the same way."""
    _fuzz(tmp_path_factory, RADIOTAP, edits, linktype, verify)


def mutate(data: bytes | bytearray, pos: int, value: int, op: int) -> bytearray:
    """``data`` with the byte at ``pos`` (modulo its length) removed (op < 0), overwritten (0) or inserted (> 0)."""
    out = bytearray(data)
    pos %= len(out) + 1
    if op < 0:
        del out[pos:pos + 1]
    elif op == 0:
        out[pos:pos + 1] = bytes([value])
    else:
        out.insert(pos, value)
    return out


def _fuzz(tmp_path_factory: pytest.TempPathFactory, seeds: list[bytes], edits: list[tuple], linktype: int,
          verify: bool) -> None:
    frames = [bytes(mutate(seeds[idx], pos, value, op)) for idx, pos, value, op in edits]
    path = tmp_path_factory.mktemp("fuzz") / "f.pcap"
    path.write_bytes(_pcap(frames, linktype))
    assert_same([path], verify_checksums=verify, max_flows=7)


def test_deeply_nested_ethernet_decodes_without_recursion(tmp_path: Path) -> None:
    """18,000 Ethernet-in-Ethernet headers (0x6558): both engines loop instead of recursing, also when the
    innermost frame is ARP and the native core hands the whole frame to the Python decoder."""
    layer = bytes.fromhex("001122334455 66778899aabb 6558")
    ip = bytes.fromhex("4500001c000040004011 0000 c6120001 c6120002") + struct.pack("!HHHH", 1000, 53, 8, 0)
    udp = layer * 18_000 + bytes.fromhex("001122334455 66778899aabb 0800") + ip
    arp = layer * 18_000 + bytes.fromhex("ffffffffffff 020000000001 0806 0001080006040001 020000000001 c6120001"
                                         "000000000000 c6120002")
    path = tmp_path / "nested.pcap"
    path.write_bytes(_pcap([udp, arp]))
    stats = assert_same([path])
    assert stats.conns == 1 and stats.packets == 2


def test_out_of_range_pcapng_timestamps_are_skipped_with_a_warning(tmp_path: Path) -> None:
    """A 64-bit tick count that overflows the nanosecond clock is damage: skipped, warned, the rest kept."""
    frame = (TESTDATA / "zeek" / "traces" / "http" / "get.pcap").read_bytes()[40:40 + 74]  # the first SYN

    def block(btype: int, body: bytes) -> bytes:
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    def epb(ticks: int) -> bytes:
        pad = b"\0" * (-len(frame) % 4)
        return block(6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)) + frame + pad)

    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HHB3x", 9, 1, 9) + b"\0" * 4)  # if_tsresol: ns
    path = tmp_path / "times.pcapng"
    path.write_bytes(shb + idb + epb(1_700_000_000 * 10**9) + epb(2**64 - 1) + epb(1_700_000_001 * 10**9))
    (_docs, stats, warnings), _ = both([path])
    assert stats.packets == 2 and warnings == [f"{path}: 1 packets with out-of-range timestamps skipped"]
    assert_same([path])


def test_core_refuses_bad_fallback_answers() -> None:
    """A decoder answer the core cannot use raises a Python error instead of corrupting its table."""
    core = FlowCore(ConnRecord, lambda *a: "not a list", LIKELY_SERVER_PORTS[6], LIKELY_SERVER_PORTS[17])
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(28)  # ARP frames are handed to the fallback
    with pytest.raises(TypeError):
        core.feed(1, arp, 0, len(arp), len(arp), 0)
    with pytest.raises(TypeError):
        core.add([("short",)], 0)
    with pytest.raises(TypeError):
        core.add([(b"\x01\x02\x03\x04", b"\x01\x02\x03", 6, 1, 2, 40, 2, 0, 0, 0, False, 0, b"", "", 0, None,
                   False)], 0)
    with pytest.raises(ValueError):
        core.feed(1, b"abc", 2, 5, 5, 0)
    assert core.drain() == [] and core.counters()["flows"] == 0


def test_history_is_bounded_identically() -> None:
    """A connection that keeps closing again (1,200 FINs, each further on) stops growing its history at
    HISTORY_MAX letters, on both engines."""
    a, b = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])

    def pkt(src, dst, sport, dport, flags, seq, ack):
        return (src, dst, 6, sport, dport, 40, flags, seq, ack, 0, False, 0, b"", "", 0, None, False)

    histories = []
    for engine in ("python", "native"):
        out: list[ConnRecord] = []
        flows = open_flow_path(out.append, engine=engine)
        flows.add_decoded([pkt(a, b, 1000, 80, 0x02, 100, 0)], 0)
        flows.add_decoded([pkt(b, a, 80, 1000, 0x12, 500, 101)], 1)
        flows.add_decoded([pkt(a, b, 1000, 80, 0x10, 101, 501)], 2)
        for i in range(1200):
            flows.add_decoded([pkt(a, b, 1000, 80, 0x11, 101 + 10 * i, 501)], 3 + i)
        flows.finish()
        (rec,) = out
        histories.append(rec.history)
    assert histories[0] == histories[1] and len(histories[0]) == HISTORY_MAX


def test_ieee802_11_variants_identical(tmp_path: Path) -> None:
    """802.11 frames the shared traces lack (4-address, HT control, A-MSDU, management) through both cores."""
    from scapy.layers.dot11 import Dot11, Dot11QoS, RadioTap
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import LLC, SNAP

    inner = IP(src="198.18.0.1", dst="198.18.0.2") / TCP(sport=40000, dport=80, flags="S")
    snap = LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=0x0800) / inner
    frames = [bytes(Dot11(type=2, subtype=0, FCfield=ds, addr2="02:00:00:00:00:0b", addr4="02:00:00:00:00:0d")
                    / snap) for ds in range(4)]
    frames += [bytes(Dot11(type=2, subtype=8, FCfield=0x81) / Dot11QoS()) + b"\0" * 4 + bytes(snap),
               bytes(Dot11(type=2, subtype=8) / Dot11QoS(A_MSDU_Present=1) / snap),
               bytes(Dot11(type=0, subtype=8) / snap), bytes(Dot11(type=2, subtype=4) / snap)]
    bare, radiotap = tmp_path / "bare.pcap", tmp_path / "radiotap.pcap"
    bare.write_bytes(_pcap(frames, 105))
    radiotap.write_bytes(_pcap([bytes(RadioTap()) + f for f in frames], 127))
    assert assert_same([bare, radiotap]).conns >= 1
