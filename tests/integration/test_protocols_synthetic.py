"""Protocols without a labelled capture in the shared data (DHCP, SSH, IEC 104): packets built with
scapy from the protocol specifications, written to a pcap, dissected by the real tshark."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from collectors.protocols import extract_metadata
from secops.ecs import get

pytestmark = pytest.mark.integration
CLIENT_MAC, SERVER_MAC = "02:00:00:00:00:aa", "02:00:00:00:00:01"


def run(tmp_path: Path, packets: list) -> list[dict]:
    path = tmp_path / "synthetic.pcap"
    for i, p in enumerate(packets):
        p.time = 1_700_000_000 + i * 0.01
    wrpcap(str(path), packets)
    warnings: list[str] = []
    docs = list(extract_metadata(path, on_warning=warnings.append))
    assert warnings == []
    return docs


def tcp_exchange(client: str, server: str, sport: int, dport: int, payloads: list[tuple[bool, bytes]]) -> list:
    """A handshake and then payloads (True = client to server) with consistent sequence numbers."""
    c_seq, s_seq = 1000, 5000
    e_c, e_s = Ether(src=CLIENT_MAC, dst=SERVER_MAC), Ether(src=SERVER_MAC, dst=CLIENT_MAC)
    pkts = [e_c / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="S", seq=c_seq),
            e_s / IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="SA", seq=s_seq, ack=c_seq + 1),
            e_c / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="A", seq=c_seq + 1, ack=s_seq + 1)]
    c_seq, s_seq = c_seq + 1, s_seq + 1
    for from_client, data in payloads:
        if from_client:
            pkts.append(e_c / IP(src=client, dst=server) / TCP(sport=sport, dport=dport, flags="PA", seq=c_seq,
                                                               ack=s_seq) / data)
            c_seq += len(data)
        else:
            pkts.append(e_s / IP(src=server, dst=client) / TCP(sport=dport, dport=sport, flags="PA", seq=s_seq,
                                                               ack=c_seq) / data)
            s_seq += len(data)
    return pkts


def test_dhcp_lease_maps_mac_to_address_with_hostname_and_vendor(tmp_path):
    chaddr = bytes.fromhex(CLIENT_MAC.replace(":", ""))
    broadcast = Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
    base = broadcast / UDP(sport=68, dport=67)
    reply = Ether(src=SERVER_MAC, dst=CLIENT_MAC) / IP(src="198.18.0.1", dst="198.18.0.50") / UDP(sport=67, dport=68)
    client_opts = [("hostname", b"plc-west-7"), ("vendor_class_id", b"MSFT 5.0")]
    docs = run(tmp_path, [
        base / BOOTP(chaddr=chaddr, xid=0x1234) / DHCP(options=[("message-type", "discover"), *client_opts, "end"]),
        reply / BOOTP(op=2, yiaddr="198.18.0.50", chaddr=chaddr, xid=0x1234) / DHCP(options=[
            ("message-type", "offer"), ("server_id", "198.18.0.1"), ("lease_time", 3600), "end"]),
        base / BOOTP(chaddr=chaddr, xid=0x1234) / DHCP(options=[
            ("message-type", "request"), ("requested_addr", "198.18.0.50"), *client_opts, "end"]),
        reply / BOOTP(op=2, yiaddr="198.18.0.50", chaddr=chaddr, xid=0x1234) / DHCP(options=[
            ("message-type", "ack"), ("server_id", "198.18.0.1"), ("lease_time", 3600), "end"]),
    ])
    dhcp = [d for d in docs if d["event"]["dataset"] == "secops.dhcp"]
    assert len(dhcp) == 1
    d = dhcp[0]
    assert get(d, "secops.dhcp.client_mac") == CLIENT_MAC and get(d, "secops.dhcp.assigned_ip") == "198.18.0.50"
    assert get(d, "secops.dhcp.hostname") == "plc-west-7" and get(d, "secops.dhcp.vendor_class") == "MSFT 5.0"
    assert get(d, "secops.dhcp.msg_type") == ["DISCOVER", "OFFER", "REQUEST", "ACK"]
    assert get(d, "network.protocol") == "dhcp" and get(d, "destination.port") == 67
    obs = [x for x in docs if x["event"]["dataset"] == "secops.observation"]
    assert len(obs) == 1
    assert obs[0]["host"] == {"ip": "198.18.0.50", "mac": CLIENT_MAC, "hostname": "plc-west-7"}
    assert obs[0]["secops"] == {"observation": {"kind": "dhcp", "source": "dhcp"}, "dhcp": {"vendor_class": "MSFT 5.0"}}


def test_ssh_banners_client_and_server(tmp_path):
    docs = run(tmp_path, tcp_exchange("198.18.0.10", "198.18.0.20", 50123, 22, [
        (False, b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"), (True, b"SSH-2.0-libssh2_1.10.0\r\n")]))
    ssh = [d for d in docs if d["event"]["dataset"] == "secops.ssh"]
    assert len(ssh) == 1
    assert get(ssh[0], "secops.ssh.client") == "SSH-2.0-libssh2_1.10.0"
    assert get(ssh[0], "secops.ssh.server") == "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"
    assert get(ssh[0], "source.ip") == "198.18.0.10" and get(ssh[0], "secops.ssh.version") == 2


def test_iec104_commands_and_monitoring(tmp_path):
    startdt = bytes.fromhex("680407000000")
    # I-format, C_SC_NA_1 (45) single command, COT 6 activation, common address 1, IOA 1, SCO 1
    command = bytes.fromhex("680e00000000" "2d01" "0600" "0100" "010000" "01")
    # I-format, M_SP_NA_1 (1) single point, COT 3 spontaneous
    spont = bytes.fromhex("680e00000200" "0101" "0300" "0100" "020000" "01")
    docs = run(tmp_path, tcp_exchange("198.18.0.30", "198.18.0.40", 40404, 2404, [
        (True, startdt), (False, bytes.fromhex("68040b000000")), (True, command), (False, spont)]))
    rows = [(get(d, "secops.iec104.apdu_type"), get(d, "secops.iec104.type"), get(d, "secops.iec104.cause"),
             get(d, "secops.iec104.is_command")) for d in docs if d["event"]["dataset"] == "secops.iec104"]
    assert rows == [("U", "STARTDT act", None, False), ("U", "STARTDT con", None, False),
                    ("I", "C_SC_NA_1", "act", True), ("I", "M_SP_NA_1", "spont", False)]
    assert {get(d, "destination.port") for d in docs} == {2404}


def test_ftp_successful_login_and_transfer(tmp_path):
    docs = run(tmp_path, tcp_exchange("198.18.0.60", "198.18.0.70", 40001, 21, [
        (False, b"220 ready\r\n"), (True, b"USER operator\r\n"), (False, b"331 password please\r\n"),
        (True, b"PASS hunter2\r\n"), (False, b"230 logged in\r\n"), (True, b"RETR config.bin\r\n"),
        (False, b"150 opening\r\n"), (False, b"226 done\r\n")]))
    rows = [(get(d, "secops.ftp.command"), get(d, "secops.ftp.arg"), get(d, "secops.ftp.reply_code"),
             get(d, "user.name"), get(d, "event.outcome")) for d in docs]
    assert rows == [("USER", "operator", 331, "operator", None), ("PASS", None, 230, "operator", "success"),
                    ("RETR", "config.bin", 226, "operator", None)]
    assert "hunter2" not in repr(docs)


def test_netbios_name_service_logged_as_zeek_dns(tmp_path):
    from scapy.layers.netbios import NBNSHeader, NBNSNodeStatusRequest, NBNSQueryRequest

    client, server = "192.0.2.10", "192.0.2.2"
    query = (Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP(src=client, dst=server) / UDP(sport=137, dport=137)
             / NBNSHeader(NAME_TRN_ID=0x1234) / NBNSQueryRequest(QUESTION_NAME="FILESRV"))
    status = (Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP(src=client, dst=server) / UDP(sport=137, dport=137)
              / NBNSHeader(NAME_TRN_ID=0x1235) / NBNSNodeStatusRequest(QUESTION_NAME="FILESRV"))
    docs = [d for d in run(tmp_path, [query, status]) if get(d, "event.dataset") == "secops.dns"]
    got = sorted((get(d, "dns.id"), get(d, "dns.question.name"), get(d, "dns.question.type")) for d in docs)
    # Zeek decodes the NetBIOS name (first 15 bytes, suffix dropped) and names type 33 NBSTAT on port 137
    assert got == [(0x1234, "FILESRV", "NIMLOC"), (0x1235, "FILESRV", "NBSTAT")]


def test_llmnr_multicast_query_is_not_paired_with_its_unicast_answer(tmp_path):
    from scapy.layers.dns import DNSQR, DNSRR
    from scapy.layers.llmnr import LLMNRQuery, LLMNRResponse

    asker, responder, group = "192.0.2.10", "192.0.2.20", "224.0.0.252"
    query = (Ether(src=CLIENT_MAC, dst="01:00:5e:00:00:fc") / IP(src=asker, dst=group) / UDP(sport=50000, dport=5355)
             / LLMNRQuery(id=7, qd=DNSQR(qname="printer")))
    answer = (Ether(src=SERVER_MAC, dst=CLIENT_MAC) / IP(src=responder, dst=asker) / UDP(sport=5355, dport=50000)
              / LLMNRResponse(id=7, qr=1, qd=DNSQR(qname="printer"), an=DNSRR(rrname="printer", rdata="192.0.2.20")))
    docs = [d for d in run(tmp_path, [query, answer]) if get(d, "event.dataset") == "secops.dns"]
    by_dest = {get(d, "destination.ip"): d for d in docs}
    assert set(by_dest) == {group, responder}
    assert get(by_dest[group], "dns.response_code") is None  # the group query stays a query of its own
    assert [a["data"] for a in get(by_dest[responder], "dns.answers")] == ["192.0.2.20"]
