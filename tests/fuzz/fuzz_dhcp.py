"""BOOTP/DHCP messages (``collectors.protocols.dhcp_wire``) through the DHCP analyzer, as the analyzer processes read
them natively.

Input: datagrams in the framing of ``seeds.pack_frames``, each one byte of direction (bit 0: from the server) and its
payload. Contract: nothing raises; every value is one tshark could print (an id of ten characters, dotted addresses,
a colon-separated MAC, decimal integers, strings without NUL); a transaction's message types stay bounded; every
document serialises.
"""

from __future__ import annotations

import orjson

from collectors.protocols.dhcp import MAX_MESSAGES, DhcpAnalyzer
from collectors.protocols.dhcp_wire import dhcp_fields
from collectors.protocols.tshark import udp_packet
from tests.fuzz.seeds import pack_frames, unpack_frames

CLIENT, SERVER = ("198.18.0.20", 68), ("198.18.0.1", 67)


def TestOneInput(data: bytes) -> None:
    analyzer = DhcpAnalyzer(warn=lambda _text: None)
    docs = []
    for i, frame in enumerate(unpack_frames(data)):
        if not frame:
            continue
        fields = dhcp_fields(frame[1:])
        if fields is None:
            continue
        for name, values in fields.items():
            assert values and all(isinstance(v, str) and "\0" not in v for v in values), (name, values)
        assert all(len(v) == 10 and v.startswith("0x") for v in fields.get("dhcp_id", []))
        assert all(len(v.split(".")) == 4 for v in fields.get("dhcp_option_dhcp_server_id", []))
        assert all(v.isdigit() for v in fields.get("dhcp_option_ip_address_lease_time", []))
        sender, receiver = (SERVER, CLIENT) if frame[0] & 1 else (CLIENT, SERVER)
        docs += analyzer.handle(udp_packet(1_700_000_000.0 + i, sender[0], receiver[0], sender[1], receiver[1], "d",
                                           fields, ["dhcp"]))
    assert all(len(lease.msg_types) <= MAX_MESSAGES for lease in analyzer.leases.values())
    docs += analyzer.finish()
    for doc in docs:
        orjson.dumps(doc)


def _option(code: int, value: bytes) -> bytes:
    return bytes([code, len(value)]) + value


def _message(op: int, kind: int, options: bytes, yiaddr: bytes = bytes(4)) -> bytes:
    fixed = bytes([op, 1, 6, 0]) + bytes.fromhex("3903f326") + bytes(8) + yiaddr + bytes(8)
    fixed += bytes.fromhex("00053c04871a").ljust(16, b"\0") + bytes(192)
    return fixed + b"\x63\x82\x53\x63" + _option(53, bytes([kind])) + options + b"\xff"


def seeds() -> list[bytes]:
    """A DORA exchange written to RFC 2131/2132, an INFORM with overload, a NAK."""
    hello = _option(12, b"laptop-7") + _option(60, b"MSFT 5.0") + _option(50, bytes([198, 18, 0, 20]))
    server = _option(54, bytes([198, 18, 0, 1])) + _option(51, (86400).to_bytes(4, "big"))
    dora = [bytes([0]) + _message(1, 1, hello), bytes([1]) + _message(2, 2, server, bytes([198, 18, 0, 20])),
            bytes([0]) + _message(1, 3, hello), bytes([1]) + _message(2, 5, server, bytes([198, 18, 0, 20]))]
    return [pack_frames(dora), pack_frames([bytes([0]) + _message(1, 8, _option(52, b"\x03"))]),
            pack_frames([bytes([1]) + _message(2, 6, server)])]
