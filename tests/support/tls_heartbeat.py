"""TLS sessions with heartbeats, crafted with scapy byte for byte to RFC 5246 / RFC 6520 (there is no
heartbleed capture in the shared test data, and no maintained TLS library still sends heartbeats).

Each function returns the packets of one TCP connection from ``client`` to ``server``:443:
- :func:`heartbleed`: ClientHello and ServerHello offer heartbeats, the client sends a request claiming
  16384 bytes of payload in a 3-byte record before the handshake completes, the server answers 16 KiB;
- :func:`early_heartbeat`: the same moment, but a well-formed request and its echo (a scan, no read);
- :func:`keepalive`: a full handshake, then encrypted heartbeats of equal size both ways (legitimate);
- :func:`encrypted_leak`: a full handshake, then an encrypted 64-byte request answered with 16 KiB.
"""

from __future__ import annotations

import os
import struct

from scapy.layers.inet import IP, TCP
from scapy.packet import Packet

from tests.support.frames import eth

T0 = 1_763_640_000.0
HEARTBEAT_EXTENSION = struct.pack("!HHB", 15, 1, 1)  # peer_allowed_to_send


def record(content_type: int, body: bytes, version: int = 0x0302) -> bytes:
    return struct.pack("!BHH", content_type, version, len(body)) + body


def handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def client_hello(server_name: str = "portal.example") -> bytes:
    name = server_name.encode()
    sni = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    extensions = sni + HEARTBEAT_EXTENSION
    body = (b"\x03\x02" + os.urandom(32) + b"\x00" + struct.pack("!H", 4) + b"\xc0\x14\x00\x2f" + b"\x01\x00"
            + struct.pack("!H", len(extensions)) + extensions)
    return record(22, handshake(1, body), 0x0301)


def server_hello() -> bytes:
    body = (b"\x03\x02" + os.urandom(32) + b"\x20" + os.urandom(32) + b"\xc0\x14\x00"
            + struct.pack("!H", len(HEARTBEAT_EXTENSION)) + HEARTBEAT_EXTENSION)
    return record(22, handshake(2, body)) + record(22, handshake(14, b""))


def heartbeat(kind: int, payload_length: int, payload: bytes, padding: int = 16) -> bytes:
    return record(24, bytes([kind]) + struct.pack("!H", payload_length) + payload + os.urandom(padding))


def encrypted(content_type: int, size: int) -> bytes:
    return record(content_type, os.urandom(size))


class Connection:
    """One TCP connection's packets with consistent sequence numbers, 1 ms apart."""

    def __init__(self, client: str, server: str, sport: int, start: float, mss: int = 1448) -> None:
        self.client, self.server, self.sport, self.t, self.mss = client, server, sport, start, mss
        self.seq = {True: 1000, False: 50_000}
        self.packets: list[Packet] = []

    def _segment(self, from_client: bool, flags: str, data: bytes = b"") -> None:
        self.t += 0.001
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        sport, dport = (self.sport, 443) if from_client else (443, self.sport)
        pkt = eth() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=self.seq[from_client],
                                                   ack=self.seq[not from_client]) / data
        pkt.time = self.t
        self.seq[from_client] += len(data) + (1 if set(flags) & {"S", "F"} else 0)
        self.packets.append(pkt)

    def send(self, from_client: bool, data: bytes) -> None:
        for at in range(0, len(data), self.mss):
            self._segment(from_client, "PA", data[at:at + self.mss])

    def open(self) -> Connection:
        self._segment(True, "S")
        self._segment(False, "SA")
        self._segment(True, "A")
        self.send(True, client_hello())
        self.send(False, server_hello())
        return self

    def complete_handshake(self) -> None:
        """ClientKeyExchange, ChangeCipherSpec and encrypted Finished both ways, then application data."""
        key_exchange = record(22, handshake(16, b"\x41\x04" + os.urandom(64)))  # ECDHE: 65-byte point
        self.send(True, key_exchange + record(20, b"\x01") + encrypted(22, 48))
        self.send(False, record(20, b"\x01") + encrypted(22, 48))
        self.send(True, encrypted(23, 400))
        self.send(False, encrypted(23, 1200))

    def close(self) -> list[Packet]:
        self._segment(True, "FA")
        self._segment(False, "FA")
        self._segment(True, "A")
        return self.packets


LEAK = 16_384


def heartbleed(client: str, server: str, sport: int, start: float = T0) -> list[Packet]:
    c = Connection(client, server, sport, start).open()
    c.send(True, heartbeat(1, LEAK, b"", padding=0))
    c.send(False, heartbeat(2, LEAK, os.urandom(LEAK)))
    return c.close()


def early_heartbeat(client: str, server: str, sport: int, start: float = T0) -> list[Packet]:
    c = Connection(client, server, sport, start).open()
    probe = os.urandom(16)
    c.send(True, heartbeat(1, len(probe), probe))
    c.send(False, heartbeat(2, len(probe), probe))
    return c.close()


def keepalive(client: str, server: str, sport: int, start: float = T0) -> list[Packet]:
    c = Connection(client, server, sport, start).open()
    c.complete_handshake()
    for _ in range(2):
        c.send(True, encrypted(24, 64))
        c.send(False, encrypted(24, 64))
    return c.close()


def encrypted_leak(client: str, server: str, sport: int, start: float = T0) -> list[Packet]:
    c = Connection(client, server, sport, start).open()
    c.complete_handshake()
    c.send(True, encrypted(24, 64))
    c.send(False, encrypted(24, LEAK + 64))
    return c.close()
