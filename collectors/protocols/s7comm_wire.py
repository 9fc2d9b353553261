"""S7comm over ISO-on-TCP (TCP 102) read natively: TPKT (RFC 1006), COTP (ISO 8073) and the S7comm header and
parameter head, giving the fields tshark 4.0.17 prints for each TCP frame, so that ``S7commAnalyzer`` makes the same
documents from either reader.

:class:`S7commReader` takes each direction's reassembled bytes (``feed``) and hands over, per frame (``take``),
``s7comm.header.rosctr``, ``.pduref``, ``.errcls``, ``.errcod``, ``s7comm.param.func``,
``s7comm.param.userdata.type``, ``.funcgroup``, ``.subfunc``, ``s7comm.param.errcod`` and
``s7comm.param.pistart.servicename`` under their EK keys: each a list of its values in dissection order (several PDUs
in a frame: PDU after PDU), in tshark's text: ROSCTR, reference, type and function group in decimal; error class and
code, function ``0x%02x``; parameter error code ``0x%04x``; the subfunction decimal for function groups 1-5, 7 and 15,
``0x%02x`` for the others and absent for group 0 (tshark registers other field definitions there); the PI service
name as ASCII cut at its first NUL, each byte above 0x7F a U+FFFD.

What tshark 4.0.17 does (found by probing it; tests/unit/test_s7comm_wire.py compares every case), done here alike:

- TPKT: TPKTs follow one another by their length; the version byte must be 3 (the reserved byte is not checked),
  anything else makes the rest of the TCP segment "continuation" data. A TPKT that does not end in the segment
  waits for the next ones (a ``feed`` chunk is a segment); one completed is read apart from the segment's rest. A
  length of 0-2 loses the rest of the segment (tshark throws); 3 hands COTP the rest of the segment, then reads on
  one byte back; 4 is empty.
- COTP: AK, EA, RJ, ER and DC TPDUs may precede the one with user data in a TPKT, checked as tshark walks them (LI
  limits, fixed fields, the variable part's parameters, LI arithmetic on 8 bits). A DT's user data, or what follows a
  CR's or CC's variable part, goes to the heuristics. DTs without EOT are reassembled (cotp.reassemble is on by
  default): class 0 ones (LI 2) under tshark's number, which each EOT DT raises and the frame's end lowers again by
  as many when the frame's last class 0 DT had EOT (an EOT frame of the other side between two fragments does not
  split them; an EOT followed by a fragment in one frame does); class 2-4 ones (LI 4, 7, 8 or 11 with the checksum
  parameter) under their destination reference.
- Heuristics: tshark offers COTP user data to its heuristic dissectors, the most recently successful first. Those
  that matter here are T.125 (which can hold the session layer off), the session layer (it takes a PDU starting 0x32,
  its MINOR SYNC ACK, when the third byte is one of its parameter codes and the byte after the announced length one
  of its SPDU types) and S7comm; at a capture's start their order is T.125, session layer, S7comm.
- S7comm: at least 10 bytes, protocol id 0x32 (S7comm-plus, 0x72, has no dissector in tshark 4.0), ROSCTR 1-7
  (4-6 give ROSCTR and reference only). ACK and ACK-Data
  carry error class and code (the combined code as ``s7comm.param.errcod`` too when not 0); Job and ACK-Data a
  function when the parameter length is not 0; a Job PI service (0x28) its service name when the parameter length
  exceeds 8, a Job PLC stop (0x29) always; user data the type, function group, subfunction and, when the parameter
  length is at least 12, the error code. A field whose bytes are missing ends the PDU there (tshark throws); the
  fields before it stay.
- A quirk: once something under a TPKT threw, tshark does not reassemble a later TPKT of the same read that goes on
  into the next segment: it reads it cut short, and the next segment, starting mid-TPKT, is continuation data.

Not reproduced (named in the tests): tshark's heuristic order and class 0 number are capture-wide, a reader keeps
its own (``heuristic_order``, ``cotp_ref``: a caller can share them between its readers); throws this reader cannot
foresee set off the quirk and keep their dissector where it is in the order: in S7comm's data part beyond what is
modelled (setup communication, an unknown function's raw bytes, the user-data data header: not read/write items,
blocks, PI parameters, user-data subfunctions) and in the T.125, session-layer, MMS and other dissectors that take
COTP user data; after lost data (an ``int`` chunk) the TPKT under reassembly is dropped and reading starts again at
the next chunk, where tshark waits for the lost bytes.

Bounds, never raising: a TPKT (at most 65,535 bytes) waits per direction, gathered without copying it again for
every chunk; a COTP reassembly keeps its first ``KEEP`` bytes (every field tshark reads lies in them) and counts the
rest; at most ``MAX_REASSEMBLIES`` per direction (the oldest dropped). :class:`S7commStats` counts what was dropped.
"""

from __future__ import annotations

import re

KEEP = 65824  # bytes of a reassembled TSDU kept: the furthest field (a PI service name) ends by byte 65,813
MAX_REASSEMBLIES = 4  # COTP reassemblies under way per direction
CLASS0 = 0x10000  # class 0 reassemblies are numbered apart from class 2-4 destination references

# ISO 8327 SPDU types and parameter codes tshark's session-layer heuristic knows (as tshark 4.0.17 answers)
SES_TYPES = frozenset({0x01, 0x02, 0x05, 0x07, 0x08, 0x09, 0x0A, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x15, 0x16, 0x19,
                       0x1A, 0x1D, 0x21, 0x22, 0x29, 0x2A, 0x2D, 0x30, 0x31, 0x32, 0x35, 0x39, 0x3A, 0x3D, 0x3E,
                       0x40})
SES_PARAMS = frozenset({0x01, 0x05, 0x09, 0x0A, 0x0B, 0x0C, 0x0F, 0x10, 0x11, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
                        0x19, 0x1A, 0x1B, 0x21, 0x29, 0x2A, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39,
                        0x3A, 0x3C, 0xC1, 0xC2})
SES_REJECT, SES_ACCEPT, SES_RAISE = 0, 1, 2
T125_PER_CHOICES = frozenset({1, 8, 10, 11, 14, 15, 25, 26})  # first byte >> 2: the MCS PDUs tshark's T.125 expects
TAG_END = re.compile(rb"[\x00-\x7f]")  # a BER tag byte without the continuation bit
T125, SES, S7 = 0, 1, 2  # COTP heuristic dissectors that matter here
DR_REASONS = frozenset({0, 1, 2, 3, 128, 129, 130, 131, 132, 133, 135, 136, 138})
REJECT, RAISE = -1, -2  # a TPDU walker's answer: not this TPDU type's form / tshark throws
DECIMAL_SUBFUNC_GROUPS = frozenset({1, 2, 3, 4, 5, 7, 15})  # other groups: hex; group 0: another field

ROSCTR = "s7comm_header_rosctr"
PDUREF = "s7comm_header_pduref"
ERRCLS = "s7comm_header_errcls"
ERRCOD = "s7comm_header_errcod"
FUNC = "s7comm_param_func"
UD_TYPE = "s7comm_param_userdata_type"
UD_GROUP = "s7comm_param_userdata_funcgroup"
UD_SUBFUNC = "s7comm_param_userdata_subfunc"
PARAM_ERRCOD = "s7comm_param_errcod"
SERVICENAME = "s7comm_param_pistart_servicename"


class S7commStats:
    """What the reader met and dropped, for the run's warnings."""

    __slots__ = ("bad_lengths", "bad_versions", "cotp_rejected", "dropped_bytes", "evicted", "holes", "not_s7",
                 "pdus", "ses_claimed", "tpkts")

    def __init__(self) -> None:
        self.tpkts = 0  # TPKTs read
        self.pdus = 0  # S7comm PDUs reported
        self.bad_versions = 0  # TPKT boundaries without version 3 (the rest of the segment is not read)
        self.bad_lengths = 0  # TPKT lengths 0-2 (the rest of the segment is lost, as in tshark)
        self.cotp_rejected = 0  # TPKT payloads whose COTP part carries no user data tshark would read
        self.not_s7 = 0  # user data that is not S7comm (S7comm-plus 0x72 among it)
        self.ses_claimed = 0  # S7comm PDUs tshark's session-layer heuristic takes first
        self.holes = 0  # holes in a direction's stream
        self.dropped_bytes = 0  # bytes not read: after a bad TPKT header, waiting at a hole
        self.evicted = 0  # COTP reassemblies dropped past MAX_REASSEMBLIES


class _Tsdu:
    """A COTP reassembly under way: its first KEEP bytes and its whole size."""

    __slots__ = ("kept", "parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.kept = 0
        self.size = 0

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if self.kept < KEEP and data:
            piece = data[:KEEP - self.kept]
            self.parts.append(piece)
            self.kept += len(piece)


class _Side:
    """One direction: the TPKT under reassembly and the COTP reassemblies under way."""

    __slots__ = ("need", "pending", "pending_len", "tsdus")

    def __init__(self) -> None:
        self.pending: list[bytes] = []  # the start of a TPKT waiting for its end (from a TPKT boundary)
        self.pending_len = 0
        self.need = 0  # bytes the pending TPKT needs (its length; 4 while the header is incomplete)
        self.tsdus: dict[int, _Tsdu] = {}


def ascii_text(raw: bytes) -> str:
    """An FT_STRING read with ENC_ASCII as tshark prints it: cut at the first NUL, bytes above 0x7F as U+FFFD."""
    end = raw.find(b"\x00")
    if end >= 0:
        raw = raw[:end]
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return "".join([chr(c) if c < 0x80 else "\ufffd" for c in raw])


def ses_heuristic(data: bytes, size: int) -> int:
    """tshark's session-layer heuristic on COTP user data: SES_ACCEPT, SES_REJECT, or SES_RAISE (it throws)."""
    if size < 2:
        return SES_REJECT
    kind = data[0]
    if kind not in SES_TYPES:
        return SES_REJECT
    if size >= 4 and kind == 0x01:  # GIVE TOKENS: the SPDU after it must be one too
        kind = data[2]
        if kind not in SES_TYPES:
            return SES_REJECT
    if kind == 0x32 and size >= 3 and data[2] not in SES_PARAMS:  # SIMATIC, not MINOR SYNC ACK
        return SES_REJECT
    length, length_len = data[1], 1
    if length == 0xFF:
        if size < 4:
            return SES_RAISE
        length, length_len = int.from_bytes(data[2:4], "big"), 3
    length += length_len
    if size < length:
        return SES_REJECT
    if size > 1 + length and data[1 + length] not in SES_TYPES:
        return SES_REJECT
    return SES_ACCEPT


def var_part_ok(p: bytes, off: int, left: int) -> bool:
    """Whether tshark walks a COTP variable part of ``left`` bytes at ``off`` without throwing: each parameter's
    code reads (or shows) its own bytes, which must be there; a parameter longer than the part makes the walk go
    on past it until it reads beyond the TPKT (the count is an int that never meets 0 again)."""
    n = len(p)
    while left != 0:
        if off >= n:
            return False
        code = p[off]
        off += 1
        left -= 1
        if left == 0:
            break
        if off >= n:
            return False
        length = p[off]
        off += 1
        left -= 1
        step = length
        need = length  # bytes the parameter's code reads from its value
        if code == 0x86:  # residual error rate: three bytes, whatever the length
            need = step = 3
        elif code == 0x87 or code == 0x8A or code == 0x8B or code == 0xC3:  # 2-byte values
            need = 2
        elif code == 0x88 or code == 0x8C:  # transit delay, flow control: 8 bytes
            need = step = 8
        elif code == 0x89:  # throughput: 4 (or 8) 3-byte values
            need = step = 12 if (length - 12) & 0xFF == 0 else 24
        elif code == 0xC0 or code == 0xC4 or code == 0xC6:  # one byte
            need = 1
        elif code == 0x85 or code == 0xF2:  # ack time, inactivity timer: an integer of the length (0 throws)
            if length == 0:
                return False
        elif code == 0xF0 and (length < 1 or length > 4):  # bogus preferred TPDU size: shown, then the walk ends
            return off + length <= n
        if off + need > n:
            return False
        off += step
        left -= step
    return True


def _ak(p: bytes, off: int, li: int) -> int:
    """An AK TPDU (normal format for an even LI): where the next TPDU starts, or REJECT / RAISE."""
    if li > 27:
        return REJECT
    head = 5 if li % 2 == 0 else 10
    if off + head > len(p):
        return RAISE
    return _tail(p, off, li, head)


def _ea(p: bytes, off: int, li: int) -> int:
    """An EA TPDU."""
    head = _checksummed_head(p, off, li, True)
    return head if head < 0 else _tail(p, off, li, head)


def _checksummed_head(p: bytes, off: int, li: int, checksum_length: bool) -> int:
    """The fixed part's length of an EA or ED TPDU (LI 4 or 7, or 8 or 11 with a checksum parameter, 0xC3, whose
    length byte tshark checks for EA only), or REJECT/RAISE."""
    n = len(p)
    if li == 8 or li == 11:
        var = off + li - 3
        if var + 1 > n:
            return RAISE
        if p[var] != 0xC3:
            return REJECT
        if checksum_length:
            if var + 2 > n:
                return RAISE
            if p[var + 1] != 2:
                return REJECT
    elif li != 4 and li != 7:
        return REJECT
    head = 5 if li == 4 or li == 8 else 8
    return RAISE if off + head > n else head


def _rj(p: bytes, off: int, li: int) -> int:
    """An RJ TPDU: LI 4 or 9, no variable part."""
    if li != 4 and li != 9:
        return REJECT
    return RAISE if off + li + 1 > len(p) else off + li + 1  # its fields reach the TPDU's end


def _er(p: bytes, off: int, li: int) -> int:
    """An ER TPDU: LI at most 8, a reject cause 0-3."""
    if li > 8:
        return REJECT
    if off + 5 > len(p):
        return RAISE
    if p[off + 4] > 3:
        return REJECT
    return _tail(p, off, li, 5)


def _dc(p: bytes, off: int, li: int) -> int:
    """A DC TPDU: LI at most 9."""
    if li > 9:
        return REJECT
    return RAISE if off + 6 > len(p) else _tail(p, off, li, 6)


def _dr(p: bytes, off: int, li: int) -> int:
    """A DR TPDU: its user data goes to no heuristic; whether tshark throws on the way."""
    if li < 6:
        return REJECT
    if off + 7 > len(p):
        return RAISE
    if p[off + 6] not in DR_REASONS:
        return REJECT
    return _user_data(p, _tail(p, off, li, 7))


def _ed(p: bytes, off: int, li: int) -> int:
    """An ED TPDU (never fragmented): its user data goes to no heuristic."""
    head = _checksummed_head(p, off, li, False)
    if head < 0:
        return head
    if not p[off + 4] & 0x80:
        return REJECT
    return _user_data(p, _tail(p, off, li, head))


def _ud(p: bytes, off: int, li: int) -> int:
    """A CLTP UD TPDU: its user data goes to CLTP's heuristics, not COTP's."""
    return _user_data(p, _tail(p, off, li, 2))


def _user_data(p: bytes, start: int) -> int:
    """Where a TPDU's user data starts: tshark throws when that is past the TPKT's end."""
    return RAISE if start > len(p) else start


def _tail(p: bytes, off: int, li: int, head: int) -> int:
    """The end of a TPDU of ``li`` whose fixed part ends ``head`` bytes in, after tshark walked its variable part
    (its length counted down from LI on 8 bits, as tshark does)."""
    left = (li + 1 - head) & 0xFF
    return off + head + left if var_part_ok(p, off + head, left) else RAISE


def t125_heuristic(data: bytes, size: int) -> bool:
    """tshark's T.125 heuristic: a BER application tag 101-104 (MCS connect PDUs), or a first byte whose top six
    bits name one of the PER domain PDUs it expects."""
    first = data[0]
    if first & 0xC0 == 0x40 and first & 0x1F == 0x1F:  # BER application class, long tag form
        end = min(size, len(data))
        found = TAG_END.search(data, 1, end)
        stop = found.start() + 1 if found is not None else end
        tag = 0
        for byte in data[max(1, stop - 5):stop]:  # a 32-bit tag: only the last five 7-bit groups count
            tag = ((tag << 7) | (byte & 0x7F)) & 0xFFFFFFFF
        if 101 <= tag <= 104:
            return True
    return first >> 2 in T125_PER_CHOICES


def _param_data_ok(data: bytes, size: int, rosctr: int, at: int, plength: int) -> bool:
    """Whether tshark reads a Job's or ACK-Data's parameter (function at ``at``) and data part without throwing, as
    far as modelled: setup communication, the item count of a read or write, an ACK-Data PI service's status, and
    the raw parameter and data bytes an unknown function shows; items, blocks and PI parameters are not modelled."""
    func = data[at]
    if func == 0xF0:  # reserved byte, two AmQ counts, the PDU length
        return at + 8 <= size
    if func == 0x04 or func == 0x05:  # the item count
        return at + 2 <= size
    if 0x1A <= func <= 0x1F or (func == 0x28 and rosctr == 1):
        return True
    if func == 0x28:  # ACK-Data PI service: a status byte when the parameter has one
        return plength < 2 or at + 2 <= size
    end = at + plength
    dlength = int.from_bytes(data[8:10], "big")
    return end <= size and (dlength == 0 or end + dlength <= size)


class S7commReader:
    """One TPKT/COTP/S7comm connection on TCP 102, both directions.

    ``cotp_ref`` (tshark's class 0 reassembly number) and ``heuristic_order`` (COTP's heuristic dissectors, most
    recently successful first) are capture-wide in tshark: a caller that gives every reader of a capture the same
    ``heuristic_order`` list and carries ``cotp_ref`` from reader to reader in frame order reads as tshark does;
    each reader alone keeps them for its connection.
    """

    __slots__ = ("cotp_ref", "fields", "frame_eots", "heuristic_order", "last_fragment", "raised", "sides", "stats")

    def __init__(self) -> None:
        self.sides = (_Side(), _Side())  # from the client, from the server
        self.stats = S7commStats()
        self.fields: dict[str, list[str]] = {}
        self.cotp_ref = 0
        self.frame_eots = 0  # class 0 EOT DTs in the current frame
        self.last_fragment = False  # whether the frame's last class 0 DT was a fragment (no EOT)
        self.heuristic_order = [T125, SES, S7]  # tshark's order at a capture's start
        self.raised = False  # whether tshark threw under the TPKT being read (see _segment)

    def feed(self, from_client: bool, chunk: bytes | int) -> None:
        """Reassembled bytes of one direction in sequence order, one TCP segment's worth (an int: a hole of that many
        bytes; the TPKT under reassembly is dropped and reading starts again at the next chunk)."""
        side = self.sides[0 if from_client else 1]
        if isinstance(chunk, int):
            self.stats.holes += 1
            self.stats.dropped_bytes += side.pending_len
            side.pending, side.pending_len, side.need = [], 0, 0
            return
        if not chunk:
            return
        if not side.pending:
            self._segment(side, chunk, 0)
            return
        side.pending.append(chunk)
        side.pending_len += len(chunk)
        if side.pending_len < side.need:
            return
        data = b"".join(side.pending)
        # a TPKT whose length was known waited alone (tshark reads it apart from the rest of the segment); one
        # whose header was cut waited for the whole next segment
        whole = side.need if side.need > 4 else 0
        side.pending, side.pending_len, side.need = [], 0, 0
        self._segment(side, data, whole)

    def take(self) -> dict[str, list[str]]:
        """The fields of the S7comm PDUs completed since the last call (the current frame), as tshark -T ek keys and
        prints them; {} when none. Ends the frame (tshark's end-of-frame COTP bookkeeping)."""
        if self.frame_eots:
            if not self.last_fragment:
                self.cotp_ref = (self.cotp_ref - self.frame_eots) & 0xFFFF
            self.frame_eots = 0
        if not self.fields:
            return {}
        fields = self.fields
        self.fields = {}
        return fields

    def _segment(self, side: _Side, data: bytes, whole: int) -> None:
        """TPKTs from the start of ``data`` (a TPKT boundary) to the end of the current segment; ``whole``: the
        length of a first TPKT tshark reads on its own (0: none).

        tshark's quirk: once something under a TPKT threw, a later TPKT of the same read that does not end in the
        segment is not reassembled but read cut short, and the segment's rest is lost."""
        size = len(data)
        at = 0
        self.raised = False
        while at < size:
            if whole and at == whole:
                self.raised = False
            if data[at] != 3:
                self.stats.bad_versions += 1
                self.stats.dropped_bytes += size - at
                return
            if size - at < 4:
                break
            length = int.from_bytes(data[at + 2:at + 4], "big")
            if length < 3:
                self.stats.bad_lengths += 1
                self.stats.dropped_bytes += size - at
                return
            if length == 3:  # tshark hands COTP the rest of the segment, then reads on one byte back
                self.stats.tpkts += 1
                self._cotp(side, data, at + 4)
                at += 3
                continue
            if size - at < length:
                if not self.raised:
                    break
                self.stats.tpkts += 1  # read cut short; its rest will start the next segment mid-TPKT
                self._cotp(side, data, at + 4)
                return
            self.stats.tpkts += 1
            self._cotp(side, data[at + 4:at + length])
            at += length
        if at < size:
            rest = data[at:] if at else data
            if self.raised:  # a cut header: tshark throws reading the length
                self.stats.dropped_bytes += len(rest)
                return
            side.pending = [rest]
            side.pending_len = len(rest)
            side.need = 4 if len(rest) < 4 else int.from_bytes(rest[2:4], "big")

    def _cotp(self, side: _Side, p: bytes, off: int = 0) -> None:
        """The TPDUs of one TPKT (``p`` from ``off``: the rest of a segment is read in place, not copied for each
        TPKT of length 3), up to the one whose user data the heuristics read."""
        n = len(p)
        while off < n:
            li = p[off]
            if li == 0:
                break
            if off + 1 >= n:
                off = RAISE
                break
            kind = p[off + 1] >> 4
            if kind == 0xF:
                self._dt(side, p, off, li)
                return
            if kind == 0xE or kind == 0xD:
                self._cr_cc(p, off, li)
                return
            if kind == 0x6:
                off = _ak(p, off, li)
            elif kind == 0x2:
                off = _ea(p, off, li)
            elif kind == 0x5:
                off = _rj(p, off, li)
            elif kind == 0x7:
                off = _er(p, off, li)
            elif kind == 0xC:
                off = _dc(p, off, li)
            elif kind == 0x8:
                off = _dr(p, off, li)
                break
            elif kind == 0x1:
                off = _ed(p, off, li)
                break
            elif kind == 0x4:
                off = _ud(p, off, li)
                break
            else:
                break
            if off < 0:
                break
        self.stats.cotp_rejected += 1
        if off == RAISE:
            self.raised = True

    def _cr_cc(self, p: bytes, off: int, li: int) -> None:
        """A CR or CC: the bytes after its variable part go to the heuristics."""
        n = len(p)
        if off + 7 > n:
            self._reject(True)
            return
        if p[off + 6] >> 4 > 4:  # class 0-4
            self._reject(False)
            return
        left = (li - 6) & 0xFF
        end = off + 7 + left
        if end > n or not var_part_ok(p, off + 7, left):
            self._reject(True)
            return
        self._heuristics(p[end:], n - end)

    def _reject(self, raised: bool) -> None:
        self.stats.cotp_rejected += 1
        if raised:
            self.raised = True

    def _dt(self, side: _Side, p: bytes, off: int, li: int) -> None:
        """A DT: its user data, reassembled when it is a fragment, to the heuristics when it has EOT."""
        n = len(p)
        if li == 2:
            if off + 3 > n:
                self._reject(True)
                return
            fragment = not p[off + 2] & 0x80
            self.last_fragment = fragment
            ident = CLASS0 | self.cotp_ref
            if not fragment:
                self.cotp_ref = (self.cotp_ref + 1) & 0xFFFF
                self.frame_eots += 1
        elif li == 4 or li == 7:
            if off + li + 1 > n:
                self._reject(True)
                return
            fragment = not p[off + 4] & 0x80
            ident = int.from_bytes(p[off + 2:off + 4], "big")
        elif li == 8 or li == 11:
            var = off + li - 3  # the checksum parameter
            if var >= n:
                self._reject(True)
                return
            if p[var] != 0xC3:
                self._reject(False)
                return
            if not var_part_ok(p, var, 4) or off + li + 1 > n:
                self._reject(True)
                return
            fragment = not p[off + 4] & 0x80
            ident = int.from_bytes(p[off + 2:off + 4], "big")
        else:
            self._reject(False)
            return
        user = p[off + 1 + li:]
        tsdus = side.tsdus
        tsdu = tsdus.get(ident)
        if fragment:
            if tsdu is None:
                if ident & CLASS0:  # an earlier class 0 reassembly of this direction can no longer continue
                    for old in [k for k in tsdus if k & CLASS0]:
                        del tsdus[old]
                        self.stats.evicted += 1
                if len(tsdus) >= MAX_REASSEMBLIES:
                    del tsdus[next(iter(tsdus))]
                    self.stats.evicted += 1
                tsdu = _Tsdu()
                tsdus[ident] = tsdu
            tsdu.add(user)
            return
        if tsdu is None:
            self._heuristics(user, len(user))
            return
        del tsdus[ident]
        tsdu.add(user)
        self._heuristics(b"".join(tsdu.parts), tsdu.size)

    def _heuristics(self, data: bytes, size: int) -> None:
        """COTP user data through tshark's heuristic dissectors in their current order (T.125, the session layer and
        S7comm; tshark's others, SMB, MMS and H.1, never take what these take); the one that takes it moves to the
        front unless it threw."""
        if size == 0:
            return
        order = self.heuristic_order
        s7 = size >= 10 and data[0] == 0x32 and 1 <= data[1] <= 7
        for which in order:
            if which == S7:
                if not s7:
                    continue
                if not self._s7(data, size):
                    self.raised = True
                    return
            elif which == SES:
                verdict = ses_heuristic(data, size)
                if verdict == SES_REJECT:
                    continue
                if s7:
                    self.stats.ses_claimed += 1
                if verdict == SES_RAISE:
                    self.raised = True
                    return
            elif not t125_heuristic(data, size):
                continue
            if which != S7:
                self.stats.not_s7 += 1
            if order[0] != which:
                order.remove(which)
                order.insert(0, which)
            return
        self.stats.not_s7 += 1

    def _add(self, key: str, value: str) -> None:
        values = self.fields.get(key)
        if values is None:
            self.fields[key] = [value]
        else:
            values.append(value)

    def _s7(self, data: bytes, size: int) -> bool:
        """One S7comm PDU's fields; False when tshark throws reading them."""
        self.stats.pdus += 1
        rosctr = data[1]
        self._add(ROSCTR, str(rosctr))
        self._add(PDUREF, str(int.from_bytes(data[4:6], "big")))
        plength = int.from_bytes(data[6:8], "big")
        at = 10
        if rosctr == 2 or rosctr == 3:  # ACK, ACK-Data: error class and code
            if size < 12:
                return False
            self._add(ERRCLS, f"0x{data[10]:02x}")
            self._add(ERRCOD, f"0x{data[11]:02x}")
            if data[10] or data[11]:
                self._add(PARAM_ERRCOD, f"0x{int.from_bytes(data[10:12], 'big'):04x}")
            at = 12
        if rosctr == 1 or rosctr == 3:
            if plength == 0:
                return True
            if at >= size:
                return False
            func = data[at]
            self._add(FUNC, f"0x{func:02x}")
            if rosctr == 1 and func == 0x28:
                return self._pi_service(data, size, at, plength)
            if rosctr == 1 and func == 0x29:
                return self._name(data, size, at + 6)
            return _param_data_ok(data, size, rosctr, at, plength)
        if rosctr == 7:
            if at + 5 >= size:
                return False
            kind = data[at + 5]
            group = kind & 0x0F
            self._add(UD_TYPE, str(kind >> 4))
            self._add(UD_GROUP, str(group))
            if at + 6 >= size:
                return False
            sub = data[at + 6]
            if group in DECIMAL_SUBFUNC_GROUPS:
                self._add(UD_SUBFUNC, str(sub))
            elif group:
                self._add(UD_SUBFUNC, f"0x{sub:02x}")
            if plength >= 12:
                if at + 12 > size:
                    return False
                self._add(PARAM_ERRCOD, f"0x{int.from_bytes(data[at + 10:at + 12], 'big'):04x}")
            # the data part's return code, transport size and length (what follows them is not modelled)
            return int.from_bytes(data[8:10], "big") < 4 or at + plength + 4 <= size
        return True

    def _pi_service(self, data: bytes, size: int, start: int, plength: int) -> bool:
        """A Job PI service (0x28): 7 bytes, a parameter block behind its 2-byte length, then the service name."""
        if start + 8 > size:
            return False
        if plength <= 8:
            return True
        if start + 10 > size:
            return False
        return self._name(data, size, start + 10 + int.from_bytes(data[start + 8:start + 10], "big"))

    def _name(self, data: bytes, size: int, at: int) -> bool:
        """A PI service name behind its length byte at ``at``."""
        if at >= size:
            return False
        end = at + 1 + data[at]
        if end > size:
            return False
        self._add(SERVICENAME, ascii_text(data[at + 1:end]))
        return True
