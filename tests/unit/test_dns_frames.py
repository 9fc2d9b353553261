"""DNS datagrams read in place by the Rust engine (``RustDns.frame``: plain Ethernet, IPv4 and UDP on a DNS port)
against the same datagrams decoded in Python and read through ``RustDns.read`` (the path of every other frame).

Both run through ``NativeFrames``: every shared capture, and generated frames at each edge of the decoder's fast path
(UDP and IP lengths that disagree, snap-cut frames, Ethernet padding, tunnel ports, a DNS port that is not the lower
one, fragments, IP options, frames shorter than the fast path takes, random payloads), mixed with VLAN-tagged frames
that are always decoded, so that the sweep of unanswered queries is shared by both paths. They must give the same
documents in the same order, the same bytes to tshark, the same frame numbering and the same counters.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import orjson
import pytest

from collectors.protocols.dns_udp import RustDns
from collectors.protocols.expected import ExpectedConnections
from collectors.protocols.native import NativeFrames
from collectors.selection import interface_block, packet_block
from tests.unit.test_flowcore import CAPTURES
from tests.unit.test_tcp_table import capture_stream, split_all

pytestmark = pytest.mark.skipif(not isinstance(NativeFrames("t", print).dns, RustDns),
                                reason="collectors._rs is not built")

Run = tuple[bytes, list[bytes], list[str], int, list[int], tuple[int, ...]]


def run(data: bytes, in_place: bool, step: int = 1 << 16) -> Run:
    """(tshark's bytes, documents as JSON, warnings, DNS frames read, frame numbers taken, the engine's counters)."""
    warnings: list[str] = []
    native = NativeFrames("t", warnings.append, ExpectedConnections(), raw=True)
    assert native._rust_dns is not None
    if not in_place:
        native._rust_dns = None
    kept, docs = split_all(native, data, step)
    assert isinstance(native.dns, RustDns)
    engine = native.dns.engine
    counters = (engine.messages, engine.truncated, engine.too_short, engine.records_cut, engine.cut_values)
    return kept, [orjson.dumps(d) for d in docs], warnings, native.frames, list(native.taken_at), counters


def assert_same(data: bytes, step: int = 1 << 16) -> Run:
    decoded, in_place = run(data, False, step), run(data, True, step)
    assert len(in_place[1]) == len(decoded[1])
    for i, (a, b) in enumerate(zip(decoded[1], in_place[1], strict=True)):
        assert a == b, f"document {i}\nin place: {b!r}\ndecoded:  {a!r}"
    assert in_place == decoded
    return decoded


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_every_shared_capture_reads_alike(capture: Path) -> None:
    assert_same(capture_stream(capture))


def query(ident: int, name: bytes = b"example.org", answer: bool = False) -> bytes:
    """A DNS message: a query for ``name``, or its answer with one A record."""
    qname = b"".join(bytes([len(label)]) + label for label in name.split(b".")) + b"\0"
    flags, answers = (0x8180, 1) if answer else (0x0100, 0)
    message = struct.pack("!HHHHHH", ident, flags, 1, answers, 0, 0) + qname + struct.pack("!HH", 1, 1)
    if answer:
        message += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([198, 18, 0, ident & 0xFF])
    return message


def udp_frame(payload: bytes, sport: int, dport: int, *, src: int = 1, dst: int = 2, ulen: int | None = None,
              total: int | None = None, frag: int = 0, ihl: int = 5, vlan: bool = False, pad: int = 0) -> bytes:
    """Ethernet (optionally VLAN-tagged), IPv4 (198.18.0.src to 198.18.0.dst) and UDP around ``payload``; ``ulen``,
    ``total`` and ``frag`` override the UDP length, the IP total length and the flags/fragment offset field."""
    options = b"\x01" * (4 * (ihl - 5))
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload) if ulen is None else ulen, 0) + payload
    length = 20 + len(options) + len(udp) if total is None else total
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, length & 0xFFFF, 7, frag, 64, 17, 0, bytes([198, 18, 0, src]),
                     bytes([198, 18, 0, dst])) + options + udp
    link = b"\0\x11\x22\x33\x44\x55" * 2 + (b"\x81\x00\x00\x05" if vlan else b"") + b"\x08\x00"
    return link + ip + b"\0" * pad


def edge_frames(rng: random.Random) -> list[bytes]:
    """One of each edge of the fast path, around a query or an answer."""
    ident = rng.randrange(1 << 16)
    message = query(ident, answer=rng.random() < 0.5)
    size = len(message)
    port = rng.choice([53, 5353, 5355])
    return [
        udp_frame(message, 40000, port),
        udp_frame(message, port, 40000),
        udp_frame(message, port, port),
        udp_frame(message, port, 40),  # the lower port is not a DNS port
        udp_frame(message, port, rng.choice([4789, 6081, 3544, 2152, 5072, 4754])),  # a tunnel port
        udp_frame(message, 40000, port, ulen=8 + size + rng.randrange(1, 40)),  # UDP longer than the datagram
        udp_frame(message, 40000, port, ulen=8 + rng.randrange(size)),  # UDP shorter
        udp_frame(message, 40000, port, ulen=rng.randrange(8)),  # a UDP length below its header
        udp_frame(message, 40000, port, total=rng.randrange(20, 28)),  # an IP length below IP and UDP
        udp_frame(message, 40000, port, total=28 + size + rng.randrange(1, 60)),  # IP longer than the frame
        udp_frame(message, 40000, port, total=28 + rng.randrange(size)),  # IP shorter: the rest is padding
        udp_frame(message, 40000, port, pad=rng.randrange(1, 30)),  # Ethernet padding
        udp_frame(message, 40000, port, frag=0x4000),  # don't fragment: still plain
        udp_frame(message, 40000, port, frag=0x2000 | rng.randrange(2)),  # a first fragment
        udp_frame(message, 40000, port, ihl=6),  # IP options
        udp_frame(message[:rng.randrange(12)], 40000, port),  # shorter than the fast path's 54 bytes
        udp_frame(rng.randbytes(rng.randrange(60)), 40000, port),
        udp_frame(message, 40000, port, vlan=True),
    ]


def stream(frames: list[tuple[float, bytes]], cut: random.Random | None = None) -> bytes:
    """A selected-frame stream; with ``cut``, some frames snap-cut (the captured length below the wire length)."""
    blocks = [interface_block(1)]
    for ts, frame in frames:
        kept = frame[:cut.randrange(14, len(frame) + 1)] if cut is not None and cut.random() < 0.2 else frame
        blocks.append(packet_block(0, int(ts * 1e9), kept, len(frame)))
    return b"".join(blocks)


@pytest.mark.parametrize("seed", range(6))
def test_generated_edges_read_alike(seed: int) -> None:
    rng = random.Random(seed)
    frames: list[tuple[float, bytes]] = []
    clock = 1000.0
    for _ in range(60):
        for frame in edge_frames(rng):
            clock += rng.choice([0.01, 0.3, 1.5, 40.0])  # sweeps, and queries left unanswered past their timeout
            frames.append((clock, frame))
    rng.shuffle(frames[len(frames) // 2:])  # capture time going back too
    read = assert_same(stream(frames, cut=rng if seed % 2 else None), step=rng.choice([1 << 16, 4093]))
    assert read[3] > 0 and read[1]


def test_the_sweep_is_shared_by_both_paths() -> None:
    """A query read in place answered after its timeout in a decoded (VLAN) frame, and the reverse: the sweep each
    one's frame brings logs the query unanswered alike."""
    frames = [(1000.0, udp_frame(query(1), 40000, 53)), (1100.0, udp_frame(query(1, answer=True), 53, 40000,
                                                                             vlan=True)),
              (1200.0, udp_frame(query(2), 40000, 53, vlan=True)), (1300.0, udp_frame(query(2, answer=True), 53,
                                                                                      40000))]
    read = assert_same(stream(frames))
    assert read[3] == 4 and len(read[1]) == 4


@pytest.mark.parametrize("seed", range(3))
def test_mutated_headers_read_alike(seed: int) -> None:
    """Random bytes written over the link, IP and UDP headers of DNS frames (and random cuts): whatever the decoder
    makes of them, reading in place agrees."""
    rng = random.Random(seed)
    frames: list[tuple[float, bytes]] = []
    for n in range(1500):
        frame = bytearray(udp_frame(query(n, answer=rng.random() < 0.5), 40000, rng.choice([53, 5353, 5355])))
        for _ in range(rng.randrange(1, 4)):
            frame[rng.randrange(12, 42)] = rng.randrange(256)
        frames.append((1000.0 + n * rng.choice([0.01, 2.0]), bytes(frame)))
    read = assert_same(stream(frames, cut=rng))
    assert read[3] > 100
