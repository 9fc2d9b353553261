"""TLS records and handshake messages of one natively read TCP connection (RFC 8446 5, RFC 5246 6-7), as the
fields tshark's TLS dissector gives ``TlsAnalyzer``.

``native_tcp`` hands each direction's reassembled bytes to :class:`TlsConnection`; records are cut out of the byte
stream (a record may span segments, a segment may hold several records), handshake messages out of the handshake
records of a direction (a message may span records, a record may hold several messages). What a frame completed
is handed over as one :class:`~collectors.protocols.tshark.Packet` carrying the tshark field names ``TlsAnalyzer``
reads (``tls.record.content_type``, ``tls.handshake.type``, ``tls.handshake.ja3``, the cipher column, ...), so the
one session state machine in ``tls.py`` reads both: tshark's frames and these.

What tshark decides, decided the same way: a direction's handshake records after its ChangeCipherSpec are
encrypted (no message read); in TLS 1.3 (the ServerHello's supported_versions) application-data records carry
``opaque_type``; an alert is read when its record holds 2 bytes; the server's ECDHE curve is read from a
ServerKeyExchange when the chosen cipher suite is an ECDHE one; a HelloRetryRequest's key_share names no curve.

Measured (300k packets of real traces, /var/tmp/b300k.pcap, 131,924 selected frames; load 1.6-2.8 on 2 cores):
8,037 more frames (895 TLS connections) leave tshark's input (41,603 still reach it, 49,640 before); the whole
ingest takes 12.9-13.3 s CPU instead of 13.5-14.5 s, peak RSS 196 MB instead of 208 MB; every document is equal
with tshark reading these connections except 47 ClientHellos sent to an HTTP server on port 80 (see the test).

Bounds, never raising: a record longer than 2^14 + 2048 bytes, a handshake message longer than
``MAX_HANDSHAKE_BYTES``, more than ``MAX_MESSAGES_PER_RECORD`` messages in one record, a content type outside 20-24
or a hole in the stream end the reading of that direction (counted in :class:`TlsStats`; the frames stay taken:
tshark would not have read on in sync either); at most ``MAX_CERTIFICATES`` certificates of a chain are kept.
"""

from __future__ import annotations

import builtins
import hashlib
from dataclasses import dataclass

from collectors.protocols.ja4 import is_grease
from collectors.protocols.tls import (
    ALERT,
    APP_DATA,
    CCS,
    CERTIFICATE,
    CIPHER_COLUMN,
    CLIENT_HELLO,
    DTLS_CIPHER_COLUMN,
    HANDSHAKE,
    SERVER_HELLO,
    SERVER_KEY_EXCHANGE,
    SIG_LIST_EXTENSIONS,
)
from collectors.protocols.tls_ciphers import CIPHER_NAMES
from collectors.protocols.tls_heartbeat import HEARTBEAT
from collectors.protocols.tls_heartbeat import MAX_CIPHERTEXT as MAX_RECORD
from collectors.protocols.tshark import Packet, ek_key, tcp_packet

HEADER = 5  # content type, legacy version, length
MAX_HANDSHAKE_BYTES = 256 * 1024  # one handshake message (certificate chains included)
# bytes of records and handshake messages not complete yet in all connections of one reader together (a ``Held``):
# 65,536 connections could each hold a record and a handshake message of up to 256 KiB each way, 35 GiB; past it the
# direction whose chunk took the total over stops being read, counted as ``oversized``. The Rust engine reads it here.
MAX_HELD_BYTES = 64 << 20
MAX_CERTIFICATES = 16
MAX_MESSAGES_PER_RECORD = 64  # real flights hold a dozen; thousands of empty messages are a flood
# RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest
HELLO_RETRY_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


@dataclass
class TlsStats:
    """What the native TLS reader met, for the run's one warning."""

    oversized: int = 0  # records or handshake messages past their bound
    unknown_records: int = 0  # content types outside 20-24 (lost record sync)
    holes: int = 0  # directions whose reading stopped at a hole
    malformed: int = 0  # hello/certificate messages that did not parse to their end


class Reader:
    """Bounds-checked big-endian reads over one message; ``ok`` turns False on any overrun."""

    __slots__ = ("data", "ok", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.ok = data, 0, True

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            self.ok = False
            self.pos = len(self.data)
            return b""
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self, n: int) -> int:
        raw = self.take(n)
        return int.from_bytes(raw, "big") if raw else 0

    def vector(self, length_bytes: builtins.int) -> bytes:
        return self.take(self.int(length_bytes))

    @property
    def left(self) -> builtins.int:
        return len(self.data) - self.pos


def _u16s(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data) - 1, 2)]


def _early_draft(version: int) -> bool:
    """A TLS 1.3 draft before 23 (or Chrome's 0x7E0x experiments): key_share was extension 40 then."""
    return version >> 8 == 0x7E or (version >> 8 == 0x7F and (version & 0xFF) < 23)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class Frame:
    """The fields one frame completed, under tshark's names (values as tshark prints them): ``tls.*``, or
    ``dtls.*`` for a DTLS flow's datagram (``dtls_wire``)."""

    __slots__ = ("fields", "layer")

    def __init__(self, layer: str = "tls") -> None:
        self.fields: dict[str, list[str]] = {}
        self.layer = layer

    def add(self, name: str, *values: object) -> None:
        self.fields.setdefault(ek_key(f"{self.layer}.{name}"), []).extend(str(v) for v in values)

    def __bool__(self) -> bool:
        return bool(self.fields)


class Side:
    """One direction's record and handshake-message reassembly."""

    __slots__ = ("buf", "encrypted", "handshake", "lost")

    def __init__(self) -> None:
        self.buf = b""  # bytes of a record not complete yet
        self.handshake = b""  # bytes of a handshake message not complete yet
        self.encrypted = False  # this side sent ChangeCipherSpec: its handshake records are ciphertext
        self.lost = False  # reading stopped (oversized record, unknown content type, hole)


class Held:
    """What the connections of one reader hold of records and handshake messages not complete yet, together."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0  # the connections' ``held()`` together (a connection closed is taken off by its reader)


class TlsConnection:
    """Both directions of one connection whose first payload was a TLS handshake record."""

    __slots__ = ("budget", "cipher", "dtls", "sides", "stats", "tls13")

    def __init__(self, stats: TlsStats, budget: Held | None = None, dtls: bool = False) -> None:
        self.stats = stats
        self.dtls = dtls  # DTLS handshake messages (``dtls_wire``): a ClientHello holds a cookie
        self.budget = budget  # shared with the reader's other connections (None: unbounded)
        self.sides = (Side(), Side())  # from the client, from the server
        self.tls13 = False  # the ServerHello chose TLS 1.3 (or a draft of it)
        self.cipher: int | None = None

    def held(self) -> int:
        return sum(len(side.buf) + len(side.handshake) for side in self.sides)

    def feed(self, from_client: bool, chunk: bytes | int, frame: Frame) -> None:
        """Reassembled bytes of one direction (an int: a hole of that size); what completes goes into ``frame``.
        Should what the reader's connections hold pass its budget, this direction is read no further."""
        budget = self.budget
        if budget is None:
            self._feed(from_client, chunk, frame)
            return
        side = self.sides[0 if from_client else 1]
        before = len(side.buf) + len(side.handshake)
        self._feed(from_client, chunk, frame)
        after = len(side.buf) + len(side.handshake)
        budget.held += after - before
        if after and budget.held > budget.limit:
            side.lost, side.buf, side.handshake = True, b"", b""
            budget.held -= after
            self.stats.oversized += 1

    def _feed(self, from_client: bool, chunk: bytes | int, frame: Frame) -> None:
        side = self.sides[0 if from_client else 1]
        if side.lost:
            return
        if isinstance(chunk, int):
            side.lost, side.buf, side.handshake = True, b"", b""
            self.stats.holes += 1
            return
        data = side.buf + chunk if side.buf else chunk
        pos = 0
        while len(data) - pos >= HEADER:
            kind, length = data[pos], int.from_bytes(data[pos + 3:pos + 5], "big")
            if not CCS <= kind <= HEARTBEAT:
                self.stats.unknown_records += 1
                side.lost = True
                break
            if length > MAX_RECORD:
                self.stats.oversized += 1
                side.lost = True
                break
            if len(data) - pos < HEADER + length:
                break
            self._record(side, from_client, kind, data[pos + HEADER:pos + HEADER + length], frame)
            pos += HEADER + length
            if side.lost:
                break
        side.buf = b"" if side.lost else data[pos:]

    def handshake(self, from_client: bool, data: bytes, frame: Frame) -> None:
        """Handshake-message bytes of one direction without the record layer (QUIC's CRYPTO stream, ``quic_wire``);
        what completes goes into ``frame``."""
        side = self.sides[0 if from_client else 1]
        if not side.lost:
            self._handshake(side, from_client, data, frame)

    def record(self, from_client: bool, kind: int, body: bytes, frame: Frame) -> None:
        """One record's body, its content type known (``dtls_wire`` cuts DTLS records itself)."""
        side = self.sides[0 if from_client else 1]
        if not side.lost:
            self._record(side, from_client, kind, body, frame)

    def _record(self, side: Side, from_client: bool, kind: int, body: bytes, frame: Frame) -> None:
        if kind == APP_DATA and self.tls13:
            frame.add("record.opaque_type", kind)
        else:
            frame.add("record.content_type", kind)
        frame.add("record.length", len(body))
        if kind == CCS:
            side.encrypted = True
        elif kind == ALERT and len(body) == 2:
            frame.add("alert_message.desc", body[1])
        elif kind == HEARTBEAT and len(body) >= 3:
            frame.add("heartbeat_message.type", body[0])
            frame.add("heartbeat_message.payload_length", int.from_bytes(body[1:3], "big"))
        elif kind == HANDSHAKE and not side.encrypted:
            self._handshake(side, from_client, body, frame)

    def _handshake(self, side: Side, from_client: bool, body: bytes, frame: Frame) -> None:
        data = side.handshake + body
        pos = count = 0
        while len(data) - pos >= 4:
            count += 1
            if count > MAX_MESSAGES_PER_RECORD:
                self.stats.oversized += 1
                side.lost, side.handshake = True, b""
                return
            msg_type, length = data[pos], int.from_bytes(data[pos + 1:pos + 4], "big")
            if length > MAX_HANDSHAKE_BYTES:
                self.stats.oversized += 1
                side.lost, side.handshake = True, b""
                return
            if len(data) - pos < 4 + length:
                break
            message = data[pos + 4:pos + 4 + length]
            pos += 4 + length
            frame.add("handshake.type", msg_type)
            if msg_type == CLIENT_HELLO and from_client:
                self._hello(Reader(message), True, frame)
            elif msg_type == SERVER_HELLO and not from_client:
                self._hello(Reader(message), False, frame)
            elif msg_type == CERTIFICATE and not from_client:
                self._certificates(Reader(message), frame)
            elif msg_type == SERVER_KEY_EXCHANGE and not from_client:
                self._server_key_exchange(message, frame)
        side.handshake = data[pos:]

    def _hello(self, r: Reader, client: bool, frame: Frame) -> None:
        """A ClientHello or ServerHello (RFC 8446 4.1.2-4.1.3): its fields, JA3 or JA3S."""
        version = r.int(2)
        random = r.take(32)
        session_id = r.vector(1)
        if client and self.dtls:
            r.vector(1)  # RFC 6347 4.2.1: the cookie
        ciphers = _u16s(r.vector(2)) if client else [r.int(2)]
        r.vector(1) if client else r.take(1)  # compression methods
        if not r.ok:
            self.stats.malformed += 1
            return
        frame.add("handshake.version", f"0x{version:04x}")
        if session_id:
            frame.add("handshake.session_id", session_id.hex())
        frame.add("handshake.ciphersuite", *(f"0x{c:04x}" for c in ciphers))
        retry = not client and random == HELLO_RETRY_RANDOM
        extensions, groups, formats, chosen = self._extensions(Reader(r.vector(2)) if r.left else Reader(b""),
                                                               client, retry, frame)
        if client:
            ja3 = [str(version), "-".join(str(c) for c in ciphers if not is_grease(c)),
                   "-".join(str(e) for e in extensions if not is_grease(e)),
                   "-".join(str(g) for g in groups if not is_grease(g)), "-".join(str(f) for f in formats)]
            frame.add("handshake.ja3", hashlib.md5(",".join(ja3).encode(), usedforsecurity=False).hexdigest())
            return
        self.cipher = ciphers[0]
        column = DTLS_CIPHER_COLUMN if self.dtls else CIPHER_COLUMN
        frame.fields[ek_key(f"_ws.col.{column}")] = [CIPHER_NAMES.get(ciphers[0], f"0x{ciphers[0]:04x}")]
        self.tls13 = chosen is not None and (chosen == 0x0304 or chosen >> 8 in (0x7F, 0x7E))
        ja3s = f"{version},{ciphers[0]},{'-'.join(str(e) for e in extensions)}"
        frame.add("handshake.ja3s", hashlib.md5(ja3s.encode(), usedforsecurity=False).hexdigest())

    def _extensions(self, r: Reader, client: bool, retry: bool,
                    frame: Frame) -> tuple[list[int], list[int], list[int], int | None]:
        """Extension types in order; supported groups and point formats (JA3); the version a ServerHello chose."""
        types: list[int] = []
        groups: list[int] = []
        formats: list[int] = []
        chosen = None
        draft_share = None  # key_share under its number before TLS 1.3 draft 23 (40)
        while r.left >= 4:
            kind, body = r.int(2), r.vector(2)
            types.append(kind)
            frame.add("handshake.extension.type", kind)
            e = Reader(body)
            if kind == 0 and client:
                names = Reader(e.vector(2))
                while names.left >= 3:
                    name_type, name = names.int(1), names.vector(2)
                    if name_type == 0 and names.ok:
                        frame.add("handshake.extensions_server_name", _text(name))
            elif kind == 16:
                protocols = Reader(e.vector(2))
                while protocols.left:
                    name = protocols.vector(1)
                    if protocols.ok:
                        frame.add("handshake.extensions_alpn_str", _text(name))
            elif kind == 43:
                versions = _u16s(e.vector(1)) if client else [e.int(2)] if len(body) >= 2 else []
                frame.add("handshake.extensions.supported_version", *versions)
                chosen = versions[0] if versions and not client else chosen
            elif kind in SIG_LIST_EXTENSIONS:
                algs = e.vector(2)
                frame.add("handshake.sig_hash_alg_len", len(algs))
                frame.add("handshake.sig_hash_alg", *(f"0x{a:04x}" for a in _u16s(algs)))
            elif kind == 10 and client:
                groups = _u16s(e.vector(2))
            elif kind == 11 and client:
                formats = list(e.vector(1))
            elif kind == 51 and not client and not retry and len(body) >= 2:
                frame.add("handshake.extensions_key_share_group", e.int(2))
            elif kind == 40 and not client and not retry and len(body) >= 2:
                draft_share = e.int(2)
        if draft_share is not None and chosen is not None and _early_draft(chosen):
            frame.add("handshake.extensions_key_share_group", draft_share)
        if r.left or not r.ok:
            self.stats.malformed += 1
        return types, groups, formats, chosen

    def _certificates(self, r: Reader, frame: Frame) -> None:
        """RFC 5246 7.4.2 (RFC 8446 4.4.2 when 1.3 was chosen): the DER chain, at most ``MAX_CERTIFICATES``."""
        if self.tls13:
            r.vector(1)  # certificate_request_context
        chain = Reader(r.vector(3))
        ders: list[str] = []  # hex, as tshark gives them
        while chain.left >= 3 and len(ders) < MAX_CERTIFICATES:
            der = chain.vector(3)
            if self.tls13:
                chain.vector(2)  # the entry's extensions
            if not chain.ok:
                self.stats.malformed += 1
                break
            ders.append(der.hex())
        if ders:
            frame.add("handshake.certificate", *ders)

    def _server_key_exchange(self, message: bytes, frame: Frame) -> None:
        """RFC 8422 5.4 ServerECDHParams: curve_type named_curve (3) and the curve, for ECDHE cipher suites."""
        name = CIPHER_NAMES.get(self.cipher or -1, "")
        if ("_ECDHE_" in name or "_ECDH_anon_" in name) and len(message) >= 3 and message[0] == 3:
            frame.add("handshake.server_named_curve", f"0x{int.from_bytes(message[1:3], 'big'):04x}")


def frame_packet(frame: Frame, ts: float, src: str, dst: str, sport: int, dport: int, stream: str) -> Packet:
    """The frame's fields as tshark would print them for ``TlsAnalyzer.handle``."""
    return tcp_packet(ts, src, dst, sport, dport, stream, frame.fields, ["tls"])
