"""In-band protocol switches (STARTTLS and the like): both flow engines log both services, as Zeek does."""

from __future__ import annotations

import tempfile
from itertools import zip_longest
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.packet import Raw
from scapy.utils import wrpcap

from collectors.decode import DPORT, DST, SPORT, SRC
from collectors.ingest import Pipeline
from collectors.protocols import stream
from collectors.selection import stream_header
from tests.support.frames import eth
from tests.unit.test_tcp_native import tcp_payloads

ZEEK = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "zeek" / "traces"
HELLO = bytes.fromhex("160301002f0100002b0303") + bytes(32) + bytes.fromhex("000002002f0100")  # a ClientHello


def services(pcap: Path, engine: str) -> list[tuple[int, list[str] | None]]:
    docs: list[dict] = []
    pipe = Pipeline(docs.append, engine=engine)
    pipe.process_file(pcap)
    pipe.finish()
    return [(d["destination"]["port"], d["network"].get("protocol")) for d in docs
            if d["event"]["dataset"] == "secops.conn"]


@pytest.mark.parametrize("engine", ["native", "python"])
@pytest.mark.parametrize(("trace", "port", "expected"), [
    ("tls/xmpp-starttls.pcap", 5222, ["xmpp", "ssl"]), ("tls/pop3-starttls.pcap", 110, ["pop3", "ssl"]),
    ("mysql/encrypted.pcap", 3306, ["mysql", "ssl"]), ("ldap/ldap-starttls.pcap", 389, ["ldap_tcp", "ssl"]),
])
def test_starttls_sessions_name_both_services_like_zeek(engine, trace, port, expected):
    assert (port, expected) in services(ZEEK / trace, engine)  # Zeek's conn.log: xmpp,ssl / pop3,ssl / ...


def _flow(tmp_path: Path, dport: int, client: list[bytes], server: list[bytes]) -> Path:
    """A TCP conversation: handshake, then the client's and server's payloads alternating."""
    c, s = ("198.18.0.1", 40000), ("198.18.0.2", dport)
    seq = {c: 1000, s: 5000}
    pkts = [eth() / IP(src=c[0], dst=s[0]) / TCP(sport=c[1], dport=s[1], flags="S", seq=999),
            eth() / IP(src=s[0], dst=c[0]) / TCP(sport=s[1], dport=c[1], flags="SA", seq=4999, ack=1000)]
    sides = zip_longest([(c, s, data) for data in client], [(s, c, data) for data in server])
    turns = [turn for pair in sides for turn in pair if turn is not None]
    for src, dst, data in turns:
        pkts.append(eth() / IP(src=src[0], dst=dst[0]) / TCP(sport=src[1], dport=dst[1], flags="PA", seq=seq[src],
                                                               ack=seq[dst]) / Raw(data))
        seq[src] += len(data)
    for i, p in enumerate(pkts):
        p.time = 100 + i * 0.01
    path = tmp_path / f"flow{dport}.pcap"
    wrpcap(str(path), pkts)
    return path


@pytest.mark.parametrize("engine", ["native", "python"])
def test_only_the_named_upgrade_counts(tmp_path, engine):
    """SMTP switching to TLS is smtp,ssl; an HTTP body that starts like a ClientHello is no upgrade (HTTP has
    none here), nor is an SMTP payload that matches another protocol's probe (SSH's banner)."""
    smtp = _flow(tmp_path, 25, [b"EHLO a\r\n", b"STARTTLS\r\n", HELLO], [b"250 ok\r\n", b"220 go\r\n"])
    http = _flow(tmp_path, 80, [b"GET / HTTP/1.1\r\n\r\n", HELLO], [b"HTTP/1.1 200 OK\r\n\r\n"])
    other = _flow(tmp_path, 587, [b"EHLO a\r\n", b"SSH-2.0-x\r\n"], [b"250 ok\r\n"])
    assert services(smtp, engine) == [(25, ["smtp", "ssl"])]
    assert services(http, engine) == [(80, ["http"])]
    assert services(other, engine) == [(587, ["smtp"])]


BASELINES = ZEEK.parent / "baselines"


def zeek_ssl(baseline: str) -> list[tuple]:
    """(responder port, version, cipher, curve, server name, established) of each row of a Zeek ssl.log."""
    lines = (BASELINES / baseline / "ssl.log").read_text().splitlines()
    names = next(line for line in lines if line.startswith("#fields")).split("\t")[1:]
    rows = [dict(zip(names, line.split("\t"), strict=True)) for line in lines if line and not line.startswith("#")]
    return sorted((int(r["id.resp_p"]), r["version"], r["cipher"], r["curve"], r["server_name"], r["established"])
                  for r in rows)


@pytest.mark.parametrize("engine", ["native", "python"])
@pytest.mark.parametrize(("trace", "baseline"), [
    ("tls/xmpp-starttls.pcap", "scripts.base.protocols.xmpp.starttls"),
    ("tls/pop3-starttls.pcap", "scripts.base.protocols.pop3.starttls"),
    ("mysql/encrypted.pcap", "scripts.base.protocols.mysql.encrypted"),
    ("ldap/ldap-starttls.pcap", "scripts.base.protocols.ldap.starttls"),
    ("rdp/rdp-to-ssl.pcap", "scripts.base.protocols.rdp.rdp-to-ssl"),
])
def test_starttls_hands_the_analyzers_only_the_handshake(engine, trace, baseline, monkeypatch):
    """No cleartext of a session that may switch to TLS is selected (no analyzer reads it): the analyzers' first
    payload of each connection is the TLS handshake that follows the switch, and its record has Zeek's values."""
    given: list[bytes] = []
    feed = stream.TsharkStdinRun.feed
    monkeypatch.setattr(stream.TsharkStdinRun, "feed", lambda run, data: (given.append(data), feed(run, data))[1])
    docs: list[dict] = []
    pipe = Pipeline(docs.append, engine=engine)
    pipe.process_file(ZEEK / trace)
    pipe.finish()
    records = sorted(
        (d["destination"]["port"], f"{d['tls']['version_protocol'].upper()}v{d['tls']['version'].replace('.', '')}",
         d["tls"].get("cipher", "-"), d["tls"].get("curve", "-"), d["tls"].get("client", {}).get("server_name", "-"),
         "T" if d["tls"].get("established") else "F")
        for d in docs if d["event"]["dataset"] == "secops.tls")
    assert records == zeek_ssl(baseline)
    first_payloads = {}
    for p, payload in tcp_payloads_of_blocks(b"".join(given)):
        first_payloads.setdefault(frozenset(((p[SRC], p[SPORT]), (p[DST], p[DPORT]))), payload)
    assert first_payloads and all(payload[:1] == b"\x16" for payload in first_payloads.values())


def tcp_payloads_of_blocks(blocks: bytes) -> list[tuple[tuple, bytes]]:
    """(decoded packet, payload) of the TCP segments with payload among pcapng blocks (after the stream header)."""
    with tempfile.NamedTemporaryFile(suffix=".pcapng") as f:
        f.write(stream_header() + blocks)
        f.flush()
        return list(tcp_payloads(Path(f.name)))
