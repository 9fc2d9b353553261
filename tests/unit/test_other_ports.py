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
