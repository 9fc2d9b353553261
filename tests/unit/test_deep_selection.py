"""The selective deep path: both flow engines detect the same services and select the same frames (byte for
byte), on every shared capture and on fuzzed frames; tshark reads the selection stream; the pipeline ships
connection documents as flows end and keeps working when the probe, tshark or the input misbehave."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.flowpath import FlowCore, open_flow_path
from collectors.flows import LIKELY_SERVER_PORTS, ConnRecord
from collectors.ingest import Pipeline
from collectors.protocols import extract_metadata, native_tcp
from collectors.protocols.detect import SERVICES, probe
from collectors.selection import DEEP_BYTES_PER_DIRECTION, interface_block, stream_header
from tests.support import TESTDATA
from tests.unit.test_flowcore import CAPTURES, SEEDS, _pcap


def select(engine: str, paths: list[Path], **kw) -> tuple[list[ConnRecord], bytes, tuple[int, ...]]:
    """Records, the selection stream (with its header) and the interface link types of one engine."""
    recs: list[ConnRecord] = []
    fp = open_flow_path(recs.append, engine=engine, probe=probe, services=SERVICES, collect=True, **kw)
    blocks: list[bytes] = []
    for path in paths:
        fp.process_file(path, lambda _m: None, None, lambda: blocks.append(fp.take_selected()))
    fp.finish()
    blocks.append(fp.take_selected())
    head = stream_header() + b"".join(interface_block(lt) for lt in fp.linktypes())
    return recs, head + b"".join(blocks), fp.linktypes()


def assert_same_selection(paths: list[Path], **kw) -> tuple[list[ConnRecord], bytes]:
    recs_py, sel_py, links_py = select("python", paths, **kw)
    recs_c, sel_c, links_c = select("native", paths, **kw)
    assert recs_c == recs_py
    assert sel_c == sel_py
    assert links_c == links_py
    return recs_c, sel_c


def test_every_shared_capture_selects_identically() -> None:
    services = set()
    for capture in CAPTURES:
        recs, _ = assert_same_selection([capture])
        services |= {r.service for r in recs}
    assert {"http", "ssl", "dns", "ftp", "smb", "modbus", "dnp3", "s7comm", "dhcp", "quic"} <= services


def test_all_captures_in_one_run_with_a_tiny_table() -> None:
    """Flows span files and are evicted from a 50-flow table while frames are kept for them."""
    recs, sel = assert_same_selection(CAPTURES, max_flows=50, verify_checksums=True)
    assert len(recs) > 200 and len(sel) > 100_000


def test_byte_cap_cuts_identically_and_counts_the_cut() -> None:
    """Every shared capture under a 4 KiB cap per TCP direction: both engines cut the same frames, the
    connections carry the bytes cut, and UDP flows (DNS) are never cut."""
    recs, sel = assert_same_selection(CAPTURES, deep_bytes_max=4096)
    _, whole = assert_same_selection(CAPTURES)
    cut = [r for r in recs if r.deep_cut]
    assert cut and all(r.proto == 6 for r in cut) and len(sel) < len(whole)
    assert all(r.deep_cut < r.o_bytes + r.r_bytes for r in cut)  # payload as sent, retransmissions included
    fp = open_flow_path(lambda _r: None, engine="native", probe=probe, services=SERVICES, deep_bytes_max=4096)
    for capture in CAPTURES:
        fp.process_file(capture, lambda _m: None, None)
    fp.finish()
    assert fp.deep_cut.bytes == sum(r.deep_cut for r in recs) and fp.deep_cut.sides >= len(cut)
    for bad in (0, 1 << 33):
        with pytest.raises(ValueError):
            open_flow_path(lambda _r: None, engine="native", probe=probe, services=SERVICES, deep_bytes_max=bad)
        with pytest.raises(ValueError):
            open_flow_path(lambda _r: None, engine="python", probe=probe, services=SERVICES, deep_bytes_max=bad)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(SEEDS) - 1), st.integers(0, 1500), st.binary(min_size=1, max_size=8),
                          st.integers(-1, 1)), min_size=1, max_size=60),
       st.sampled_from([1, 101, 113]), st.sampled_from([1, 700, DEEP_BYTES_PER_DIRECTION]))
def test_fuzzed_frames_select_identically(tmp_path_factory: pytest.TempPathFactory, edits: list[tuple],
                                          linktype: int, cap: int) -> None:
    """Frames with bytes overwritten, inserted or removed anywhere (headers and first payloads alike), under a
    per-direction byte cap that cuts at once, after a packet or never."""
    frames = []
    for idx, pos, data, op in edits:
        fr = bytearray(SEEDS[idx])
        pos %= len(fr) + 1
        if op < 0:
            del fr[pos:pos + len(data)]
        elif op == 0:
            fr[pos:pos + len(data)] = data
        else:
            fr[pos:pos] = data
        frames.append(bytes(fr))
    path = tmp_path_factory.mktemp("fuzz") / "f.pcap"
    path.write_bytes(_pcap(frames, linktype))
    assert_same_selection([path], max_flows=7, deep_bytes_max=cap)


def test_random_payloads_after_real_handshakes(tmp_path: Path) -> None:
    """Every payload of a real HTTP capture replaced by random bytes (truncated to random lengths): no crash,
    both engines agree, and the records still count every packet."""
    from collectors.pcapio import read_capture

    rng = random.Random(10)
    frames = []
    for _, lt, buf, off, cap, _ in read_capture(TESTDATA / "zeek" / "traces" / "http" / "get.pcap"):
        fr = bytes(buf[off:off + cap])
        if lt == 1 and len(fr) > 66:
            fr = fr[:66] + rng.randbytes(rng.randint(0, len(fr) - 66))
        frames.append(fr)
    path = tmp_path / "random.pcap"
    path.write_bytes(_pcap(frames))
    recs, _ = assert_same_selection([path])
    assert sum(r.o_pkts + r.r_pkts for r in recs) == len(frames)


def test_tshark_reads_the_selection_stream(tmp_path: Path) -> None:
    capture = TESTDATA / "zeek" / "traces" / "http" / "get.pcap"
    recs, sel = assert_same_selection([capture])
    assert [r.service for r in recs] == ["http"]
    path = tmp_path / "sel.pcapng"
    path.write_bytes(sel)
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.protocols"],
                         capture_output=True, text=True, check=True).stdout.split()
    flow = recs[0]
    payload_packets = 2 + sum(1 for _ in out if "http" in _)  # SYN and SYN-ACK kept ahead of the payload
    assert len(out) >= payload_packets and len(out) < flow.o_pkts + flow.r_pkts


def test_probe_errors_reach_the_caller_and_bad_answers_are_refused() -> None:
    capture = TESTDATA / "zeek" / "traces" / "http" / "get.pcap"

    def broken(*_args):
        raise RuntimeError("probe bug")

    for engine in ("python", "native"):
        fp = open_flow_path(lambda _r: None, engine=engine, probe=broken, services=SERVICES, collect=True)
        with pytest.raises(RuntimeError, match="probe bug"):
            fp.process_file(capture, lambda _m: None, None)
        fp = open_flow_path(lambda _r: None, engine=engine, probe=lambda *_a: (len(SERVICES), 0), services=SERVICES)
        with pytest.raises(ValueError):
            fp.process_file(capture, lambda _m: None, None)
    with pytest.raises(TypeError):
        FlowCore(ConnRecord, lambda *a: [], LIKELY_SERVER_PORTS[6], LIKELY_SERVER_PORTS[17], probe=probe,
                 services=("", 1))


def test_streamed_deep_documents_equal_a_whole_file_pass() -> None:
    """The differential oracle: tshark over the whole file and tshark over the selected frames give the same
    protocol documents for these captures (HTTP, TLS, DNS, FTP, SSH, SMB, DHCP, Modbus, DNP3)."""
    names = ["zeek/traces/http/get.pcap", "zeek/traces/tls/tls-conn-with-extensions.pcap",
             "zeek/traces/dns-txt-multiple.pcap", "attacks/ics/dnp3/dnp3.pcap",
             "zeek/traces/globus-url-copy.pcap", "zeek/traces/tls/google-cert-repeat.pcap"]
    checked = 0
    for name in names:
        capture = TESTDATA / name
        if not capture.exists():
            continue
        docs: list[dict] = []
        pipe = Pipeline(docs.append)
        pipe.process_file(capture)
        pipe.finish()
        streamed = sorted((d for d in docs if d["event"]["dataset"] not in ("secops.conn", "secops.observation")),
                          key=lambda d: d["_id"])
        whole = sorted(extract_metadata(capture), key=lambda d: d["_id"])
        assert streamed == whole, name
        checked += 1
    assert checked >= 4


def test_connections_ship_while_the_file_is_still_being_read(tmp_path: Path) -> None:
    """Conn documents do not wait for the end of the file (nor for tshark): the first flows' documents reach
    the sink while later packets are still unread."""
    from benchmarks.flow_path import build_capture

    path = tmp_path / "synthetic.pcap"
    total = build_capture(path, 60_000)
    for engine in ("python", "native"):
        seen = [0]
        first_conn_at: list[int] = []

        def sink(doc: dict) -> None:
            if doc["event"]["dataset"] == "secops.conn" and not first_conn_at:
                first_conn_at.append(seen[0])

        def progress(n: int) -> None:
            seen[0] = n

        pipe = Pipeline(sink, engine=engine, on_packets=progress)
        pipe.process_file(path)
        pipe.finish()
        assert first_conn_at and first_conn_at[0] < total, engine


@pytest.mark.parametrize("capture", [
    "attacks/ics/modbus/fuzz-72.pcap", "zeek/traces/modbus/modbus-and-non-modbus-p502.pcap",
    "attacks/ics/s7comm/snap7.pcap",
    "attacks/lateral-movement/empire_psexec_dcerpc_tcp_svcctl_WORKSTATION5_2020-09-20121608.pcap",
])
def test_ics_and_dce_rpc_ids_are_the_same_from_the_selected_frames_as_from_the_whole_capture(
        capture: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Those records were named by frame number, which counts the frames tshark was given: an ingest (the frames
    the analyzers need only), a live sensor's chunks and a read of the whole capture gave one PDU three ids, so a
    re-ingest of captured traffic duplicated them. A TCP PDU is now named by its sender and sequence number.
    tshark reads the ICS connections here (the native readers make the same documents: test_ics_native.py)."""
    monkeypatch.setattr(native_tcp, "READ_ICS", False)
    path = TESTDATA / capture
    datasets = {"secops.modbus", "secops.s7comm", "secops.iec104", "secops.smb"}
    docs: list[dict] = []
    pipe = Pipeline(docs.append)
    pipe.process_file(path)
    pipe.finish()
    ingested = sorted(d["_id"] for d in docs if d["event"]["dataset"] in datasets)
    assert ingested
    assert ingested == sorted(d["_id"] for d in extract_metadata(path) if d["event"]["dataset"] in datasets)


def test_without_tshark_connections_and_services_remain(tmp_path: Path) -> None:
    warnings: list[str] = []
    docs: list[dict] = []
    pipe = Pipeline(docs.append, tshark_path=str(tmp_path / "no-tshark"), on_warning=warnings.append)
    pipe.process_file(TESTDATA / "zeek" / "traces" / "http" / "get.pcap")
    stats = pipe.finish()
    (conn,) = [d for d in docs if d["event"]["dataset"] == "secops.conn"]
    # the HTTP record is read natively (collectors/protocols/native_tcp.py): it needs no tshark
    assert conn["network"]["protocol"] == ["http"] and stats.deep_docs == 1
    assert any("tshark could not be started" in w for w in warnings), warnings


@pytest.mark.parametrize("own_process", [False, True], ids=["thread", "process"])
def test_tshark_runs_are_bounded_by_the_frames_tshark_reads(own_process: bool) -> None:
    """A run ends once its tshark has read ``frames_per_run`` frames and the next frames start a new tshark
    (memory follows the frames in flight) while the previous one finishes; frames read natively do not count
    toward it. Cut between the flows of a capture, the runs give the whole file's documents, with the analyzers
    in a thread or in processes of their own (which report their tshark's count)."""
    import struct as _struct
    import time

    from collectors.protocols.document_text import DocumentLines, DocumentText
    from collectors.protocols.stream import MetadataStream

    traces = TESTDATA / "zeek" / "traces"
    # DNS over TCP (tshark's), HTTP (read natively), DNS over TCP again: a run of as many frames as the first has
    # ends after its last frame; the second takes HTTP's and DNS's (counting every selected frame, it ended in the
    # second DNS capture's and made three)
    captures = [traces / "dns" / "tkey.pcap", traces / "http" / "get.pcap", traces / "dns" / "tkey.pcap"]
    def packet_blocks(files: list[Path]) -> tuple[list[bytes], tuple[int, ...]]:
        _, sel, links = select("native", files)
        out, pos = [], len(stream_header()) + len(links) * len(interface_block(1))
        while pos < len(sel):
            (length,) = _struct.unpack_from("<I", sel, pos + 4)
            out.append(sel[pos:pos + length])
            pos += length
        return out, links

    blocks, links = packet_blocks(captures)
    per_run = len(packet_blocks(captures[:1])[0])
    warnings: list[str] = []
    stream = MetadataStream("files", "tshark", warnings.append, frames_per_run=per_run, own_process=own_process)
    docs, runs_at, in_run = [], [], 0
    for block in blocks:
        runs = stream.runs
        stream.write(block, links, 1)
        in_run = 1 if stream.runs != runs else in_run + 1
        if own_process and stream._run is not None:  # wait until the children report every block of the run
            deadline = time.monotonic() + 30
            while sum(c.reported[0] for c in stream._run.running if c.reported) < in_run \
                    and time.monotonic() < deadline:
                time.sleep(0.01)
        runs_at.append(stream.runs)
        docs += stream.ready()
    docs += stream.close()
    whole = [doc for capture in captures for doc in extract_metadata(capture)]
    # a process's documents arrive as the JSON lines its child wrote
    docs = [doc for item in docs for doc in (item.documents() if isinstance(item, DocumentLines) else [item])]
    docs = [doc.parse() if isinstance(doc, DocumentText) else doc for doc in docs]
    assert sorted(d["_id"] for d in docs) == sorted(d["_id"] for d in whole) and not warnings
    # a child's count reaches the parent after the write that made it: its run ends one write later
    assert stream.runs == 2 and runs_at.count(1) == per_run + own_process
