"""Synthetic, labelled demo traffic written as a pcap, so `secops demo` runs on a fresh offline machine.

Every address is from 198.18.0.0/15 (benchmarking space); nothing is sent anywhere, packets are only
written to a file. The capture contains ordinary DNS/HTTP/TLS plus the behaviours the built-in rules
look for: a TCP port scan, an ICMP host sweep, DNS tunnelling, HTTP beaconing, an FTP brute force,
cleartext HTTP basic auth and Modbus writes.
"""

from __future__ import annotations

import random
import struct
from base64 import b32encode
from collections.abc import Iterator
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import PcapWriter

ATTACKER = "198.18.0.66"
WORKSTATION = "198.18.0.20"
SERVER = "198.18.0.10"
RESOLVER = "198.18.0.53"
C2 = "198.19.5.5"
PLC = "198.18.0.30"
ROUTER_MAC = "02:00:c6:13:00:01"  # every address without its own MAC below sits behind this router
MACS = {ip: f"02:00:c6:12:00:{int(ip.split('.')[-1]):02x}" for ip in (ATTACKER, WORKSTATION, SERVER, RESOLVER, PLC)}


def _eth(src: str, dst: str) -> Ether:
    return Ether(src=MACS.get(src, ROUTER_MAC), dst=MACS.get(dst, ROUTER_MAC))


class Trace:
    def __init__(self, start: float, seed: int = 7):
        self.packets: list[tuple[float, Packet]] = []
        self.t0 = start
        self.rng = random.Random(seed)

    def add(self, t: float, pkt: Packet) -> None:
        self.packets.append((self.t0 + t, pkt))

    def tcp_session(self, t: float, cli: str, cport: int, srv: str, sport: int,
                    exchanges: list[tuple[bytes, bytes]], rtt: float = 0.002) -> float:
        """A full TCP connection: handshake, request/response pairs, FIN teardown. Returns the end time."""
        cseq, sseq = self.rng.randrange(1 << 31), self.rng.randrange(1 << 31)

        def c(flags: str, payload: bytes = b"") -> Packet:
            return _eth(cli, srv) / IP(src=cli, dst=srv) / TCP(sport=cport, dport=sport, flags=flags, seq=cseq,
                                                               ack=sseq if "A" in flags else 0) / Raw(payload)

        def s(flags: str, payload: bytes = b"") -> Packet:
            return _eth(srv, cli) / IP(src=srv, dst=cli) / TCP(sport=sport, dport=cport, flags=flags, seq=sseq,
                                                               ack=cseq) / Raw(payload)

        self.add(t, c("S"))
        cseq += 1
        self.add(t + rtt, s("SA"))
        sseq += 1
        t += 2 * rtt
        self.add(t, c("A"))
        for req, resp in exchanges:
            if req:
                self.add(t, c("PA", req))
                cseq += len(req)
                t += rtt
            if resp:
                self.add(t, s("PA", resp))
                sseq += len(resp)
                t += rtt
            self.add(t, c("A"))
        self.add(t, c("FA"))
        cseq += 1
        self.add(t + rtt, s("FA"))
        sseq += 1
        self.add(t + 2 * rtt, c("A"))
        return t + 2 * rtt

    def dns(self, t: float, client: str, name: str, qtype: str = "A", answer: str | bytes = "198.18.0.10") -> None:
        qid = self.rng.randrange(65536)
        sport = self.rng.randrange(20000, 60000)
        q = DNS(id=qid, rd=1, qd=DNSQR(qname=name, qtype=qtype))
        self.add(t, _eth(client, RESOLVER) / IP(src=client, dst=RESOLVER) / UDP(sport=sport, dport=53) / q)
        an = DNSRR(rrname=name, type=qtype, ttl=60, rdata=answer)
        r = DNS(id=qid, qr=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype=qtype), an=an)
        self.add(t + 0.003, _eth(RESOLVER, client) / IP(src=RESOLVER, dst=client) / UDP(sport=53, dport=sport) / r)

    def write(self, path: Path) -> int:
        self.packets.sort(key=lambda p: p[0])
        with PcapWriter(str(path), linktype=1, sync=False) as w:
            for ts, pkt in self.packets:
                pkt.time = ts
                w.write(pkt)
        return len(self.packets)


def _http(method: str, host: str, path: str, extra: str = "", body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0)\r\n{extra}"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _ok(body: bytes = b"<html>ok</html>", status: str = "200 OK") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def _behaviours(tr: Trace) -> Iterator[str]:
    # ordinary traffic
    for i in range(20):
        tr.dns(i * 30.0, WORKSTATION, f"www{i % 4}.city.example")
        tr.tcp_session(i * 30.0 + 0.01, WORKSTATION, 40000 + i, SERVER, 80,
                       [(_http("GET", "www.city.example", f"/page/{i}"), _ok())])
    yield "benign DNS and HTTP"
    # TCP SYN port scan: 1..300, open 22 and 80
    for n, port in enumerate(range(1, 301)):
        t = 100.0 + n * 0.001
        tr.add(t, _eth(ATTACKER, SERVER) / IP(src=ATTACKER, dst=SERVER) / TCP(sport=55555, dport=port, flags="S"))
        flags = "SA" if port in (22, 80) else "RA"
        tr.add(t + 0.0005, _eth(SERVER, ATTACKER) / IP(src=SERVER, dst=ATTACKER) /
               TCP(sport=port, dport=55555, flags=flags, ack=1))
    yield "TCP port scan of 300 ports"
    # ICMP sweep of a /24
    for host in range(1, 255):
        t = 120.0 + host * 0.002
        dst = f"198.18.1.{host}"
        tr.add(t, _eth(ATTACKER, dst) / IP(src=ATTACKER, dst=dst) / ICMP(type=8, id=7, seq=host))
        if host % 16 == 0:
            tr.add(t + 0.001, _eth(dst, ATTACKER) / IP(src=dst, dst=ATTACKER) / ICMP(type=0, id=7, seq=host))
    yield "ICMP sweep of 254 addresses"
    # DNS tunnelling: long base32 labels, NULL and TXT records
    for i in range(150):
        chunk = b32encode(tr.rng.randbytes(35)).decode().rstrip("=").lower()
        name = f"{chunk[:56]}.{chunk[56:]}{i}.t.tunnel-demo.test"
        tr.dns(200.0 + i * 0.5, WORKSTATION, name, qtype="NULL" if i % 2 else "TXT",
               answer=tr.rng.randbytes(100) if i % 2 else "v" + chunk)
    yield "DNS tunnel (150 NULL/TXT queries, 56-character labels)"
    # beaconing: GET every 30 s with +-1 s jitter for 40 minutes
    for i in range(80):
        t = 300.0 + i * 30.0 + tr.rng.uniform(-1, 1)
        tr.tcp_session(t, WORKSTATION, 45000 + i, C2, 80, [(_http("GET", C2, "/admin/get.php"), _ok(b"x" * 64))])
    yield "HTTP beaconing every 30 s"
    # FTP brute force
    for i in range(15):
        pw = f"password{i}".encode()
        tr.tcp_session(500.0 + i * 2, ATTACKER, 46000 + i, SERVER, 21, [
            (b"", b"220 ProFTPD Server ready.\r\n"), (b"USER admin\r\n", b"331 Password required\r\n"),
            (b"PASS " + pw + b"\r\n", b"530 Login incorrect.\r\n"), (b"QUIT\r\n", b"221 Goodbye.\r\n")])
    yield "FTP brute force (15 failed logins)"
    # cleartext HTTP basic auth
    tr.tcp_session(600.0, WORKSTATION, 47000, SERVER, 8080, [(_http(
        "GET", "intranet.city.example", "/admin", "Authorization: Basic YWRtaW46c2VjcmV0\r\n"), _ok())])
    yield "HTTP basic authentication in clear text"
    # Modbus/TCP: read, then write single register (FC 6) and write multiple coils (FC 15)
    pdus = [struct.pack(">BHH", 3, 0, 10), struct.pack(">BHH", 6, 40, 1234),
            struct.pack(">BHHB", 15, 0, 8, 1) + b"\xff"]
    ex = []
    for tid, pdu in enumerate(pdus, 1):
        req = struct.pack(">HHHB", tid, 0, len(pdu) + 1, 1) + pdu
        rsp_pdu = pdu[:5] if pdu[0] != 3 else b"\x03\x14" + bytes(20)
        ex.append((req, struct.pack(">HHHB", tid, 0, len(rsp_pdu) + 1, 1) + rsp_pdu))
    tr.tcp_session(700.0, ATTACKER, 48000, PLC, 502, ex)
    yield "Modbus/TCP register and coil writes to a PLC"


def write_demo_pcap(path: Path, start: float) -> tuple[int, list[str]]:
    """Write the demo capture starting at ``start`` (epoch seconds); returns (packets, behaviours)."""
    tr = Trace(start)
    labels = list(_behaviours(tr))
    return tr.write(path), labels
