"""Protocols on ports tshark does not decode them on: the same documents as on their registered port.

Each capture is rewritten to move the server port (scapy: ports and TCP checksum only; tcprewrite also takes
Ethernet padding for payload); the analyzers' documents must come out the same (ports aside) as from the
original, with nothing produced twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from scapy.layers.inet import TCP
from scapy.utils import rdpcap, wrpcap

from collectors.ingest import Pipeline
from collectors.selection import stream_header

ATTACKS = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "attacks"


def documents(pcap: Path, dataset: str) -> tuple[list[tuple], Counter]:
    docs: list[dict] = []
    pipe = Pipeline(docs.append)
    pipe.process_file(pcap)
    pipe.finish()
    ids = Counter(d["_id"] for d in docs)
    mine = [d for d in docs if d["event"]["dataset"] == dataset]
    summary = sorted((d["@timestamp"], d["source"]["ip"], d["destination"]["ip"],
                      repr(sorted((k, v) for k, v in d["secops"].items() if k != "truncated"))) for d in mine)
    services = Counter(str(d["network"].get("protocol")) for d in docs if d["event"]["dataset"] == "secops.conn")
    assert max(ids.values()) == 1  # nothing twice
    return summary, services


@pytest.mark.parametrize(("capture", "port", "moved", "dataset", "service"), [
    ("bruteforce/ftp-bruteforce.pcap", 21, 2121, "secops.ftp", "ftp"),
    ("ics/modbus/modbus-eit.pcap", 502, 5020, "secops.modbus", "modbus"),
    ("ics/dnp3/dnp3.pcap", 20000, 20002, "secops.dnp3", "dnp3"),
    ("ics/s7comm/snap7.pcap", 102, 1102, "secops.s7comm", "s7comm"),
])
def test_documents_do_not_depend_on_the_port(tmp_path, capture, port, moved, dataset, service):
    original = ATTACKS / capture
    rewritten = tmp_path / "moved.pcap"
    packets = rdpcap(str(original))
    for pkt in packets:
        if TCP in pkt and port in (pkt[TCP].sport, pkt[TCP].dport):
            pkt[TCP].sport = moved if pkt[TCP].sport == port else pkt[TCP].sport
            pkt[TCP].dport = moved if pkt[TCP].dport == port else pkt[TCP].dport
            del pkt[TCP].chksum
    wrpcap(str(rewritten), packets)
    want, want_services = documents(original, dataset)
    got, got_services = documents(rewritten, dataset)
    assert want and got == want
    assert got_services == want_services and any(service in s for s in got_services)


def test_ftp_on_an_unusual_port_is_read_past_auth_gssapi() -> None:
    """globus-url-copy: GridFTP's control channel on 2811, AUTH GSSAPI then ADAT and ENC lines. Read from the
    payload (``other_ports.read_ftp``), the commands are those tshark gives decoding 2811 as FTP, except the part of
    a long ADAT line in a later segment, which tshark takes for a command of its own (a line reader, as Zeek's,
    does not). The first version of this reading stopped at AUTH and logged none of them."""
    import subprocess

    path = ATTACKS.parent / "zeek" / "traces" / "globus-url-copy.pcap"
    docs: list[dict] = []
    pipe = Pipeline(docs.append)
    pipe.process_file(path)
    pipe.finish()
    ours = Counter(d["secops"]["ftp"]["command"] for d in docs if d["event"]["dataset"] == "secops.ftp")
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-d", "tcp.port==2811,ftp", "-Y", "ftp.request", "-T",
                          "fields", "-e", "ftp.request.command"], capture_output=True, text=True, check=True).stdout
    theirs = Counter(c for c in out.split() if c.isalpha() and len(c) <= 4)
    assert ours == theirs and ours["ENC"] > 0 and ours["AUTH"] == 1


def test_ftp_on_an_unusual_port_ends_its_lines_at_auth_tls(tmp_path: Path) -> None:
    """After AUTH TLS only the server's reply to it is read: the TLS records that follow are no FTP lines."""
    from tests.unit.test_tcp_native import conversation, pcapng, tcp_frame

    hello = bytes.fromhex("160301002f0100002b0303") + bytes(32) + b"\x00\x00\x02\x00\x2f\x01\x00\n\r\nUSER x\r\n"
    frames = conversation((False, b"220 ready\r\n"), (True, b"USER anna\r\n"), (False, b"331 pass?\r\n"),
                          (True, b"PASS s\r\n"), (False, b"230 ok\r\n"), (True, b"AUTH TLS\r\n"),
                          (False, b"234-about to\r\n234 go\r\n"), (True, hello), (False, b"\x16\x03\x03\n500 x\r\n"),
                          dport=2121)
    handshake = [tcp_frame(b"", 999, True, dport=2121, flags=0x02), tcp_frame(b"", 4999, False, dport=2121, flags=0x12,
                                                                               ack=1000)]
    pcap = tmp_path / "auth-tls.pcapng"
    pcap.write_bytes(stream_header() + pcapng(handshake + frames))
    docs: list[dict] = []
    pipe = Pipeline(docs.append)
    pipe.process_file(pcap)
    pipe.finish()
    got = [(d["secops"]["ftp"]["command"], d["secops"]["ftp"].get("reply_code"))
           for d in docs if d["event"]["dataset"] == "secops.ftp"]
    assert got == [("USER", 331), ("PASS", 230), ("AUTH", 234)]
