"""DTLS records of one natively read UDP flow (RFC 6347 4.1-4.2, RFC 9147 4), as the fields tshark's DTLS dissector
gives ``TlsAnalyzer``, and the STUN binding requests (RFC 8489 6) that open WebRTC's DTLS-SRTP flows.

``native.NativeFrames`` reads a UDP flow here when its first datagram is a DTLS handshake record
(``detect.dtls_hello``) or a STUN message (``detect.stun``), on any port: Zeek finds DTLS by dynamic protocol
detection, next to STUN too. Each datagram is told apart by its first byte (RFC 7983 7): 0-3 STUN, 20-63 DTLS,
anything else (SRTP, RTCP) is passed over.

What tshark decides, decided the same way:

- a datagram holds records back to back (13-byte header: type, version, epoch, 48-bit sequence number, length);
  a record running past the datagram ends its reading, and so does a DTLS 1.3 unified header (ciphertext);
- every record's content type and length are printed; a handshake record of epoch 0 holds handshake fragments
  (12-byte header: type, length, message_seq, fragment_offset, fragment_length); a whole message is read at once
  (a retransmission is read again), a fragmented one is put together by ``message_seq`` and read in the datagram that
  completed it, once; every other fragment still names its message's type;
- a HelloVerifyRequest names the server's version;
- a handshake record of a later epoch is encrypted (no message read); alerts and heartbeats as in TLS;
- the ClientHello holds a cookie after its session id (``tls_wire.TlsConnection`` with ``dtls``); the cipher
  suite's name goes into tshark's DTLS column;
- a STUN binding request (type 0x0001) is printed as ``stun``: ``TlsAnalyzer`` takes its sender as the flow's
  opener.

Bounds, never raising: at most ``MAX_PENDING`` messages are put together per direction, each at most
``tls_wire.MAX_HANDSHAKE_BYTES``; at most ``MAX_RECORDS`` records are read per datagram and ``MAX_DATAGRAMS`` datagrams
per flow; damage is counted in ``TlsStats`` (``malformed``, ``oversized``).
"""

from __future__ import annotations

from collectors.protocols.detect import STUN_COOKIE
from collectors.protocols.tls import CLIENT_HELLO, HANDSHAKE
from collectors.protocols.tls_heartbeat import HEARTBEAT
from collectors.protocols.tls_wire import MAX_HANDSHAKE_BYTES, Frame, TlsConnection, TlsStats

RECORD_HEADER = 13
FRAGMENT_HEADER = 12
CCS = 20
MAX_PENDING = 8  # handshake messages being put together per direction
MAX_DONE = 64  # message_seq numbers remembered as put together per direction
MAX_RECORDS = 64  # records read in one datagram
MAX_DATAGRAMS = 4096  # datagrams read per flow (the deep path selects the first few dozen)
STUN_BINDING_REQUEST = 0x0001
HELLO_VERIFY_REQUEST = 3


class Fragments:
    """One handshake message arriving in fragments: its bytes and the ranges received."""

    __slots__ = ("data", "kind", "ranges")

    def __init__(self, kind: int, length: int) -> None:
        self.kind = kind
        self.data = bytearray(length)
        self.ranges: list[tuple[int, int]] = []  # received [start, end), merged

    def add(self, offset: int, piece: bytes) -> bool:
        """Whether the message is whole with this piece."""
        self.data[offset:offset + len(piece)] = piece
        start, end = offset, offset + len(piece)
        merged: list[tuple[int, int]] = []
        for a, b in self.ranges:
            if b < start or a > end:
                merged.append((a, b))
            else:
                start, end = min(a, start), max(b, end)
        merged.append((start, end))
        merged.sort()
        self.ranges = merged
        return merged == [(0, len(self.data))]


class Direction:
    """What one side of the flow has in reassembly."""

    __slots__ = ("done", "pending")

    def __init__(self) -> None:
        self.pending: dict[int, Fragments] = {}  # message_seq -> fragments so far
        self.done: dict[int, None] = {}  # message_seq of messages put together (insertion order: oldest first)


class DtlsFlow:
    """Both directions of one UDP flow read as DTLS (and STUN)."""

    __slots__ = ("client_is_first", "conn", "datagrams", "sides", "stats")

    def __init__(self, stats: TlsStats) -> None:
        self.stats = stats
        self.conn = TlsConnection(stats, dtls=True)
        self.sides = (Direction(), Direction())  # from the flow's first sender, from the other side
        self.datagrams = 0
        # whether the flow's first sender is the DTLS client: known from the first handshake message (a ClientHello
        # names its sender, a HelloVerifyRequest or ServerHello the other side); the first sender until then
        self.client_is_first: bool | None = None

    def feed(self, from_first: bool, datagram: bytes, frame: Frame) -> bool:
        """One datagram (``from_first``: sent by the flow's first sender, which the analyzer orients itself); its
        DTLS fields go into ``frame``. Whether it was a STUN binding request."""
        self.datagrams += 1
        if self.datagrams > MAX_DATAGRAMS or not datagram:
            return False
        first = datagram[0]
        if first < 4:
            return stun_binding_request(datagram)
        if CCS <= first < 64:
            self._records(from_first, datagram, frame)
        return False

    def _records(self, from_first: bool, data: bytes, frame: Frame) -> None:
        pos = 0
        for _ in range(MAX_RECORDS):
            if len(data) - pos < RECORD_HEADER or not CCS <= data[pos] <= HEARTBEAT:
                return  # padding, a DTLS 1.3 unified header (ciphertext), or no record
            kind = data[pos]
            epoch = data[pos + 3] << 8 | data[pos + 4]
            length = data[pos + 11] << 8 | data[pos + 12]
            body = data[pos + RECORD_HEADER:pos + RECORD_HEADER + length]
            if len(body) < length:
                self.stats.malformed += 1
                return
            if kind == HANDSHAKE:
                frame.add("record.content_type", kind)
                frame.add("record.length", length)
                if epoch == 0:
                    self._fragments(from_first, body, frame)
            else:
                self.conn.record(self._from_client(from_first), kind, body, frame)
            pos += RECORD_HEADER + length

    def _fragments(self, from_first: bool, body: bytes, frame: Frame) -> None:
        side = self.sides[0 if from_first else 1]
        pos = 0
        while len(body) - pos >= FRAGMENT_HEADER:
            kind = body[pos]
            length = int.from_bytes(body[pos + 1:pos + 4], "big")
            seq = body[pos + 4] << 8 | body[pos + 5]
            offset = int.from_bytes(body[pos + 6:pos + 9], "big")
            size = int.from_bytes(body[pos + 9:pos + 12], "big")
            piece = body[pos + FRAGMENT_HEADER:pos + FRAGMENT_HEADER + size]
            pos += FRAGMENT_HEADER + size
            if len(piece) < size or offset + size > length:
                self.stats.malformed += 1
                return
            if length > MAX_HANDSHAKE_BYTES:
                self.stats.oversized += 1
                return
            if offset == 0 and size == length:
                self._message(from_first, kind, piece, frame)
                continue
            pending = None if seq in side.done else side.pending.get(seq)  # done: a retransmitted fragment
            if pending is None and seq not in side.done:
                if len(side.pending) < MAX_PENDING:
                    pending = side.pending[seq] = Fragments(kind, length)
                else:
                    self.stats.oversized += 1
            if pending is None or pending.kind != kind or len(pending.data) != length or \
                    not pending.add(offset, piece):
                frame.add("handshake.type", kind)  # tshark names every fragment's message type
                continue
            del side.pending[seq]
            side.done[seq] = None
            if len(side.done) > MAX_DONE:
                del side.done[next(iter(side.done))]
            self._message(from_first, kind, bytes(pending.data), frame)

    def _from_client(self, from_first: bool) -> bool:
        """Whether a datagram from this side comes from the DTLS client (the first sender until a message says)."""
        return from_first == (self.client_is_first is not False)

    def _message(self, from_first: bool, kind: int, message: bytes, frame: Frame) -> None:
        if self.client_is_first is None:
            self.client_is_first = from_first == (kind == CLIENT_HELLO)
        header = bytes((kind,)) + len(message).to_bytes(3, "big")
        self.conn.handshake(self._from_client(from_first), header + message, frame)
        if kind == HELLO_VERIFY_REQUEST and len(message) >= 2:
            frame.add("handshake.version", f"0x{message[0] << 8 | message[1]:04x}")  # the server's version


def stun_binding_request(data: bytes) -> bool:
    """RFC 8489 6: a binding request (type 0x0001) whose length covers the rest of the datagram, with the magic
    cookie (what tshark's STUN heuristic and the flow path's probe accept)."""
    return len(data) >= 20 and data[0] == 0 and data[1] == STUN_BINDING_REQUEST and data[4:8] == STUN_COOKIE and \
        (data[2] << 8 | data[3]) + 20 == len(data)
