"""DNP3 over TCP read natively: the fields tshark 4.0.17 prints for each frame, without tshark.

:class:`Dnp3Reader` takes the reassembled bytes of both directions of one TCP connection and gives, per TCP frame,
what ``tshark -o tcp.desegment_tcp_streams:TRUE -Y dnp3.al.func -T ek -e dnp3.al.func -e dnp3.al.iin -e dnp3.src
-e dnp3.dst`` prints for it (the keys tshark's ``-T ek`` uses, values as strings in its textual form), so that
:class:`collectors.protocols.dnp3.Dnp3Analyzer` can consume them.

Layers, each as tshark 4.0.17 handles it (verified against the installed tshark, see tests/unit/test_dnp3_wire.py):

* TCP PDUs (``tcp_dissect_pdus``): a link frame is ``LEN + 5`` bytes plus a 2-byte CRC per started 16-byte block
  of the ``LEN - 5`` user-data bytes; a PDU split over segments is reported in the frame that completes it. The
  dissector accepts the data at the start of a segment only if it begins 0x05 0x64 and, when 10 bytes are there,
  its header CRC is right; otherwise the whole segment is dropped (bytes before a frame are not skipped). That test
  runs again on a completed multi-segment PDU and on the bytes that follow it in the same segment, but not on the
  later frames of a block that tshark reads in one go (those are dissected even with a wrong start or header CRC).
  Fewer than 10 bytes left wait for the next segment, whole (a short garbage tail thus costs the next segment); a
  ``LEN`` below 5 ends the segment (tshark's bounds error).
* Link layer: every dissected frame adds its ``dnp3.src``/``dnp3.dst``, even a frame that carries no application
  data (so the frame's lists can be longer than its ``dnp3.al.func`` list). Link functions 0, 9 and 11 (either
  direction) carry no transport segment; all others do when ``LEN`` > 5. A wrong header CRC is only flagged; a
  wrong user-data block CRC discards the frame's transport segment.
* Transport layer: segments are put together as tshark's ``fragment_add_seq_single_aging`` does (FIR/FIN, 6-bit
  sequence numbers used as plain integers: no wrap from 63 to 0; a segment without FIR joins the nearest message in
  progress up to 59 sequence numbers back; entries unchanged for more than 64 frames are dropped when met; a FIR
  takes back segments that went on an older message, a FIN passes on segments beyond it). tshark keys this by the
  IP addresses of the direction, not by connection: :meth:`Dnp3Reader.use_tables` lets the caller share
  :class:`Dnp3Fragments` between the connections of the same address pair (and both directions when the two
  addresses are equal) and ``Dnp3Reader.frame`` carries the capture's frame numbers, for the exact behaviour.
* Application layer: ``dnp3.al.func`` (decimal) when the message has at least 2 bytes; ``dnp3.al.iin``
  (``0x%04x``, first octet high) only for RESPONSE (129) and UNSOLICITED RESPONSE (130) of at least 4 bytes (tshark
  4.0 gives none for AUTHENTICATE_RESP, 131).

Bounds (a hostile peer may send anything; nothing raises): a direction buffers at most one partial link frame
(``MAX_FRAME`` bytes); a message in reassembly holds at most ``MAX_MESSAGE_BYTES`` / ``MAX_MESSAGE_SEGMENTS`` and a
table ``MAX_TABLE_BYTES`` (tshark has no such limit: past them the message, or the table, is dropped and counted).
After a hole (an ``int`` chunk) the direction drops its partial frame and hunts for the next valid header.

Not reproduced, on purpose (each named in tests/unit/test_dnp3_wire.py):

* OBJECT_LOOP: tshark's object dissector can hit its 1,000,000 tree-item limit on some object headers; it then
  drops the rest of that TCP frame (later link frames and their transport segments, a trailing partial frame). A
  tshark bug; the reader does not parse objects.
* HEURISTIC_TAKEOVER: data DNP3 rejects goes to tshark's TCP heuristic dissectors, and one may take the connection
  (DICOM does for ``01 xx LLLLLLLL 00 01``: no DNP3 fields afterwards, both directions). An evasion handle; the
  reader reads DNP3 only.
* After a hole tshark tests only the start of the next segment (dropping it whole when it starts mid-frame); the
  reader hunts for a header. Bounds: see above.
"""

from __future__ import annotations

from typing import Final

HEADER: Final = 10  # 0x05 0x64 LEN CTRL DST(2) SRC(2) CRC(2)
BLOCK: Final = 16  # user data is sent in blocks of 16 bytes, each followed by its CRC
MAX_FRAME: Final = 255 + 5 + 2 * 16  # the longest link frame (LEN 255)
ONE_MORE: Final = -1  # waiting for the next segment, whole (fewer than HEADER bytes were there)
NO_TRANSPORT: Final = frozenset({0, 9, 11})  # link functions tshark reads no transport segment from
MAX_SEGMENTS_BACK: Final = 60  # tshark's al_max_fragments: how far back a segment without FIR looks
MAX_AGE: Final = 64  # tshark's al_fragment_aging, in frames
RESPONSES: Final = frozenset({129, 130})  # the functions tshark 4.0 shows the IIN of
MAX_MESSAGE_BYTES: Final = 16 * 1024  # 60 segments of 249 bytes fit
MAX_MESSAGE_SEGMENTS: Final = 128
MAX_TABLE_BYTES: Final = 64 * 1024


def _crc_table() -> list[int]:
    table: list[int] = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA6BC if crc & 1 else crc >> 1  # 0x3D65 reflected
        table.append(crc)
    return table


CRC_TABLE: Final = _crc_table()


def crc_dnp(data: bytes, start: int, end: int) -> int:
    """CRC-16/DNP of ``data[start:end]`` (as it is sent: little-endian after the bytes it covers)."""
    crc = 0
    table = CRC_TABLE
    for i in range(start, end):
        crc = (crc >> 8) ^ table[(crc ^ data[i]) & 0xFF]
    return crc ^ 0xFFFF


def crc_ok(data: bytes, start: int, end: int) -> bool:
    """Whether the CRC stored at ``data[end:end + 2]`` covers ``data[start:end]``."""
    return crc_dnp(data, start, end) == data[end] | data[end + 1] << 8


def frame_length(length: int) -> int:
    """Bytes of a link frame whose LEN field is ``length`` (tshark's get_dnp3_message_len)."""
    if length <= 5:
        return length + 5
    return length + 5 + 2 * ((length - 5 + BLOCK - 1) // BLOCK)


class Dnp3Stats:
    """What a reader dropped or found damaged, by reason (counters only grow)."""

    __slots__ = ("bad_header_crc", "crc_failures", "frames", "hole_bytes", "hunted_bytes", "malformed",
                 "messages", "rejected_bytes", "rejected_segments", "table_bytes_dropped",
                 "table_segments_dropped")

    def __init__(self) -> None:
        self.frames = 0  # link frames dissected
        self.messages = 0  # application messages completed
        self.bad_header_crc = 0  # dissected although the header CRC is wrong (tshark only flags it)
        self.crc_failures = 0  # user-data block CRC wrong: the transport segment was discarded
        self.malformed = 0  # LEN below 5 (ends the segment), LEN 5 with a transport function, messages < 2 bytes
        self.rejected_segments = 0  # data not starting with a valid header where tshark needs one
        self.rejected_bytes = 0
        self.hole_bytes = 0  # lost in the TCP stream (int chunks)
        self.hunted_bytes = 0  # skipped after a hole while looking for a header (with the dropped partial frame)
        self.table_segments_dropped = 0  # transport segments dropped at the reassembly bounds
        self.table_bytes_dropped = 0


class _Segment:
    __slots__ = ("data", "frame", "offset")

    def __init__(self, offset: int, data: bytes, frame: int) -> None:
        self.offset = offset  # sequence number minus the message's first one
        self.data = data
        self.frame = frame


class _Message:
    __slots__ = ("last", "segments", "size", "updated")

    def __init__(self) -> None:
        self.segments: list[_Segment] = []  # mostly by offset (tshark's lists can get out of order; kept as is)
        self.last = -1  # offset of the FIN segment, -1 while unknown
        self.updated = 0  # frame of the latest segment: for aging
        self.size = 0


def _merge(ours: list[_Segment], theirs: list[_Segment]) -> list[_Segment]:
    """Two runs of segments merged by offset, staying on the current run at equal offsets (tshark's merge)."""
    if not theirs:
        return ours
    cur, other = ours, theirs
    i = j = 0
    out: list[_Segment] = []
    while i < len(cur):
        if other[j].offset < cur[i].offset:
            cur, other = other, cur
            i, j = j, i
        out.append(cur[i])
        i += 1
    out.extend(other[j:])
    return out


def _latest(segments: list[_Segment]) -> int:
    frame = 0
    for s in segments:
        if s.frame > frame:
            frame = s.frame
    return frame


def _size(segments: list[_Segment]) -> int:
    n = 0
    for s in segments:
        n += len(s.data)
    return n


class Dnp3Fragments:
    """Application messages in reassembly for one direction, keyed as tshark keys them (its table per address pair:
    share one between connections for tshark's exact behaviour)."""

    __slots__ = ("bytes", "messages")

    def __init__(self) -> None:
        self.messages: dict[int, _Message] = {}  # by the sequence number of the first segment (may be < 0 or > 63)
        self.bytes = 0

    def add(self, seq: int, data: bytes, first: bool, last: bool, frame: int, stats: Dnp3Stats) -> bytes | None:
        """A transport segment (its 6-bit sequence number, FIR, FIN) seen in ``frame``; the message it completes."""
        messages = self.messages
        if first and last and not messages:
            return data  # the common case: a message in one segment, nothing in progress
        if first:
            offset = 0
            base = seq
            msg = messages.get(seq)
            if msg is not None and msg.updated + MAX_AGE < frame:
                self._drop(seq)
                msg = None
            if msg is None:
                msg = _Message()
                messages[seq] = msg
            self._take_back(seq, msg)
        else:
            found: _Message | None = None
            offset = 1
            for back in range(1, MAX_SEGMENTS_BACK):
                cand = messages.get(seq - back)
                if cand is not None and cand.updated + MAX_AGE < frame:
                    self._drop(seq - back)
                    cand = None
                if cand is not None:
                    if cand.last < 0 or cand.last >= back:
                        found, offset = cand, back
                    break  # a message that ended before this segment: start another one
            if found is None:
                offset = 1
                self._drop(seq - 1)
                found = _Message()
                messages[seq - 1] = found
            msg = found
            base = seq - offset
        if last:
            self._pass_on(seq, offset, msg)
        else:
            self._join_next(base, offset + 1)
        return self._link(base, msg, _Segment(offset, data, frame), last, stats)

    def _take_back(self, seq: int, msg: _Message) -> None:
        """A FIR: segments from it on that went on an older message in progress move to this one."""
        messages = self.messages
        for back in range(1, MAX_SEGMENTS_BACK):
            old = messages.get(seq - back)
            if old is None:
                continue
            segs = old.segments
            cut = len(segs)
            for i in range(len(segs)):
                if segs[i].offset >= back:
                    cut = i
                    break
            kept, moved = segs[:cut], segs[cut:]
            old.segments = kept
            old.updated = _latest(kept)
            if moved:
                for s in moved:
                    s.offset -= back
                    if s.frame > msg.updated:
                        msg.updated = s.frame
                size = _size(moved)
                old.size -= size
                msg.size += size
                msg.segments = _merge(msg.segments, moved)
                if old.last >= back:
                    msg.last = old.last - back
                    old.last = -1
                if not kept:
                    del messages[seq - back]
            return

    def _pass_on(self, seq: int, offset: int, msg: _Message) -> None:
        """A FIN at ``offset``: segments held beyond it go to a message starting after it (those right after it
        are dropped: a FIR not marked as one)."""
        segs = msg.segments
        cut = len(segs)
        for i in range(len(segs)):
            if segs[i].offset > offset:
                cut = i
                break
        if cut == len(segs):
            return
        beyond = segs[cut:]
        msg.segments = segs[:cut]
        msg.updated = _latest(msg.segments)
        size = _size(beyond)
        msg.size -= size
        skip = 0
        while skip < len(beyond) and beyond[skip].offset == offset + 1:
            skip += 1
        if skip:
            dropped = _size(beyond[:skip])
            self.bytes -= dropped
            size -= dropped
            beyond = beyond[skip:]
        if not beyond:
            return
        nxt = self.messages.get(seq + 1)
        if nxt is None:
            nxt = _Message()
            self.messages[seq + 1] = nxt
        for s in beyond:
            s.offset -= offset + 1
        if beyond[0].frame > nxt.updated:
            nxt.updated = beyond[0].frame  # tshark looks at the first moved segment only
        nxt.size += size
        tail = beyond[-1].offset
        nxt.segments = _merge(nxt.segments, beyond)
        if msg.last > offset:
            nxt.last = msg.last - (offset + 1)
            msg.last = -1
        else:
            self._join_next(seq + 1, tail)

    def _join_next(self, base: int, offset: int) -> None:
        """Segments waiting as a message at ``base + offset`` (not starting with a FIR) belong at the end of the
        message at ``base``: appended as they are (tshark does not re-sort them)."""
        if offset == 0:
            return
        msg = self.messages.get(base)
        if msg is None or 0 <= msg.last <= offset:
            return
        nxt = self.messages.get(base + offset)
        if nxt is None or not nxt.segments or nxt.segments[0].offset == 0:
            return
        for s in nxt.segments:
            s.offset += offset
            if s.frame > msg.updated:
                msg.updated = s.frame
        msg.segments.extend(nxt.segments)
        msg.size += nxt.size
        if nxt.last >= 0:
            msg.last = nxt.last + offset
        del self.messages[base + offset]

    def _link(self, base: int, msg: _Message, seg: _Segment, last: bool, stats: Dnp3Stats) -> bytes | None:
        """Add the segment to its message (sorted in after equal offsets); the message's bytes once complete."""
        if seg.frame > msg.updated:
            msg.updated = seg.frame
        if last and msg.last < 0:
            msg.last = seg.offset  # a second, different FIN does not move the end (tshark: "multiple tails")
        segs = msg.segments
        at = len(segs)
        for i in range(len(segs)):
            if seg.offset < segs[i].offset:
                at = i
                break
        segs.insert(at, seg)
        msg.size += len(seg.data)
        self.bytes += len(seg.data)
        if msg.size > MAX_MESSAGE_BYTES or len(segs) > MAX_MESSAGE_SEGMENTS:
            stats.table_segments_dropped += len(segs)
            stats.table_bytes_dropped += msg.size
            self._drop(base)
            return None
        if self.bytes > MAX_TABLE_BYTES:
            stats.table_segments_dropped += sum(len(m.segments) for m in self.messages.values())
            stats.table_bytes_dropped += self.bytes
            self.messages.clear()
            self.bytes = 0
            return None
        if msg.last < 0:
            return None
        have = 0
        for s in segs:
            if s.offset == have:
                have += 1
        if have <= msg.last:
            return None
        parts: list[bytes] = []
        prev = -1
        for s in segs:  # every segment held, once per offset (the first copy wins), gaps and all, as tshark
            if s.offset != prev:
                parts.append(s.data)
            prev = s.offset
        del self.messages[base]
        self.bytes -= msg.size
        return b"".join(parts)

    def _drop(self, key: int) -> None:
        msg = self.messages.pop(key, None)
        if msg is not None:
            self.bytes -= msg.size


class _Direction:
    """One direction's position in tshark's PDU walk."""

    __slots__ = ("hunting", "need", "pending")

    def __init__(self) -> None:
        self.pending = b""  # the start of a link frame waiting for more segments
        self.need = 0  # its full length; ONE_MORE: the next segment is added whole; 0: nothing pending
        self.hunting = False  # after a hole: looking for a valid header (pending holds < HEADER bytes)


def header_accepted(data: bytes) -> bool:
    """tshark's test of the data a segment (or a completed multi-segment frame) starts with: 0x05 0x64, and the
    header CRC when the header is all there."""
    n = len(data)
    if data[0] != 0x05 or (n > 1 and data[1] != 0x64):
        return False
    return n < HEADER or crc_ok(data, 0, 8)


class Dnp3Reader:
    """One DNP3-over-TCP connection, both directions (see the module docstring for what is reproduced)."""

    __slots__ = ("_dst", "_func", "_iin", "_src", "dirs", "frame", "stats", "tables")

    def __init__(self) -> None:
        self.dirs = (_Direction(), _Direction())  # from the client, from the server
        self.tables = (Dnp3Fragments(), Dnp3Fragments())
        self.stats = Dnp3Stats()
        self.frame = 1  # the current frame number (tshark ages reassembly by it); take() steps it, or set it
        self._func: list[str] = []
        self._iin: list[str] = []
        self._src: list[str] = []
        self._dst: list[str] = []

    def use_tables(self, from_client: Dnp3Fragments, from_server: Dnp3Fragments) -> None:
        """Share reassembly tables, as tshark keys them by address pair (the same object for both directions when
        client and server have the same address). Set ``frame`` to the capture's frame numbers then."""
        self.tables = (from_client, from_server)

    def feed(self, from_client: bool, chunk: bytes | int) -> None:
        """Reassembled bytes of one direction in sequence order (``int``: a hole of that many bytes)."""
        side = 0 if from_client else 1
        d = self.dirs[side]
        if isinstance(chunk, int):
            self.stats.hole_bytes += chunk
            self.stats.hunted_bytes += len(d.pending)
            d.pending, d.need, d.hunting = b"", 0, True
            return
        if not chunk:
            return
        if d.hunting:
            chunk = self._hunt(d, chunk)
            if not chunk:
                return
        table = self.tables[side]
        if d.need > 0:
            missing = d.need - len(d.pending)
            if len(chunk) < missing:
                d.pending += chunk
                return
            pdu = d.pending + chunk[:missing]
            d.pending, d.need = b"", 0
            self._walk(d, table, pdu)
            if len(chunk) > missing:
                self._walk(d, table, chunk[missing:])
        elif d.need == ONE_MORE:
            data = d.pending + chunk
            d.pending, d.need = b"", 0
            self._walk(d, table, data)
        else:
            self._walk(d, table, chunk)

    def take(self) -> dict[str, list[str]]:
        """The fields of what completed since the last call, keyed as ``tshark -T ek``; {} when no message did."""
        self.frame += 1
        if not self._func:
            if self._src:
                self._src, self._dst = [], []
            return {}
        out: dict[str, list[str]] = {"dnp3_al_func": self._func}
        if self._iin:
            out["dnp3_al_iin"] = self._iin
        out["dnp3_src"] = self._src
        out["dnp3_dst"] = self._dst
        self._func, self._iin, self._src, self._dst = [], [], [], []
        return out

    def _hunt(self, d: _Direction, chunk: bytes) -> bytes:
        """After a hole: the data from the first valid link header on (b"" while none; a short tail is kept)."""
        data = d.pending + chunk if d.pending else chunk
        end = len(data) - HEADER
        at = data.find(b"\x05\x64")
        while 0 <= at <= end:
            if crc_ok(data, at, at + 8):
                d.pending, d.hunting = b"", False
                self.stats.hunted_bytes += at
                return data[at:]
            at = data.find(b"\x05\x64", at + 1)
        keep = max(len(data) - (HEADER - 1), 0)  # a header may start in the last 9 bytes
        self.stats.hunted_bytes += keep
        d.pending = data[keep:]
        return b""

    def _walk(self, d: _Direction, table: Dnp3Fragments, data: bytes) -> None:
        """tshark's dissection of data a segment hands on: the start test, then one link frame after the other."""
        if not header_accepted(data):
            self.stats.rejected_segments += 1
            self.stats.rejected_bytes += len(data)
            return
        off, n = 0, len(data)
        while off < n:
            if n - off < HEADER:
                d.pending, d.need = data[off:], ONE_MORE
                return
            size = frame_length(data[off + 2])
            if size < HEADER:
                self.stats.malformed += 1
                self.stats.rejected_bytes += n - off
                return
            if n - off < size:
                d.pending, d.need = data[off:], size
                return
            self._frame(table, data, off, size)
            off += size

    def _frame(self, table: Dnp3Fragments, data: bytes, off: int, size: int) -> None:
        """One link frame at ``data[off:off + size]``: its addresses, then its transport segment if any."""
        stats = self.stats
        stats.frames += 1
        self._dst.append(str(data[off + 4] | data[off + 5] << 8))
        self._src.append(str(data[off + 6] | data[off + 7] << 8))
        if not crc_ok(data, off, off + 8):
            stats.bad_header_crc += 1
        if data[off + 3] & 0x0F in NO_TRANSPORT:
            return
        if size == HEADER:  # LEN 5: tshark fails reading the transport byte
            stats.malformed += 1
            return
        pos, end = off + HEADER, off + size
        parts: list[bytes] = []
        while pos < end:
            stop = min(pos + BLOCK, end - 2)
            if not crc_ok(data, pos, stop):
                stats.crc_failures += 1
                return
            parts.append(data[pos:stop])
            pos = stop + 2
        user = parts[0] if len(parts) == 1 else b"".join(parts)
        tr = user[0]
        message = table.add(tr & 0x3F, user[1:], bool(tr & 0x40), bool(tr & 0x80), self.frame, stats)
        if message is not None:
            self._message(message)

    def _message(self, al: bytes) -> None:
        self.stats.messages += 1
        if len(al) < 2:
            self.stats.malformed += 1
            return
        func = al[1]
        self._func.append(str(func))
        if func in RESPONSES and len(al) >= 4:
            self._iin.append(f"0x{al[2] << 8 | al[3]:04x}")
