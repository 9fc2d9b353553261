"""The fields ``DhcpAnalyzer`` reads of a BOOTP/DHCP message (RFC 2131, options RFC 2132), as tshark 4.0 prints them
(``-T ek``: keyed as ``ek_key`` names them), read from the UDP payload without tshark.

On the 1M-packet real-trace benchmark DHCP was 1.4k of the 12k frames the first analyzer process still gave tshark,
and a quarter of tshark's output lines there; reading them here cut that tshark's CPU by about 0.15 s. tshark is the
differential oracle (tests/unit/test_dhcp_native.py, on crafted messages and the shared traces).

tshark's semantics kept: nothing is printed of a message shorter than its client hardware address's end; a fixed
field is printed when the payload holds it whole; the options are read only after the magic cookie, each whole one
in order until the end option, the first damaged one ending the reading (as the exception that stops tshark's
dissector); a client MAC address only for an Ethernet (or IEEE 802) hardware type of length 6; strings end at their
first NUL and every byte that is not ASCII becomes U+FFFD; an option of the wrong length for its type is not printed
(the message type, one byte, is read from a longer option too). With option overload (52) the options in ``sname``
and ``file`` come first, in the message's order; a damaged one there leaves the message to tshark.
"""

from __future__ import annotations

from collectors.protocols.tshark import ek_key

PORTS = frozenset((67, 68))  # tshark's BOOTP/DHCP ports
PXE_PORT = 4011  # from or to it tshark first checks the message: such datagrams are left to it
MAGIC_COOKIE = b"\x63\x82\x53\x63"
OPTIONS_AT = 240  # after the fixed part (236 bytes) and the cookie
SNAME_AT, FILE_AT = 44, 108  # the fixed fields option overload (52) fills with options: bit 2 sname, bit 1 file
END, PAD, OVERLOAD = 255, 0, 52
# option code -> (tshark's field, kind): "ip" four bytes, "u32" four bytes, "u8" one byte, "text" a string
OPTION_FIELDS: dict[int, tuple[str, str]] = {
    12: (ek_key("dhcp.option.hostname"), "text"),
    50: (ek_key("dhcp.option.requested_ip_address"), "ip"),
    51: (ek_key("dhcp.option.ip_address_lease_time"), "u32"),
    53: (ek_key("dhcp.option.dhcp"), "u8"),
    54: (ek_key("dhcp.option.dhcp_server_id"), "ip"),
    60: (ek_key("dhcp.option.vendor_class_id"), "text"),
}
XID, CLIENT_IP, YOUR_IP = ek_key("dhcp.id"), ek_key("dhcp.ip.client"), ek_key("dhcp.ip.your")
CLIENT_MAC = ek_key("dhcp.hw.mac_addr")
SIZES = {"ip": 4, "u32": 4, "u8": 1}
ETHERNET_TYPES = (1, 6)  # ARPHRD_ETHER, ARPHRD_IEEE802


def dhcp_port(sport: int, dport: int) -> bool:
    """Whether tshark reads every datagram between these ports as BOOTP/DHCP (the lower port decides first)."""
    return (sport if sport < dport else dport) in PORTS and PXE_PORT not in (sport, dport)


def dhcp_fields(payload: bytes) -> dict[str, list[str]] | None:
    """tshark's values of ``DhcpAnalyzer.FIELDS`` for one BOOTP/DHCP message; None where tshark reads it
    differently from here (a damaged option inside ``sname`` or ``file`` when option 52 says they hold options)."""
    fields: dict[str, list[str]] = {}
    n = len(payload)
    if n > 2 and payload[2] and n < 28 + payload[2]:
        return fields  # tshark reads the client hardware address (for its summary) before anything it prints
    if n >= 8:
        fields[XID] = [f"0x{int.from_bytes(payload[4:8], 'big'):08x}"]
    if n >= 16:
        fields[CLIENT_IP] = [_ip(payload, 12)]
    if n >= 20:
        fields[YOUR_IP] = [_ip(payload, 16)]
    if n >= 34 and payload[1] in ETHERNET_TYPES and payload[2] == 6:
        fields[CLIENT_MAC] = [payload[28:34].hex(":")]
    if n < OPTIONS_AT or payload[236:240] != MAGIC_COOKIE:
        return fields
    options: list[tuple[int, bytes]] = []
    _options(payload, OPTIONS_AT, n, options)
    overload = next((value[0] for code, value in options if code == OVERLOAD and value), 0)
    if overload:  # tshark's tree, in the message's order: the options in sname, in file, then the others
        before: list[tuple[int, bytes]] = []
        for flag, start, stop in ((2, SNAME_AT, FILE_AT), (1, FILE_AT, OPTIONS_AT - 4)):
            if overload & flag and not _options(payload, start, stop, before):
                return None
        options = before + options
    for code, value in options:
        known = OPTION_FIELDS.get(code)
        if known is not None:
            name, kind = known
            text = _value(value, kind)
            if text is not None:
                fields.setdefault(name, []).append(text)
    return fields


def _options(payload: bytes, pos: int, end: int, out: list[tuple[int, bytes]]) -> bool:
    """The options from ``pos`` to the end option or ``end`` into ``out``; False when one runs past ``end`` (the
    reading stops there, as tshark's dissector does)."""
    while pos < end:
        code = payload[pos]
        if code == END:
            return True
        if code == PAD:
            pos += 1
            continue
        if pos + 2 > end or pos + 2 + payload[pos + 1] > end:
            return False
        length = payload[pos + 1]
        out.append((code, payload[pos + 2:pos + 2 + length]))
        pos += 2 + length
    return True


def _value(value: bytes, kind: str) -> str | None:
    if kind == "text":
        return _text(value)
    if len(value) != SIZES[kind] and not (kind == "u8" and value):  # the message type: its first byte, whatever
        return None
    if kind == "ip":
        return _ip(value, 0)
    return str(int.from_bytes(value[:SIZES[kind]], "big"))


def _ip(payload: bytes, at: int) -> str:
    return f"{payload[at]}.{payload[at + 1]}.{payload[at + 2]}.{payload[at + 3]}"


def _text(raw: bytes) -> str:
    """An FT_STRINGZ in ASCII as tshark shows it: up to the first NUL, other bytes past 0x7F as U+FFFD."""
    end = raw.find(b"\0")
    if end >= 0:
        raw = raw[:end]
    return "".join(chr(c) if c < 0x80 else "\ufffd" for c in raw)
