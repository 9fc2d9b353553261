"""One direction of a TCP connection put back in sequence order, for the analyzers that read TCP natively.

Segments arrive as the capture has them: in order, retransmitted, overlapping, reordered, or with holes. A
:class:`Direction` hands on the bytes in sequence order as they become contiguous. The first copy of a byte wins
over any later copy of it, whether it was handed on already or waits behind a hole (as Zeek's reassembler does:
a later block is trimmed to what no earlier one holds), so a retransmission that differs cannot rewrite what was
parsed or what waits to be. Segments ahead of a hole wait, bounded by ``MAX_WAITING_BYTES``;
past that (or when the connection ends) the hole is skipped: its size is counted in ``gap_bytes`` and the reader
is told (an ``int`` chunk: the hole's size), as Zeek's ``content_gap``.

The directions of one connection table also share a :class:`Budget` (``native_tcp.MAX_HELD_BYTES``): each waiting
segment is charged its bytes and ``SEGMENT_OVERHEAD`` (what a one-byte segment costs held), and a segment that
would take the table's directions together past it makes its own direction skip its holes, as the per-direction
bound does, until the table fits again or nothing waits there (Suricata's ``stream.reassembly.memcap``; without it,
65,536 connections could hold 2 x 256 KiB each, 32 GiB, or as many one-byte segments, 7 GiB of overhead).

Sequence numbers are compared as signed 32-bit distances, so streams that wrap around 2^32 read straight on.
A direction starts one after its SYN, or where the other side's first acknowledgement points (the capture may hold
a later segment before the first one), or else at the first segment seen. A segment the capture cut short (snap
length) hands on what it holds and a hole for the rest.
"""

from __future__ import annotations

MAX_WAITING_BYTES = 256 * 1024  # bytes held ahead of a hole per direction before the hole is skipped
MAX_WAITING_SEGMENTS = 512
SEGMENT_OVERHEAD = 128  # bytes a waiting segment is charged against a Budget beyond its own (Rust: ~110 held)

Chunk = bytes | int  # an int: a hole of that many bytes was skipped here


def distance(a: int, b: int) -> int:
    """``a - b`` in TCP sequence space (signed 32-bit)."""
    return (a - b + 0x80000000) % 0x100000000 - 0x80000000


class Budget:
    """What the directions of one connection table hold behind holes together, against ``limit``, and the holes
    skipped early to stay within it (counted apart from, and also in, the directions' own ``gaps``)."""

    __slots__ = ("held", "hole_bytes", "holes", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0  # the sum of the directions' ``held()`` (one that leaves its table is taken off by the table)
        self.holes = 0
        self.hole_bytes = 0


class Direction:
    """The byte stream one side of a connection sent."""

    __slots__ = ("delivered", "gap_bytes", "gaps", "next_seq", "overlaps", "waiting", "waiting_bytes")

    def __init__(self) -> None:
        self.next_seq: int | None = None  # sequence number of the next byte to hand on
        self.waiting: dict[int, bytes] = {}  # out-of-order segments by their sequence number
        self.waiting_bytes = 0
        self.gaps = 0
        self.gap_bytes = 0
        self.delivered = 0
        self.overlaps = 0  # retransmitted or overlapping copies whose bytes were already handed on

    def syn(self, seq: int) -> None:
        """A SYN names the initial sequence number: data starts one after it."""
        if self.next_seq is None:
            self.next_seq = (seq + 1) & 0xFFFFFFFF

    def acked(self, ack: int) -> None:
        """The other side acknowledged up to ``ack``: if nothing started this direction yet, data starts there."""
        if self.next_seq is None:
            self.next_seq = ack & 0xFFFFFFFF

    def held(self) -> int:
        """What the direction holds against a :class:`Budget`: each waiting segment's bytes and SEGMENT_OVERHEAD."""
        return self.waiting_bytes + SEGMENT_OVERHEAD * len(self.waiting)

    def add(self, seq: int, data: bytes, length: int | None = None, budget: Budget | None = None) -> list[Chunk]:
        """A segment's payload (``length``: its length on the wire, when the capture holds less); the bytes that
        became contiguous (and skipped holes), in order. Past ``budget`` (the table's directions together), this
        direction's holes are skipped until it fits again or nothing waits here."""
        if budget is None:
            return self._add(seq, data, length)
        before = self.held()
        elsewhere = budget.held - before
        out = self._add(seq, data, length)
        while self.waiting and elsewhere + self.held() > budget.limit:
            skipped = self.skip_hole()
            hole = skipped[0]
            if isinstance(hole, int):
                budget.holes += 1
                budget.hole_bytes += hole
            out += skipped
        budget.held = elsewhere + self.held()
        return out

    def _add(self, seq: int, data: bytes, length: int | None = None) -> list[Chunk]:
        if length is not None and length > len(data):
            out = self._add(seq, data)
            if self.next_seq is not None and distance(self.next_seq, (seq + len(data)) & 0xFFFFFFFF) == 0:
                hole = length - len(data)  # the part the snap length cut: a hole the reader is told about
                self.gaps += 1
                self.gap_bytes += hole
                self._advance(hole)
                self.delivered -= hole
                out.append(hole)
                if self.waiting:
                    out += self._drain()
            return out
        if not data:
            return []
        if self.next_seq is None:
            self.next_seq = seq
        ahead = distance(seq, self.next_seq)
        if -ahead >= len(data):
            self.overlaps += 1
            return []
        if ahead < 0:
            self.overlaps += 1
            data, ahead = data[-ahead:], 0
        if not self.waiting and not ahead:  # in order, nothing waiting: the common case
            self._advance(len(data))
            return [data]
        pieces = self._uncovered(ahead, data)
        if len(pieces) != 1 or len(pieces[0][1]) != len(data):
            self.overlaps += 1
        for offset, piece in pieces:
            self.waiting[(self.next_seq + offset) & 0xFFFFFFFF] = piece
            self.waiting_bytes += len(piece)
        out = self._drain()
        if self.waiting_bytes > MAX_WAITING_BYTES or len(self.waiting) > MAX_WAITING_SEGMENTS:
            out += self.skip_hole()
        return out

    def _uncovered(self, ahead: int, data: bytes) -> list[tuple[int, bytes]]:
        """The parts of ``data`` (``ahead`` bytes past ``next_seq``) that no waiting segment holds yet, as (offset
        past ``next_seq``, bytes): a waiting copy arrived first and wins."""
        assert self.next_seq is not None
        nxt = self.next_seq
        held = sorted((distance(s, nxt), len(d)) for s, d in self.waiting.items())
        out = []
        cur, end = ahead, ahead + len(data)
        for start, size in held:
            if start + size <= cur:
                continue
            if start >= end:
                break
            if start > cur:
                out.append((cur, data[cur - ahead:start - ahead]))
            cur = start + size
            if cur >= end:
                break
        if cur < end:
            out.append((cur, data[cur - ahead:]))
        return out

    def _advance(self, n: int) -> None:
        assert self.next_seq is not None
        self.next_seq = (self.next_seq + n) & 0xFFFFFFFF
        self.delivered += n

    def _drain(self) -> list[Chunk]:
        """Waiting segments that now continue the stream (they never overlap one another: see ``_uncovered``)."""
        out: list[Chunk] = []
        assert self.next_seq is not None
        nxt = self.next_seq
        for seq in sorted(self.waiting, key=lambda s: distance(s, nxt)):
            behind = -distance(seq, self.next_seq)
            if behind < 0:
                break
            data = self.waiting.pop(seq)
            self.waiting_bytes -= len(data)
            if behind >= len(data):
                self.overlaps += 1
                continue
            if behind:
                self.overlaps += 1
                data = data[behind:]
            out.append(data)
            self._advance(len(data))
        return out

    def skip_hole(self) -> list[Chunk]:
        """Give up on the hole before the earliest waiting segment: count it, hand on what follows it."""
        if not self.waiting or self.next_seq is None:
            return []
        nxt = self.next_seq
        first = min(self.waiting, key=lambda s: distance(s, nxt))
        hole = distance(first, self.next_seq)
        self.gaps += 1
        self.gap_bytes += hole
        self.next_seq = first
        return [hole, *self._drain()]

    def flush(self) -> list[Chunk]:
        """The connection ended: every waiting segment, holes skipped."""
        out: list[Chunk] = []
        while self.waiting:
            out += self.skip_hole()
        return out
