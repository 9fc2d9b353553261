"""Transcripts of the TCP streams in a pcap: payload in sequence order per direction, retransmissions dropped,
non-printable bytes escaped (``\\x1b``, ``\\r``), so an analyst reads a session without a hex viewer."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from collectors.decode import BUF, CAPLEN, DPORT, DST, L4OFF, PLEN, PROTO, SEQ, SPORT, SRC, TCP, Decoder
from collectors.pcapio import read_capture

PRINTABLE = {*range(0x20, 0x7F), 0x0A, 0x09}


@dataclass
class Segment:
    from_originator: bool
    text: str


@dataclass
class Stream:
    originator: str  # "198.18.0.1:40000"
    responder: str
    segments: list[Segment] = field(default_factory=list)
    bytes: int = 0
    truncated: bool = False


def escape(data: bytes) -> str:
    """Printable ASCII, newlines and tabs as they are; every other byte as an escape (never markup: the page
    still escapes it)."""
    out = []
    for b in data:
        if b in PRINTABLE and b != 0x5C:
            out.append(chr(b))
        elif b == 0x5C:
            out.append("\\\\")
        elif b == 0x0D:
            out.append("\\r")
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def _addr(raw: bytes, port: int) -> str:
    ip = socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)
    return f"[{ip}]:{port}" if len(raw) == 16 else f"{ip}:{port}"


def tcp_transcripts(pcap: Path, max_bytes_per_stream: int = 256 * 1024) -> list[Stream]:
    dec = Decoder()
    streams: dict[tuple, Stream] = {}
    next_seq: dict[tuple, int] = {}  # per direction: the sequence number after the last byte shown
    for ts, linktype, buf, off, caplen, _wirelen in read_capture(pcap):
        for p in dec.decode(linktype, buf, off, caplen, ts):
            if p[PROTO] != TCP:
                continue
            fwd = (p[SRC], p[SPORT], p[DST], p[DPORT])
            rev = (p[DST], p[DPORT], p[SRC], p[SPORT])
            key = fwd if fwd in streams or rev not in streams else rev
            stream = streams.setdefault(key, Stream(_addr(p[SRC], p[SPORT]), _addr(p[DST], p[DPORT])))
            size = min(p[PLEN], p[CAPLEN])
            if size <= 0:
                break
            l4, raw = p[L4OFF], p[BUF]
            start = l4 + (raw[l4 + 12] >> 4) * 4
            data = bytes(raw[start:start + size])
            seq, expected = p[SEQ], next_seq.get(fwd)
            if expected is not None:
                skip = (expected - seq) & 0xFFFFFFFF
                if skip < 0x80000000:  # retransmitted or overlapping bytes: show only what is new
                    data = data[skip:]
            if not data:
                break
            next_seq[fwd] = (seq + size) & 0xFFFFFFFF
            if stream.bytes >= max_bytes_per_stream:
                stream.truncated = True
                break
            data = data[: max_bytes_per_stream - stream.bytes]
            stream.bytes += len(data)
            is_orig = key == fwd
            if stream.segments and stream.segments[-1].from_originator == is_orig:
                stream.segments[-1].text += escape(data)
            else:
                stream.segments.append(Segment(is_orig, escape(data)))
            break
    return [s for s in streams.values() if s.segments]
