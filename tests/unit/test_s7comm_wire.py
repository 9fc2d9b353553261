"""S7comm over TCP 102 read natively (collectors/protocols/s7comm_wire.py) against tshark 4.0.17, the oracle.

1. The shared captures with TCP/102 traffic (snap7.pcap, s7comm_plus.pcap; a scan of all 144 shared captures finds
   no other: rdp-to-ssl.pcap carries TPKT on 3389): every frame ``tshark -Y s7comm -T ek`` prints must equal what
   the reader gives for it, and the reader gives nothing more.
2. A generated capture (written to tmp_path): labelled sessions for each tshark behaviour the reader reproduces,
   then seeded random sessions, compared the same way.
3. Hostile input without tshark: random and truncated streams, holes, oversized lengths; no exception, bounded state.

The driver reads the pcap with the project's decoder, puts each TCP direction in sequence order
(``tcp_reassembly.Direction``), feeds each frame's chunks and calls ``take()`` once per frame. It gives every reader
the same ``heuristic_order`` list and carries ``cotp_ref`` from reader to reader in frame order: both are
capture-wide in tshark (``test_capture_wide_state`` shows what a reader alone does differently).

Differences from tshark the reader does not reproduce (the labelled and random cases avoid them;
``test_named_differences`` and ``test_capture_wide_state`` show the first two):

* ``QUIRK_DATA_PART``: when a dissector under a TPKT throws, tshark does not restore its "may reassemble" flag, so a
  later TPKT of the same read that goes on into the next segment is read cut short, and the next segment, starting
  mid-TPKT, is continuation data. The reader reproduces this where it knows tshark throws (TPKT, COTP, the S7comm
  header and parameter head, setup communication, an unknown function's raw bytes, the user-data data header, the
  session-layer heuristic), not for throws it cannot foresee: in the rest of the S7comm data part (read/write items,
  blocks, PI parameters, SZL lists, ...) and in the T.125, session-layer, MMS and other dissectors that take COTP
  user data. Such a
  throw also keeps that dissector where it is in the heuristic order (tshark moves one that returned), which the
  reader cannot know either. The random sessions cut TPKTs only where a segment's fresh bytes start (where the flag
  does not matter) and keep S7comm's redundancy id high byte 0 (so the order never decides an S7comm PDU there).
* ``PER_CONNECTION``: tshark's COTP heuristic order (most recently successful first) and its class 0 reassembly
  number are capture-wide; a reader alone keeps them for its connection (a caller can share them, as the driver
  does).
* After lost data (an ``int`` chunk) the reader drops the TPKT under reassembly and starts again at the next chunk;
  tshark keeps waiting for the lost bytes. The differentials have no lost segments (tested under 3).
* At most ``MAX_REASSEMBLIES`` COTP reassemblies per direction (tshark keeps any number; tested under 3). Each keeps
  only its first ``KEEP`` bytes, which changes nothing tshark prints (a 70 KB one is in the differential).
"""

from __future__ import annotations

import functools
import random
import struct
import time
import tracemalloc
from pathlib import Path

import pytest

from collectors.decode import ACK, BUF, CAPLEN, DPORT, DST, FLAGS, L4OFF, PLEN, PROTO, SEQ, SPORT, SRC, Decoder
from collectors.flowconst import F_ACK, F_RST, F_SYN, TCP
from collectors.pcapio import read_capture
from collectors.protocols.s7comm_wire import (
    KEEP,
    MAX_REASSEMBLIES,
    S7,
    SES,
    SES_ACCEPT,
    T125,
    S7commReader,
    ascii_text,
    ses_heuristic,
)
from collectors.protocols.tcp_reassembly import Direction
from tests.support import TESTDATA
from tests.support.wire import Fields, Frames, ek_fields, needs_tshark

FIELDS = ("s7comm.header.rosctr", "s7comm.header.pduref", "s7comm.header.errcls", "s7comm.header.errcod",
          "s7comm.param.func", "s7comm.param.userdata.type", "s7comm.param.userdata.funcgroup",
          "s7comm.param.userdata.subfunc", "s7comm.param.errcod", "s7comm.param.pistart.servicename")
SHARED_CAPTURES = {"snap7.pcap": 64, "s7comm_plus.pcap": 34}  # capture: frames tshark prints
QUIRK_DATA_PART = "after a throw the reader cannot foresee, tshark reads the segment's next cut TPKT short"
PER_CONNECTION = "tshark's heuristic order and COTP numbering are capture-wide, a lone reader's per connection"

Segment = tuple[bool, bytes]  # (from the client, TCP payload)


# --- PDUs ----------------------------------------------------------------------------------------------------------

def tpkt(payload: bytes, version: int = 3, reserved: int = 0, length: int | None = None) -> bytes:
    return bytes([version, reserved]) + struct.pack(">H", len(payload) + 4 if length is None else length) + payload


def dt(user: bytes, eot: bool = True) -> bytes:
    """A class 0 COTP DT."""
    return bytes([2, 0xF0, 0x80 if eot else 0]) + user


def s7(rosctr: int, pduref: int, param: bytes = b"", data: bytes = b"", error: int | None = None,
       plength: int | None = None, redid: int = 0) -> bytes:
    header = struct.pack(">BBHHHH", 0x32, rosctr, redid, pduref, len(param) if plength is None else plength,
                         len(data))
    if error is not None:
        header += struct.pack(">H", error)
    return header + param + data


def setup(pduref: int, rosctr: int = 1) -> bytes:
    return s7(rosctr, pduref, b"\xf0\x00\x00\x01\x00\x01\x01\xe0", error=0 if rosctr == 3 else None)


def job(pduref: int) -> bytes:
    """A well-formed TPKT with a setup-communication Job (tshark's S7comm dissector reads it without throwing)."""
    return tpkt(dt(setup(pduref)))


ITEM = bytes.fromhex("120a10020001000184000000")  # DB1.DBB0, one byte


def read_var(pduref: int) -> bytes:
    return s7(1, pduref, b"\x04\x01" + ITEM)


def read_var_ack(pduref: int) -> bytes:
    return s7(3, pduref, b"\x04\x01", b"\xff\x04\x00\x08\x2a", error=0)


def write_var(pduref: int) -> bytes:
    return s7(1, pduref, b"\x05\x01" + ITEM, b"\x00\x04\x00\x08\x2a")


def pi_service(pduref: int, name: bytes, argument: bytes = b"", plength: int | None = None) -> bytes:
    param = b"\x28\x00\x00\x00\x00\x00\x00\xfd" + struct.pack(">H", len(argument)) + argument + bytes([len(name)])
    return s7(1, pduref, param + name, plength=plength)


def plc_stop(pduref: int, name: bytes = b"P_PROGRAM") -> bytes:
    return s7(1, pduref, b"\x29\x00\x00\x00\x00\x00" + bytes([len(name)]) + name)


def userdata(pduref: int, kind: int, group: int, sub: int, error: int | None = None, redid: int = 0) -> bytes:
    """A user-data PDU: 8-byte parameter (request) or 12 with an error code; a 4-byte data part."""
    method = 0x11 if kind == 4 else 0x12
    param = b"\x00\x01\x12" + bytes([4 if error is None else 8, method, kind << 4 | group, sub, 0])
    if error is not None:
        param += b"\x00\x00" + struct.pack(">H", error)
    return s7(7, pduref, param, b"\x0a\x00\x00\x00", redid=redid)


def cr(user: bytes = b"", tsaps: bool = True) -> bytes:
    var = bytes.fromhex("c0010ac1020100c2020102") if tsaps else b""
    return bytes([6 + len(var), 0xE0, 0, 0, 0, 1, 0]) + var + user


def cc(user: bytes = b"") -> bytes:
    return bytes([6, 0xD0, 0, 1, 0, 1, 0]) + user


SES_DT = tpkt(dt(b"\x01\x00\x01\x00"))  # an ISO 8327 DATA TRANSFER: tshark's session layer takes it


# --- pcap, oracle, driver --------------------------------------------------------------------------------------------

def write_pcap(path: Path, sessions: list[list[Segment]], order: list[tuple[int, int]] | None = None
               ) -> dict[int, tuple[int, int]]:
    """One TCP connection per session (its own address pair): every handshake, then the segments, one a frame,
    session after session or in ``order`` ((session, segment) pairs); returns frame number -> (session, segment)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    seqs = [{True: 1000, False: 5000} for _ in sessions]
    where: dict[int, tuple[int, int]] = {}

    def packet(number: int, from_client: bool, flags: int, payload: bytes = b"") -> None:
        client = bytes([10, 1 + number // 250, number % 250, 1])
        server = bytes([10, 200, number % 250, 2 + number // 250])
        src, dst = (client, server) if from_client else (server, client)
        sport, dport = (20000 + number, 102) if from_client else (102, 20000 + number)
        seq = seqs[number]
        tcp = struct.pack(">HHIIBBHHH", sport, dport, seq[from_client], seq[not from_client], 0x50, flags, 8192, 0, 0)
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 1, 0, 64, 6, 0, src, dst)
        frame = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + tcp + payload
        count = len(out)
        out.append(struct.pack("<IIII", 1000 + count // 1000, count % 1000 * 1000, len(frame), len(frame)) + frame)
        seq[from_client] = (seq[from_client] + len(payload) + (1 if flags & F_SYN else 0)) & 0xFFFFFFFF

    for number in range(len(sessions)):
        packet(number, True, F_SYN)
        packet(number, False, F_SYN | F_ACK)
        packet(number, True, F_ACK)
    if order is None:
        order = [(number, index) for number, segments in enumerate(sessions) for index in range(len(segments))]
    for number, index in order:
        from_client, payload = sessions[number][index]
        packet(number, from_client, F_ACK | 0x08, payload)
        where[len(out) - 1] = (number, index)
    path.write_bytes(b"".join(out))
    return where


@functools.cache
def tshark_fields(pcap: Path) -> Frames:
    """What tshark prints, by frame number (the fields S7commAnalyzer asks for, as -T ek)."""
    cmd = [needs_tshark(), "-n", "-r", str(pcap), "-o", "tcp.desegment_tcp_streams:TRUE", "-Y", "s7comm",
           "-T", "ek", "-e", "frame.number", *[a for f in FIELDS for a in ("-e", f)]]
    return ek_fields(cmd)


def reader_fields(pcap: Path, shared: bool = True) -> tuple[Frames, list[S7commReader]]:
    """What the readers give, by frame number; ``shared``: the capture-wide state shared as tshark has it."""
    decoder = Decoder()
    conns: dict[tuple[object, ...], tuple[S7commReader, Direction, Direction]] = {}
    order = [T125, SES, S7]
    cotp_ref = 0
    out: Frames = {}
    for number, (ts, linktype, buf, off, caplen, _wire) in enumerate(read_capture(pcap, lambda _m: None), 1):
        packets = decoder.decode(linktype, buf, off, caplen, ts)
        if not packets or packets[-1][PROTO] != TCP:
            continue
        p = packets[-1]
        if 102 not in (p[SPORT], p[DPORT]):
            continue
        from_client = p[DPORT] == 102
        key = (p[SRC], p[SPORT], p[DST]) if from_client else (p[DST], p[DPORT], p[SRC])
        if key not in conns:
            conns[key] = (S7commReader(), Direction(), Direction())
        reader, client, server = conns[key]
        mine, other = (client, server) if from_client else (server, client)
        if p[FLAGS] & F_SYN and not p[FLAGS] & F_RST:
            mine.syn(p[SEQ])
        elif p[FLAGS] & F_ACK:
            other.acked(p[ACK])
        if p[PLEN] <= 0:
            continue
        if shared:
            reader.heuristic_order, reader.cotp_ref = order, cotp_ref
        b, l4 = p[BUF], p[L4OFF]
        start = l4 + (b[l4 + 12] >> 4) * 4
        for chunk in mine.add(p[SEQ], bytes(b[start:start + min(p[CAPLEN], p[PLEN])]), p[PLEN]):
            reader.feed(from_client, chunk)
        fields = reader.take()
        cotp_ref = reader.cotp_ref
        if fields:
            out[number] = fields
    return out, [c[0] for c in conns.values()]


def mismatches(pcap: Path, shared: bool = True) -> list[tuple[int, Fields | None, Fields | None]]:
    mine, _ = reader_fields(pcap, shared)
    theirs = tshark_fields(pcap)
    return [(n, mine.get(n), theirs.get(n)) for n in sorted(set(mine) | set(theirs)) if mine.get(n) != theirs.get(n)]


# --- 1. shared captures ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SHARED_CAPTURES))
def test_shared_capture_matches_tshark(name: str) -> None:
    pcap = TESTDATA / "attacks/ics/s7comm" / name
    assert mismatches(pcap) == []
    assert len(tshark_fields(pcap)) == SHARED_CAPTURES[name]


def test_s7comm_plus_is_not_s7comm() -> None:
    """tshark 4.0 has no S7comm-plus dissector: protocol id 0x72 fails S7comm's test (its DTs are data); the
    capture's S7comm (0x32) PDUs are a second client's, read as usual."""
    pcap = TESTDATA / "attacks/ics/s7comm/s7comm_plus.pcap"
    mine, readers = reader_fields(pcap)
    assert sum(r.stats.not_s7 for r in readers) > 0
    assert sum(r.stats.pdus for r in readers) == sum(len(f["s7comm_header_rosctr"]) for f in mine.values()) == 34


# --- 2. generated sessions ----------------------------------------------------------------------------------------

def labelled_sessions() -> list[tuple[str, list[Segment]]]:
    """Sessions showing each behaviour of tshark's the reader reproduces (checked against tshark 4.0.17)."""
    C, S = True, False
    first = setup(7)
    big = pi_service(70, b"_GARB", b"x" * 300) + b"\x00" * 70000  # a 70 KB TSDU: fields at its start
    big_parts = [big[i:i + 1000] for i in range(0, len(big), 1000)]
    sessions: list[tuple[str, list[Segment]]] = [
        ("handshake and jobs", [(C, tpkt(cr())), (S, tpkt(cc())), (C, job(1)), (S, tpkt(dt(setup(1, 3)))),
                                (C, tpkt(dt(read_var(2)))), (S, tpkt(dt(read_var_ack(2)))),
                                (C, tpkt(dt(write_var(3)))), (S, tpkt(dt(s7(3, 3, b"\x05\x01", b"\xff", error=0))))]),
        ("every rosctr", [(C, tpkt(dt(s7(r, 10 + r, b"\x04\x01" + ITEM if r == 1 else b"",
                                          error=0x8104 if r in (2, 3) else None)))) for r in range(0, 9)]),
        ("rosctr 3 with error and function", [(S, tpkt(dt(s7(3, 4, b"\x04\x01", b"\x0a\x00\x00\x00",
                                                              error=0xD20C))))]),
        ("header cut short", [(S, tpkt(dt(s7(3, 5)[:10]))), (S, tpkt(dt(s7(3, 5, error=0x8104)[:11]))),
                              (S, tpkt(dt(s7(2, 5, error=0x8104)))), (C, tpkt(dt(s7(1, 5, plength=1))))]),
        ("pi service and plc stop", [(C, tpkt(dt(pi_service(20, b"_MODU", b"EP")))),
                                     (C, tpkt(dt(pi_service(21, b"P_PROGRAM", b"C ")))),
                                     (C, tpkt(dt(pi_service(22, b"_GARB")))),
                                     (C, tpkt(dt(pi_service(23, b"_INSE", b"\x01\x00" + b"0A00001P")))),
                                     (C, tpkt(dt(pi_service(24, b"_GARB", plength=8)))),
                                     (C, tpkt(dt(pi_service(25, b"", plength=9)))),
                                     (C, tpkt(dt(plc_stop(26)))), (S, tpkt(dt(s7(3, 26, b"\x29", error=0)))),
                                     (C, tpkt(dt(pi_service(27, b"A\x01\x7f\x80\xff\"\\\x00tail"))))]),
        ("user data", [(C, tpkt(dt(userdata(30, 4, 4, 1)))), (S, tpkt(dt(userdata(30, 8, 4, 1, error=0)))),
                       (C, tpkt(dt(userdata(31, 4, 3, 3, error=0)))),
                       (S, tpkt(dt(userdata(31, 8, 3, 3, error=0xD209)))),
                       *[(C, tpkt(dt(userdata(32 + g, 4, g, 0x42)))) for g in range(16)]]),
        ("several TPKTs in one segment", [(C, job(40) + tpkt(dt(read_var(41))) + job(42))]),
        ("a TPKT over segments", [(C, (job(43) + job(44))[:10]), (C, (job(43) + job(44))[10:30]),
                                  (C, (job(43) + job(44))[30:])]),
        ("a TPKT header over segments", [(C, job(45)[:2]), (C, job(45)[2:3]), (C, job(45)[3:] + job(46))]),
        ("a bad version ends the segment", [(C, job(47) + b"\x05" + job(48)), (C, job(49)),
                                            (C, tpkt(dt(setup(50)), version=2) + job(51)), (C, job(52))]),
        ("the reserved byte is not checked", [(C, tpkt(dt(setup(53)), reserved=9) + job(54))]),
        *[(f"TPKT length {n}", [(C, job(55) + tpkt(dt(setup(56)), length=n) + job(57)), (C, job(58)), (C, job(59))])
          for n in range(5)],
        ("COTP fragments", [(C, tpkt(dt(first[:6], eot=False))), (C, tpkt(dt(first[6:])))]),
        ("fragments in one segment", [(C, tpkt(dt(first[:3], eot=False)) + tpkt(dt(first[3:9], eot=False))
                                          + tpkt(dt(first[9:])))]),
        ("an EOT frame of the other side between", [(C, tpkt(dt(first[:6], eot=False))), (S, job(60)),
                                                    (S, job(61) + job(62)), (C, tpkt(dt(first[6:])))]),
        ("an EOT of the same side completes", [(C, tpkt(dt(first[:6], eot=False))), (C, job(63)),
                                               (C, tpkt(dt(first[6:])))]),
        ("EOT then fragment moves the number on", [(C, tpkt(dt(first[:6], eot=False))),
                                                   (S, job(64) + tpkt(dt(setup(65, 3)[:5], eot=False))),
                                                   (C, tpkt(dt(first[6:]))), (S, tpkt(dt(setup(65, 3)[5:])))]),
        ("empty fragments", [(C, tpkt(dt(first, eot=False))), (C, tpkt(dt(b"", eot=False))), (C, tpkt(dt(b"")))]),
        ("a 70 KB TSDU", [(C, tpkt(dt(part, eot=False))) for part in big_parts[:-1]]
         + [(C, tpkt(dt(big_parts[-1])))]),
        ("class 2-4 DTs", [(C, tpkt(bytes([4, 0xF0, 0x12, 0x34, 0x80]) + setup(66))),
                           (C, tpkt(bytes([8, 0xF0, 0x12, 0x34, 0x80, 0xC3, 2, 0, 0]) + setup(67))),
                           (C, tpkt(bytes([7, 0xF0, 0x12, 0x34, 0x80, 0, 0, 1]) + setup(68))),
                           (C, tpkt(bytes([11, 0xF0, 0x12, 0x34, 0x80, 0, 0, 1, 0xC3, 2, 0, 0]) + setup(69))),
                           (C, tpkt(bytes([8, 0xF0, 0x12, 0x34, 0x80, 0xC4, 2, 0, 0]) + setup(70))),
                           (C, tpkt(bytes([4, 0xF0, 0x12, 0x34, 0x00]) + first[:5])),
                           (C, tpkt(bytes([4, 0xF0, 0x12, 0x34, 0x80]) + first[5:])),
                           (C, tpkt(bytes([3, 0xF0, 0x80, 0]) + setup(71)))]),
        ("S7 in CR and CC user data", [(C, tpkt(cr(setup(72), tsaps=False))), (S, tpkt(cc(setup(73, 3)))),
                                       (C, tpkt(cr(setup(74)))), (C, tpkt(bytes([6, 0xE0, 0, 0, 0, 1, 0x50])
                                                                         + setup(75)))]),
        ("TPDUs before the DT", [(C, tpkt(bytes([4, 0x60, 0, 1, 1]) + dt(setup(80)))),
                                 (C, tpkt(bytes([5, 0x60, 0, 1, 1, 0]) + dt(setup(81)))),
                                 (C, tpkt(bytes([8, 0x20, 0, 1, 1, 0xC3, 2, 0, 0]) + dt(setup(82)))),
                                 (C, tpkt(bytes([9, 0x50, 0, 1, 0, 0, 0, 1, 0, 5]) + dt(setup(83)))),
                                 (C, tpkt(bytes([4, 0x70, 0, 1, 3]) + dt(setup(84)))),
                                 (C, tpkt(bytes([9, 0xC0, 0, 1, 0, 2, 0xC3, 2, 0, 0]) + dt(setup(85)))),
                                 (C, tpkt(bytes([6, 0x80, 0, 1, 0, 1, 0]) + dt(setup(86)))),
                                 (C, tpkt(bytes([0, 0xF0]) + dt(setup(87))))]),
        ("not S7comm", [(C, tpkt(dt(b"\x72\x01\x00\x1f" + bytes(30)))), (C, tpkt(dt(b"\x33" + setup(88)[1:]))),
                        (C, tpkt(dt(setup(89)[:9])))]),
        # the session layer comes before S7comm until S7comm succeeds, and again after it succeeds
        ("the session layer first", [(C, SES_DT), (C, tpkt(dt(setup(90)[:2] + b"\x01\x01" + setup(90)[4:]))),
                                     (C, job(91)), (C, tpkt(dt(setup(92)[:2] + b"\x01\x01" + setup(92)[4:]))),
                                     (C, SES_DT), (C, tpkt(dt(s7(7, 93, userdata(93, 4, 4, 1)[10:18],
                                                                 b"\x0a\x00\x00\x01\x00", redid=0x3800)))),
                                     (C, job(94)), (C, tpkt(dt(s7(7, 95, userdata(95, 4, 4, 1)[10:18],
                                                                  b"\x0a\x00\x00\x01\x00", redid=0x3800))))]),
        # after something under a TPKT threw, the next cut TPKT of the segment is read cut short, its rest lost
        ("throws stop reassembly", [(C, tpkt(bytes([5, 0x60, 0, 1, 1, 0])) + job(94)[:20]), (C, job(94)[20:]),
                                    (C, job(95)), (C, tpkt(dt(s7(3, 96)[:10])) + job(97)[:2]),
                                    (C, job(97)[2:] + job(98)), (C, job(99)[:5]),
                                    (C, job(99)[5:] + tpkt(b"\x02") + job(100)[:12]), (C, job(100)[12:]),
                                    (C, tpkt(dt(s7(1, 101, b"\x8a", plength=5))) + job(102)[:20]),
                                    (C, job(102)[20:] + job(103)),
                                    (C, tpkt(dt(setup(104)[:15])) + job(105)[:20]), (C, job(105)[20:])]),
    ]
    return sessions


def random_sessions(seed: int, count: int) -> list[tuple[str, list[Segment]]]:
    """Seeded random sessions: mutated and random PDUs in random framing; TPKTs are cut only where a segment's
    fresh bytes start (see QUIRK_DATA_PART), S7comm PDUs keep a zero redundancy id high byte (no session-layer
    claims, see PER_CONNECTION)."""
    rng = random.Random(seed)

    def body() -> bytes:
        pick = rng.random()
        ref = rng.getrandbits(16)
        if pick < 0.25:
            return bytes([0x32, rng.choice([1, 2, 3, 7, 4, 0, 8]), 0]) + rng.randbytes(rng.randint(0, 30))
        if pick < 0.45:
            return userdata(ref, rng.choice([4, 8, 0]), rng.randrange(16), rng.getrandbits(8),
                            rng.choice([None, rng.getrandbits(16)]))
        if pick < 0.6:
            name = rng.randbytes(rng.randint(0, 12))
            pdu = pi_service(ref, name, rng.randbytes(rng.randint(0, 5))) if rng.random() < 0.5 else plc_stop(ref,
                                                                                                              name)
            return pdu[:rng.randint(10, len(pdu))] if rng.random() < 0.3 else pdu
        if pick < 0.75:
            return s7(rng.choice([2, 3]), ref, bytes([rng.getrandbits(8)]), error=rng.choice([0, rng.getrandbits(16)]))
        if pick < 0.85:
            return rng.choice([setup(ref), read_var(ref), write_var(ref), read_var_ack(ref)])
        return rng.randbytes(rng.randint(0, 20))

    def cotp(user: bytes) -> bytes:
        pick = rng.random()
        if pick < 0.7:
            return dt(user)
        if pick < 0.82:
            return dt(user, eot=False)
        if pick < 0.88:
            return rng.choice([cr(user), cc(user)])
        if pick < 0.94:
            return bytes([4, 0x60, 0, 1, 1]) + dt(user)
        return rng.randbytes(rng.randint(0, 4)) + user

    sessions = []
    for number in range(count):
        segments: list[Segment] = []
        for _ in range(rng.randint(1, 14)):
            side = rng.random() < 0.5
            unit = tpkt(cotp(body()), version=3 if rng.random() < 0.97 else rng.getrandbits(8))
            if rng.random() < 0.25:  # cut: the first piece starts a segment
                cuts = sorted(rng.sample(range(1, len(unit)), min(len(unit) - 1, rng.randint(1, 3))))
                pieces = [unit[a:b] for a, b in zip([0, *cuts], [*cuts, len(unit)], strict=True)]
                segments += [(side, piece) for piece in pieces]
            elif segments and segments[-1][0] == side and rng.random() < 0.5:
                segments[-1] = (side, segments[-1][1] + unit)
            else:
                segments.append((side, unit))
        sessions.append((f"random {seed}/{number}", segments))
    return sessions


def test_generated_sessions_match_tshark(tmp_path: Path) -> None:
    needs_tshark()
    sessions = labelled_sessions() + random_sessions(7, 120)
    pcap = tmp_path / "s7comm.pcap"
    where = write_pcap(pcap, [segments for _, segments in sessions])
    mine, readers = reader_fields(pcap)
    theirs = tshark_fields(pcap)
    bad = [(sessions[where[n][0]][0], where[n][1], mine.get(n), theirs.get(n))
           for n in sorted(set(mine) | set(theirs)) if mine.get(n) != theirs.get(n)]
    assert bad == []
    # what the comparison covered
    assert len(theirs) > 500
    assert {key for fields in theirs.values() for key in fields} == {f.replace(".", "_") for f in FIELDS}
    values = {key: {v for fields in theirs.values() for v in fields.get(key, [])} for key in ("s7comm_header_rosctr",)}
    assert values["s7comm_header_rosctr"] == {"1", "2", "3", "4", "5", "6", "7"}
    assert sum(r.stats.ses_claimed for r in readers) == 2
    assert sum(r.stats.bad_versions for r in readers) >= 2


# --- named differences -------------------------------------------------------------------------------------------

def test_named_differences(tmp_path: Path) -> None:
    """The two differences from tshark that a capture shows (see the module docstring)."""
    needs_tshark()
    malformed = tpkt(dt(s7(1, 1, b"\x04\x01")))  # a read with one item and no item: tshark's data part throws
    sessions = [
        [(True, malformed + job(2)[:7]), (True, job(2)[7:] + job(3))],  # QUIRK_DATA_PART
        [(True, job(4))],
        [(True, tpkt(dt(setup(5)[:2] + b"\x01\x01" + setup(5)[4:])))],  # PER_CONNECTION: a new connection
    ]
    pcap = tmp_path / "differences.pcap"
    write_pcap(pcap, sessions)  # frames 1-9: handshakes
    theirs = tshark_fields(pcap)
    mine, _ = reader_fields(pcap)
    assert theirs[10] == mine[10] == {"s7comm_header_rosctr": ["1"], "s7comm_header_pduref": ["1"],
                                      "s7comm_param_func": ["0x04"]}
    assert 11 not in theirs and mine[11]["s7comm_header_pduref"] == ["2", "3"], QUIRK_DATA_PART
    assert theirs[13] == mine[13]  # shared order: S7comm succeeded last, it comes first
    alone, _ = reader_fields(pcap, shared=False)
    assert 13 not in alone, PER_CONNECTION  # a fresh reader tries the session layer first, which takes the PDU


def test_capture_wide_state(tmp_path: Path) -> None:
    """tshark's class 0 number is capture-wide: another connection's frame holding an EOT then a fragment moves it
    on, so this connection's fragment and EOT no longer meet (the EOT's data alone is no S7comm); a reader alone
    reassembles them."""
    needs_tshark()
    first, other = setup(7), setup(3)
    sessions = [[(True, tpkt(dt(first[:6], eot=False))), (True, tpkt(dt(first[6:])))],
                [(True, job(9) + tpkt(dt(other[:4], eot=False))), (True, tpkt(dt(other[4:])))]]
    pcap = tmp_path / "wide.pcap"
    write_pcap(pcap, sessions, [(0, 0), (1, 0), (0, 1), (1, 1)])  # frames 7-10
    theirs = tshark_fields(pcap)
    mine, _ = reader_fields(pcap)
    alone, _ = reader_fields(pcap, shared=False)
    assert mine == theirs == {
        8: {"s7comm_header_rosctr": ["1"], "s7comm_header_pduref": ["9"], "s7comm_param_func": ["0xf0"]},
        10: {"s7comm_header_rosctr": ["1"], "s7comm_header_pduref": ["3"], "s7comm_param_func": ["0xf0"]}}
    assert alone[9]["s7comm_header_pduref"] == ["7"], PER_CONNECTION


# --- 3. hostile input -----------------------------------------------------------------------------------------------

def check_bounds(reader: S7commReader, largest_chunk: int) -> None:
    for side in reader.sides:
        assert side.pending_len <= 0xFFFF + largest_chunk
        assert len(side.tsdus) <= MAX_REASSEMBLIES
        assert all(t.kept <= KEEP for t in side.tsdus.values())


def test_random_streams_never_raise() -> None:
    rng = random.Random(102)
    pieces = [job(1), tpkt(dt(userdata(2, 8, 4, 1, error=0))), tpkt(dt(pi_service(3, b"_GARB"))),
              tpkt(dt(b"", eot=False)), tpkt(cr()), SES_DT, b"\x03\x00\xff\xff", b"\x03\x00\x00\x03",
              b"\x03\x00\x00\x00", tpkt(bytes([2, 0xF0, 0]) + b"\x32\x07" + bytes(8), length=0xFFFF)]
    for _ in range(400):
        reader = S7commReader()
        largest = 0
        for _ in range(rng.randint(1, 40)):
            pick = rng.random()
            if pick < 0.1:
                chunk: bytes | int = rng.randint(1, 5000)
            elif pick < 0.5:
                chunk = rng.randbytes(rng.randint(0, 300))
            else:
                unit = rng.choice(pieces)
                chunk = unit[:rng.randint(0, len(unit))] if rng.random() < 0.3 else unit
            if isinstance(chunk, bytes):
                largest = max(largest, len(chunk))
            reader.feed(rng.random() < 0.5, chunk)
            if rng.random() < 0.7:
                reader.take()
            check_bounds(reader, largest)


def test_every_truncation_of_real_pdus() -> None:
    stream = b"".join([tpkt(cr()), tpkt(cc()), job(1), tpkt(dt(userdata(2, 8, 4, 1, error=0))),
                       tpkt(dt(pi_service(3, b"_MODU", b"EP"))), tpkt(dt(plc_stop(4))),
                       tpkt(dt(s7(3, 5, b"\x04\x01", error=0xD20C)))])
    for cut in range(len(stream) + 1):
        for step in (1, 3, 64):
            reader = S7commReader()
            for at in range(0, cut, step):
                reader.feed(True, stream[at:min(at + step, cut)])
                reader.take()
            check_bounds(reader, step)


def test_holes_drop_what_waits_and_read_on_at_the_next_chunk() -> None:
    reader = S7commReader()
    reader.feed(True, job(1)[:9])
    reader.feed(True, 500)  # lost: the TPKT under reassembly goes
    assert reader.sides[0].pending_len == 0 and reader.stats.holes == 1 and reader.stats.dropped_bytes == 9
    reader.feed(True, job(1)[9:])  # the rest of the lost TPKT: not a TPKT start, dropped
    assert reader.take() == {} and reader.stats.bad_versions == 1
    reader.feed(True, job(2))
    assert reader.take()["s7comm_header_pduref"] == ["2"]
    reader.feed(False, tpkt(dt(setup(3)[:5], eot=False)))
    reader.feed(False, 20)  # COTP reassembly is not TCP's: it goes on, as tshark's does
    reader.feed(False, tpkt(dt(setup(3)[5:])))
    assert reader.take()["s7comm_header_pduref"] == ["3"]


def test_oversized_tpkt_waits_bounded_and_linear() -> None:
    """A TPKT of 65,535 bytes fed one byte at a time: gathered without copying it again and again."""
    payload = dt(s7(7, 9, b"\x00\x01\x12\x04\x11\x44\x01\x00")) + bytes(0xFFFF - 4 - 21)
    unit = tpkt(payload)
    assert len(unit) == 0xFFFF
    reader = S7commReader()
    started = time.perf_counter()
    for i in range(len(unit)):
        reader.feed(False, unit[i:i + 1])
    assert time.perf_counter() - started < 5
    assert reader.take()["s7comm_header_pduref"] == ["9"]


def test_endless_cotp_reassembly_keeps_a_prefix() -> None:
    """Megabytes of fragments without EOT: memory stays near KEEP per reassembly; the EOT still reads the fields
    (they lie in the prefix) and the size decides what exists, as tshark's whole buffer would."""
    reader = S7commReader()
    head = tpkt(dt(pi_service(5, b"_GARB", b"x" * 10), eot=False))
    filler = tpkt(dt(bytes(8000), eot=False))
    tracemalloc.start()
    try:
        reader.feed(True, head)
        reader.take()
        for _ in range(1000):
            reader.feed(True, filler)
            reader.take()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * KEEP
    reader.feed(True, tpkt(dt(b"")))
    assert reader.take()["s7comm_param_pistart_servicename"] == ["_GARB"]


def test_reassemblies_per_direction_are_capped() -> None:
    reader = S7commReader()
    for ref in range(50):  # class 2-4 DTs reassemble under their destination reference: any number in tshark
        reader.feed(True, tpkt(bytes([4, 0xF0, 0, ref, 0x00]) + b"\x32"))
    assert len(reader.sides[0].tsdus) == MAX_REASSEMBLIES and reader.stats.evicted == 50 - MAX_REASSEMBLIES


def test_text_and_session_layer_helpers() -> None:
    assert ascii_text(b"P_PROGRAM") == "P_PROGRAM"
    assert ascii_text(b"A\x01\x80\xffB\x00C") == "A\x01\ufffd\ufffdB"
    assert ses_heuristic(b"\x01\x00\x01\x00", 4) == SES_ACCEPT
    assert ses_heuristic(setup(1), 18) != SES_ACCEPT  # a zero redundancy id: no session-layer parameter code
