"""The native ICS readers (``modbus_wire``, ``dnp3_wire``, ``s7comm_wire``, ``iec104_wire``) and their analyzers, on
one connection's reassembled bytes, as ``native_tcp`` pairs them.

Input: one byte choosing the reader (modulo 4: Modbus, DNP3, S7comm, IEC-104), then chunks in the framing of
``seeds.pack_frames``: one byte of flags (bit 0: from the server, bit 1: a hole whose size is the next two bytes
instead of data), then the bytes. Contract: nothing raises; after each frame the fields are lists of strings in
tshark's shape (Modbus: one transaction, unit and function per PDU; DNP3: at most one IIN per function; IEC-104: at
most one type identification per I-format APDU, one function per U-format APDU); what a
reader holds stays within its bounds; the analyzer's documents serialise and hold no string longer than
``MAX_VALUE_CHARS``.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from collectors.decode import BUF, CAPLEN, DPORT, L4OFF, PLEN, PROTO, SPORT, TCP, Decoder
from collectors.pcapio import read_capture
from collectors.protocols.dnp3_wire import MAX_FRAME, MAX_TABLE_BYTES, Dnp3Reader
from collectors.protocols.documents import fits
from collectors.protocols.iec104_wire import HEADER, MAX_APDU, Iec104Reader
from collectors.protocols.modbus_wire import ModbusReader
from collectors.protocols.native_tcp import (
    DNP3,
    ICS_ANALYZERS,
    ICS_LAYERS,
    ICS_READERS,
    IEC104,
    MODBUS,
    S7COMM,
    IcsReader,
)
from collectors.protocols.s7comm_wire import KEEP, MAX_REASSEMBLIES, S7commReader
from collectors.protocols.tshark import tcp_packet
from tests.fuzz.seeds import pack_frames, unpack_frames

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata"
CAPTURES = {0: ["attacks/ics/modbus/modbus-eit.pcap", "zeek/traces/modbus/modbus-and-non-modbus-p502.pcap"],
            1: ["attacks/ics/dnp3/dnp3.pcap", "attacks/ics/dnp3/dnp3_select_operate.pcap"],
            2: ["attacks/ics/s7comm/snap7.pcap", "attacks/ics/s7comm/s7comm_plus.pcap"]}  # no shared IEC-104 capture
KINDS = (MODBUS, DNP3, S7COMM, IEC104)
PORTS = (502, 20000, 102, 2404)


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    kind = data[0] % len(KINDS)
    reader = ICS_READERS[KINDS[kind]]()
    analyzer = ICS_ANALYZERS[KINDS[kind]](lambda _text: None)
    docs: list[dict] = []
    for i, chunk in enumerate(unpack_frames(data[1:])):
        if not chunk:
            continue
        from_client = not chunk[0] & 1
        reader.feed(from_client, int.from_bytes(chunk[1:3], "big") or 1 if chunk[0] & 2 else chunk[1:])
        fields = reader.take()
        assert all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in fields.values())
        if kind == 0 and fields:
            assert len(fields["mbtcp_trans_id"]) == len(fields["mbtcp_unit_id"]) == len(fields["modbus_func_code"])
            assert len(fields.get("modbus_exception_code", ())) <= len(fields["modbus_func_code"])
        if kind == 1 and fields:
            assert len(fields.get("dnp3_al_iin", ())) <= len(fields["dnp3_al_func"])
        if kind == 3 and fields:
            formats = fields["iec60870_104_type"]
            assert len(fields.get("iec60870_asdu_typeid", ())) <= formats.count("0x00000000")
            assert len(fields.get("iec60870_104_utype", ())) == formats.count("0x00000003")
        check_bounds(reader)
        if fields:
            src, dst = ("198.18.0.1", "198.18.0.2") if from_client else ("198.18.0.2", "198.18.0.1")
            sport, dport = (40000, PORTS[kind]) if from_client else (PORTS[kind], 40000)
            fields["tcp_seq_raw"] = [str(i)]
            docs += analyzer.handle(tcp_packet(1000.0 + i, src, dst, sport, dport, "0", fields,
                                               ICS_LAYERS[KINDS[kind]]))
    docs += analyzer.finish()
    for doc in docs:
        orjson.dumps(doc)
        assert fits(doc)


def check_bounds(reader: IcsReader) -> None:
    if isinstance(reader, ModbusReader):
        assert all(len(side.pending) < 6 + 65536 for side in reader.sides)
    elif isinstance(reader, Dnp3Reader):
        assert all(len(d.pending) <= MAX_FRAME for d in reader.dirs)
        assert all(table.bytes <= MAX_TABLE_BYTES for table in reader.tables)
    elif isinstance(reader, S7commReader):
        assert all(side.pending_len < 4 + 65536 and len(side.tsdus) <= MAX_REASSEMBLIES for side in reader.sides)
        assert all(t.kept <= KEEP for side in reader.sides for t in side.tsdus.values())
    elif isinstance(reader, Iec104Reader):
        assert all(len(side.pending) <= max(MAX_APDU, HEADER) for side in reader.sides)


def seeds() -> list[bytes]:
    """Each reader's protocol in the shared captures, one connection's payloads in capture order (which side sent
    each), cut as TCP cut them; and once more with every payload split in two."""
    out = []
    decoder = Decoder()
    for kind, names in CAPTURES.items():
        chunks: list[bytes] = []
        for name in names:
            path = TESTDATA / name
            if not path.is_file():
                continue
            for _ts, linktype, buf, off, caplen, _wire in read_capture(path):
                pkts = decoder.decode(linktype, buf, off, caplen)
                if not pkts or pkts[-1][PROTO] != TCP or pkts[-1][PLEN] <= 0:
                    continue
                p = pkts[-1]
                if PORTS[kind] not in (p[SPORT], p[DPORT]):
                    continue
                b, l4 = p[BUF], p[L4OFF]
                start = l4 + (b[l4 + 12] >> 4) * 4
                payload = bytes(b[start:start + min(p[CAPLEN], p[PLEN])])
                chunks.append(bytes([p[SPORT] == PORTS[kind]]) + payload)
                if len(chunks) >= 60:
                    break
        if chunks:
            out.append(bytes([kind]) + pack_frames(chunks))
            halves = [c[:1] + part for c in chunks for part in (c[1:len(c) // 2 + 1], c[len(c) // 2 + 1:]) if part]
            out.append(bytes([kind]) + pack_frames(halves))
    # IEC-104 (no shared capture): STARTDT act/con, an interrogation and its confirmation, a measurement with a
    # time tag, an S-frame, all in one segment and then one APDU per segment
    apdus = [b"\x68\x04\x07\x00\x00\x00", b"\x68\x04\x0b\x00\x00\x00",
             b"\x68\x0e\x00\x00\x00\x00\x64\x01\x06\x00\x01\x00\x00\x00\x00\x14",
             b"\x68\x0e\x00\x00\x02\x00\x64\x01\x07\x00\x01\x00\x00\x00\x00\x14",
             b"\x68\x15\x02\x00\x02\x00\x1e\x01\x03\x00\x01\x00\x01\x00\x00\x01" + bytes(7),
             b"\x68\x04\x01\x00\x04\x00"]
    sides = [0, 1, 0, 1, 1, 0]
    out.append(bytes([3]) + pack_frames([bytes([0]) + b"".join(apdus)]))
    out.append(bytes([3]) + pack_frames([bytes([side]) + apdu for side, apdu in zip(sides, apdus, strict=True)]))
    return out
