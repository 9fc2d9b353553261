"""IEC 60870-5-104 (TCP 2404) read natively: the fields tshark 4.0.17 prints for each TCP frame, without tshark.

:class:`Iec104Reader` takes the reassembled bytes of both directions of one TCP connection (``feed``) and gives, per
TCP frame (``take``), what ``tshark -T ek -e iec60870_104.type -e iec60870_104.utype -e iec60870_asdu.typeid
-e iec60870_asdu.causetx -e iec60870_asdu.addr`` prints for it, under its EK keys, so that
:class:`collectors.protocols.iec104.Iec104Analyzer` makes the same documents from either reader. Each key holds one
value per APDU (``type``, ``utype``) or per ASDU (the ``iec60870_asdu`` ones) in dissection order, in tshark's text:
``type`` is ``0x00000000`` (I), ``0x00000001`` (S) or ``0x00000003`` (U); ``utype`` (U only) is
``0x%08x`` of control octet 1 shifted right by 2 (``0x00000001`` STARTDT act ... ``0x00000020`` TESTFR con); the
type identification, the 6-bit cause of transmission (without the P/N and test bits) and the 2-octet common address
of the ASDU are decimal. tshark assumes 104's fixed sizes: 2-octet cause (with the originator address), 2-octet
common address, 3-octet information object address. S-format APDUs give ``type`` only.

What tshark 4.0.17 does (found by probing it; tests/unit/test_iec104_wire.py compares every case), done here alike:

- APDUs are found as ``tcp_dissect_pdus`` walks them with a fixed part of 6 bytes: at the walk's position the first
  0x68 starts the APDU and its length octet ``L`` gives its end (``L + 2`` bytes from the 0x68, the bytes before the
  0x68 are skipped with it). Fewer than 6 bytes left wait for the next segment, whole. No 0x68 followed by a byte
  in the rest of the segment, or fewer than 6 bytes from the walk's position to the APDU's end, loses the rest of
  the segment. An APDU that does not end in the segment waits for the next ones and is read in the frame that
  completes it; the rest of that frame is read from there as a segment of its own.
- An APDU with ``L`` below 4 gives nothing (the walk goes on after it); otherwise its format is I when bit 0 of
  control octet 1 is 0, else S (bits 1-0 = 01) or U (11). ``L`` 254 and 255 are read as any other.
- An I-format's ASDU (``L - 4`` octets) gives its type identification from 1 octet, its cause from 3 and its common
  address from 6: a shorter ASDU gives the fields it holds, and tshark throws. It throws too for an ASDU of fewer
  than 9 octets (the first information object address), and for one whose information objects do not fit, for the
  type identifications tshark 4.0 decodes (``DATA_LENGTH``: ``N`` objects of ``D`` octets need ``6 + N * (3 + D)``
  octets, ``9 + N * D`` with SQ=1).
- A quirk: after such a throw tshark does not restore its "may reassemble" flag, so a later APDU of the same walk
  that goes on past the segment's end is read cut short (the fields whose octets are there: ``type`` needs the 4
  control octets) and the rest of it in the next segment is read as fresh data; fewer than 6 bytes left are not
  kept either.

Not reproduced (named in the tests): after lost data (an ``int`` chunk) the APDU under reassembly is dropped and the
next chunk is read as fresh data, where tshark waits for the lost bytes; in a connection whose handshake it did not
see, tshark gives the data to the lower port's dissector first (a client port below 2404 can thus hide the
connection from it), the reader reads what it is given.

Bounds, never raising: a direction keeps at most one partial APDU, from its 0x68 (``MAX_APDU`` bytes), or fewer than 6
bytes waiting for the next segment. :class:`Iec104Stats` counts what was skipped or damaged.
"""

from __future__ import annotations

from typing import Final

START: Final = 0x68  # APCI start octet
HEADER: Final = 6  # tcp_dissect_pdus' fixed part: start, length, 4 control octets
MIN_LENGTH: Final = 4  # the smallest APDU length octet tshark reads an APDU of (the 4 control octets)
MAX_APDU: Final = 255 + 2  # the longest APDU tshark reads (length octet 255; 253 is the specification's maximum)
ASDU_HEAD: Final = 9  # type id, VSQ, cause (2), common address (2), first object address (3): read in any case
ONE_MORE: Final = -1  # fewer than HEADER bytes wait for the next segment, whole
I_FORMAT: Final = "0x00000000"
S_FORMAT: Final = "0x00000001"
U_FORMAT: Final = "0x00000003"


def _data_lengths() -> list[int]:
    """Octets of one information object's elements (after its address), by type identification, for the types
    tshark 4.0 decodes the objects of (the specification's element sizes); -1 for the others."""
    table = [-1] * 256
    for size, types in ((1, (1, 3, 45, 46, 47, 70, 100, 101, 105)), (2, (5, 21)), (3, (9, 11, 48, 49, 110, 111)),
                        (4, (2, 4, 51)), (5, (6, 7, 13, 15, 50, 112)), (6, (10, 12)), (7, (103,)),
                        (8, (8, 14, 16, 30, 31, 58, 59, 60)), (9, (32,)), (10, (34, 35, 61, 62)), (11, (64,)),
                        (12, (33, 36, 37, 63))):
        for t in types:
            table[t] = size
    return table


DATA_LENGTH: Final = _data_lengths()


def asdu_throws(asdu: bytes, start: int, size: int) -> bool:
    """Whether tshark throws reading the ASDU of ``size`` octets at ``asdu[start:]`` (all there): shorter than its
    head and first object address, or information objects past its end for a type it decodes."""
    if size < ASDU_HEAD:
        return True
    element = DATA_LENGTH[asdu[start]]
    vsq = asdu[start + 1]
    count = vsq & 0x7F
    if element < 0 or count == 0:
        return False
    if vsq & 0x80:  # SQ=1: one address, then the objects' elements one after the other
        return size < ASDU_HEAD + count * element
    return size < 6 + count * (3 + element)


class Iec104Stats:
    """What a reader skipped or found damaged (counters only grow); ``malformed`` is the run's one warning."""

    __slots__ = ("apdus", "asdus", "dropped_bytes", "hole_bytes", "malformed", "short_asdus", "skipped_bytes",
                 "truncated")

    def __init__(self) -> None:
        self.apdus = 0  # APDUs read (a format given)
        self.asdus = 0  # ASDUs read (a type identification given)
        # skipped or damaged as tshark finds them: a segment's rest without 0x68 or whose APDU ends less than 6 bytes
        # on (lost), an APDU with a length octet below 4, and each of short_asdus and truncated
        self.malformed = 0
        self.short_asdus = 0  # ASDUs shorter than their head or information objects (tshark throws)
        self.truncated = 0  # APDUs read cut short, not reassembled after such a throw (tshark's quirk)
        self.skipped_bytes = 0  # bytes before a 0x68, in skipped segment rests and cut-short APDUs
        self.hole_bytes = 0  # lost in the TCP stream (int chunks)
        self.dropped_bytes = 0  # bytes of a partial APDU dropped at a hole


class _Side:
    """One direction's position in tshark's PDU walk."""

    __slots__ = ("need", "pending")

    def __init__(self) -> None:
        self.pending = b""  # a partial APDU from its 0x68, or (need ONE_MORE) fewer than HEADER bytes
        self.need = 0  # the partial APDU's full length; ONE_MORE: the next segment is added whole; 0: nothing


class Iec104Reader:
    """One IEC 60870-5-104 connection, both directions; ``feed`` a frame's chunks, then ``take`` that frame's fields
    (see the module docstring for what is reproduced)."""

    __slots__ = ("_addrs", "_causes", "_formats", "_typeids", "_utypes", "sides", "stats")

    def __init__(self) -> None:
        self.sides = (_Side(), _Side())  # from the client, from the server
        self.stats = Iec104Stats()
        self._formats: list[str] = []
        self._utypes: list[str] = []
        self._typeids: list[str] = []
        self._causes: list[str] = []
        self._addrs: list[str] = []

    def feed(self, from_client: bool, chunk: bytes | int) -> None:
        """Reassembled bytes of one direction in sequence order (an int: a hole of that many bytes); each chunk is
        read as one TCP segment."""
        side = self.sides[0 if from_client else 1]
        if isinstance(chunk, int):
            self.stats.hole_bytes += chunk
            self.stats.dropped_bytes += len(side.pending)
            side.pending, side.need = b"", 0
            return
        if not chunk:
            return
        if side.need > 0:
            missing = side.need - len(side.pending)
            if len(chunk) < missing:
                side.pending += chunk
                return
            apdu = side.pending + chunk[:missing]
            side.pending, side.need = b"", 0
            self._apdu(apdu, 0, len(apdu))  # tshark reads the reassembled APDU on its own
            if len(chunk) > missing:
                self._walk(side, chunk, missing)
        elif side.need == ONE_MORE:
            data = side.pending + chunk
            side.pending, side.need = b"", 0
            self._walk(side, data, 0)
        else:
            self._walk(side, chunk, 0)

    def take(self) -> dict[str, list[str]]:
        """The fields of the APDUs completed since the last call, keyed as tshark's EK output keys them; {} when
        none."""
        if not self._formats:
            return {}
        out: dict[str, list[str]] = {"iec60870_104_type": self._formats}
        if self._utypes:
            out["iec60870_104_utype"] = self._utypes
        if self._typeids:
            out["iec60870_asdu_typeid"] = self._typeids
        if self._causes:
            out["iec60870_asdu_causetx"] = self._causes
        if self._addrs:
            out["iec60870_asdu_addr"] = self._addrs
        self._formats, self._utypes, self._typeids, self._causes, self._addrs = [], [], [], [], []
        return out

    def _walk(self, side: _Side, data: bytes, off: int) -> None:
        """tshark's walk over the bytes a segment hands on from ``off`` (tcp_dissect_pdus with get_iec104apdu_len)."""
        stats = self.stats
        n = len(data)
        reassemble = True  # tshark's can_desegment, lost for the rest of the walk when an ASDU throws
        while off < n:
            left = n - off
            if reassemble and left < HEADER:
                side.pending, side.need = data[off:], ONE_MORE
                return
            at = data.find(START, off)
            if at < 0 or at + 1 >= n:  # no start octet with its length octet: tshark throws or finds no APDU
                stats.malformed += 1
                stats.skipped_bytes += left
                return
            size = at - off + data[at + 1] + 2
            if size < HEADER:  # tshark's bounds error: the rest of the segment is lost
                stats.malformed += 1
                stats.skipped_bytes += left
                return
            stats.skipped_bytes += at - off
            if size > left:
                if reassemble:
                    side.pending, side.need = data[at:], data[at + 1] + 2
                    return
                stats.truncated += 1
                stats.malformed += 1
                stats.skipped_bytes += n - at
                self._apdu(data, at, n)
                return
            if self._apdu(data, at, off + size):
                reassemble = False
            off += size

    def _apdu(self, data: bytes, at: int, end: int) -> bool:
        """The APDU whose 0x68 is at ``data[at]``, its bytes there up to ``end`` (fewer than it announces only when
        read cut short); whether tshark throws in its ASDU."""
        length = data[at + 1]
        if length < MIN_LENGTH:
            self.stats.malformed += 1
            return False
        if at + HEADER > end:  # cut short within the control octets: tshark throws before the format
            return True
        self.stats.apdus += 1
        control = data[at + 2]
        if not control & 1:
            self._formats.append(I_FORMAT)
            return self._asdu(data, at + HEADER, length - MIN_LENGTH, end)
        if not control & 2:
            self._formats.append(S_FORMAT)
        else:
            self._formats.append(U_FORMAT)
            self._utypes.append(f"0x{control >> 2:08x}")
        return False

    def _asdu(self, data: bytes, start: int, size: int, end: int) -> bool:
        """The ASDU of ``size`` octets at ``data[start:]`` (those before ``end`` there): the fields it holds;
        whether tshark throws reading it."""
        have = min(size, end - start)
        if have >= 1:
            self.stats.asdus += 1
            self._typeids.append(str(data[start]))
        if have >= 3:
            self._causes.append(str(data[start + 2] & 0x3F))
        if have >= 6:
            self._addrs.append(str(data[start + 4] | data[start + 5] << 8))
        if have < size:
            return True
        if asdu_throws(data, start, size):
            self.stats.short_asdus += 1
            self.stats.malformed += 1
            return True
        return False
