"""Protocol detection from the first payload bytes of each flow direction, on any port.

Zeek's dynamic protocol detection and Suricata's probing parsers look at what a flow says, not at its
port. Each probe below is one small function written to its protocol's specification (magic bytes and
header structure) and one row of :data:`PROBES`: the service name (Zeek's ``service`` spelling), the
transports it runs on, which side speaks the matched message, and how much of the flow the deep path
needs once it is detected:

- ``SELECT_ALL``: every payload packet (cleartext protocols whose analyzers read whole flows);
- ``N > 0``: the next N payload packets (handshakes: TLS, SSH, QUIC until encrypted data);
- ``SELECT_NONE``: nothing (detection only: the connection's service is all there is to know).

The flow engines (``collectors._flowcore`` and its reference ``collectors.flows``) call :func:`probe` at
most once per flow direction, with the first payload that direction sent; the first probe that matches
decides. Probes never raise: damaged or hostile payloads simply do not match.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from collectors.protocols.dnp3_wire import crc_ok

TCP, UDP = 6, 17
SELECT_NONE, SELECT_ALL = 0, -1
PROBE_BYTES = 512  # payload bytes the engines hand to a probe (enough for every header below)

Match = Callable[[bytes, int], bool]  # (first payload bytes, payload length on the wire)

# -- cleartext request/response lines -----------------------------------------------------------------

HTTP_METHODS = frozenset({
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"TRACE", b"CONNECT", b"PATCH", b"PROPFIND",
    b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"SEARCH", b"REPORT", b"SUBSCRIBE",
    b"NOTIFY", b"M-SEARCH", b"UNSUBSCRIBE", b"MKACTIVITY", b"CHECKOUT", b"MERGE", b"BPROPFIND", b"POLL",
})


def http_request(data: bytes, _length: int) -> bool:
    """RFC 9112 request-line, read as leniently as servers (and Zeek's DPD) do: a known method followed by a
    space, a slash or the line end, or any line that starts with a printable character and names an
    HTTP version. (Searches, not a loop over bytes: the flow path asks this of every flow whose first payload
    byte is a letter, about 60k times on the 1M-packet benchmark.)"""
    end = data.find(b"\n")
    if end < 0:
        end = len(data)
    if end == 0 or data[0] <= 0x20:
        return False
    if data.find(b"HTTP/", 0, end) >= 0:
        return True
    if data[0] >= 0x7F:
        return False
    word = min(end, 17)  # the method ends at the first space, slash or CR among the line's first 17 bytes
    for stop in (b" ", b"/", b"\r"):
        at = data.find(stop, 0, word)
        if at >= 0:
            word = at
    if word < min(end, 17):
        return data[:word] in HTTP_METHODS
    return end < len(data) and data[:end] in HTTP_METHODS


def http_response(data: bytes, _length: int) -> bool:
    """RFC 9112 status-line: HTTP/d.d SP 3DIGIT."""
    return (len(data) >= 12 and data[:5] == b"HTTP/" and data[5:6].isdigit() and data[6:7] == b"."
            and data[7:8].isdigit() and data[8:9] == b" " and data[9:12].isdigit())


def ssh_banner(data: bytes, _length: int) -> bool:
    """RFC 4253 4.2: SSH-protoversion-softwareversion (1.x, 1.99 or 2.0)."""
    return data[:4] == b"SSH-" and data[4:6] in (b"1.", b"2.") and b"-" in data[5:64]


def ftp_command(data: bytes, _length: int) -> bool:
    """RFC 959/2228 client commands that open an FTP session (after the server's 220 greeting)."""
    word = data[:5].upper()
    return word in (b"USER ", b"AUTH ", b"FEAT\r", b"SYST\r", b"OPTS ") and b"\n" in data


def smtp_command(data: bytes, _length: int) -> bool:
    """RFC 5321 session start: EHLO/HELO domain."""
    return data[:5].upper() in (b"EHLO ", b"HELO ") and b"\n" in data[:512]


def pop3_greeting(data: bytes, _length: int) -> bool:
    """RFC 1939 greeting: +OK ... CRLF."""
    return data[:4] == b"+OK " and b"\n" in data[:512]


def xmpp_stream(data: bytes, _length: int) -> bool:
    """RFC 6120: the stream header (optionally after an XML declaration)."""
    head = data[:200]
    return (head.startswith(b"<?xml") or head.startswith(b"<stream:stream")) and b"<stream:stream" in head


# -- binary headers --------------------------------------------------------------------------------------

def mysql_greeting(data: bytes, _length: int) -> bool:
    """MySQL protocol HandshakeV10 from the server: 3-byte little-endian length, sequence id 0, protocol 10, a
    NUL-terminated printable server version."""
    if len(data) < 10 or data[3] != 0 or data[4] != 10:
        return False
    length = data[0] | data[1] << 8 | data[2] << 16
    end = data.find(b"\0", 5, 80)
    return length >= 30 and end > 5 and all(0x20 <= c < 0x7F for c in data[5:end])


LDAP_REQUESTS = frozenset({0x60, 0x63, 0x66, 0x68, 0x4A, 0x6C, 0x6E, 0x50, 0x42, 0x77})


def ldap_request(data: bytes, _length: int) -> bool:
    """RFC 4511 LDAPMessage: SEQUENCE { messageID INTEGER (1-4 bytes), protocolOp [APPLICATION n] }."""
    if len(data) < 7 or data[0] != 0x30:
        return False
    long_form = data[1] & 0x7F if data[1] & 0x80 else 0
    if data[1] & 0x80 and not 1 <= long_form <= 4:
        return False
    at = 2 + long_form
    if at + 3 > len(data) or data[at] != 0x02 or not 1 <= data[at + 1] <= 4:
        return False
    op = at + 2 + data[at + 1]
    return op < len(data) and data[op] in LDAP_REQUESTS


TLS_HANDSHAKE, CLIENT_HELLO, SERVER_HELLO = 22, 1, 2


def _tls_record(data: bytes, handshake_type: int) -> bool:
    """RFC 8446 5.1 TLSPlaintext: handshake(22), legacy version 3.0-3.4, length <= 2^14 + 2048, holding a
    handshake message of the given type whose 24-bit length fits the record."""
    if len(data) < 9 or data[0] != TLS_HANDSHAKE or data[1] != 3 or data[2] > 4:
        return False
    rec_len = (data[3] << 8) | data[4]
    hs_len = (data[6] << 16) | (data[7] << 8) | data[8]
    return 4 <= rec_len <= 16384 + 2048 and data[5] == handshake_type and hs_len >= 34 and \
        data[9:10] == b"\x03"  # client_version / server_version major


def _sslv2_client_hello(data: bytes) -> bool:
    """SSL 2.0 CLIENT-HELLO (2-byte record header) as old clients still send it, offering SSL 3.0/TLS."""
    return len(data) >= 11 and data[0] & 0x80 != 0 and data[2] == 1 and data[3] in (0, 3) and data[4] <= 4 and \
        ((data[0] & 0x7F) << 8 | data[1]) >= 9


def tls_client_hello(data: bytes, _length: int) -> bool:
    return _tls_record(data, CLIENT_HELLO) or bool(_sslv2_client_hello(data))


def tls_server_hello(data: bytes, _length: int) -> bool:
    return _tls_record(data, SERVER_HELLO)


DTLS_VERSIONS = frozenset({0xFEFF, 0xFEFD, 0xFEFC})  # DTLS 1.0, 1.2, 1.3 (RFC 6347 4.1, RFC 9147 5.1)
DTLS_HELLOS = frozenset({CLIENT_HELLO, SERVER_HELLO, 3})  # 3: HelloVerifyRequest


def dtls_hello(data: bytes, _length: int) -> bool:
    """RFC 6347 4.1 DTLSPlaintext (type, version, epoch 0, 48-bit sequence, length) holding a ClientHello,
    HelloVerifyRequest or ServerHello whose 12-byte handshake header fits the record."""
    if len(data) < 25 or data[0] != TLS_HANDSHAKE or (data[1] << 8 | data[2]) not in DTLS_VERSIONS:
        return False
    rec_len = data[11] << 8 | data[12]
    frag_len = data[22] << 16 | data[23] << 8 | data[24]
    return data[3:5] == b"\x00\x00" and 12 <= rec_len <= 16384 + 2048 and data[13] in DTLS_HELLOS and \
        frag_len + 12 <= rec_len


STUN_COOKIE = b"\x21\x12\xa4\x42"


def stun(data: bytes, length: int) -> bool:
    """RFC 8489 6: two zero bits, a 14-bit type, a length that is a multiple of 4 and covers the rest of the
    datagram, and the magic cookie. WebRTC runs DTLS on the same flow after it (Zeek finds that by DPD)."""
    return len(data) >= 20 and data[0] < 0x40 and data[4:8] == STUN_COOKIE and \
        (data[2] << 8 | data[3]) % 4 == 0 and (data[2] << 8 | data[3]) + 20 == length


def _nbss_then(data: bytes, magics: tuple[bytes, ...]) -> bool:
    """RFC 1002 session message (type 0, 17-bit length) whose body starts with one of ``magics``."""
    return len(data) >= 8 and data[0] == 0 and data[1] <= 1 and data[4:8] in magics


def smb(data: bytes, _length: int) -> bool:
    """[MS-SMB]/[MS-SMB2]: \\xffSMB, \\xfeSMB or a transform header \\xfdSMB after the NetBIOS header."""
    return _nbss_then(data, (b"\xffSMB", b"\xfeSMB", b"\xfdSMB"))


def dce_rpc(data: bytes, _length: int) -> bool:
    """DCE 1.1 RPC connection-oriented PDU: version 5.0, bind (11) or bind_ack (12), frag length >= 16."""
    return len(data) >= 16 and data[0] == 5 and data[1] == 0 and data[2] in (11, 12) and \
        struct.unpack_from("<H" if data[4] & 0x10 else ">H", data, 8)[0] >= 16


def _cotp_cr(data: bytes) -> int:
    """Offset of the variable part of an ISO 8073 connection request (CR, 0xE0) inside TPKT (RFC 1006),
    or -1. TPKT: version 3, reserved 0, length >= 11; COTP: length indicator, CR code, dst-ref, src-ref,
    class."""
    if len(data) < 11 or data[0] != 3 or data[1] != 0 or (data[2] << 8 | data[3]) < 11:
        return -1
    li = data[4]
    if li < 6 or li + 5 > (data[2] << 8 | data[3]) or data[5] & 0xF0 != 0xE0:
        return -1
    return 11


def rdp(data: bytes, _length: int) -> bool:
    """[MS-RDPBCGR] 2.2.1.1 X.224 Connection Request: a cookie, a routing token or an RDP_NEG_REQ
    (type 1, length 8), or nothing, after the fixed COTP header."""
    at = _cotp_cr(data)
    if at < 0:
        return False
    rest = data[at:]
    if not rest:  # a bare request is exactly the 11-byte TPKT + COTP header
        return (data[2] << 8 | data[3]) == 11
    return rest.startswith(b"Cookie: ") or (len(rest) >= 8 and rest[0] == 1 and rest[2:4] == b"\x08\x00")


def s7comm(data: bytes, _length: int) -> bool:
    """S7 communication: an ISO-on-TCP connection request carrying TSAP parameters (0xC1/0xC2) or a COTP
    data TPDU (0xF0) whose payload starts with the S7 protocol id 0x32."""
    at = _cotp_cr(data)
    if at >= 0:
        return data[at:at + 1] in (b"\xc0", b"\xc1", b"\xc2")
    return len(data) >= 10 and data[0] == 3 and data[1] == 0 and data[4] == 2 and data[5] == 0xF0 and data[7] == 0x32


def modbus(data: bytes, _length: int) -> bool:
    """Modbus/TCP MBAP header: protocol id 0, length 2..254 covering unit id + PDU, and the segment holding
    exactly that ADU or another MBAP header right after it. The function code is not checked: devices and
    attackers use private and invalid codes, and those sessions are the interesting ones."""
    if len(data) < 8 or data[2:4] != b"\x00\x00":
        return False
    end = 6 + (data[4] << 8 | data[5])
    if not 8 <= end <= 260:
        return False
    return len(data) == end or (len(data) >= end + 8 and data[end + 2:end + 4] == b"\x00\x00")


def dnp3(data: bytes, _length: int) -> bool:
    """IEEE 1815 data link header: start 0x05 0x64, length >= 5, header CRC (little-endian) correct."""
    return len(data) >= 10 and data[0] == 0x05 and data[1] == 0x64 and data[2] >= 5 and crc_ok(data, 0, 8)


IEC104_U = frozenset({0x07, 0x0B, 0x13, 0x23, 0x43, 0x83})


def iec104(data: bytes, _length: int) -> bool:
    """IEC 60870-5-104 APCI: start 0x68, APDU length 4..253, control field of an I, S or U frame."""
    if len(data) < 6 or data[0] != 0x68 or not 4 <= data[1] <= 253:
        return False
    c1 = data[2]
    if c1 & 1 == 0:  # I frame: an ASDU follows
        return data[1] > 4 and (data[1] + 2 <= len(data) or len(data) >= 12)
    if c1 & 3 == 1:  # S frame
        return data[1] == 4 and c1 == 1 and data[3] == 0
    return data[1] == 4 and c1 in IEC104_U and data[3:6] == b"\x00\x00\x00"


def _dns_name(data: bytes, pos: int) -> int:
    """End offset of a (possibly compressed) domain name starting at ``pos``, or -1 (RFC 1035 4.1.4)."""
    for _ in range(128):
        if pos >= len(data):
            return -1
        n = data[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            return pos + 2 if pos + 2 <= len(data) and ((n & 0x3F) << 8 | data[pos + 1]) < pos else -1
        if n & 0xC0:
            return -1
        pos += 1 + n
    return -1


DNS_OPCODES = frozenset({0, 1, 2, 4, 5})
DNS_CLASSES = frozenset({1, 3, 4, 254, 255})


def dns_message(data: bytes, _length: int) -> bool:
    """RFC 1035 4.1 message (also mDNS RFC 6762, LLMNR RFC 4795, NetBIOS-NS RFC 1002): a known opcode,
    sensible section counts, and a first question (or, in responses without one, a first record) whose
    name, type and class parse."""
    if len(data) < 17:
        return False
    flags = data[2] << 8 | data[3]
    qd, an, ns, ar = struct.unpack_from("!HHHH", data, 4)
    if (flags >> 11) & 0xF not in DNS_OPCODES or qd > 16 or an > 512 or ns > 512 or ar > 512:
        return False
    if qd == 0 and not (flags & 0x8000 and an):
        return False
    end = _dns_name(data, 12)
    if end < 0 or end + 4 > len(data):
        return False
    rtype, rclass = struct.unpack_from("!HH", data, end)
    if rtype == 0 or (rclass & 0x7FFF) not in DNS_CLASSES:  # mDNS uses the top bit (QU / cache-flush)
        return False
    return qd > 0 or end + 10 <= len(data)  # an answer record: ttl and rdlength follow


def dns_over_tcp(data: bytes, length: int) -> bool:
    """RFC 1035 4.2.2: a two-byte length prefix, then a message."""
    return len(data) >= 2 and (data[0] << 8 | data[1]) >= 17 and dns_message(data[2:], length - 2)


def dhcp(data: bytes, _length: int) -> bool:
    """RFC 2131 BOOTP message with the DHCP magic cookie 99.130.83.99 at offset 236."""
    return len(data) >= 240 and data[0] in (1, 2) and data[236:240] == b"\x63\x82\x53\x63" and data[2] <= 16


QUIC_VERSIONS = frozenset({0x00000001, 0x6B3343CF}) | {0xFF000000 | d for d in range(0x1D, 0x23)}


def quic_initial(data: bytes, length: int) -> bool:
    """RFC 9000 17.2: long header (form and fixed bits), a known version, Initial packet type, connection
    ids of at most 20 bytes; a client's first datagram is padded to at least 1200 bytes (14.1)."""
    if len(data) < 7 or data[0] & 0xC0 != 0xC0:
        return False
    version = int.from_bytes(data[1:5], "big")
    if version not in QUIC_VERSIONS:
        return False
    packet_type = (data[0] >> 4) & 3
    if packet_type != (1 if version == 0x6B3343CF else 0):  # Initial (v2 renumbered the types, RFC 9369)
        return False
    dcid = data[5]
    return dcid <= 20 and len(data) > 6 + dcid and data[6 + dcid] <= 20 and length >= 1200


def quic_server_initial(data: bytes, length: int) -> bool:
    return quic_initial(data, max(length, 1200))  # servers need not pad


def vxlan(data: bytes, _length: int) -> bool:
    """RFC 7348: flags 0x08 (valid VNI), reserved bytes zero, then an Ethernet frame."""
    return len(data) >= 22 and data[0] == 0x08 and data[1:4] == b"\0\0\0" and data[7] == 0


_INNER_IP_VERSION = {b"\x08\x00": 4, b"\x86\xdd": 6}


_ETHERTYPES = frozenset({b"\x08\x00", b"\x86\xdd", b"\x81\x00", b"\x88\xa8", b"\x08\x06", b"\x88\x47"})


def _inner_fits(data: bytes, at: int) -> bool:
    """The encapsulated packet starts at ``at``: an IP packet of the announced version, or an Ethernet frame
    with a common EtherType (IPv4, IPv6, VLAN, QinQ, ARP, MPLS)."""
    version = _INNER_IP_VERSION.get(data[2:4])
    if version is None:
        return data[at + 12:at + 14] in _ETHERTYPES
    return at < len(data) and data[at] >> 4 == version


def geneve(data: bytes, _length: int) -> bool:
    """RFC 8926: version 0, option length, protocol type (Ethernet 0x6558 or IP), reserved byte zero."""
    return len(data) >= 9 and data[0] >> 6 == 0 and data[2:4] in (b"\x65\x58", b"\x08\x00", b"\x86\xdd") and \
        data[7] == 0 and _inner_fits(data, 8 + (data[0] & 0x3F) * 4)


def gtpv1(data: bytes, _length: int) -> bool:
    """3GPP TS 29.281 GTP-U: version 1, protocol type GTP, message type G-PDU (255) or echo."""
    return len(data) >= 8 and data[0] >> 5 == 1 and data[0] & 0x10 != 0 and data[1] in (1, 2, 26, 254, 255)


def ayiya(data: bytes, _length: int) -> bool:
    """AYIYA (draft-massar-v6ops-ayiya, as Zeek decodes it): identity and signature lengths, the forward
    opcode, next header IPv4 or IPv6, and an IP packet of that version right after the header."""
    if len(data) < 8 or data[2] & 0x0F != 1 or data[3] not in (4, 41):
        return False
    at = 8 + (1 << (data[0] >> 4)) + (data[1] >> 4) * 4
    return at < len(data) and data[at] >> 4 == (4 if data[3] == 4 else 6)


def gre_in_udp(data: bytes, _length: int) -> bool:
    """RFC 8086 GRE-in-UDP: a GRE header (RFC 2784/2890: version 0, only the C, K and S flags) carrying IPv4,
    IPv6 or Ethernet."""
    if len(data) < 5 or data[0] & 0x4F or data[1] or data[2:4] not in (b"\x08\x00", b"\x86\xdd", b"\x65\x58"):
        return False
    return _inner_fits(data, 4 + 4 * bin(data[0] & 0xB0).count("1"))


@dataclass(frozen=True, slots=True)
class Probe:
    service: str  # Zeek's conn.log service name
    transports: frozenset[int]
    side: str  # "orig", "resp" or "any": who sends the matched message
    match: Match
    select: int
    first: bytes | None = None  # the bytes a matching payload can start with (None: any), for dispatch


def _letters(*words: str) -> bytes:
    return bytes(sorted({ord(c) for w in words for c in (w[0].upper(), w[0].lower())}))


_PRINTABLE = bytes(range(0x21, 0x100))  # http_request: a line's first character (DEL too, with "HTTP/")
HANDSHAKE_TLS, HANDSHAKE_SSH, HANDSHAKE_QUIC = 24, 8, 6
# Cleartext sessions that may switch to TLS in-band (STARTTLS; the names in UPGRADE_TO): none of their cleartext is
# selected (no analyzer reads SMTP, POP3, XMPP, LDAP, MySQL or RDP), but the engines keep probing their next payloads,
# and the one that opens the TLS handshake selects the handshake (HANDSHAKE_TLS) from there on. The analyzers then see
# a connection whose first payload is a ClientHello, which the native TLS reader reads (on 300k packets of real traces
# tshark had been given 17k cleartext frames of such sessions per analyzer process, 16% of its input).
UPGRADE = SELECT_NONE
STUN_THEN_DTLS = 48  # STUN binding, then DTLS-SRTP on the same flow: the first datagrams, the handshake among them
_T, _U, _TU = frozenset({TCP}), frozenset({UDP}), frozenset({TCP, UDP})

# Strong signatures first; the weak ones (few fixed bits) last, so they never shadow a strong one.
PROBES: tuple[Probe, ...] = (
    Probe("ssl", _T, "orig", tls_client_hello, HANDSHAKE_TLS, b"\x16" + bytes(range(0x80, 0x100))),
    Probe("ssl", _T, "resp", tls_server_hello, HANDSHAKE_TLS, b"\x16"),
    Probe("ssh", _T, "any", ssh_banner, HANDSHAKE_SSH, b"S"),
    Probe("http", _T, "orig", http_request, SELECT_ALL, _PRINTABLE),
    Probe("http", _T, "resp", http_response, SELECT_ALL, b"H"),
    Probe("smb", _T, "any", smb, SELECT_ALL, b"\x00"),
    Probe("dce_rpc", _T, "any", dce_rpc, SELECT_ALL, b"\x05"),
    Probe("ftp", _T, "orig", ftp_command, SELECT_ALL, _letters("USER", "AUTH", "FEAT", "SYST", "OPTS")),
    Probe("smtp", _T, "orig", smtp_command, UPGRADE, _letters("EHLO", "HELO")),
    Probe("pop3", _T, "resp", pop3_greeting, UPGRADE, b"+"),
    Probe("xmpp", _T, "any", xmpp_stream, UPGRADE, b"<"),
    Probe("mysql", _T, "resp", mysql_greeting, UPGRADE),
    Probe("ldap_tcp", _T, "orig", ldap_request, UPGRADE, b"\x30"),
    Probe("rdp", _T, "orig", rdp, UPGRADE, b"\x03"),  # RDP negotiates TLS (or CredSSP over TLS) next
    Probe("s7comm", _T, "orig", s7comm, SELECT_ALL, b"\x03"),
    Probe("dnp3", _TU, "any", dnp3, SELECT_ALL, b"\x05"),
    Probe("dtls", _U, "any", dtls_hello, HANDSHAKE_TLS, b"\x16"),
    Probe("stun", _U, "any", stun, STUN_THEN_DTLS, bytes(range(0x40))),  # DTLS-SRTP follows on the same flow
    Probe("quic", _U, "orig", quic_initial, HANDSHAKE_QUIC, bytes(range(0xC0, 0x100))),
    Probe("quic", _U, "resp", quic_server_initial, HANDSHAKE_QUIC, bytes(range(0xC0, 0x100))),
    Probe("dhcp", _U, "any", dhcp, SELECT_ALL, b"\x01\x02"),
    Probe("vxlan", _U, "any", vxlan, SELECT_NONE, b"\x08"),
    Probe("geneve", _U, "any", geneve, SELECT_NONE, bytes(range(0x40))),
    Probe("gtpv1", _U, "any", gtpv1, SELECT_NONE, bytes(range(0x30, 0x40))),
    # tunnels the flow engines may not open: tshark gets the whole outer flow
    Probe("ayiya", _U, "any", ayiya, SELECT_ALL),
    Probe("gre", _U, "any", gre_in_udp, SELECT_ALL, bytes((0x00, 0x10, 0x20, 0x30, 0x80, 0x90, 0xA0, 0xB0))),
    Probe("iec104", _T, "any", iec104, SELECT_ALL, b"\x68"),
    Probe("modbus", _T, "any", modbus, SELECT_ALL),
    Probe("dns", _U, "any", dns_message, SELECT_ALL),
    Probe("dns", _T, "any", dns_over_tcp, SELECT_ALL),
)

SERVICES: tuple[str, ...] = ("", *dict.fromkeys(p.service for p in PROBES))  # index 0: nothing detected
SERVICE_INDEX = {name: i for i, name in enumerate(SERVICES)}
# Sessions that switch protocols in-band (Zeek logs both, "xmpp,ssl"): STARTTLS in SMTP, POP3, XMPP, LDAP,
# MySQL's SSL request, FTP's AUTH TLS, RDP's TLS security layer. The engines probe the next REPROBES payloads of
# such a flow and accept only the protocol named here (a binary payload matching some weak probe is no upgrade).
UPGRADE_TO = {"smtp": "ssl", "pop3": "ssl", "xmpp": "ssl", "ldap_tcp": "ssl", "mysql": "ssl", "ftp": "ssl",
              "rdp": "ssl"}
UPGRADES: tuple[int, ...] = tuple(SERVICE_INDEX[UPGRADE_TO[name]] if name in UPGRADE_TO else 0 for name in SERVICES)
# (transport, from originator) -> per first byte, the probes that can match, in PROBES order
_BY_KEY: dict[tuple[int, bool], tuple[tuple[tuple[int, Probe], ...], ...]] = {
    (proto, from_orig): tuple(
        tuple((SERVICE_INDEX[p.service], p) for p in PROBES
              if proto in p.transports and p.side in ("any", "orig" if from_orig else "resp")
              and (p.first is None or byte in p.first))
        for byte in range(256))
    for proto in (TCP, UDP) for from_orig in (True, False)
}
NOTHING = (0, SELECT_NONE)


def probe(proto: int, from_orig: bool, payload: bytes, length: int) -> tuple[int, int]:
    """(index into :data:`SERVICES`, selection) for the first payload one side of a flow sent."""
    table = _BY_KEY.get((proto, from_orig))
    if table is None or not payload:
        return NOTHING
    for index, p in table[payload[0]]:
        try:
            if p.match(payload, length):
                return index, p.select
        except (IndexError, ValueError, struct.error):  # a probe bug on odd input must not stop the flow path
            continue
    return NOTHING


FTP_SERVICE = SERVICE_INDEX["ftp"]


class Prober:
    """What the flow path calls for a flow's first payloads: :func:`probe` (without a deep path the service only, no
    packet selected), noting whether an FTP control connection was met (its data channels may then be
    announced). A compiled object, not a bound method of the interpreted pipeline: one call per probed payload."""

    def __init__(self, deep: bool) -> None:
        self.deep = deep
        self.ftp_seen = False

    def __call__(self, proto: int, from_orig: bool, payload: bytes, length: int) -> tuple[int, int]:
        found = probe(proto, from_orig, payload, length)
        if found[0] == FTP_SERVICE:
            self.ftp_seen = True
        return found if self.deep else (found[0], SELECT_NONE)


def detect(proto: int, from_orig: bool, payload: bytes, length: int | None = None) -> str:
    """The service name for one payload, '' when nothing matches (convenience for tests and tools)."""
    return SERVICES[probe(proto, from_orig, payload, len(payload) if length is None else length)[0]]
