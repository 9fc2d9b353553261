"""The capture spool on disk: rotating pcap chunks, retention by disk budget, and extraction of one
connection's packets (by Community ID or 5-tuple, within a time range) for an analyst.

Chunk files are named ``chunk-<start ns>-<seq>.pcap``; the one being written ends in ``.part`` or, for the
live sensor, is dumpcap's current ring file ``live_*.pcap`` in the worker's ``share-<k>`` subdirectory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from collectors.community_id import community_id
from collectors.decode import DPORT, DST, ONEWAY, PROTO, SPORT, SRC, Decoder
from collectors.pcapio import CaptureError, read_capture

NS = 1_000_000_000
PCAP_NS_HEADER = struct.Struct("<IHHiIII")
RECORD = struct.Struct("<IIII")
SNAPLEN = 262_144


class ChunkWriter:
    """Append raw frames to a nanosecond pcap file (no dissection on the capture path)."""

    def __init__(self, path: Path, linktype: int = 1) -> None:
        self.path = path
        self.f: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.f.write(PCAP_NS_HEADER.pack(0xA1B23C4D, 2, 4, 0, 0, SNAPLEN, linktype))
        self.bytes = PCAP_NS_HEADER.size
        self.packets = 0

    def write(self, ts_ns: int, frame: bytes, wirelen: int | None = None) -> None:
        sec, frac = divmod(ts_ns, NS)
        self.f.write(RECORD.pack(sec, frac, len(frame), wirelen or len(frame)))
        self.f.write(frame)
        self.bytes += RECORD.size + len(frame)
        self.packets += 1

    def close(self) -> None:
        self.f.close()


@dataclass(frozen=True)
class Chunk:
    path: Path
    start_ns: int
    seq: int
    size: int
    mtime_ns: int


class Spool:
    """A directory of capture chunks."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def new_chunk_path(self, start_ns: int, seq: int) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir / f"chunk-{start_ns}-{seq:06d}.pcap.part"

    @staticmethod
    def seal(part: Path) -> Path:
        """Rename a finished ``.part`` chunk to its final name (atomic)."""
        final = part.with_suffix("")
        os.replace(part, final)
        return final

    def share_dir(self, share: int) -> Path:
        """Where the capture process of worker ``share`` writes its ring files."""
        d = self.dir / f"share-{share}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    @staticmethod
    def seal_live(ring_file: Path, start_ns: int, seq: int) -> Path:
        """Rename a ring file the capture process has closed to its chunk name, in place (atomic)."""
        final = ring_file.with_name(f"chunk-{start_ns}-{seq:06d}.pcap")
        os.replace(ring_file, final)
        return final

    def chunks(self) -> list[Chunk]:
        """Closed chunks (of every share), oldest first."""
        out = []
        if not self.dir.is_dir():
            return out
        for p in [*self.dir.glob("chunk-*.pcap"), *self.dir.glob("share-*/chunk-*.pcap")]:
            try:
                _, start, seq = p.stem.split("-")
                st = p.stat()
                out.append(Chunk(p, int(start), int(seq), st.st_size, st.st_mtime_ns))
            except (ValueError, OSError):
                continue
        return sorted(out, key=lambda c: (c.start_ns, c.seq))

    def total_bytes(self) -> int:
        """Closed chunks plus the ones being written."""
        total = sum(c.size for c in self.chunks())
        for pattern in ("*.part", "share-*/live_*.pcap"):
            for p in self.dir.glob(pattern):
                with contextlib.suppress(FileNotFoundError):
                    total += p.stat().st_size
        return total

    def enforce(self, budget_bytes: int, min_free_bytes: int, keep: set[Path] | None = None) -> list[Path]:
        """Delete oldest chunks until the spool fits its budget and the disk keeps min_free; returns deleted."""
        deleted = []
        keep = keep or set()
        chunks = [c for c in self.chunks() if c.path not in keep]
        total = self.total_bytes()
        for c in chunks:
            free = shutil.disk_usage(self.dir).free
            if total <= budget_bytes and free >= min_free_bytes:
                break
            try:
                c.path.unlink()
            except FileNotFoundError:
                continue
            total -= c.size
            deleted.append(c.path)
        return deleted

    # -- extraction ----------------------------------------------------------------------------------------
    def extract(self, out: Path, *, cid: str | None = None, five_tuple: tuple | None = None,
                start_ns: int | None = None, end_ns: int | None = None) -> int:
        """Write the packets of one connection to ``out`` (a pcap); returns the number of packets."""
        if not cid and not five_tuple:
            raise ValueError("give a Community ID or a 5-tuple")
        want = _packed_tuple(five_tuple) if five_tuple else None
        writer = None
        n = 0
        try:
            for chunk in self.chunks():
                if end_ns is not None and chunk.start_ns > end_ns:
                    break
                if start_ns is not None and chunk.mtime_ns < start_ns:
                    continue
                for ts, linktype, frame, wirelen in _matching(chunk.path, cid, want, start_ns, end_ns):
                    if writer is None:
                        writer = ChunkWriter(out, linktype)
                    writer.write(ts, frame, wirelen)
                    n += 1
        finally:
            if writer is not None:
                writer.close()
        return n


def count_packets(path: Path) -> int:
    """Records in a capture file (to account for a chunk deleted before it was processed); 0 if unreadable."""
    try:
        with open(path, "rb") as f:
            head = f.read(PCAP_NS_HEADER.size)
            if len(head) < PCAP_NS_HEADER.size or head[:4] not in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
                return sum(1 for _ in read_capture(path))
            data = f.read()
    except (OSError, CaptureError):
        return 0
    n = pos = 0
    caplen_at = RECORD.size - 8
    while pos + RECORD.size <= len(data):
        pos += RECORD.size + int.from_bytes(data[pos + caplen_at:pos + caplen_at + 4], "little")
        n += 1
    return n


def _packed_tuple(t: tuple) -> tuple[int, bytes, int, bytes, int]:
    proto, src, sport, dst, dport = t
    proto = {"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58, "ipv6-icmp": 58, "sctp": 132}.get(str(proto).lower(), proto)

    def pack(ip: str) -> bytes:
        return socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)

    return int(proto), pack(src), int(sport), pack(dst), int(dport)


def _matching(path: Path, cid: str | None, want: tuple | None, start_ns: int | None,
              end_ns: int | None) -> Iterator[tuple[int, int, bytes, int]]:
    dec = Decoder()
    cache: dict[tuple, bool] = {}
    for ts, linktype, buf, off, caplen, wirelen in read_capture(path):
        if (start_ns is not None and ts < start_ns) or (end_ns is not None and ts > end_ns):
            continue
        for p in dec.decode(linktype, buf, off, caplen, ts):
            key = (p[PROTO], p[SRC], p[SPORT], p[DST], p[DPORT])
            hit = cache.get(key)
            if hit is None:
                if want is not None:
                    proto, s, sp, d, dp = want
                    hit = p[PROTO] == proto and ((p[SRC], p[SPORT], p[DST], p[DPORT]) in ((s, sp, d, dp),
                                                                                       (d, dp, s, sp)))
                else:
                    hit = community_id(p[PROTO], p[SRC], p[DST], p[SPORT], p[DPORT], one_way=p[ONEWAY]) == cid
                cache[key] = hit
            if hit:
                yield ts, linktype, bytes(buf[off:off + caplen]), wirelen
                break
