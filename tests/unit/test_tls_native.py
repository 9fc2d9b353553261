"""Native TLS reading (collectors/protocols/tls_wire.py through native_tcp.py) against tshark, the differential oracle.

Every shared capture with a TCP connection whose payload opens with a TLS handshake record goes through the ingest
pipeline twice: with the deep path reading those connections itself (``native_tcp.READ_TLS``) and with tshark
reading them. Every document must be equal, or the difference is named here with its reason and the documents must
be equal once that difference is taken out. Synthetic handshakes cut into segments and records everywhere are read
by both too, and the record reader meets hostile input.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.ingest import Pipeline
from collectors.protocols import native_tcp, stream
from collectors.protocols.detect import tls_client_hello, tls_server_hello
from collectors.protocols.tls_wire import MAX_HANDSHAKE_BYTES, MAX_RECORD, Frame, TlsConnection, TlsStats
from collectors.selection import interface_block, stream_header
from tests.unit.test_flowcore import CAPTURES, TESTDATA
from tests.unit.test_tcp_native import (
    assert_equal_or_named,
    by_id,
    native_tcp_frames,
    pcapng,
    read_native,
    tcp_frame,
    tcp_payloads,
)

DPD = ("a TLS client talking to an HTTP server on port 80: tshark dissects port 80 as HTTP and logs no TLS record; "
       "the native reader reads the ClientHello as Zeek's dynamic protocol detection does (one more secops.tls "
       "record, not established)")
PPPOE_LENGTH = ("a PPPoE frame whose IP total length claims 6 bytes beyond the PPPoE payload length (Ethernet "
                "padding): the flow path's decoder trusts the IP length and hands 6 zero bytes on as payload, tshark "
                "the PPPoE length; the zeros break record sync, so the server's ChangeCipherSpec after them is not "
                "read and the session is not established (a decoder matter, collectors/decode.py)")
STARTTLS = ("a session that switched to TLS in-band (STARTTLS in POP3, XMPP and LDAP, MySQL's SSL request): the "
            "analyzers are given the handshake that follows the switch, not the cleartext before it "
            "(detect.UPGRADE). tshark, without the exchange that switched, dissects the handshake as the port's "
            "protocol and logs no TLS record; the native reader reads it (the record has Zeek's values: "
            "tests/unit/test_protocol_upgrade.py)")
# Differences the test expects, by capture: (reason, what is taken out before the documents must be equal).
KNOWN_DIFFERENCES: dict[str, tuple[str, str]] = {
    "https-to-http.pcap": (DPD, "tls-on-80"),
    "pppoe-over-qinq.pcap": (PPPOE_LENGTH, "established"),
    **dict.fromkeys(("pop3-starttls.pcap", "xmpp-starttls.pcap", "ldap-starttls.pcap", "encrypted.pcap"),
                    (STARTTLS, "starttls")),
}


def opens_with_tls(capture: Path) -> bool:
    """Whether some TCP payload of the capture starts with a TLS handshake record holding a hello."""
    return any(payload[:1] == b"\x16" and (tls_client_hello(payload[:512], 0) or tls_server_hello(payload[:512], 0))
               for _, payload in tcp_payloads(capture))


TLS_CAPTURES = [c for c in CAPTURES if opens_with_tls(c)]


def docs_of(capture: Path, read_tls: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    monkeypatch.setattr(stream, "NATIVE_TCP", True)
    monkeypatch.setattr(native_tcp, "READ_TLS", read_tls)
    docs: list[dict] = []
    pipe = Pipeline(docs.append, on_warning=lambda _m: None)
    pipe.process_file(capture)
    pipe.finish()
    return by_id(docs)


def without(docs: dict[str, dict], kind: str) -> list[dict]:
    out = []
    for doc in docs.values():
        if doc["event"]["dataset"] == "secops.tls":
            if (kind == "tls-on-80" and doc["destination"]["port"] == 80) or kind == "starttls":
                continue
            if kind == "established":
                doc = json.loads(json.dumps(doc))
                doc["tls"].pop("established", None)
        out.append(doc)
    return sorted(out, key=lambda d: json.dumps(d, sort_keys=True))


def test_shared_captures_are_in_the_set() -> None:
    assert len(TLS_CAPTURES) >= 20
    assert {"tls1.2.pcap", "tls13_wolfssl.pcap", "google-cert-repeat.pcap", "rdp-to-ssl.pcap",
            "chrome-63.0.3211.0-canary-tls_experiment.pcap"} <= {c.name for c in TLS_CAPTURES}


@pytest.mark.parametrize("capture", TLS_CAPTURES, ids=lambda c: c.name)
def test_native_documents_equal_tshark(capture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The differential oracle: every document of the pipeline, TLS read natively or by tshark."""
    native = docs_of(capture, True, monkeypatch)
    tshark = docs_of(capture, False, monkeypatch)
    assert any(d["event"]["dataset"] == "secops.tls" for d in native.values())
    assert_equal_or_named(capture, native, tshark, KNOWN_DIFFERENCES, without)


def test_tls_frames_do_not_reach_tshark(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = native_tcp_frames(monkeypatch)
    docs_of(TESTDATA / "zeek/traces/tls/tls1.2.pcap", True, monkeypatch)
    docs_of(TESTDATA / "zeek/traces/tls/tls1.2.pcap", False, monkeypatch)
    assert taken[0] >= 10 and taken[1] == 0


# -- synthetic handshakes: tshark reads the same capture ---------------------------------------------------------
def record(kind: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", kind, version, len(body)) + body


def message(kind: int, body: bytes) -> bytes:
    return struct.pack("!B", kind) + len(body).to_bytes(3, "big") + body


def extension(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def vec(body: bytes, size: int) -> bytes:
    return len(body).to_bytes(size, "big") + body


def certificate_der() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "native.example"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "secops test")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(4242).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("native.example")]), False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def tls12_handshake(der: bytes) -> tuple[bytes, bytes]:
    """(client bytes, server bytes) of a TLS 1.2 ECDHE handshake with SNI, ALPN, GREASE, heartbeat and a session
    id, then application data both ways."""
    extensions = b"".join([
        extension(0x0A0A, b""),  # GREASE
        extension(0, vec(b"\x00" + vec(b"native.example", 2), 2)),
        extension(10, vec(struct.pack("!HHH", 0x1A1A, 29, 23), 2)),
        extension(11, vec(b"\x00", 1)),
        extension(13, vec(struct.pack("!HHH", 0x0403, 0x0804, 0x0401), 2)),
        extension(16, vec(vec(b"h2", 1) + vec(b"http/1.1", 1), 2)),
        extension(15, b"\x01"),
        extension(43, vec(struct.pack("!HH", 0x0303, 0x0302), 1)),
    ])
    ciphers = struct.pack("!HHHH", 0x2A2A, 0xC02F, 0xC030, 0x009C)
    hello = struct.pack("!H", 0x0303) + bytes(range(32)) + vec(b"\x11" * 32, 1) + vec(ciphers, 2) + b"\x01\x00" + \
        vec(extensions, 2)
    server_ext = extension(65281, b"\x00") + extension(16, vec(vec(b"h2", 1), 2)) + extension(15, b"\x01")
    server_hello = struct.pack("!H", 0x0303) + bytes(32) + vec(b"\x22" * 32, 1) + struct.pack("!HB", 0xC02F, 0) + \
        vec(server_ext, 2)
    chain = vec(vec(der, 3) + vec(der, 3), 3)
    kex = b"\x03" + struct.pack("!H", 23) + vec(b"\x04" + bytes(64), 1) + struct.pack("!H", 0x0403) + vec(bytes(70), 2)
    server_flight = message(2, server_hello) + message(11, chain) + message(12, kex) + message(14, b"")
    half = len(server_flight) // 2  # the flight in two records, a message spanning them
    client = record(22, message(1, hello), 0x0301) + record(22, message(16, vec(bytes(65), 1))) + \
        record(20, b"\x01") + record(22, bytes(40)) + record(23, bytes(100))
    server = record(22, server_flight[:half]) + record(22, server_flight[half:]) + record(20, b"\x01") + \
        record(22, bytes(40)) + record(23, bytes(300)) + record(21, b"\x01\x00")
    return client, server


def segments(client: bytes, server: bytes, size: int) -> list[bytes]:
    """The client's bytes, then the server's, cut into ``size``-byte segments on 10.0.0.1:40000 -> :8443."""
    frames = [tcp_frame(b"", 999, True, 40000, 8443, flags=0x02),
              tcp_frame(b"", 4999, False, 40000, 8443, flags=0x12, ack=1000),
              tcp_frame(b"", 1000, True, 40000, 8443, flags=0x10, ack=5000)]
    seqs = {True: 1000, False: 5000}
    for from_client, data in ((True, client[:client.index(b"\x16\x03\x03")]), (False, server[:server.index(b"\x14")]),
                              (True, client[client.index(b"\x16\x03\x03"):]), (False, server[server.index(b"\x14"):])):
        for i in range(0, len(data), size):
            frames.append(tcp_frame(data[i:i + size], seqs[from_client], from_client, 40000, 8443,
                                    ack=seqs[not from_client]))
            seqs[from_client] += len(data[i:i + size])
    return frames


@pytest.mark.parametrize("size", [1460, 517, 300])
def test_synthetic_handshake_cut_anywhere_equals_tshark(size: int, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Records spanning segments, several messages per record, a message spanning records: the same document as
    tshark reads from the same capture, with every field filled."""
    der = certificate_der()
    capture = tmp_path / "tls.pcapng"
    capture.write_bytes(stream_header() + pcapng(segments(*tls12_handshake(der), size)))
    native = docs_of(capture, True, monkeypatch)
    tshark = docs_of(capture, False, monkeypatch)
    assert native == tshark
    tls = [d for d in native.values() if d["event"]["dataset"] == "secops.tls"]
    assert len(tls) == 1
    got = tls[0]["tls"]
    assert got["client"]["server_name"] == "native.example" and got["cipher"] == \
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert got["curve"] == "secp256r1" and got["next_protocol"] == "h2" and got["established"] is True
    assert got["server"]["hash"]["sha256"] == hashlib.sha256(der).hexdigest().upper()
    assert got["server"]["x509"]["subject"]["common_name"] == "native.example"


def test_heartbleed_read_like_tshark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Heartbeats both hellos offered: a request claiming 16 KiB in a 19-byte record before the handshake ended
    (CVE-2014-0160) and the server's long answer; the same heartbeat fields as tshark's."""
    client, server = tls12_handshake(certificate_der())
    hello_end = client.index(b"\x16\x03\x03")
    flight_end = server.index(b"\x14")
    client = client[:hello_end] + record(24, b"\x01\x40\x00" + bytes(16)) + client[hello_end:]
    server = server[:flight_end] + record(24, b"\x02\x40\x00" + bytes(4000)) + server[flight_end:]
    capture = tmp_path / "heartbleed.pcapng"
    capture.write_bytes(stream_header() + pcapng(segments(client, server, 1400)))
    native = docs_of(capture, True, monkeypatch)
    assert native == docs_of(capture, False, monkeypatch)
    beats = [d["secops"]["tls"]["heartbeat"] for d in native.values() if d["event"]["dataset"] == "secops.tls"]
    assert beats and beats[0]["overclaimed"] and beats[0]["max_payload_length"] == 0x4000


def test_frames_of_one_connection_go_to_one_reader() -> None:
    client, server = tls12_handshake(certificate_der())
    kept, docs, warnings = read_native(pcapng(segments(client, server, 700)[3:]))  # SYNs decide nothing
    assert kept == interface_block(1) and not warnings
    assert [(d["tls"]["client"]["server_name"], d["tls"]["established"]) for d in docs] == [("native.example", True)]


# -- hostile input -------------------------------------------------------------------------------------------------
def feed_all(parts: list[tuple[bool, bytes | int]]) -> tuple[TlsStats, int]:
    stats = TlsStats()
    conn = TlsConnection(stats)
    fields = 0
    for from_client, chunk in parts:
        frame = Frame()
        conn.feed(from_client, chunk, frame)
        fields += sum(len(v) for v in frame.fields.values())
    return stats, fields


def real_tls_streams() -> list[tuple[bytes, bytes]]:
    out = []
    for capture in TLS_CAPTURES[:12]:
        streams: dict[frozenset, tuple[tuple, list[bytes]]] = {}
        for p, payload in tcp_payloads(capture):
            from collectors.decode import DPORT, DST, SPORT, SRC
            sender = (p[SRC], p[SPORT])
            first, sides = streams.setdefault(frozenset((sender, (p[DST], p[DPORT]))), (sender, [b"", b""]))
            sides[0 if sender == first else 1] += payload
        out += [(c[:6000], s[:6000]) for _, (c, s) in streams.values() if c[:1] == b"\x16"][:2]
    return out


_STREAMS: list[tuple[bytes, bytes]] = []


def streams_cached() -> list[tuple[bytes, bytes]]:
    if not _STREAMS:
        _STREAMS.extend(real_tls_streams())
        _STREAMS.append(tls12_handshake(certificate_der()))
    return _STREAMS


def test_every_truncation_of_real_handshakes() -> None:
    cuts = 0
    for client, server in streams_cached():
        for size in range(0, min(len(server), 3000), 7):
            feed_all([(True, client[:size]), (False, server[:size])])
            cuts += 1
    assert cuts > 500


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_tls_never_raises(data: st.DataObject) -> None:
    """Real handshakes with bytes changed, cut anywhere and with holes: no exception, counted damage."""
    client, server = data.draw(st.sampled_from(streams_cached()))
    client, server = bytearray(client), bytearray(server)
    for target in (client, server):
        for pos, value in data.draw(st.lists(st.tuples(st.integers(0, 5999), st.integers(0, 255)), max_size=10)):
            if pos < len(target):
                target[pos] = value
    cuts = data.draw(st.lists(st.integers(1, 900), min_size=1, max_size=20))
    parts: list[tuple[bool, bytes | int]] = []
    for from_client, whole in ((True, bytes(client)), (False, bytes(server))):
        pos = 0
        for i, cut in enumerate(cuts * 20):
            if pos >= len(whole):
                break
            parts.append((from_client, whole[pos:pos + cut] if i % 9 != 8 else cut))
            pos += cut
    feed_all(parts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.integers(20, 24), st.binary(max_size=600)), max_size=30))
def test_random_records_never_raise(records: list[tuple[bool, int, bytes]]) -> None:
    feed_all([(from_client, record(kind, body)) for from_client, kind, body in records])


def test_oversized_lengths_and_endless_fragments_are_bounded() -> None:
    stats, _ = feed_all([(True, record(22, b"")[:3] + struct.pack("!H", MAX_RECORD + 1))])
    assert stats.oversized == 1
    stats, _ = feed_all([(True, record(22, message(1, b"")[:1] + (MAX_HANDSHAKE_BYTES + 1).to_bytes(3, "big")))])
    assert stats.oversized == 1
    stats = TlsStats()
    conn = TlsConnection(stats)
    tracemalloc.start()
    head = record(22, b"\x0b" + (MAX_HANDSHAKE_BYTES - 10).to_bytes(3, "big"))
    conn.feed(False, head, Frame())
    for _ in range(2000):  # 32 MB of handshake fragments of one message that never ends
        conn.feed(False, record(22, bytes(16000)), Frame())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # the message ends at its bound; the zeros after it are a flood of empty messages: reading stops there
    assert peak < 4 * MAX_HANDSHAKE_BYTES and stats.oversized == 1


def test_damage_is_counted_in_one_warning() -> None:
    frames = [tcp_frame(record(22, message(1, b"\x03\x03" + bytes(38))), 1000, True, 40000, 443),
              tcp_frame(b"\x99" * 20, 1000 + 49, True, 40000, 443)]
    kept, docs, warnings = read_native(pcapng(frames))
    assert kept == interface_block(1) and len(docs) == 1
    assert len(warnings) == 1 and "1 unknown record type(s)" in warnings[0]
