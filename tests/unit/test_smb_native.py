"""Native SMB2 and DCE-RPC reading (``smb_wire`` through native_tcp.py) against tshark, the differential oracle.

Every shared capture with SMB or DCE-RPC goes through the ingest pipeline twice: with the deep path reading those
connections itself (``native_tcp.READ_SMB``) and with tshark reading them; every document must be equal. The shared
captures hold two sessions, so sessions written to the specifications (tests/unit/smb_sessions.py) are read the
same way: NTLM with Unicode, OEM and anonymous names, pipes and IOCTL transceive, async answers, renames, compound
chains, messages cut across segments, DCE-RPC over TCP with fragments and alter-contexts, SMB over NetBIOS (139),
an SMB1 server (handed back to tshark), SMB3 encryption. Hostile bytes: random and mutated sessions through the
reader, holes and garbage in a stream.
"""

from __future__ import annotations

import random
import struct
import subprocess
from pathlib import Path

import pytest

from collectors.protocols import native_tcp
from collectors.protocols.dcerpc_names import INTERFACES, OPERATIONS
from collectors.protocols.smb import INTERFACES as LOGGED_INTERFACES
from collectors.protocols.smb_wire import MAX_KEPT_BYTES, SmbReader, SmbSessions
from collectors.selection import stream_header
from tests.unit import smb_sessions as s
from tests.unit.test_flowcore import TESTDATA
from tests.unit.test_tcp_native import native_tcp_frames, pcapng, pipeline_docs

SHARED = sorted((TESTDATA / "attacks/lateral-movement").glob("empire_*dcerpc*.pcap"))


def docs_of(capture: Path, read_smb: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    monkeypatch.setattr(native_tcp, "READ_SMB", read_smb)
    return pipeline_docs(capture, True, monkeypatch)


def smb_documents(docs: dict[str, dict]) -> list[dict]:
    return [d for d in docs.values() if d["event"]["dataset"] == "secops.smb"]


@pytest.mark.parametrize("capture", SHARED, ids=lambda c: c.name)
def test_shared_captures_equal_tshark(capture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = native_tcp_frames(monkeypatch)
    native = docs_of(capture, True, monkeypatch)
    tshark = docs_of(capture, False, monkeypatch)
    assert len(smb_documents(native)) >= 13
    assert native == tshark
    assert taken[0] >= taken[1] + 40  # the SMB and DCE-RPC frames were read here


def rpc_over_tcp() -> list[tuple[bool, bytes]]:
    """DCE-RPC on a dynamic port: two contexts (one unknown), an alter-context, a bind and a request in one segment,
    two requests in one, a request in three fragments, an operation tshark has no name for, big-endian data."""
    be_bind = bytearray(s.bind(s.context(0, s.SAMR), call=9))
    be_bind[4] = 0  # big-endian integers: the header's and the context's fields swapped to match
    be_bind[8:10], be_bind[10:12], be_bind[12:16] = be_bind[9:7:-1], be_bind[11:9:-1], be_bind[15:11:-1]
    return [
        (s.C, s.bind(s.context(0, s.UNKNOWN), s.context(1, s.DRSUAPI))),
        (s.S, s.bind_ack(2)),
        (s.C, s.request(1, 0, 2)),
        (s.C, s.request(0, 7, 3)),
        (s.C, s.bind(s.context(2, s.SVCCTL), call=4, alter=True)),
        (s.C, s.request(2, 12, 5, flags=1) + s.request(2, 12, 5, flags=0)),
        (s.C, s.request(2, 12, 5, flags=2)),
        (s.C, s.request(2, 15, 6) + s.request(2, 250, 7)),
        (s.C, s.bind(s.context(3, s.SVCCTL), call=8) + s.request(3, 1, 8)),
        (s.S, s.response(2, 6)),
    ]


def smb1_server() -> list[tuple[bool, bytes]]:
    """An SMB1 server: the native reader reads the NEGOTIATE, tshark the rest."""
    return [(s.C, s.nbss(s.smb1_negotiate())), (s.S, s.nbss(s.smb1_negotiate(response=True))),
            (s.C, s.nbss(s.smb1_tree_connect(1, "\\\\srv\\IPC$"))), (s.S, s.nbss(s.smb1_tree_connect_response(1, 7)))]


def synthetic_capture(tmp_path: Path) -> Path:
    frames = [
        *s.session(s.psexec()),
        *s.session(s.psexec("", session_id=0x2000), sport=50001),
        *s.session(s.psexec("bob", unicode=False, session_id=0x3000), sport=50002, split=100),
        *s.session(s.psexec("eve", session_id=0x4000), sport=50003, split=150, seed=5),
        *s.session(s.psexec("mallory", session_id=0x1000), sport=50004),  # the first session's ids again
        *s.session(s.psexec("nb", session_id=0x5000), sport=50005, dport=139),
        *s.session(rpc_over_tcp(), sport=50006, dport=49674),
        *s.session(rpc_over_tcp(), sport=50007, dport=135, split=200),
        *s.session(smb1_server(), sport=50008),
        *s.session([(s.C, s.nbss(s.negotiate_request(0))), (s.S, s.nbss(s.negotiate_response(0))),
                    (s.C, s.nbss(s.transform())), (s.S, s.nbss(s.transform(200)))], sport=50009),
        *s.session([(s.C, s.nbss(s.negotiate_request(0)) + s.nbss(s.tree_connect(1, "\\\\srv\\D$"))),
                    (s.S, s.nbss(s.negotiate_response(0)) + s.nbss(s.tree_connect_response(1, 9, 1)))], sport=50010),
    ]
    capture = tmp_path / "smb.pcapng"
    capture.write_bytes(stream_header() + pcapng(frames))
    return capture


def test_synthetic_sessions_equal_tshark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    capture = synthetic_capture(tmp_path)
    native = docs_of(capture, True, monkeypatch)
    tshark = docs_of(capture, False, monkeypatch)
    smb = smb_documents(native)
    operations = {(d["source"]["port"], d["secops"]["dcerpc"]["operation"]) for d in smb if "dcerpc" in d["secops"]}
    assert {(50000, "OpenSCManagerW"), (50000, "CreateServiceW"), (50005, "CreateServiceW"), (50006, "DsBind"),
            (50006, "opnum-7"), (50006, "CreateServiceW"), (50006, "ControlService"),
            (50007, "opnum-250")} <= operations
    users = {(d["source"]["port"], d.get("user", {}).get("name")) for d in smb if d.get("user")}
    assert {(50000, "pgustavo"), (50001, "NULL"), (50002, "bob"), (50003, "eve")} <= users
    assert any(d["source"]["port"] == 50008 and d["secops"]["smb"]["command"] == "TREE_CONNECT_ANDX" for d in smb)
    assert native == tshark


def test_a_pdu_header_cut_by_a_segment_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one difference named: tshark's DCE-RPC over TCP loses a PDU whose 16-byte header a segment end cuts (it
    asks for more bytes only once it has a whole header); the native reader reads it. A bind and a request in one
    message cut every 40 bytes put the request's header across a segment end."""
    message = s.bind(s.context(3, s.SVCCTL), call=8) + s.request(3, 1, 8)
    capture = tmp_path / "cut.pcapng"
    capture.write_bytes(stream_header() + pcapng(s.session([(s.C, message)], sport=50011, dport=135, split=40)))
    native = [d["secops"]["dcerpc"]["operation"] for d in smb_documents(docs_of(capture, True, monkeypatch))]
    assert native == ["ControlService"]
    assert smb_documents(docs_of(capture, False, monkeypatch)) == []


def test_hand_back_and_reading_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SMB1 session goes back to tshark at its first message past the NEGOTIATE; the others stay here."""
    handed = native_tcp_frames(monkeypatch, lambda tcp: tcp.stats.handed_back)
    docs_of(synthetic_capture(tmp_path), True, monkeypatch)
    assert handed == [1]


@pytest.mark.parametrize("table", [True, False], ids=["rust-table", "python-table"])
def test_damage_before_a_hand_back_is_counted(table: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A TREE_CONNECT response shorter than its share type byte is damage; the SMB1 message that follows hands the
    connection to tshark, and the damage is still counted (it was lost with the reader)."""
    monkeypatch.setattr(native_tcp, "RUST_TABLE", table)
    damaged = native_tcp_frames(monkeypatch, lambda tcp: tcp.stats.ics_damaged)
    handed = native_tcp_frames(monkeypatch, lambda tcp: tcp.stats.handed_back)
    session = [(s.C, s.nbss(s.negotiate_request(0))), (s.S, s.nbss(s.negotiate_response(0))),
               (s.C, s.nbss(s.tree_connect(1, "\\\\srv\\IPC$"))),
               (s.S, s.nbss(s.tree_connect_response(1, 7, 2)[:64 + 2])),
               (s.C, s.nbss(s.smb1_tree_connect(2, "\\\\srv\\C$")))]
    capture = tmp_path / "damaged.pcapng"
    capture.write_bytes(stream_header() + pcapng(s.session(session, sport=50013)))
    docs_of(capture, True, monkeypatch)
    assert (handed, damaged) == ([1], [1])


# -- the interface tables are tshark's ---------------------------------------------------------------------------
def test_operation_names_are_tsharks() -> None:
    """OPERATIONS holds the value strings of tshark's ``<interface>.opnum`` fields, for every interface smb.py logs."""
    out = subprocess.run(["tshark", "-G", "values"], capture_output=True, text=True, check=True).stdout
    found: dict[str, dict[int, str]] = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == "V" and parts[1].endswith(".opnum") and parts[1][:-6] in OPERATIONS:
            found.setdefault(parts[1][:-6], {})[int(parts[2])] = parts[3]
    assert set(OPERATIONS) == set(LOGGED_INTERFACES) == set(INTERFACES.values())
    assert found == OPERATIONS


def test_each_interface_is_the_one_tshark_binds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bind to each interface's UUID and version, then a request: both readers name the same interface; a bind to
    a version tshark does not know names none."""
    import uuid

    frames: list[bytes] = []
    for n, ((raw, major), name) in enumerate(INTERFACES.items()):
        iface = (uuid.UUID(bytes_le=raw), major)
        frames += s.session([(s.C, s.bind(s.context(0, iface))), (s.S, s.bind_ack(1)), (s.C, s.request(0, 0, 2))],
                            sport=41000 + n, dport=135)
        frames += s.session([(s.C, s.bind(s.context(0, (iface[0], 99)))), (s.C, s.request(0, 0, 2))],
                            sport=42000 + n, dport=135)
    capture = tmp_path / "binds.pcapng"
    capture.write_bytes(stream_header() + pcapng(frames))
    native = docs_of(capture, True, monkeypatch)
    assert native == docs_of(capture, False, monkeypatch)
    endpoints = {d["source"]["port"]: d["secops"]["dcerpc"].get("endpoint") for d in smb_documents(native)}
    assert len(endpoints) == 2 * len(INTERFACES)
    assert all(endpoints[42000 + n] is None for n in range(len(INTERFACES)))
    assert sorted(e for p, e in endpoints.items() if p < 42000) == sorted(
        {"epm": "epmapper", "taskschedulerservice": "ITaskSchedulerService", "isystemactivator": "ISystemActivator",
         "remact": "IRemoteSCMActivator", "oxid": "IOXIDResolver"}.get(n, n) for n in INTERFACES.values())


# -- hostile and damaged input -----------------------------------------------------------------------------------
def read_all(messages: list[tuple[bool, bytes | int]], reader: SmbReader | None = None) -> list[dict[str, list[str]]]:
    reader = reader or SmbReader(SmbSessions())
    frames = []
    for from_client, chunk in messages:
        reader.feed(from_client, chunk)
        frames.append(reader.take())
    return frames


def test_random_and_mutated_sessions_never_raise() -> None:
    rng = random.Random(7)
    base = [(c, m) for c, m in s.psexec()] + [(c, m) for c, m in rpc_over_tcp()]
    for _ in range(400):
        messages: list[tuple[bool, bytes | int]] = []
        for from_client, data in base:
            buf = bytearray(data)
            for _ in range(rng.randint(0, 4)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            cut = rng.randint(0, len(buf))
            messages += [(from_client, bytes(buf[:cut])), (from_client, bytes(buf[cut:]))]
        read_all(messages)
    for _ in range(200):
        read_all([(rng.random() < 0.5, rng.randbytes(rng.randint(0, 300))) for _ in range(20)])


def test_a_hole_stops_a_direction_until_a_message_starts() -> None:
    reader = SmbReader(SmbSessions())
    tree = s.nbss(s.tree_connect(4, "\\\\srv\\IPC$"))
    frames = read_all([(s.C, tree[:30]), (s.C, 500), (s.C, tree[30:]), (s.C, b"\x17" * 9), (s.C, tree)], reader)
    assert frames[:4] == [{}, {}, {}, {}] and frames[4]["smb2_tree"] == ["\\\\srv\\IPC$"]
    assert reader.damaged == 1


def test_a_long_message_keeps_its_head_only() -> None:
    """A 16 MiB WRITE is read from its first MAX_KEPT_BYTES; the message after it is read whole."""
    reader = SmbReader(SmbSessions())
    big = s.nbss(s.write(20, s.FID, b"\0" * (16 << 20), 5))
    after = s.nbss(s.tree_connect(21, "\\\\srv\\E$"))
    read_all([(s.C, big[i:i + 65536]) for i in range(0, len(big), 65536)], reader)
    assert len(reader.sides[0].buf) <= MAX_KEPT_BYTES
    assert read_all([(s.C, after)], reader)[0]["smb2_tree"] == ["\\\\srv\\E$"]


def test_nbss_lengths_on_139_are_17_bits() -> None:
    """RFC 1002: on 139 only the flags' low bit extends the length; on 445 all 24 bits count."""
    message = s.tree_connect(4, "\\\\srv\\IPC$")
    header = struct.pack(">BBH", 0, 0x02, len(message))  # a reserved flag bit set
    assert read_all([(s.C, header + message)], SmbReader(SmbSessions(), cifs=False))[0]["smb2_cmd"] == ["3"]
    assert read_all([(s.C, header + message)], SmbReader(SmbSessions(), cifs=True)) == [{}]


def test_a_run_s_readers_hold_at_most_their_budget() -> None:
    """1,000 connections each announce a 1 MiB WRITE and send 40 KiB of it: with a 1 MiB budget the run holds about
    that much (the reader that crosses it drops what it held, counted); every connection's bytes come back."""
    sessions = SmbSessions(limit=1 << 20)
    readers = [SmbReader(sessions) for _ in range(1000)]
    head = s.nbss(s.write(20, s.FID, b"\0" * (1 << 20), 5))[:40 << 10]
    for reader in readers:
        reader.feed(s.C, head)
        assert sessions.held <= (1 << 20) + len(head)
    assert sum(r.damaged for r in readers) >= 970
    tree = s.nbss(s.tree_connect(21, "\\\\srv\\E$"))
    dropped = next(r for r in readers if r.damaged)
    assert read_all([(s.C, tree)], dropped)[0]["smb2_tree"] == ["\\\\srv\\E$"]  # it reads on from a message start
    for reader in readers:
        reader.release()
    assert sessions.held == 0


def test_every_connection_gives_its_bytes_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a run (connections closed, handed back to tshark, cut mid-message) the readers hold nothing."""
    held = native_tcp_frames(monkeypatch, lambda tcp: tcp.smb_sessions.held)
    cut = s.session([(s.C, s.nbss(s.negotiate_request(0))), (s.C, s.nbss(s.write(1, s.FID, b"\0" * 5000, 5))[:3000])],
                    sport=50020)
    capture = tmp_path / "held.pcapng"
    capture.write_bytes(stream_header() + pcapng([*s.session(s.psexec()), *s.session(smb1_server(), sport=50008),
                                                  *cut]))
    for table in (True, False):
        monkeypatch.setattr(native_tcp, "RUST_TABLE", table)
        docs_of(capture, True, monkeypatch)
    assert held == [0, 0]


def test_an_smb1_message_cut_across_segments_goes_to_tshark_whole(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The hand-back is decided where the message starts, so tshark gets its first segment too."""
    capture = tmp_path / "smb1-cut.pcapng"
    capture.write_bytes(stream_header() + pcapng(s.session(smb1_server(), sport=50030, split=40)))
    native = docs_of(capture, True, monkeypatch)
    assert [d["secops"]["smb"]["command"] for d in smb_documents(native)] == ["NEGOTIATE", "TREE_CONNECT_ANDX"]
    assert native == docs_of(capture, False, monkeypatch)


def test_a_hole_gives_back_what_its_direction_held() -> None:
    sessions = SmbSessions()
    reader = SmbReader(sessions)
    reader.feed(s.C, s.nbss(s.write(20, s.FID, b"\0" * 60000, 5))[:50000])
    assert sessions.held == reader.held == 50000 - 4  # the message without its NetBIOS header
    reader.feed(s.C, 10000)
    reader.feed(s.C, b"\x17" * 100)  # not a message start: skipped
    assert sessions.held == reader.held == 0
