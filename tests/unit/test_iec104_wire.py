"""IEC 60870-5-104 (TCP 2404) read natively (collectors/protocols/iec104_wire.py) against tshark 4.0.17, the oracle.

1. A generated capture (scapy, written to tmp_path), hosts in 198.18.0.0/15, clients on high ports: a realistic
   session (STARTDT, general interrogation, monitoring types 1, 3, 9, 11, 13, 30, 31, 36, commands 45, 46, 48-50,
   58, 100, 103, S-frames, TESTFR, negative confirmations and the test bit, unknown type identifications, several
   information objects in one ASDU, several APDUs in a segment, APDUs split over segments), labelled cases for each
   tshark behaviour the reader reproduces, one probe per type identification of where tshark throws in an ASDU,
   and seeded random sessions. Every frame tshark prints IEC-104 fields for (the analyzer's own command:
   ``build_command`` with ``Iec104Analyzer``'s filter and fields) must equal what the reader gives for it, and the
   reader gives nothing more. The shared captures hold no IEC-104 (a scan of all 144 finds no TCP/2404), so there is
   no shared-capture comparison.
2. Hostile input without tshark: random and truncated streams, re-chunked at every boundary, holes; no exception,
   bounded state, the same fields whole or one byte at a time where tshark's per-segment reading allows it (and
   what tshark does where it does not: ``test_a_throw_stops_reassembly_for_the_rest_of_the_segment``).

The driver reads the pcap with the project's decoder, puts each TCP direction in sequence order
(``tcp_reassembly.Direction``), feeds each frame's chunks (a chunk is read as one segment) and calls ``take()`` once
per frame.

Differences from tshark the reader does not reproduce (none occurs in the generated capture, so nothing is excluded
from its comparison; each is shown by the test named after it):

* ``LOST_DATA``: after lost data (an ``int`` chunk) the reader drops the APDU under reassembly and reads the next
  chunk as fresh data (skipping to its first 0x68), where tshark keeps waiting for the lost bytes. The differential
  has no lost segments.
* ``LOWER_PORT``: in a connection whose handshake the capture does not hold, tshark offers the data to the lower
  port's dissector first (with the handshake, to the server port's): from a client port below 2404 that a dissector
  accepting any data is registered for (21 FTP, 23 Telnet, 80 HTTP, 102 TPKT, ...) the connection is never IEC-104
  to tshark. The reader reads what it is given as IEC-104 (otherwise the choice of a source port would blind the
  monitor). The labelled case shows it (port 102); the comparison leaves that connection out.
"""

from __future__ import annotations

import functools
import random
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from collectors.protocols.iec104 import Iec104Analyzer
from collectors.protocols.iec104_wire import DATA_LENGTH, HEADER, MAX_APDU, ONE_MORE, Iec104Reader
from collectors.protocols.tshark import Packet, build_command, ek_key
from tests.support.wire import Endpoint, Fields, Frames, TcpSession, ek_fields, needs_tshark, read_port

PORT = 2404
LOWER_PORT_CLIENT = ("198.18.4.10", 102)  # a connection without handshake from TPKT's port (LOWER_PORT)
LOST_DATA = "after lost data the reader reads the next chunk afresh; tshark waits for the lost bytes"
LOWER_PORT = "tshark dissects a segment as the lower port's protocol first"

Cases = dict[str, tuple[int, Fields | None]]
Generated = tuple[Path, Cases, Cases, set[int]]  # the capture, tshark's cases, the reader's, frames not compared


# --- APDUs ---------------------------------------------------------------------------------------------------------

def apdu(control: bytes, asdu: bytes = b"", length: int | None = None) -> bytes:
    """Start octet 0x68, the length octet (the control octets and the ASDU unless given), control octets, ASDU."""
    return bytes([0x68, 4 + len(asdu) if length is None else length]) + control + asdu


def i_frame(asdu: bytes, tx: int = 0, rx: int = 0, length: int | None = None) -> bytes:
    return apdu(struct.pack("<HH", tx << 1 & 0xFFFF, rx << 1 & 0xFFFF), asdu, length)


def s_frame(rx: int) -> bytes:
    return apdu(struct.pack("<HH", 1, rx << 1 & 0xFFFF))


def u_frame(function: int, rest: bytes = b"\x00\x00\x00") -> bytes:
    """function: 0x01 STARTDT act, 0x02 con, 0x04 STOPDT act, 0x08 con, 0x10 TESTFR act, 0x20 con."""
    return apdu(bytes([function << 2 | 3]) + rest)


STARTDT_ACT, STARTDT_CON, STOPDT_ACT, STOPDT_CON, TESTFR_ACT, TESTFR_CON = (u_frame(1 << i) for i in range(6))


def asdu(type_id: int, cause: int, addr: int, objects: list[bytes], sq: bool = False, count: int | None = None,
         negative: bool = False, test: bool = False, originator: int = 0) -> bytes:
    """Type identification, variable structure qualifier, cause of transmission (P/N and test bits, originator
    address), common address, then the information objects (with SQ, one address and the elements)."""
    vsq = (0x80 if sq else 0) | (len(objects) if count is None else count)
    cot = cause | (0x40 if negative else 0) | (0x80 if test else 0)
    return bytes([type_id, vsq, cot, originator]) + struct.pack("<H", addr) + b"".join(objects)


def io(address: int, element: bytes) -> bytes:
    return address.to_bytes(3, "little") + element


def cp56(minute: int = 30, hour: int = 12, day: int = 15, month: int = 6, year: int = 24, ms: int = 12345) -> bytes:
    return struct.pack("<HBBBBB", ms, minute, hour, day, month, year)


FORMATS = {"I": "0x00000000", "S": "0x00000001", "U": "0x00000003"}


def want(formats: str, *asdus: tuple[int, ...], utypes: tuple[int, ...] = ()) -> Fields:
    """What tshark prints for APDUs of ``formats`` (letters I, S, U), U functions ``utypes`` and ASDUs given as
    (type identification[, cause[, common address]]) in order."""
    out: Fields = {"iec60870_104_type": [FORMATS[f] for f in formats]}
    if utypes:
        out["iec60870_104_utype"] = [f"0x{u:08x}" for u in utypes]
    for key, index in (("iec60870_asdu_typeid", 0), ("iec60870_asdu_causetx", 1), ("iec60870_asdu_addr", 2)):
        values = [str(a[index]) for a in asdus if len(a) > index]
        if values:
            out[key] = values
    return out


# --- pcap, oracle, driver ------------------------------------------------------------------------------------------

class Session(TcpSession):
    """A connection from a client's port to 2404 (with its handshake unless told)."""

    def __init__(self, out: list[Any], client: str, server: str, cport: int, handshake: bool = True) -> None:
        super().__init__(out, client, server, cport, PORT, handshake)


@functools.cache
def tshark_fields(pcap: Path) -> Frames:
    """What tshark prints, by frame number: the analyzer's command (its display filter, fields and the pipeline's
    preferences); frames with the protocol but none of the fields are left out."""
    return ek_fields(build_command(needs_tshark(), pcap, Iec104Analyzer.FILTER,
                                   ("frame.number", *Iec104Analyzer.FIELDS)))


def reader_fields(pcap: Path) -> tuple[Frames, list[Iec104Reader]]:
    """What the reader gives, by frame number (one reader per connection), and the readers."""
    readers: list[Iec104Reader] = []

    def new_reader(_client: Endpoint, _server: Endpoint) -> Iec104Reader:
        readers.append(Iec104Reader())
        return readers[-1]

    return read_port(pcap, PORT, new_reader)[0], readers


def differences(pcap: Path, skip: set[int]) -> tuple[int, list[tuple[int, Fields | None, Fields | None]],
                                                      list[Iec104Reader]]:
    """(frames tshark prints fields for, [(frame, tshark's, the reader's)] that differ, the readers); the frames in
    ``skip`` (named differences) are not compared."""
    expected = tshark_fields(pcap)
    got, readers = reader_fields(pcap)
    frames = sorted((set(expected) | set(got)) - skip)
    diff = [(n, expected.get(n), got.get(n)) for n in frames if expected.get(n) != got.get(n)]
    return len(expected), diff, readers


# --- 1. a generated capture ----------------------------------------------------------------------------------------

def f13(value: float, quality: int = 0) -> bytes:
    """A short floating point value and its quality descriptor (M_ME_NC_1, C_SE_NC_1's with the QOS)."""
    return struct.pack("<fB", value, quality)


def labelled_cases(out: list[Any]) -> tuple[Cases, Cases, set[int]]:
    """Sessions with one case per behaviour: label -> (frame, what tshark prints for it; None: nothing); then the
    cases where the reader differs by name (label -> (frame, what the reader gives)) and their connection's frames."""
    cases: Cases = {}

    def case(label: str, frame: int, fields: Fields | None) -> None:
        cases[label] = (frame, fields)

    # a controlling station and a controlled station (common address 1)
    s = Session(out, "198.18.0.10", "198.19.0.20", 50001)
    case("STARTDT act", s.client(STARTDT_ACT), want("U", utypes=(1,)))
    case("STARTDT con", s.server(STARTDT_CON), want("U", utypes=(2,)))
    case("general interrogation (100, act)", s.client(i_frame(asdu(100, 6, 1, [io(0, b"\x14")]))),
         want("I", (100, 6, 1)))
    case("its confirmation (100, actcon)", s.server(i_frame(asdu(100, 7, 1, [io(0, b"\x14")]), 0, 1)),
         want("I", (100, 7, 1)))
    case("single points: three information objects, one ASDU (1, inrogen)", s.server(i_frame(
        asdu(1, 20, 1, [io(1001, b"\x01"), io(1002, b"\x00"), io(1005, b"\x81")]), 1, 1)), want("I", (1, 20, 1)))
    case("double points as a sequence (3, SQ=1)", s.server(i_frame(
        asdu(3, 20, 1, [io(2001, b"\x01\x02\x02\x01")], sq=True, count=4), 2, 1)), want("I", (3, 20, 1)))
    case("measured values 9, 11, 13: three APDUs in one segment", s.server(
        i_frame(asdu(9, 20, 1, [io(3001, struct.pack("<hB", 16384, 0))]), 3, 1)
        + i_frame(asdu(11, 20, 1, [io(3002, struct.pack("<hB", -200, 0)), io(3003, struct.pack("<hB", 7, 0x80))]),
                  4, 1)
        + i_frame(asdu(13, 20, 1, [io(3004, f13(49.98))]), 5, 1)), want("III", (9, 20, 1), (11, 20, 1), (13, 20, 1)))
    case("S-format acknowledging them", s.client(s_frame(6)), want("S"))
    case("interrogation terminated (100, actterm)", s.server(i_frame(asdu(100, 10, 1, [io(0, b"\x14")]), 6, 1)),
         want("I", (100, 10, 1)))
    case("spontaneous 30, 31, 36 with CP56Time2a", s.server(
        i_frame(asdu(30, 3, 1, [io(1001, b"\x00" + cp56())]), 7, 1)
        + i_frame(asdu(31, 3, 1, [io(2001, b"\x02" + cp56(ms=500))]), 8, 1)
        + i_frame(asdu(36, 3, 1, [io(3004, f13(50.02) + cp56())]), 9, 1)), want("III", (30, 3, 1), (31, 3, 1),
                                                                                  (36, 3, 1)))
    case("TESTFR act", s.client(TESTFR_ACT), want("U", utypes=(0x10,)))
    case("TESTFR con", s.server(TESTFR_CON), want("U", utypes=(0x20,)))
    case("single command, select (45, act)", s.client(i_frame(asdu(45, 6, 1, [io(5001, b"\x81")]), 1, 10)),
         want("I", (45, 6, 1)))
    case("its confirmation (45, actcon)", s.server(i_frame(asdu(45, 7, 1, [io(5001, b"\x81")]), 10, 2)),
         want("I", (45, 7, 1)))
    case("execute and a double command (45, 46) in one segment", s.client(
        i_frame(asdu(45, 6, 1, [io(5001, b"\x01")]), 2, 11) + i_frame(asdu(46, 6, 1, [io(5002, b"\x02")]), 3, 11)),
        want("II", (45, 6, 1), (46, 6, 1)))
    case("negative confirmation: causetx is the 6-bit cause (46, actcon, P/N=1)", s.server(
        i_frame(asdu(46, 7, 1, [io(5002, b"\x02")], negative=True), 11, 4)), want("I", (46, 7, 1)))
    case("set points 48, 49, 50", s.client(
        i_frame(asdu(48, 6, 1, [io(6001, struct.pack("<hB", 8192, 0))]), 4, 12)
        + i_frame(asdu(49, 6, 1, [io(6002, struct.pack("<hB", 1500, 0))]), 5, 12)
        + i_frame(asdu(50, 6, 1, [io(6003, f13(12.5))]), 6, 12)), want("III", (48, 6, 1), (49, 6, 1), (50, 6, 1)))
    case("test bit: not in causetx either (58, single command with time tag)", s.client(
        i_frame(asdu(58, 6, 1, [io(5001, b"\x01" + cp56())], test=True), 7, 12)), want("I", (58, 6, 1)))
    case("unknown object address with both bits (45, cause 47)", s.server(
        i_frame(asdu(45, 47, 1, [io(5009, b"\x01")], negative=True, test=True), 12, 8)), want("I", (45, 47, 1)))
    case("clock synchronisation (103) to the broadcast address", s.client(
        i_frame(asdu(103, 6, 0xFFFF, [io(0, cp56())]), 8, 13)), want("I", (103, 6, 65535)))
    case("read command (102, an address only)", s.client(i_frame(asdu(102, 5, 1, [io(3004, b"")]), 9, 13)),
         want("I", (102, 5, 1)))
    case("unknown type identification 200, common address 0x1234", s.server(
        i_frame(asdu(200, 3, 0x1234, [io(1, b"\xaa\xbb")]), 13, 10)), want("I", (200, 3, 4660)))
    measured = i_frame(asdu(13, 3, 1, [io(3004, f13(50.0))]), 14, 10)
    case("APDU split after its APCI: nothing yet", s.server(measured[:6]), None)
    case("the frame completing it has it", s.server(measured[6:]), want("I", (13, 3, 1)))
    case("split in three, the first parts shorter than 6 bytes", s.server(measured[:3]), None)
    s.server(measured[3:5])
    case("the third part completes it", s.server(measured[5:]), want("I", (13, 3, 1)))
    first, second = i_frame(asdu(9, 3, 1, [io(3001, b"\x00\x40\x00")]), 15, 10), s_frame(20)
    s.server(first[:10])
    case("a segment completing one APDU and starting the next", s.server(first[10:] + second[:4]),
         want("I", (9, 3, 1)))
    case("the next segment completes the second", s.server(second[4:]), want("S"))
    longest = i_frame(asdu(13, 1, 1, [io(4000, b"".join(f13(k) for k in range(48)))], sq=True, count=48), 16, 10)
    assert len(longest) == 255
    for i in range(0, 190, 64):
        s.server(longest[i:i + 64])
    case("the longest APDU (length 253) over four segments", s.server(longest[192:]), want("I", (13, 1, 1)))
    command = i_frame(asdu(45, 6, 1, [io(5001, b"\x01")]), 10, 17)
    s.client(command[:8])
    s.server(measured[:9])
    case("both directions under reassembly at once: the client's", s.client(command[8:]), want("I", (45, 6, 1)))
    case("both directions under reassembly at once: the server's", s.server(measured[9:]), want("I", (13, 3, 1)))
    case("STOPDT act", s.client(STOPDT_ACT), want("U", utypes=(4,)))
    case("STOPDT con", s.server(STOPDT_CON), want("U", utypes=(8,)))
    s.close()

    # what tshark does with damaged data
    d = Session(out, "198.18.1.10", "198.19.1.20", 50002)
    S = s_frame(1)
    case("garbage before the 0x68 at a segment's start: skipped", d.client(b"\x00\x11\x22" + S), want("S"))
    case("a segment without 0x68: nothing", d.client(bytes(range(1, 40))), None)
    case("the next segment is read afresh", d.client(S), want("S"))
    case("garbage between two APDUs: skipped with the second", d.client(S + b"\x01\x02" + S), want("SS"))
    case("0x68 as a segment's last byte: nothing", d.client(b"\x01\x02\x03\x04\x05\x06\x68"), None)
    case("and it is not kept", d.client(b"\x04\x01\x00\x02\x00" + S), want("S"))
    case("length octet below 4: skipped with the bytes before it (6 in all), the walk goes on",
         d.client(b"\x00\x00\x68\x02\xaa\xbb" + S), want("S"))
    case("the length counts from the walk's position, not from the 0x68: the next APDU loses 2 bytes to it",
         d.client(b"\x00\x00\x68\x02" + S + S), want("S"))
    case("an APDU ending less than 6 bytes after the walk's position: the rest is lost",
         d.client(S + b"\x68\x03\x01\x00\x00" + S), want("S"))
    case("length octet 0 at a segment's start: all lost", d.client(b"\x68\x00\x00\x00\x00\x00" + S), None)
    case("I-format of length 4: type only", d.client(i_frame(b"")), want("I"))
    case("S-format with more octets: type only", d.client(apdu(b"\x01\x00\x02\x00", b"\xaa\xbb")), want("S"))
    case("U-format without a function", d.client(u_frame(0)), want("U", utypes=(0,)))
    case("U-format with all function bits", d.server(u_frame(0x3F)), want("U", utypes=(0x3F,)))
    case("U-format, bits set in control octets 2-4", d.server(u_frame(1, b"\xff\xff\xff")), want("U", utypes=(1,)))
    case("length 255 (the specification's maximum is 253)", d.server(apdu(b"\x43\x00\x00\x00", bytes(251))),
         want("U", utypes=(0x10,)))
    case("I-format of length 254", d.server(i_frame(asdu(1, 3, 1, [io(1, b"\x01")]) + bytes(240))),
         want("I", (1, 3, 1)))
    case("ASDU of 1 octet: type identification only", d.server(i_frame(b"\x2d")), want("I", (45,)))
    case("ASDU of 5 octets: type identification and cause", d.server(i_frame(asdu(45, 6, 1, [])[:5])),
         want("I", (45, 6)))
    case("ASDU of 8 octets: all three (tshark throws at the object address)",
         d.server(i_frame(asdu(45, 6, 1, [b"\x01\x00"]))), want("I", (45, 6, 1)))
    case("objects past the ASDU's end: all three (tshark throws)",
         d.server(i_frame(asdu(1, 3, 1, [io(1, b"\x01")], count=5))), want("I", (1, 3, 1)))
    short, good = i_frame(asdu(45, 6, 1, [])), i_frame(asdu(13, 3, 1, [io(3004, f13(1.0))]))
    case("after a throw, an APDU going on into the next segment is read cut short",
         d.client(short + good[:10]), want("II", (45, 6, 1), (13, 3)))
    case("and the rest of it is fresh data, skipped to the first 0x68", d.client(good[10:] + S), want("S"))
    case("after a throw, fewer than 6 bytes left are not kept", d.client(short + good[:4]), want("I", (45, 6, 1)))
    case("so the next segment has no 0x68: nothing", d.client(good[4:]), None)
    case("without a throw the same split is reassembled", d.client(S + good[:10]), want("S"))
    case("completed in the next segment", d.client(good[10:] + S), want("IS", (13, 3, 1)))
    d.client(short[:7])
    case("a throw in a reassembled APDU: the rest of its segment is read anew", d.client(short[7:] + S + good[:8]),
         want("IS", (45, 6, 1)))
    case("and reassembles", d.client(good[8:]), want("I", (13, 3, 1)))
    case("an I-format without ASDU throws too", d.server(i_frame(b"") + good[:9]), want("II", (13, 3)))
    case("the rest of it: nothing", d.server(good[9:]), None)
    case("DICOM's A-ASSOCIATE-RQ bytes: no heuristic dissector takes the connection",
         d.client(b"\x01\x00\x00\x00\x00\x40\x00\x01\x00\x00"), None)
    case("IEC-104 goes on", d.client(i_frame(asdu(45, 6, 1, [io(5001, b"\x01")]))), want("I", (45, 6, 1)))

    # LOWER_PORT: no handshake, client port 102 (TPKT's): tshark reads TPKT "continuation", the reader IEC-104
    ours: Cases = {}
    opening = len(out) + 1
    lower = Session(out, LOWER_PORT_CLIENT[0], "198.19.4.20", LOWER_PORT_CLIENT[1], handshake=False)
    for label, frame, fields in (
            (f"{LOWER_PORT}: STARTDT act", lower.client(STARTDT_ACT), want("U", utypes=(1,))),
            (f"{LOWER_PORT}: STARTDT con", lower.server(STARTDT_CON), want("U", utypes=(2,))),
            (f"{LOWER_PORT}: interrogation", lower.client(i_frame(asdu(100, 6, 1, [io(0, b"\x14")]))),
             want("I", (100, 6, 1)))):
        case(label, frame, None)
        ours[label] = (frame, fields)
    return cases, ours, set(range(opening, len(out) + 1))


def probe_sizes(type_id: int) -> tuple[int, bool, list[int]]:
    """(objects, SQ, ASDU sizes around where tshark starts to throw no more) for a type identification."""
    count, sq = 1 + type_id % 3, bool(type_id & 4)
    element = DATA_LENGTH[type_id]
    if element < 0:
        return count, sq, [8, 9]
    need = 9 + count * element if sq else 6 + count * (3 + element)
    return count, sq, [need - 1, need]


def type_probes(s: Session) -> None:
    """For every type identification, an ASDU one octet short of what tshark reads without throwing, and one of
    that size; each followed by an APDU's start in the same segment (read cut short after a throw)."""
    tail = i_frame(asdu(13, 3, 1, [io(3004, f13(1.0))]))
    rest = b""
    for type_id in range(256):
        count, sq, sizes = probe_sizes(type_id)
        for size in sizes:
            head = bytes([type_id, (0x80 if sq else 0) | count, 3, 0, 1, 0])
            s.client(rest + i_frame((head + bytes(range(1, size)))[:size]) + tail[:10])
            rest = tail[10:]
    s.client(rest)


KNOWN_TYPES = [t for t in range(256) if DATA_LENGTH[t] >= 0]


def random_asdu(rng: random.Random) -> bytes:
    """A random ASDU: mostly a type tshark decodes, random objects, sometimes cut or with bytes to spare."""
    type_id = rng.choice(KNOWN_TYPES) if rng.random() < 0.75 else rng.randrange(256)
    element = DATA_LENGTH[type_id] if DATA_LENGTH[type_id] >= 0 else rng.randrange(1, 12)
    sq = rng.random() < 0.3
    count = rng.choice((1, 1, 1, 2, 3, 5)) if rng.random() < 0.95 else rng.choice((0, 40, 127))
    objects = [rng.randbytes(3 + element * count)] if sq else [rng.randbytes(3 + element) for _ in range(count)]
    data = asdu(type_id, rng.randrange(64), rng.randrange(65536), objects, sq=sq, negative=rng.random() < 0.1,
                test=rng.random() < 0.1, originator=rng.randrange(256))[:249]
    r = rng.random()
    if r < 0.2:
        data = data[:rng.randrange(len(data) + 1)]
    elif r < 0.3:
        data += rng.randbytes(rng.randrange(1, 6))
    return data[:251]  # length octet 255 at most


def random_unit(rng: random.Random, mode: str) -> bytes:
    if mode == "i":
        return i_frame(random_asdu(rng), rng.randrange(32768), rng.randrange(32768))
    if mode == "s":
        return s_frame(rng.randrange(32768))
    if mode == "u":
        return u_frame(rng.choice((1, 2, 4, 8, 16, 32)) if rng.random() < 0.9 else rng.randrange(64))
    if mode == "garbage":
        return rng.randbytes(rng.choice((1, 2, 5, 6, 7, 20)))
    if mode == "length":
        return bytes([0x68, rng.randrange(4)]) + rng.randbytes(rng.randrange(6))
    if mode == "prefix":
        return rng.randbytes(rng.randrange(1, 4)) + random_unit(rng, rng.choice(("i", "s", "u")))
    return apdu(rng.randbytes(4), rng.randbytes(rng.randrange(246, 252)))  # "long": length octet 250-255


def random_session(rng: random.Random, s: Session, units: int, modes: tuple[str, ...], cut: float) -> None:
    """Seeded traffic: random units, cut into segments at random, several in a segment, one byte at a time;
    ``quirk`` units put a throwing ASDU before the first part of an APDU that goes on into the next segment."""
    queues: list[list[bytes]] = [[], []]
    for _ in range(units):
        side = rng.randrange(2)
        mode = rng.choice(modes)
        if mode == "quirk":
            whole = random_unit(rng, rng.choice(("i", "i", "s", "u")))
            split = rng.randrange(1, len(whole))
            queues[side] += [i_frame(asdu(rng.choice(KNOWN_TYPES), 3, 1, [])[:rng.randrange(9)]) + whole[:split],
                             whole[split:]]
            continue
        data = random_unit(rng, mode)
        if rng.random() < cut:
            pos = 0
            while pos < len(data):
                step = rng.choice((1, 1, 2, 3, 5, 6, 7, 10, 30, 100))
                queues[side].append(data[pos:pos + step])
                pos += step
        elif rng.random() < 0.3 and queues[side]:
            queues[side][-1] += data
        else:
            queues[side].append(data)
    while queues[0] or queues[1]:
        side = rng.randrange(2) if queues[0] and queues[1] else int(not queues[0])
        s.send(side, queues[side].pop(0))


MIXED = ("i",) * 10 + ("s", "s", "u", "u", "garbage", "length", "prefix", "long", "quirk", "quirk")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    from scapy.utils import wrpcap

    out: list[Any] = []
    cases, ours, skip = labelled_cases(out)
    type_probes(Session(out, "198.18.2.10", "198.19.2.20", 50003))
    rng = random.Random(2404)
    for n, (units, modes, cut) in enumerate(((250, MIXED, 0.3), (150, MIXED, 0.7), (200, ("i", "s", "u"), 0.2))):
        random_session(rng, Session(out, f"198.18.3.{n + 1}", f"198.19.3.{n + 1}", 50100 + n), units, modes, cut)
    pcap = tmp_path_factory.mktemp("iec104") / "generated.pcap"
    wrpcap(str(pcap), out)
    return pcap, cases, ours, skip


def test_labelled_cases_are_tsharks(generated: Generated) -> None:
    """The labelled cases say what tshark prints; the reader prints the same (test below) but where named."""
    needs_tshark()  # the oracle: without it these tests fail (in the test, not as a fixture error)
    pcap, cases, ours, _skip = generated
    expected = tshark_fields(pcap)
    wrong = {label: (frame, expected.get(frame), fields) for label, (frame, fields) in cases.items()
             if expected.get(frame) != fields}
    assert wrong == {}
    got, _readers = reader_fields(pcap)
    assert {label: got.get(frame) for label, (frame, _fields) in ours.items()} == \
        {label: fields for label, (_frame, fields) in ours.items()}


def test_generated_capture_equals_tshark(generated: Generated) -> None:
    needs_tshark()
    pcap, _cases, _ours, skip = generated
    compared, diff, readers = differences(pcap, skip)
    assert diff == []
    assert compared >= 900, compared
    stats = [r.stats for r in readers]
    # the behaviours the random sessions are there for did occur
    assert sum(s.truncated for s in stats) >= 30 and sum(s.short_asdus for s in stats) >= 100
    assert sum(s.malformed for s in stats) > sum(s.truncated + s.short_asdus for s in stats)


def test_fields_feed_the_analyzer() -> None:
    """The reader's keys are the ones Iec104Analyzer reads through Packet, and it makes its documents of them."""
    reader = Iec104Reader()
    reader.feed(True, STARTDT_ACT + i_frame(asdu(45, 6, 1, [io(5001, b"\x01")])) + s_frame(3))
    fields = reader.take()
    assert set(fields) == {ek_key(f) for f in Iec104Analyzer.FIELDS}
    base = {"ip_src": ["198.18.0.10"], "ip_dst": ["198.19.0.20"], "tcp_srcport": ["50001"], "tcp_dstport": ["2404"],
            "tcp_stream": ["0"], "frame_time_epoch": ["1700000000.0"], "tcp_seq_raw": ["1000"]}
    pkt = Packet({**base, **fields}, ["eth", "ethertype", "ip", "tcp", "iec60870_104", "iec60870_asdu"])
    docs = list(Iec104Analyzer(lambda _m: None).handle(pkt))
    rows = [(d["secops"]["iec104"]["apdu_type"], d["secops"]["iec104"]["type"], d["secops"]["iec104"].get("cause"))
            for d in docs]
    assert rows == [("I", "C_SC_NA_1", "act"), ("U", "STARTDT act", None)]


# --- 2. hostile input ----------------------------------------------------------------------------------------------

def check_bounds(reader: Iec104Reader) -> None:
    for side in reader.sides:
        if side.need == 0:
            assert side.pending == b""
        elif side.need == ONE_MORE:
            assert 0 < len(side.pending) < HEADER
        else:
            assert 2 <= side.need <= MAX_APDU and len(side.pending) < side.need and side.pending[0] == 0x68


def merged(parts: list[Fields]) -> Fields:
    out: Fields = {}
    for fields in parts:
        for key, values in fields.items():
            out.setdefault(key, []).extend(values)
    return out


def valid_apdus(rng: random.Random, n: int) -> list[bytes]:
    """APDUs tshark reads without throwing: exact information objects, S- and U-formats."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.15:
            out.append(s_frame(rng.randrange(32768)))
        elif r < 0.3:
            out.append(u_frame(rng.choice((1, 2, 4, 8, 16, 32))))
        else:
            type_id = rng.choice(KNOWN_TYPES)
            count = rng.randrange(1, 4)
            objects = [io(rng.randrange(1 << 24), rng.randbytes(DATA_LENGTH[type_id])) for _ in range(count)]
            out.append(i_frame(asdu(type_id, rng.randrange(64), rng.randrange(65536), objects), rng.randrange(32768)))
    return out


def read(chunks: Sequence[bytes | int]) -> tuple[Fields, Iec104Reader]:
    reader = Iec104Reader()
    parts = []
    for chunk in chunks:
        reader.feed(True, chunk)
        parts.append(reader.take())
        check_bounds(reader)
    return merged(parts), reader


def test_random_streams_never_raise_and_stay_bounded() -> None:
    rng = random.Random(7)
    for _ in range(400):
        reader = Iec104Reader()
        for _ in range(rng.randrange(1, 40)):
            r = rng.random()
            if r < 0.05:
                chunk: bytes | int = rng.randrange(1, 5000)
            elif r < 0.35:
                chunk = rng.randbytes(rng.randrange(0, 400))
            elif r < 0.6:  # start octets everywhere, so lengths and formats are reached
                chunk = bytes(0x68 if rng.random() < 0.2 else rng.randrange(256) for _ in range(rng.randrange(40)))
            else:
                unit = random_unit(rng, rng.choice(MIXED[:-2]))
                chunk = unit[rng.randrange(len(unit)):] if rng.random() < 0.3 else unit
            reader.feed(rng.random() < 0.5, chunk)
            if rng.random() < 0.5:
                fields = reader.take()
                assert all(isinstance(v, str) for vs in fields.values() for v in vs)
            check_bounds(reader)


def test_valid_stream_gives_the_same_fields_however_it_is_cut() -> None:
    rng = random.Random(8)
    apdus = valid_apdus(rng, 40)
    stream = b"".join(apdus)
    whole, reader = read([stream])
    assert len(whole["iec60870_104_type"]) == 40 and reader.stats.malformed == 0
    assert read(list(stream[i:i + 1] for i in range(len(stream))))[0] == whole
    for cut in range(1, len(stream)):
        assert read([stream[:cut], stream[cut:]])[0] == whole
    for _ in range(50):
        chunks, pos = [], 0
        while pos < len(stream):
            step = rng.randrange(1, 300)
            chunks.append(stream[pos:pos + step])
            pos += step
        assert read(chunks)[0] == whole


def test_truncated_stream_gives_the_apdus_it_holds() -> None:
    apdus = valid_apdus(random.Random(9), 25)
    stream = b"".join(apdus)
    ends = [sum(len(a) for a in apdus[:k + 1]) for k in range(len(apdus))]
    whole = read([stream])[0]
    for cut in range(len(stream) + 1):
        got = read([stream[:cut]])[0]
        assert len(got.get("iec60870_104_type", [])) == sum(1 for e in ends if e <= cut)
        assert all(values == whole[key][:len(values)] for key, values in got.items())


def test_a_throw_stops_reassembly_for_the_rest_of_the_segment() -> None:
    """tshark's quirk: whole, the stream gives every APDU; cut after a throwing ASDU (one of 6 octets), the next
    APDU is read cut short and its rest is fresh data."""
    short, good = i_frame(asdu(45, 6, 1, [])), i_frame(asdu(13, 3, 7, [io(3004, f13(1.0))]))
    both = want("II", (45, 6, 1), (13, 3, 7))
    assert read([short + good])[0] == both
    assert read([short, good[:10], good[10:]])[0] == both  # the throw's segment ends before the APDU: no quirk
    got, reader = read([short + good[:10], good[10:]])
    assert got == want("II", (45, 6, 1), (13, 3))
    assert (reader.stats.short_asdus, reader.stats.truncated) == (1, 1)
    assert read([short + good[:4], good[4:] + s_frame(1)])[0] == want("IS", (45, 6, 1))


def test_lost_data_drops_the_partial_apdu_and_reads_on() -> None:
    """LOST_DATA: the APDU under reassembly is dropped; the next chunk is read as a segment's fresh start."""
    good = i_frame(asdu(13, 3, 7, [io(3004, f13(1.0))]))
    got, reader = read([good[:10], 6, good[16:] + s_frame(1), good[:3], 100, good])
    assert got == want("SI", (13, 3, 7))
    assert (reader.stats.hole_bytes, reader.stats.dropped_bytes) == (106, 13)
    reader.feed(False, 10)  # a hole with nothing waiting
    assert reader.take() == {}


def test_buffers_are_bounded() -> None:
    reader = Iec104Reader()
    longest = apdu(b"\x43\x00\x00\x00", bytes(251))
    assert len(longest) == MAX_APDU
    for i in range(MAX_APDU - 1):
        reader.feed(True, longest[i:i + 1])
        check_bounds(reader)
        assert reader.take() == {}
    reader.feed(True, longest[-1:])
    assert reader.take() == want("U", utypes=(0x10,))
    for _ in range(2000):  # garbage a byte at a time: fewer than 6 bytes wait
        reader.feed(True, b"\x00")
        check_bounds(reader)
    reader.feed(False, b"\x00" * 1000 + b"\x68\xfd" + bytes(100))  # a prefix is not kept with the partial APDU
    assert len(reader.sides[1].pending) == 102 and reader.sides[1].need == 255
    assert reader.stats.skipped_bytes == 2000 // 6 * 6 + 1000


def test_stats_count_what_tshark_skips() -> None:
    reader = Iec104Reader()
    reader.feed(True, b"\x01\x02\x03\x04\x05\x06\x07")  # no start octet
    reader.feed(True, b"\x00\x00\x68\x02\x00\x00")  # an APDU with length octet 2 (6 bytes with the prefix)
    reader.feed(True, s_frame(1) + b"\x68\x01\x00\x00\x00\x00")  # an APDU of 3 bytes: the rest lost
    reader.feed(True, i_frame(b"\x01\x01\x03"))  # a short ASDU
    stats = reader.stats
    assert (stats.malformed, stats.short_asdus, stats.truncated, stats.apdus, stats.asdus) == (4, 1, 0, 2, 1)
    assert reader.take() == want("SI", (1, 3))
