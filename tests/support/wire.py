"""The driver and the oracle of the native wire readers' field-level differentials (tests/unit/test_*_wire.py).

``read_port`` reads a capture with the project's decoder, puts each TCP direction of the connections on one port in
sequence order (``tcp_reassembly.Direction``), feeds each frame's chunks to the connection's reader and calls
``take()`` once per frame, as ``native_tcp`` does. ``ek_fields`` runs tshark (the oracle) and keys what it prints by
frame number.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from collectors.decode import ACK, BUF, CAPLEN, DPORT, DST, FLAGS, L4OFF, PLEN, PROTO, SEQ, SPORT, SRC, Decoder
from collectors.flowconst import TCP
from collectors.pcapio import read_capture
from collectors.protocols.tcp_reassembly import Direction
from tests.support.frames import eth

Fields = dict[str, list[str]]
Frames = dict[int, Fields]
Endpoint = tuple[bytes, int]  # address, port
Where = tuple[bytes, bytes]  # a frame's source and destination address
TSHARK = shutil.which("tshark")


class WireReader(Protocol):
    def feed(self, from_client: bool, chunk: bytes | int) -> None: ...
    def take(self) -> Fields: ...


def needs_tshark() -> str:
    """tshark is the oracle: without it the test fails (.ci/setup installs it), never skips."""
    assert TSHARK is not None, "tshark is not installed (.ci/setup installs it)"
    return TSHARK


def payload_start(p: tuple[Any, ...]) -> int:
    buf, l4 = p[BUF], p[L4OFF]
    return int(l4 + (buf[l4 + 12] >> 4) * 4)


def ek_fields(cmd: list[str]) -> Frames:
    """What ``tshark ... -T ek -e frame.number -e ...`` prints, by frame number; frames with the protocol but none of
    the other fields are left out."""
    out: Frames = {}
    for line in subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout.splitlines():
        layers = json.loads(line).get("layers")
        if layers is not None:
            number = int(layers.pop("frame_number")[0])
            if layers:
                out[number] = layers
    return out


def read_port(pcap: Path, port: int, new_reader: Callable[[Endpoint, Endpoint], WireReader],
              before_frame: Callable[[WireReader, int], None] | None = None) -> tuple[Frames, dict[int, Where]]:
    """What the readers give, by frame number, and each TCP frame's (source, destination) address.

    ``new_reader(client, server)`` makes the reader of a connection (first seen, or a SYN after its data: a new one
    on the same endpoints); the client is the side not on ``port``. ``before_frame(reader, frame number)`` is
    called before each frame's chunks are fed."""
    decoder = Decoder()
    conns: dict[tuple[Endpoint, Endpoint], tuple[Endpoint, tuple[Direction, Direction], WireReader, list[bool]]] = {}
    out: Frames = {}
    where: dict[int, Where] = {}
    for number, (ts, linktype, buf, off, caplen, _wire) in enumerate(read_capture(pcap, lambda _m: None), 1):
        packets = decoder.decode(linktype, buf, off, caplen, ts)
        if not packets or packets[-1][PROTO] != TCP or port not in (packets[-1][SPORT], packets[-1][DPORT]):
            continue
        p = packets[-1]
        where[number] = (p[SRC], p[DST])
        a, b = (p[SRC], p[SPORT]), (p[DST], p[DPORT])
        key = (a, b) if a < b else (b, a)
        conn = conns.get(key)
        if conn is None or (p[FLAGS] & 0x12 == 0x02 and conn[3][0]):  # first seen, or a new SYN after data
            client, server = (b, a) if p[SPORT] == port else (a, b)
            conn = conns[key] = (client, (Direction(), Direction()), new_reader(client, server), [False])
        client, dirs, reader, had_data = conn
        side = 0 if a == client else 1
        if p[FLAGS] & 0x02:
            dirs[side].syn(p[SEQ])
        elif p[FLAGS] & 0x10:
            dirs[1 - side].acked(p[ACK])
        if not p[PLEN]:
            continue
        had_data[0] = True
        start = payload_start(p)
        if before_frame is not None:
            before_frame(reader, number)
        for chunk in dirs[side].add(p[SEQ], bytes(p[BUF][start:start + min(p[CAPLEN], p[PLEN])]), p[PLEN]):
            reader.feed(side == 0, chunk)
        fields = reader.take()
        if fields:
            out[number] = fields
    return out, where


class TcpSession:
    """A TCP connection written with scapy from a client's port to ``port`` (with its handshake unless told; the
    hosts in 198.18.0.0/15): ``client``/``server`` append one segment each to ``out`` and return its frame number.
    Nothing is sent: the frames go to a capture file (``scapy.utils.wrpcap``)."""

    def __init__(self, out: list[Any], client: str, server: str, cport: int, port: int, handshake: bool = True) -> None:
        from scapy.layers import inet  # imported here: scapy is slow to import

        self.ip, self.tcp = inet.IP, inet.TCP
        self.out, self.addrs, self.cport, self.port = out, (client, server), cport, port
        self.seq = [1000, 70000]
        if handshake:
            self.send(0, b"", "S", -1)
            self.send(1, b"", "SA", -1)
            self.send(0, b"", "A")

    def send(self, side: int, data: bytes, flags: str = "PA", shift: int = 0) -> int:
        """One segment from the client (side 0) or the server; ``shift`` moves its sequence number (overlaps, holes)."""
        src, dst = self.addrs[side], self.addrs[1 - side]
        sport, dport = (self.cport, self.port) if side == 0 else (self.port, self.cport)
        ack = 0 if flags == "S" else self.seq[1 - side]
        pkt = eth() / self.ip(src=src, dst=dst) / self.tcp(sport=sport, dport=dport, flags=flags,
                                                           seq=self.seq[side] + shift, ack=ack) / data
        pkt.time = 1_700_000_000 + len(self.out) / 1000
        self.out.append(pkt)
        self.seq[side] += len(data)
        return len(self.out)

    def client(self, data: bytes) -> int:
        return self.send(0, data)

    def server(self, data: bytes) -> int:
        return self.send(1, data)

    def close(self) -> None:
        self.send(0, b"", "FA")
        self.seq[0] += 1
        self.send(1, b"", "FA")
        self.seq[1] += 1
        self.send(0, b"", "A")
