"""Capture file readers: classic pcap (us/ns, either byte order), pcapng, both optionally gzip'd.

Records are yielded as ``(ts_ns, linktype, buf, offset, caplen, wirelen)`` where ``buf[offset:offset+caplen]``
is the frame: the reader hands out views into its large read buffer instead of copying every packet.
Damage (a truncated last record, a corrupt header) ends the file with one :class:`CaptureWarning`
passed to ``on_warning``; every record before the damage has already been yielded.

:func:`read_capture_placed` also gives each frame's place in the (decompressed) stream, and :func:`read_places`
reads frames back from their places, so that a second read of a few frames seeks instead of scanning.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

CHUNK = 4 * 1024 * 1024
PLACES_GAP = 16 * 1024  # read_places reads across a gap this small between two frames rather than seeking
PLACES_SPAN = 1024 * 1024  # ... and at most this much at once (or one frame, when larger)
MAX_RECORD = 256 * 1024 * 1024  # a record claiming more than this is corruption, not a packet
_T = TypeVar("_T")
MAX_TS_NS = 2**63 - 1 - 3600 * 1_000_000_000  # packet times (ns) beyond this would overflow the flow timers

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"

Record = tuple[int, int, bytes, int, int, int]


class CaptureError(Exception):
    """The file is not a capture we can read at all (one clear line for the operator)."""


class CaptureWarning(Exception):
    """The file is damaged part-way; records before the damage were delivered."""


def _open(path: Path) -> BinaryIO:
    f = open(path, "rb")  # noqa: SIM115 - handed to the caller, closed by read_capture
    if f.read(2) == b"\x1f\x8b":
        f.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    f.seek(0)
    return f


class _Buffer:
    """Forward-only window over a stream with cheap ``need(n)`` refills."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.buf = b""
        self.pos = 0
        self.base = 0  # place in the stream of buf[0]
        self.eof = False
        self.error: str | None = None
        # gzip: read1 returns what one decompression step yields, so a damaged tail loses little
        self.read = f.read1 if isinstance(f, gzip.GzipFile) else f.read

    def need(self, n: int) -> bool:
        """Ensure n bytes from pos are buffered; False at end of data."""
        if self.pos + n <= len(self.buf):
            return True
        if self.eof:
            return False
        rest = self.buf[self.pos:]
        parts = [rest]
        have = len(rest)
        while have < n:
            try:
                data = self.read(max(CHUNK, n - have))
            except (EOFError, OSError, zlib.error) as e:  # damaged/truncated compressed stream
                self.error = str(e) or type(e).__name__
                data = b""
            if not data:
                self.eof = True
                break
            parts.append(data)
            have += len(data)
        self.buf = b"".join(parts)
        self.base += self.pos
        self.pos = 0
        return n <= len(self.buf)


@dataclass(frozen=True)
class PcapFormat:
    """What a classic pcap file header says about its records."""

    linktype: int
    big_endian: bool
    ns_mult: int  # 1000 for microsecond files, 1 for nanosecond files
    snaplen: int


# feed_pcap(buf, pos, fmt) -> (new pos, corrupt record length or -1, records consumed)
PcapBlockReader = Callable[[bytes, int, PcapFormat], tuple[int, int, int]]


def _open_capture(path: Path) -> tuple[BinaryIO, _Buffer, bytes]:
    """Open a capture (gzip'd or not) and return it with its first 4 bytes buffered, or raise CaptureError."""
    try:
        f = _open(path)
    except OSError as e:
        raise CaptureError(f"{path}: cannot open: {e.strerror or e}") from None
    b = _Buffer(f)
    try:
        ok = b.need(4)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        f.close()
        raise CaptureError(f"{path}: unreadable: {e}") from None
    if not ok:
        f.close()
        raise CaptureError(f"{path}: empty or too short to be a capture file")
    magic = b.buf[:4]
    if magic not in PCAP_MAGICS and magic != PCAPNG_SHB:
        f.close()
        raise CaptureError(f"{path}: not a pcap or pcapng file (magic {magic.hex()})")
    return f, b, magic


@contextmanager
def _damage_as_warning(path: Path, on_warning: Callable[[str], None] | None) -> Iterator[None]:
    """Damage part-way through a file ends it with one warning; what was read before stays delivered."""
    try:
        yield
    except CaptureWarning as w:
        if on_warning:
            on_warning(str(w))
    except (OSError, EOFError, gzip.BadGzipFile, struct.error) as e:
        if on_warning:
            on_warning(f"{path}: read error, stopped: {e}")


def read_capture(path: str | Path, on_warning: Callable[[str], None] | None = None) -> Iterator[Record]:
    """Yield every readable record of a pcap/pcapng(.gz) file."""
    path = Path(path)
    f, b, magic = _open_capture(path)
    try:
        with _damage_as_warning(path, on_warning):
            yield from _records(b, path, magic)
    finally:
        f.close()


def read_capture_placed(path: str | Path, on_warning: Callable[[str], None] | None = None
                        ) -> Iterator[tuple[Record, int]]:
    """:func:`read_capture`'s records, each with the place of its frame in the stream (decompressed, for a gzip'd
    file): ``read_places`` reads the frame back from there."""
    path = Path(path)
    f, b, magic = _open_capture(path)
    try:
        with _damage_as_warning(path, on_warning):
            for record in _records(b, path, magic):
                yield record, b.base + record[3]  # the record's buf is the buffer's current window
    finally:
        f.close()


def _records(b: _Buffer, path: Path, magic: bytes) -> Iterator[Record]:
    if magic in PCAP_MAGICS:
        return _read_pcap(b, path, _pcap_header(b, path, *PCAP_MAGICS[magic]))
    return _read_pcapng(b, path)


def read_places(path: str | Path, places: Sequence[tuple[int, int]]) -> Iterator[tuple[bytes, int]]:
    """``(window, offset)`` of each ``(place, length)`` in turn, the frame being ``window[offset:offset+length]``;
    places in increasing order, as :func:`read_capture_placed` gave them. Frames close together are read at once
    (gaps up to ``PLACES_GAP``, at most ``PLACES_SPAN`` per read), others by seeking: one handle, forward only (a
    gzip'd file decompresses what it skips). Stops at the first frame the file no longer holds whole."""
    try:
        f = _open(Path(path))
    except OSError:
        return
    with f:
        i, n = 0, len(places)
        while i < n:
            start, length = places[i]
            end = start + length
            j = i + 1
            while j < n:
                place, size = places[j]
                if place - end > PLACES_GAP or place + size - start > PLACES_SPAN or place < end:
                    break
                end = place + size
                j += 1
            try:
                f.seek(start)
                window = f.read(end - start)
            except (OSError, EOFError, zlib.error):
                return
            for place, size in places[i:j]:
                if place + size - start > len(window):
                    return
                yield window, place - start
            i = j


def feed_capture(path: str | Path, pcap_block: PcapBlockReader, record: Callable[..., None],
                 on_warning: Callable[[str], None] | None = None) -> None:
    """Push a capture through a consumer: classic pcap as buffered windows that ``pcap_block`` walks record
    by record itself (the native core), pcapng record by record through ``record(*Record)``."""
    path = Path(path)
    f, b, magic = _open_capture(path)
    try:
        if magic in PCAP_MAGICS:
            fmt = _pcap_header(b, path, *PCAP_MAGICS[magic])
            with _damage_as_warning(path, on_warning):
                _feed_pcap(b, path, fmt, _consumer(pcap_block))
        else:
            with _damage_as_warning(path, on_warning):
                for r in _read_pcapng(b, path):
                    try:
                        record(*r)
                    except OSError as error:
                        raise _ConsumerFailed(error) from error
    except _ConsumerFailed as failed:
        raise failed.error from None
    finally:
        f.close()


class _ConsumerFailed(Exception):
    """An I/O error of the consumer's (its output closed or full), carried past ``_damage_as_warning``: it is not
    damage in the file, and the read must not go on as if it were."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _consumer(call: Callable[..., _T]) -> Callable[..., _T]:
    """``call`` with its I/O errors as ``_ConsumerFailed``."""
    def consume(*args: Any) -> _T:
        try:
            return call(*args)
        except OSError as error:
            raise _ConsumerFailed(error) from error
    return consume


def _feed_pcap(b: _Buffer, path: Path, fmt: PcapFormat, pcap_block: PcapBlockReader) -> None:
    n = 0
    while True:
        b.pos, corrupt, k = pcap_block(b.buf, b.pos, fmt)
        n += k
        if corrupt >= 0:
            raise CaptureWarning(f"{path}: corrupt record length {corrupt} after {n} packets")
        rest = len(b.buf) - b.pos
        if not b.need(rest + 1):  # the record at pos is incomplete: refill, or end of data
            if b.error:
                raise CaptureWarning(f"{path}: {b.error}; stopped after {n} packets")
            if rest:  # same words as _read_pcap
                if rest < 16:
                    raise CaptureWarning(f"{path}: truncated record header after {n} packets")
                raise CaptureWarning(f"{path}: truncated packet data; stopped after {n} packets")
            return


def _pcap_header(b: _Buffer, path: Path, endian: str, ns_mult: int) -> PcapFormat:
    if not b.need(24):
        raise CaptureError(f"{path}: truncated pcap file header")
    _, _, _, _, _, snaplen, linktype = struct.unpack_from(endian + "IHHiIII", b.buf, 0)
    b.pos = 24
    return PcapFormat(linktype & 0x0FFFFFFF, endian == ">", ns_mult, snaplen)


def _read_pcap(b: _Buffer, path: Path, fmt: PcapFormat) -> Iterator[Record]:
    linktype, ns_mult = fmt.linktype, fmt.ns_mult
    hdr = struct.Struct((">" if fmt.big_endian else "<") + "IIII")
    unpack = hdr.unpack_from
    limit = max(fmt.snaplen, 262144)
    n = 0
    buf, pos = b.buf, b.pos
    blen = len(buf)
    while True:
        if pos + 16 > blen:  # refill only when a record crosses the buffered window
            b.pos = pos
            if not b.need(16):
                if b.error:
                    raise CaptureWarning(f"{path}: {b.error}; stopped after {n} packets")
                if b.pos < len(b.buf):
                    raise CaptureWarning(f"{path}: truncated record header after {n} packets")
                return
            buf, pos = b.buf, b.pos
            blen = len(buf)
        sec, frac, caplen, wirelen = unpack(buf, pos)
        if caplen > MAX_RECORD or (caplen > limit and caplen > wirelen):
            raise CaptureWarning(f"{path}: corrupt record length {caplen} after {n} packets")
        if pos + 16 + caplen > blen:
            b.pos = pos
            if not b.need(16 + caplen):
                raise CaptureWarning(f"{path}: {b.error or 'truncated packet data'}; stopped after {n} packets")
            buf, pos = b.buf, b.pos
            blen = len(buf)
        start = pos + 16
        pos = start + caplen
        n += 1
        yield sec * 1_000_000_000 + frac * ns_mult, linktype, buf, start, caplen, wirelen


# smallest valid total length of each block type whose body is read (the rest are skipped whole)
MIN_BLOCK_LENGTH = {0x0A0D0D0A: 28, 1: 20, 2: 32, 3: 16, 6: 32}


def _read_pcapng(b: _Buffer, path: Path) -> Iterator[Record]:
    """Records of every packet block. A block whose length framing holds but whose body is malformed (too
    short for its type, a packet larger than its block, an unknown interface, a time past 2262) is skipped and
    counted; damage to the framing itself ends the file. Either way one warning says what was lost."""
    endian = "<"
    ifaces: list[tuple[int, int, int]] = []  # (linktype, ticks per second, offset seconds)
    n = bad_times = malformed = 0
    last_ts = 0  # a simple packet block has no time: it gets the time of the packet before it

    def skipped() -> str:
        parts = [f"{malformed} malformed blocks skipped or cut at the damage"] if malformed else []
        parts += [f"{bad_times} packets with out-of-range timestamps skipped"] if bad_times else []
        return " and ".join(parts)

    head = struct.Struct(endian + "II").unpack_from  # block type and total length
    epb = struct.Struct(endian + "IIIII").unpack_from  # enhanced packet: interface, time high/low, lengths
    while True:
        buf, start = b.buf, b.pos
        if start + 12 > len(buf):
            if not b.need(12):
                tail = f"; {skipped()}" if skipped() else ""
                if b.error:
                    raise CaptureWarning(f"{path}: {b.error}; stopped after {n} packets{tail}")
                if b.pos < len(b.buf):
                    raise CaptureWarning(f"{path}: truncated block header after {n} packets{tail}")
                if tail:
                    raise CaptureWarning(f"{path}: {skipped()}")
                return
            buf, start = b.buf, b.pos
        btype, blen = head(buf, start)
        if btype == 0x0A0D0D0A:
            bom = buf[start + 8:start + 12]
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">" if bom == b"\x1a\x2b\x3c\x4d" else ""
            if not endian:
                raise CaptureWarning(f"{path}: corrupt section header after {n} packets")
            ifaces = []
            head = struct.Struct(endian + "II").unpack_from
            epb = struct.Struct(endian + "IIIII").unpack_from
            blen = head(buf, start)[1]
        if blen < 12 or blen % 4 or blen > MAX_RECORD:
            raise CaptureWarning(f"{path}: corrupt block length {blen} after {n} packets")
        if start + blen > len(buf):
            if not b.need(blen):
                raise CaptureWarning(f"{path}: {b.error or 'truncated block'}; stopped after {n} packets")
            buf, start = b.buf, b.pos
        b.pos = start + blen
        if blen < MIN_BLOCK_LENGTH.get(btype, 12):
            malformed += 1
            continue
        if btype == 6 or btype == 2:  # enhanced packet / obsolete packet
            if btype == 6:
                iface, hi, lo, caplen, wirelen = epb(buf, start + 8)
            else:
                iface, _drops, hi, lo, caplen, wirelen = struct.unpack_from(endian + "HHIIII", buf, start + 8)
            if iface >= len(ifaces) or caplen > blen - 32:
                malformed += 1
                continue
            linktype, tps, off = ifaces[iface]
            ticks = (hi << 32) | lo
            ts = ((ticks * 1_000_000_000) // tps if tps != 1_000_000 else ticks * 1000) + off * 1_000_000_000
            if not 0 <= ts <= MAX_TS_NS:  # a 64-bit tick count scaled past year 2262: damage, not a time
                bad_times += 1
                continue
            n += 1
            last_ts = ts
            yield ts, linktype, buf, start + 28, caplen, wirelen
        elif btype == 1:  # interface description
            linktype = struct.unpack_from(endian + "H", buf, start + 8)[0]
            tps, off, intact = _idb_options(buf, start + 16, start + blen - 4, endian)
            malformed += not intact
            ifaces.append((linktype, tps, off))
        elif btype == 3:  # simple packet: no interface number (the first) and no time of its own
            if not ifaces:
                malformed += 1
                continue
            wirelen = struct.unpack_from(endian + "I", buf, start + 8)[0]
            n += 1
            yield last_ts, ifaces[0][0], buf, start + 12, min(wirelen, blen - 16), wirelen


def _idb_options(buf: bytes, pos: int, end: int, endian: str) -> tuple[int, int, bool]:
    """(ticks per second, offset seconds, whether the options were intact) of an interface description."""
    tps, off = 1_000_000, 0
    while pos + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", buf, pos)
        if code == 0:
            break
        val = pos + 4
        if val + length > end:  # an option running past its block: the rest is damage
            return tps, off, False
        if code == 9 and length >= 1:  # if_tsresol
            r = buf[val]
            tps = 2 ** (r & 0x7F) if r & 0x80 else 10 ** r
        elif code == 14 and length >= 8:  # if_tsoffset
            off = struct.unpack_from(endian + "q", buf, val)[0]
        pos = val + ((length + 3) & ~3)
    return tps, off, True
