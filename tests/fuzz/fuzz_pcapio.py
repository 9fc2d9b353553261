"""Capture file readers (``collectors.pcapio``): classic pcap in both byte orders and resolutions, pcapng,
either of them gzip'd, whole or cut anywhere.

Input: one byte of options (bit 0: gzip the rest, bits 1-7: how many bytes to cut off the compressed end), then
the file. Contract: opening raises only ``CaptureError``; reading yields frames that lie inside the buffer handed
out, with times in the flow timers' range, and ends with at most one warning; ``read_capture_placed`` yields the
same records, and ``read_places`` reads each frame back from its place.
"""

from __future__ import annotations

import gzip
import struct

from collectors.pcapio import MAX_TS_NS, CaptureError, read_capture, read_capture_placed, read_places
from tests.fuzz.seeds import SEED_CAPTURES, TRACES, scratch_file

PATH = scratch_file("capture")


def _read(placed: bool) -> tuple[list[tuple], list[str]] | None:
    warnings: list[str] = []
    records = []
    try:
        if placed:
            for (ts, linktype, buf, off, caplen, wirelen), place in read_capture_placed(PATH, warnings.append):
                records.append((ts, linktype, bytes(buf[off:off + caplen]), wirelen, place))
        else:
            for ts, linktype, buf, off, caplen, wirelen in read_capture(PATH, warnings.append):
                assert off >= 0 and off + caplen <= len(buf) and caplen >= 0 and 0 <= ts <= MAX_TS_NS
                records.append((ts, linktype, bytes(buf[off:off + caplen]), wirelen))
    except CaptureError:
        assert not records and not warnings
        return None
    assert len(warnings) <= 1
    return records, warnings


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    body = data[1:]
    if data[0] & 1:
        body = gzip.compress(body, compresslevel=1, mtime=0)
        body = body[:len(body) - (data[0] >> 1)]
    PATH.write_bytes(body)
    try:
        _check(data, body)
    finally:
        PATH.unlink(missing_ok=True)


def _check(data: bytes, body: bytes) -> None:
    plain = _read(placed=False)
    placed = _read(placed=True)
    if plain is None:
        assert placed is None
        return
    assert placed is not None and placed[1] == plain[1]
    assert [r[:4] for r in placed[0]] == plain[0]
    assert len(plain[0]) <= len(data) // 12  # a record takes 12 bytes at least (its header) before any gzip
    places = [(r[4], len(r[2])) for r in placed[0]]
    back = [bytes(window[at:at + size]) for (window, at), (_, size) in zip(read_places(PATH, places), places,
                                                                            strict=False)]
    assert back == [r[2] for r in placed[0]][:len(back)]
    if not data[0] & 1:  # a plain file holds every frame it yielded
        assert len(back) == len(places)


def seeds() -> list[bytes]:
    """The first KiB of each seed capture (pcap and pcapng) and of a few made here, plain and gzip'd."""
    out = []
    for name in (*SEED_CAPTURES, "pcapng-multi-interface.pcapng"):
        path = TRACES / name
        if path.is_file():
            head = path.read_bytes()[:1024]
            out += [b"\x00" + head, b"\x01" + head]
    frame = bytes(60)
    for endian, magic in (("<", 0xA1B2C3D4), (">", 0xA1B2C3D4), ("<", 0xA1B23C4D)):
        header = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
        records = b"".join(struct.pack(endian + "IIII", 1_700_000_000, i, len(frame), len(frame)) + frame
                           for i in range(3))
        out += [b"\x00" + header + records, b"\x01" + header + records]
    return out
