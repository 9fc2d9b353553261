"""Native ICS reading (Modbus/TCP, DNP3 over TCP, S7comm, IEC 60870-5-104: the ``*_wire`` readers through
native_tcp.py) against tshark, the differential oracle.

Every shared capture with a TCP connection on 502, 20000, 102 or 2404 goes through the ingest pipeline twice: with the
deep path reading those connections itself (``native_tcp.READ_ICS``) and with tshark reading them. Every document
must be equal, or the difference is named here with its reason. Synthetic sessions (PDUs split over segments,
several in one segment, the checks tshark makes where a segment starts, random bytes) are written to a capture that
both read the same way: Modbus/TCP here, IEC-104 with tests/unit/test_iec104_wire.py's generator (the shared
captures hold none).
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from collectors.decode import DPORT, SPORT
from collectors.ingest import Pipeline
from collectors.pcapio import read_capture
from collectors.protocols import native_tcp
from collectors.protocols.dnp3_wire import crc_dnp
from collectors.protocols.modbus_wire import ModbusReader
from collectors.protocols.native import NativeFrames
from collectors.selection import stream_header
from tests.unit.test_flowcore import CAPTURES, TESTDATA
from tests.unit.test_iec104_wire import MIXED, Session, asdu, f13, i_frame, io, random_session, type_probes, u_frame
from tests.unit.test_tcp_native import (
    assert_equal_or_named,
    native_tcp_frames,
    pcapng,
    pipeline_docs,
    tcp_frame,
    tcp_payloads,
)

ICS_PORTS = frozenset(native_tcp.ICS_PORTS)
IN_ORDER = ("a fuzzer's capture: most segments follow a hole or overlap others (sequence numbers, flags and acks "
            "mutated). The native reader reads each direction in sequence order, as Zeek's reassembler does, so "
            "segments behind a hole wait for it (and PDUs form across segments in that order); tshark dissects each "
            "segment when it arrives. Every document outside secops.modbus is equal")
# Differences the test expects, by capture: (reason, the dataset taken out before the documents must be equal)
KNOWN_DIFFERENCES = {"fuzz-72.pcap": (IN_ORDER, "secops.modbus")}


def speaks_ics(capture: Path) -> bool:
    """Whether some TCP segment with payload of the capture is on an ICS port."""
    return any(p[SPORT] in ICS_PORTS or p[DPORT] in ICS_PORTS for p, payload in tcp_payloads(capture) if payload)


ICS_CAPTURES = [c for c in CAPTURES if speaks_ics(c)]


def docs_of(capture: Path, read_ics: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    monkeypatch.setattr(native_tcp, "READ_ICS", read_ics)
    return pipeline_docs(capture, True, monkeypatch)


def test_shared_captures_are_in_the_set() -> None:
    names = {c.name for c in ICS_CAPTURES}
    assert {"modbus-eit.pcap", "fuzz-72.pcap", "modbus-and-non-modbus-p502.pcap", "dnp3.pcap",
            "dnp3_select_operate.pcap", "snap7.pcap", "s7comm_plus.pcap"} <= names


@pytest.mark.parametrize("capture", ICS_CAPTURES, ids=lambda c: c.name)
def test_native_documents_equal_tshark(capture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The differential oracle: every document of the pipeline, ICS read natively or by tshark."""
    native = docs_of(capture, True, monkeypatch)
    tshark = docs_of(capture, False, monkeypatch)
    assert_equal_or_named(capture, native, tshark, KNOWN_DIFFERENCES, without)


def without(docs: dict[str, dict], dataset: str) -> list[dict]:
    return sorted((d for d in docs.values() if d["event"]["dataset"] != dataset), key=lambda d: d["_id"])


def test_ics_frames_do_not_reach_tshark(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = native_tcp_frames(monkeypatch)
    capture = TESTDATA / "attacks/ics/modbus/modbus-eit.pcap"
    docs = docs_of(capture, True, monkeypatch)
    docs_of(capture, False, monkeypatch)
    assert taken[0] >= 4 and taken[1] == 0
    assert sum(1 for d in docs.values() if d["event"]["dataset"] == "secops.modbus") >= 4


# -- synthetic sessions: tshark reads the same capture ---------------------------------------------------------
def mbap(tid: int, unit: int, pdu: bytes, proto: int = 0, length: int | None = None) -> bytes:
    return struct.pack("!HHHB", tid, proto, len(pdu) + 1 if length is None else length, unit) + pdu


def session(segments: list[tuple[bool, bytes]], sport: int, dport: int = 502) -> list[bytes]:
    """A handshake, then the segments (each direction's sequence numbers counting on), then FINs."""
    seqs = {True: 1000, False: 5000}
    frames = [tcp_frame(b"", 999, True, sport, dport, flags=0x02),
              tcp_frame(b"", 4999, False, sport, dport, flags=0x12, ack=1000),
              tcp_frame(b"", 1000, True, sport, dport, flags=0x10, ack=5000)]
    for from_client, payload in segments:
        frames.append(tcp_frame(payload, seqs[from_client], from_client, sport, dport, ack=seqs[not from_client]))
        seqs[from_client] += len(payload)
    frames.append(tcp_frame(b"", seqs[True], True, sport, dport, flags=0x11, ack=seqs[False]))
    frames.append(tcp_frame(b"", seqs[False], False, sport, dport, flags=0x11, ack=seqs[True] + 1))
    return frames


def modbus_sessions() -> list[bytes]:
    """Modbus/TCP written to exercise tshark's framing: every session on a port of its own."""
    read = mbap(1, 1, b"\x03\x00\x10\x00\x02")
    answer = mbap(1, 1, b"\x03\x04\x00\x01\x00\x02")
    cases: list[list[tuple[bool, bytes]]] = [
        [(True, read), (False, answer)],
        [(True, read + mbap(2, 1, b"\x06\x00\x01\x00\x03")), (False, answer + mbap(2, 1, b"\x06\x00\x01\x00\x03"))],
        [(True, read[:9]), (True, read[9:]), (False, answer[:3]), (False, answer[3:])],  # 3 bytes: not Modbus
        [(True, read[:7]), (True, read[7:] + read)],  # 7 fresh bytes: not Modbus, so neither is what follows
        [(True, read + read[:4]), (True, read[4:] + read)],  # a PDU under reassembly, then fresh bytes
        [(True, mbap(3, 1, b"\x03", proto=1)), (True, read)],  # protocol id 1
        [(True, mbap(4, 1, b"", length=1) + read)],  # length 1: not Modbus
        [(True, read + mbap(5, 1, b"", length=1) + read)],  # length 1 after a valid PDU: tshark walks on
        [(True, read + mbap(8, 1, b"\x03\x00", proto=7) + read)],  # protocol id 7 after a valid PDU
        [(True, read + mbap(9, 1, b"\x83") + read)],  # an exception without its code, between two PDUs
        [(True, read), (False, mbap(1, 1, b"\x83\x02")), (False, mbap(1, 1, b"\x83\x00")),
         (False, mbap(1, 1, b"\x83"))],
        [(True, mbap(6, 9, b"\x2b\x0e\x01\x00")), (False, mbap(6, 9, b"\xff\x01"))],
        [(True, mbap(7, 1, b"\x10" + bytes(300))), (True, read)],  # longer than a frame needs to be
    ]
    rng = random.Random(502)
    for _ in range(20):
        blob = b"".join(mbap(rng.randrange(65536), rng.randrange(256), rng.randbytes(rng.randrange(0, 12)),
                             length=rng.choice([None, None, rng.randrange(0, 20)])) for _ in range(rng.randrange(1, 5)))
        cuts = sorted(rng.sample(range(1, len(blob)), min(3, len(blob) - 1)))
        parts = [blob[a:b] for a, b in zip([0, *cuts], [*cuts, len(blob)], strict=True)]
        cases.append([(rng.random() < 0.5, part) for part in parts if part])
    frames: list[bytes] = []
    for i, segments in enumerate(cases):
        frames += session(segments, 40000 + i)
    return frames


def test_synthetic_modbus_equals_tshark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    capture = tmp_path / "modbus.pcapng"
    capture.write_bytes(stream_header() + pcapng(modbus_sessions()))
    native = docs_of(capture, True, monkeypatch)
    tshark = docs_of(capture, False, monkeypatch)
    assert sum(1 for d in tshark.values() if d["event"]["dataset"] == "secops.modbus") >= 15
    assert native == tshark


def test_synthetic_iec104_equals_tshark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole pipeline on generated IEC-104: a probe of every type identification, then seeded random sessions
    (APDUs split and joined across segments, garbage, bad lengths, ASDUs tshark throws on)."""
    from scapy.utils import wrpcap

    out: list = []
    probes = Session(out, "198.18.6.1", "198.19.6.1", 50300)
    type_probes(probes)
    probes.close()
    rng = random.Random(104)
    for n in range(3):
        s = Session(out, f"198.18.6.{n + 2}", f"198.19.6.{n + 2}", 50301 + n)
        random_session(rng, s, 120, MIXED, 0.3)
        s.close()
    capture = tmp_path / "iec104.pcap"
    wrpcap(str(capture), out)
    taken = native_tcp_frames(monkeypatch)
    native = docs_of(capture, True, monkeypatch)
    tshark = docs_of(capture, False, monkeypatch)
    assert taken[0] >= 500 and taken[1] == 0  # read natively, then by tshark
    assert sum(1 for d in tshark.values() if d["event"]["dataset"] == "secops.iec104") >= 500
    assert native == tshark


def test_a_connection_between_two_ics_ports_is_read_as_what_it_speaks(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """IEC-104 sent from ports 502, 102 and 20000, Modbus/TCP sent from 2404: the first payload's probe picks the
    reader (tshark tries the lower port's dissector, and the pipeline's second look reads what the probe found)."""
    from scapy.utils import wrpcap

    out: list = []
    for n, cport in enumerate((502, 102, 20000)):
        s = Session(out, f"198.18.7.{n + 1}", f"198.19.7.{n + 1}", cport)
        s.client(u_frame(0x01))
        s.server(u_frame(0x02))
        s.client(i_frame(asdu(100, 6, 1, [io(0, b"\x14")])))
        s.server(i_frame(asdu(13, 3, 1, [io(3004, f13(1.0))])))
        s.close()
    wrpcap(str(tmp_path / "iec104.pcap"), out)
    read = mbap(1, 1, b"\x03\x00\x10\x00\x02")
    modbus = stream_header() + pcapng(session([(True, read), (False, mbap(1, 1, b"\x03\x04\x00\x01\x00\x02"))],
                                              2404, 502))
    (tmp_path / "modbus.pcapng").write_bytes(modbus)
    taken = native_tcp_frames(monkeypatch)
    for capture, dataset, count in (("iec104.pcap", "secops.iec104", 12), ("modbus.pcapng", "secops.modbus", 2)):
        native = docs_of(tmp_path / capture, True, monkeypatch)
        tshark = docs_of(tmp_path / capture, False, monkeypatch)
        assert native == tshark
        records = [d for d in native.values() if d["event"]["dataset"] == dataset]
        assert len(records) == count
        assert {d["destination"]["port"] for d in records} == {2404 if dataset == "secops.iec104" else 502}
    assert taken[0] >= 12 and taken[1] == 0 and taken[2] >= 2 and taken[3] == 0


def test_modbus_reader_bounds_and_holes() -> None:
    """Random bytes, holes and every cut of a stream: no exception, at most one PDU's bytes wait."""
    rng = random.Random(7)
    reader = ModbusReader()
    for _ in range(2000):
        chunk: bytes | int = rng.randbytes(rng.randrange(0, 40)) if rng.random() < 0.9 else rng.randrange(1, 99)
        reader.feed(rng.random() < 0.5, chunk)
        reader.take()
        assert all(len(side.pending) <= 65541 for side in reader.sides)
    stream_bytes = mbap(1, 1, b"\x03\x00\x10\x00\x02") * 3
    for cut in range(1, len(stream_bytes)):
        reader = ModbusReader()
        reader.feed(True, stream_bytes[:cut])
        first = reader.take().get("modbus_func_code", [])
        reader.feed(True, stream_bytes[cut:])
        second = reader.take().get("modbus_func_code", [])
        assert len(first) + len(second) == 3 if cut >= 8 else len(first) == 0


def test_damaged_ics_units_are_counted_in_one_warning(tmp_path: Path) -> None:
    """A DNP3 frame whose user-data CRC is wrong is skipped (tshark discards its transport segment too) and counted."""
    header = bytes([0x05, 0x64, 10, 0xC4, 1, 0, 2, 0])  # LEN 10, DIR|PRM unconfirmed user data, to 1 from 2
    crc = crc_dnp(header, 0, 8)
    user = bytes([0xC0, 0xC0, 0x01, 0x3C, 0x02])  # FIR|FIN, a READ of class 1 data
    good = header + bytes([crc & 0xFF, crc >> 8]) + user + crc_dnp(user, 0, 5).to_bytes(2, "little")
    bad = good[:-2] + b"\x00\x00"
    capture = tmp_path / "dnp3.pcapng"
    capture.write_bytes(stream_header() + pcapng(session([(True, good), (True, bad), (True, good)], 40000, 20000)))
    warnings: list[str] = []
    docs: list[dict] = []
    pipe = Pipeline(docs.append, on_warning=warnings.append)
    pipe.process_file(capture)
    pipe.finish()
    assert sum(1 for d in docs if d["event"]["dataset"] == "secops.dnp3") == 1  # the requests share one record
    assert [w for w in warnings if "natively read ICS and SMB: 1 damaged unit(s)" in w]


DNP3_CAPTURE, S7_CAPTURE = "attacks/ics/dnp3/dnp3.pcap", "attacks/ics/s7comm/snap7.pcap"


def ics_stream(*names: str) -> bytes:
    """The frames of shared captures (Ethernet) as one selected-frame stream."""
    frames = []
    for name in names:
        for _ts, linktype, buf, off, caplen, _wire in read_capture(TESTDATA / name, lambda _m: None):
            assert linktype == 1
            frames.append(bytes(buf[off:off + caplen]))
    return pcapng(frames)


def held(engine: object) -> int:
    """Connections an ICS engine face still holds (the Rust engine's count, or the reference's table)."""
    inner = getattr(engine, "engine", None)
    return inner.connections if inner is not None else len(engine.conns)  # type: ignore[attr-defined]


def test_the_ics_engines_hold_no_connection_after_the_run() -> None:
    native = NativeFrames("t", lambda _m: None)
    _kept, docs = native.split(ics_stream(DNP3_CAPTURE, S7_CAPTURE))
    docs += native.finish()
    assert native.tcp is not None
    assert {"secops.dnp3", "secops.s7comm"} <= {d["event"]["dataset"] for d in docs}
    assert [held(e) for e in native.tcp.ics_engines.values()] == [0, 0]


MODBUS_CAPTURE = "attacks/ics/modbus/modbus-eit.pcap"


def test_a_reader_failing_as_its_connection_closes_costs_that_connection_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while a connection is closed (an idle sweep, the end of the run) is counted and reported once; the
    connection's state is dropped all the same, and the other connections are closed and logged on. Injected into
    the DNP3 face's ``end``, which the Python table calls (the Rust table calls the engine itself)."""
    monkeypatch.setattr(native_tcp, "RUST_TABLE", False)
    warnings: list[str] = []
    native = NativeFrames("t", warnings.append)
    assert native.tcp is not None
    dnp3 = native.tcp.ics_engines[native_tcp.DNP3]

    def failing_end(conn_id: int, ts: float = 0.0) -> list:
        raise RuntimeError("injected")

    dnp3.end = failing_end  # type: ignore[method-assign]
    _kept, docs = native.split(ics_stream(DNP3_CAPTURE, S7_CAPTURE))
    docs += native.finish()
    assert native.tcp.stats.failures >= 1
    assert sum("injected" in w for w in warnings) == 1
    assert "secops.s7comm" in {d["event"]["dataset"] for d in docs}
    assert [held(e) for e in native.tcp.ics_engines.values()] == [0, 0]


def failing_reader() -> ModbusReader:
    raise RuntimeError("injected")


@pytest.mark.parametrize("table", [False, True], ids=["python-table", "rust-table"])
def test_a_reader_failing_on_a_frame_costs_that_connection_only(table: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader failing on a connection (here as it is made, at its first frame): that connection is forgotten and
    its frames go to tshark, reported once; the other connections are read on (both tables)."""
    monkeypatch.setattr(native_tcp, "RUST_TABLE", table)
    warnings: list[str] = []
    native = NativeFrames("t", warnings.append)
    assert native.tcp is not None
    assert (native.tcp.table is not None) == (table and native_tcp.TABLE is not None)
    monkeypatch.setitem(native_tcp.ICS_READERS, native_tcp.MODBUS, failing_reader)
    stream = ics_stream(DNP3_CAPTURE, MODBUS_CAPTURE, S7_CAPTURE)
    kept, docs = native.split(stream)
    docs += native.finish()
    assert native.tcp.stats.failures >= 1
    assert sum("injected" in w for w in warnings) == 1, warnings
    assert {"secops.s7comm", "secops.dnp3"} <= {d["event"]["dataset"] for d in docs}
    assert [held(e) for e in native.tcp.ics_engines.values()] == [0, 0]
    assert not native.tcp.ics_read_here
    assert len(kept) > 0  # the failed connection's later frames went to tshark
