"""What the harnesses share: seed inputs read in place from the shared captures (never copied into the
repository), the framing of multi-frame inputs, and a scratch file for the readers that take a path."""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from collectors.decode import BUF, CAPLEN, DPORT, L4OFF, PLEN, PROTO, SPORT, TCP, Decoder
from collectors.pcapio import CaptureError, read_capture
from tests.support import TESTDATA

TRACES = TESTDATA / "zeek" / "traces"


def frames(names: Iterable[str], per_file: int = 40) -> Iterator[tuple[int, bytes]]:
    """(link type, frame) of the first ``per_file`` records of each named capture under zeek/traces."""
    for name in names:
        path = TRACES / name
        if not path.is_file():
            continue
        try:
            for i, (_ts, linktype, buf, off, caplen, _wire) in enumerate(read_capture(path)):
                if i >= per_file:
                    break
                yield linktype, bytes(buf[off:off + caplen])
        except CaptureError:
            continue


def payloads(names: Iterable[str], proto: int, ports: frozenset[int] | None = None,
             per_file: int = 200) -> Iterator[tuple[int, int, bytes]]:
    """(source port, destination port, captured payload) of the TCP or UDP packets of the named captures (the
    innermost packet of a tunnel), optionally only those with one of ``ports`` at either end."""
    decoder = Decoder()
    for linktype, frame in frames(names, per_file):
        pkts = decoder.decode(linktype, frame, 0, len(frame))
        if not pkts or pkts[-1][PROTO] != proto:
            continue
        p = pkts[-1]
        if ports is not None and p[SPORT] not in ports and p[DPORT] not in ports:
            continue
        buf, l4 = p[BUF], p[L4OFF]
        start = l4 + (buf[l4 + 12] >> 4) * 4 if proto == TCP else l4 + 8
        stop = start + min(p[CAPLEN] - (0 if proto == TCP else 8), p[PLEN])
        if stop > start:
            yield p[SPORT], p[DPORT], bytes(buf[start:stop])


def pack_frames(items: Iterable[bytes]) -> bytes:
    """Frames as the multi-frame harnesses read them: each one after its 16-bit big-endian length."""
    return b"".join(struct.pack("!H", len(f) & 0xFFFF) + f[:0xFFFF] for f in items)


def unpack_frames(data: bytes, limit: int = 64) -> list[bytes]:
    """Inverse of :func:`pack_frames` (a length past the end takes what is left), at most ``limit`` frames."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data) and len(out) < limit:
        size = int.from_bytes(data[pos:pos + 2], "big")
        out.append(data[pos + 2:pos + 2 + size])
        pos += 2 + size
    return out


SEED_CAPTURES = (
    "tunnels/vxlan.pcap", "tunnels/gre-sample.pcap", "tunnels/Teredo.pcap",
    "tunnels/gtp/gtp1_gn_normal_incl_fragmentation.pcap", "ipv6-fragmented-dns.pcap", "http/get.pcap",
    "cisco-fabric-path.pcap", "tunnels/ayiya3.pcap", "tunnels/gre-over-udp-4754.pcap", "pbb.pcap",
    "tunnels/gre-pptp.pcap", "tunnels/geneve.pcap", "mpls-in-vlan.pcap", "pppoe-over-qinq.pcap", "radiotap.pcap",
    "snap-tcp.pcap", "erspanII.pcap", "nflog-http.pcap", "pcapng-multi-interface.pcapng", "dns53.pcap",
)


def scratch_file(name: str) -> Path:
    """A path of this process's own (in memory where /dev/shm exists). The harness removes the file after each input:
    libFuzzer ends the process without running Python's exit handlers."""
    folder = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    return Path(folder) / f"secops-fuzz-{os.getpid()}-{name}"
