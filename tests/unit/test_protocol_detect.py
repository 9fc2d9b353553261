"""Protocol probes (collectors.protocols.detect): each on a message built to its specification, on the same
message cut short and on bytes that only look alike; hostile input (random, truncated) never raises."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.protocols.detect import PROBES, SELECT_ALL, SERVICES, TCP, UDP, detect, probe

# -- messages built from the specifications ------------------------------------------------------------


def dns_query(name: bytes = b"\x03www\x07example\x03com\x00", qtype: int = 1, qclass: int = 1,
              flags: int = 0x0100) -> bytes:
    return struct.pack("!HHHHHH", 0x1234, flags, 1, 0, 0, 0) + name + struct.pack("!HH", qtype, qclass)


def mdns_response() -> bytes:
    """RFC 6762: no question, one answer with the cache-flush bit in its class."""
    return struct.pack("!HHHHHH", 0, 0x8400, 0, 1, 0, 0) + b"\x05host1\x05local\x00" + \
        struct.pack("!HHIH", 1, 0x8001, 120, 4) + bytes([198, 18, 0, 1])


def nbns_query() -> bytes:
    """RFC 1002 4.2.12: the 32-character first-level encoding of a NetBIOS name, class IN, type NB."""
    return struct.pack("!HHHHHH", 0x8001, 0x0110, 1, 0, 0, 0) + b"\x20" + b"EBEBEBEBEBEBEBEBEBEBEBEBEBEBEBAA" + \
        b"\x00" + struct.pack("!HH", 0x20, 1)


def tls_client_hello() -> bytes:
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + b"\x00\x00"
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


def tls_server_hello() -> bytes:
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x13\x01" + b"\x00" + b"\x00\x00"
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + len(hs).to_bytes(2, "big") + hs


def dnp3_frame() -> bytes:
    from collectors.protocols.dnp3_wire import crc_dnp
    header = bytes([0x05, 0x64, 0x05, 0xC9, 0x01, 0x00, 0x02, 0x00])
    crc = crc_dnp(header, 0, len(header))
    return header + bytes([crc & 0xFF, crc >> 8])


def dhcp_discover() -> bytes:
    msg = bytearray(240)
    msg[0], msg[1], msg[2] = 1, 1, 6
    msg[236:240] = b"\x63\x82\x53\x63"
    return bytes(msg) + b"\x35\x01\x01\xff"


def quic_initial(version: int = 1) -> bytes:
    first = 0xC0 | ((1 if version == 0x6B3343CF else 0) << 4)
    return bytes([first]) + version.to_bytes(4, "big") + b"\x08" + bytes(8) + b"\x00" + bytes(1200)


POSITIVE = [
    # (transport, from originator, payload, service)
    (TCP, True, b"GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n", "http"),
    (TCP, True, b"POST /upload?x=1 HTTP/1.0\r\n", "http"),
    (TCP, True, b"GET /a-very-long-uri-cut-by-the-segm", "http"),
    (TCP, False, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "http"),
    (TCP, True, tls_client_hello(), "ssl"),
    (TCP, False, tls_server_hello(), "ssl"),
    (TCP, True, bytes([0x80, 0x2E, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10]) + bytes(37), "ssl"),
    (TCP, False, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", "ssh"),
    (TCP, True, b"SSH-2.0-dropbear_2022.83\r\n", "ssh"),
    (TCP, True, b"\x00\x00\x00\x45\xffSMBr" + bytes(60), "smb"),
    (TCP, False, b"\x00\x00\x00\x80\xfeSMB@\x00" + bytes(60), "smb"),
    (TCP, True, bytes([5, 0, 11, 3, 0x10, 0, 0, 0, 0x48, 0, 0, 0, 1, 0, 0, 0]) + bytes(56), "dce_rpc"),
    (TCP, True, b"USER anonymous\r\n", "ftp"),
    (TCP, True, b"EHLO mail.example.org\r\n", "smtp"),
    (TCP, False, b"+OK POP3 server ready\r\n", "pop3"),
    (TCP, False, b"\x4a\x00\x00\x00\x0a5.7.26-log\x00\x08\x00\x00\x00" + bytes(50), "mysql"),
    (TCP, True, b"\x30\x1d\x02\x01\x01\x77\x18\x80\x161.3.6.1.4.1.1466.20037", "ldap_tcp"),
    (TCP, True, b"<?xml version='1.0'?><stream:stream to='example.com' xmlns='jabber:client'>", "xmpp"),
    (TCP, True, b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00", "rdp"),
    (TCP, True, b"\x03\x00\x00\x2b\x26\xe0\x00\x00\x00\x00\x00Cookie: mstshash=admin\r\n", "rdp"),
    (TCP, True, b"\x03\x00\x00\x16\x11\xe0\x00\x00\x00\x01\x00\xc1\x02\x01\x00\xc2\x02\x01\x02\xc0\x01\x0a", "s7comm"),
    (TCP, True, b"\x03\x00\x00\x19\x02\xf0\x80\x32\x01\x00\x00\x00\x00\x00\x08\x00\x00\xf0\x00\x00\x01\x00\x01\x01\xe0",
     "s7comm"),
    (TCP, True, b"\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x0a", "modbus"),
    (TCP, False, b"\x00\x01\x00\x00\x00\x03\x01\x83\x02", "modbus"),
    (TCP, True, dnp3_frame(), "dnp3"),
    (UDP, True, dnp3_frame(), "dnp3"),
    (TCP, True, b"\x68\x04\x07\x00\x00\x00", "iec104"),
    (TCP, False, b"\x68\x04\x01\x00\x02\x00", "iec104"),
    (TCP, True, b"\x68\x0e\x00\x00\x00\x00\x64\x01\x06\x00\x01\x00\x00\x00\x00\x14", "iec104"),
    (UDP, True, dns_query(), "dns"),
    (UDP, True, mdns_response(), "dns"),
    (UDP, True, nbns_query(), "dns"),
    (UDP, True, dns_query(b"\x05wpad1\x00", qtype=255), "dns"),  # LLMNR-style ANY query
    (TCP, True, struct.pack("!H", len(dns_query())) + dns_query(), "dns"),
    (UDP, True, dhcp_discover(), "dhcp"),
    (UDP, True, quic_initial(), "quic"),
    (UDP, True, quic_initial(0x6B3343CF), "quic"),
    (UDP, True, b"\x08\x00\x00\x00\x00\x00\x7b\x00" + bytes(14) + b"\x08\x00" + bytes(20), "vxlan"),
    (UDP, True, b"\x00\x00\x65\x58\x00\x00\x7b\x00" + bytes(12) + b"\x08\x00" + bytes(40), "geneve"),
    (UDP, True, b"\x00\x00\x08\x00\x00\x00\x7b\x00\x45" + bytes(40), "geneve"),
    (UDP, True, b"\x30\xff\x00\x28\x00\x00\x00\x01" + bytes(40), "gtpv1"),
    (UDP, True, b"\x41\x21\x01\x29" + bytes(4) + bytes(16) + bytes(8) + b"\x60" + bytes(39), "ayiya"),
    (UDP, True, b"\x00\x00\x08\x00\x45" + bytes(40), "gre"),
    # DTLS 1.0 ClientHello: record header (epoch 0, sequence 0, length 0x3c) + handshake header (fragment 0x30)
    (UDP, True, b"\x16\xfe\xff" + bytes(8) + b"\x00\x3c\x01\x00\x00\x30\x00\x00\x00\x00\x00\x00\x00\x30"
     + bytes(48), "dtls"),
    # STUN binding request (RFC 8489): type 0x0001, length 8, magic cookie, transaction id, one attribute
    (UDP, True, b"\x00\x01\x00\x08\x21\x12\xa4\x42" + bytes(12) + b"\x80\x22\x00\x04test", "stun"),
]


@pytest.mark.parametrize(("transport", "from_orig", "payload", "service"), POSITIVE,
                         ids=[f"{s}-{i}" for i, (_, _, _, s) in enumerate(POSITIVE)])
def test_probe_names_the_protocol(transport: int, from_orig: bool, payload: bytes, service: str) -> None:
    assert detect(transport, from_orig, payload) == service


NEGATIVE = [
    (TCP, True, b"GETX /index.html\r\n"),  # neither a method nor an HTTP version
    (TCP, True, b" GET / HTTP/1.1\r\n"[:6]),  # a line must not start with white space
    (TCP, False, b"HTTP/1.1 2000 OK\r\n"[:11]),  # too short for a status code
    (TCP, True, b"SSH-3.0-future\r\n"),
    (TCP, True, b"\x16\x03\x05\x00\x30\x01" + bytes(60)),  # TLS major 3, minor 5 does not exist
    (TCP, False, tls_client_hello()),  # a client hello from the responder is not a server hello
    (TCP, True, b"\x00\x00\x00\x45\xaaSMB" + bytes(60)),
    (TCP, True, b"\x00\x01\x00\x01\x00\x06\x01\x03\x00\x00\x00\x0a"),  # Modbus protocol id must be 0
    (TCP, True, dnp3_frame()[:8] + b"\x00\x00"),  # wrong CRC
    (TCP, True, b"\x68\x04\x05\x00\x00\x00"),  # no such U frame
    (UDP, True, dns_query(qclass=7)),
    (UDP, True, dns_query(name=b"\x03www\xc0\x20")),  # a forward compression pointer
    (UDP, True, bytes(64)),  # zeros: no question, no answer
    (UDP, True, quic_initial()[:1100]),  # a client initial is padded to 1200 bytes
    (UDP, True, dhcp_discover()[:239]),
    (UDP, True, b"\x16\xfe\xff\x00\x01" + bytes(6) + b"\x00\x3c\x01" + bytes(70)),  # DTLS hello in epoch 1
    (UDP, True, b"\x00\x01\x00\x08\x21\x12\xa4\x43" + bytes(20)),  # not the STUN magic cookie
    (TCP, False, b"220 mail.example.org ESMTP ready\r\n"),  # FTP or SMTP: the client's first words decide
]


@pytest.mark.parametrize(("transport", "from_orig", "payload"), NEGATIVE, ids=range(len(NEGATIVE)))
def test_look_alikes_are_not_detected(transport: int, from_orig: bool, payload: bytes) -> None:
    assert detect(transport, from_orig, payload) == ""


@pytest.mark.parametrize(("transport", "from_orig", "payload", "service"), POSITIVE,
                         ids=[f"{s}-{i}" for i, (_, _, _, s) in enumerate(POSITIVE)])
def test_every_truncation_is_harmless(transport: int, from_orig: bool, payload: bytes, service: str) -> None:
    """Each prefix of a real message either still matches the same protocol or matches nothing."""
    for n in range(len(payload)):
        assert detect(transport, from_orig, payload[:n], len(payload)) in ("", service)


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from([TCP, UDP]), st.booleans(), st.binary(max_size=600), st.integers(0, 70000))
def test_random_payloads_never_raise(transport: int, from_orig: bool, payload: bytes, length: int) -> None:
    index, selection = probe(transport, from_orig, payload, length)
    assert 0 <= index < len(SERVICES) and selection >= SELECT_ALL


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(POSITIVE), st.integers(0, 599), st.integers(0, 255))
def test_one_byte_changes_never_raise(case: tuple, pos: int, value: int) -> None:
    transport, from_orig, payload, _ = case
    data = bytearray(payload)
    data[pos % len(data)] = value
    index, _ = probe(transport, from_orig, bytes(data), len(data))
    assert 0 <= index < len(SERVICES)


def test_every_probe_has_a_positive_case_and_a_known_transport() -> None:
    covered = {s for *_, s in POSITIVE}
    assert {p.service for p in PROBES} <= covered
    assert all(p.transports <= {TCP, UDP} and p.side in ("orig", "resp", "any") for p in PROBES)


def _scan_all(transport: int, from_orig: bool, payload: bytes, length: int) -> str:
    """Every probe in table order, without the first-byte dispatch."""
    for p in PROBES:
        if transport in p.transports and p.side in ("any", "orig" if from_orig else "resp") and \
                p.match(payload, length):
            return p.service
    return ""


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(POSITIVE), st.binary(max_size=3), st.integers(0, 80), st.booleans())
def test_first_byte_dispatch_changes_no_answer(case: tuple, prefix: bytes, cut: int, flip: bool) -> None:
    """The dispatch table only skips probes that cannot match: its answers equal a scan of every probe."""
    transport, from_orig, payload, _ = case
    data = (prefix + payload)[:len(payload) - cut if cut < len(payload) else None]
    assert detect(transport, from_orig ^ flip, data) == _scan_all(transport, from_orig ^ flip, data, len(data))
