"""The packets of some connections (by Community ID and time range) as one pcap, from a capture spool.

Used where an analyst asks for packets: the console's alert download and transcript, a case's attachment, and a
sensor's pcap service (``collectors.pcap_service``), which serves the same extraction to a central console.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from collectors.pcap_spool import ChunkWriter, Spool
from collectors.pcapio import read_capture

MAX_PCAP_CONNECTIONS = 50
MAX_PCAP_PACKETS = 200_000

Wanted = tuple[str, datetime, datetime]  # Community ID, from, to
Frame = tuple[int, int, bytes, int]  # time (ns), link type, frame bytes, length on the wire


@dataclass
class PcapFile:
    path: Path
    packets: int
    sha256: str
    connections: list[str]


def spool_frames(pcap_dir: Path, wanted: list[Wanted], scratch: Path) -> list[Frame]:
    """The frames of the wanted connections in the spool (``scratch``: a file name to extract through)."""
    spool = Spool(pcap_dir)
    frames: list[Frame] = []
    for i, (cid, first, last) in enumerate(wanted):
        part = scratch.with_name(f"{scratch.stem}-conn-{i}.pcap")
        try:
            if spool.extract(part, cid=cid, start_ns=int(first.timestamp() * 1e9),
                             end_ns=int(last.timestamp() * 1e9)):
                frames += capture_frames(part, MAX_PCAP_PACKETS - len(frames))
        finally:
            part.unlink(missing_ok=True)
        if len(frames) >= MAX_PCAP_PACKETS:
            break
    return frames


def capture_frames(path: Path, limit: int = MAX_PCAP_PACKETS) -> list[Frame]:
    """At most ``limit`` frames of a capture file (raises ``CaptureError`` for one that is none)."""
    frames: list[Frame] = []
    for ts, linktype, buf, off, caplen, wirelen in read_capture(path):
        if len(frames) >= limit:
            break
        frames.append((ts, linktype, bytes(buf[off:off + caplen]), wirelen))
    return frames


def write_pcap(frames: Iterable[Frame], out: Path, connections: list[str]) -> PcapFile | None:
    """The frames in time order as one pcap (each frame once: two sensors may hold the same one); None for none."""
    ordered = sorted(set(frames), key=lambda f: f[0])[:MAX_PCAP_PACKETS]
    if not ordered:
        return None
    writer = ChunkWriter(out, ordered[0][1])
    for ts, _linktype, frame, wirelen in ordered:
        writer.write(ts, frame, wirelen)
    writer.close()
    return PcapFile(out, len(ordered), hashlib.sha256(out.read_bytes()).hexdigest(), list(dict.fromkeys(connections)))


def connections_pcap(pcap_dir: Path, wanted: list[Wanted], out: Path) -> PcapFile | None:
    """One pcap of the wanted connections from this host's spool, or None when it holds none of their packets."""
    return write_pcap(spool_frames(pcap_dir, wanted, out), out, [cid for cid, _f, _l in wanted])
