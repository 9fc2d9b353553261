"""QUIC Initial packets read natively (RFC 9000 17.2, RFC 9001 5), as the TLS fields tshark's QUIC dissector gives
``TlsAnalyzer``.

A UDP datagram holds one or more coalesced QUIC packets: long-header packets carry their length, a short-header
packet runs to the datagram's end. Initial packets are protected with keys every observer can derive from the
Destination Connection ID of the client's first Initial (RFC 9001 5.2; QUIC v2, RFC 9369, has its own salt, labels
and packet type numbers; drafts 29-32 the draft-29 salt): header protection is removed (AES-ECB over a 16-byte
sample), the payload decrypted with AES-128-GCM, and its frames walked (PADDING, PING, ACK, CRYPTO,
CONNECTION_CLOSE). The CRYPTO frames of each direction are reassembled by offset (out of order, split across
packets and datagrams, as Chromium sends them) and the contiguous bytes handed to the TLS handshake reader of
``tls_wire`` (no record layer in QUIC): what a datagram completed comes out as one frame's fields, as tshark
prints that frame. Server Initials use the server keys of the same Destination Connection ID; a Retry's Source
Connection ID becomes the ID the keys derive from when the client's next Initial uses it. Handshake, 0-RTT and
1-RTT packets are not decryptable without the TLS secrets and are skipped.

Bounds, never raising: at most ``MAX_CRYPTO_BUFFER`` bytes of CRYPTO data wait per direction (data further ahead
than that is dropped), at most ``MAX_DATAGRAMS`` datagrams of a connection are read, at most ``MAX_PACKETS`` packets
of one datagram; damage is counted in :class:`QuicStats`.
"""

from __future__ import annotations

import hmac
from typing import Any

from collectors.protocols.tls_wire import Frame, TlsConnection, TlsStats

V1, V2 = 0x00000001, 0x6B3343CF
SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
SALT_V2 = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")
SALT_DRAFT29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")
DRAFTS = frozenset(range(0xFF00001D, 0xFF000021))  # drafts 29-32: the draft-29 salt
INITIAL, ZERO_RTT, HANDSHAKE, RETRY = 0, 1, 2, 3  # long packet types as v1 numbers them
MAX_CRYPTO_BUFFER = 64 * 1024  # CRYPTO bytes waiting per direction (Initial ClientHellos are a few KiB)
MAX_DATAGRAMS = 64  # datagrams read per connection (the Initials come first; the rest is 1-RTT)
MAX_PACKETS = 16  # coalesced packets read per datagram
MAX_CID = 20
TAG = 16
SAMPLE = 16


class QuicStats:
    """What the native QUIC reader met, for the run's one warning."""

    __slots__ = ("datagrams", "initials", "malformed", "oversized", "skipped", "undecryptable")

    def __init__(self) -> None:
        self.datagrams = 0  # datagrams of natively read connections
        self.initials = 0  # Initial packets decrypted
        self.undecryptable = 0  # Initial packets whose protection did not come off
        self.malformed = 0  # packets or frames that did not parse
        self.oversized = 0  # CRYPTO data past the buffering bound
        self.skipped = 0  # datagrams past MAX_DATAGRAMS


def supported(version: int) -> bool:
    return version in (V1, V2) or version in DRAFTS


def packet_type(version: int, bits: int) -> int:
    """The long packet type as v1 numbers it (RFC 9369 3.2 rotates them in v2)."""
    return (bits - 1) & 3 if version == V2 else bits


def varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the RFC 9000 16 variable-length integer at ``pos``; (-1, pos) when cut."""
    if pos >= len(data):
        return -1, pos
    first = data[pos]
    n = 1 << (first >> 6)
    if pos + n > len(data):
        return -1, pos
    value = first & 0x3F
    for i in range(1, n):
        value = value << 8 | data[pos + i]
    return value, pos + n


def expand_label(secret: bytes, label: str, length: int) -> bytes:
    """HKDF-Expand-Label (RFC 8446 7.1) with an empty context, for at most one SHA-256 output (32 bytes): HKDF-Expand's
    first block, T(1) = HMAC(secret, info | 0x01) (RFC 5869 2.3). hmac.digest is OpenSSL's one-shot HMAC: 1 us where
    cryptography's HKDFExpand took 4 us, three times per direction of each QUIC flow."""
    if length > 32:
        raise ValueError("one SHA-256 block at most")
    full = b"tls13 " + label.encode()
    info = length.to_bytes(2, "big") + bytes((len(full),)) + full + b"\x00"
    return hmac.digest(secret, info + b"\x01", "sha256")[:length]


def initial_secrets(version: int, dcid: bytes) -> tuple[bytes, bytes]:
    """(client, server) Initial secrets of a Destination Connection ID (RFC 9001 5.2, RFC 9369 3.3.1)."""
    salt = SALT_V1 if version == V1 else SALT_V2 if version == V2 else SALT_DRAFT29
    initial = hmac.digest(salt, dcid, "sha256")
    return expand_label(initial, "client in", 32), expand_label(initial, "server in", 32)


class Keys:
    """The packet protection of one direction's Initial packets: AEAD key and IV, header protection key."""

    __slots__ = ("aead", "hp", "iv", "key")

    def __init__(self, version: int, secret: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        prefix = "quicv2 " if version == V2 else "quic "
        self.key = expand_label(secret, prefix + "key", 16)
        self.iv = expand_label(secret, prefix + "iv", 12)
        hp_key = expand_label(secret, prefix + "hp", 16)
        # RFC 9001 5.4.3: header protection is AES-ECB over one 16-byte sample (not a confidentiality mode here)
        self.hp: Any = Cipher(algorithms.AES(hp_key), modes.ECB()).encryptor()  # noqa: S305
        self.aead: Any = AESGCM(self.key)

    def mask(self, sample: bytes) -> bytes:
        out: bytes = self.hp.update(sample)
        return out

    def open(self, pn: int, payload: bytes, header: bytes) -> bytes | None:
        """The plaintext, or None when the tag does not verify."""
        from cryptography.exceptions import InvalidTag

        nonce = bytes(a ^ b for a, b in zip(self.iv, pn.to_bytes(12, "big"), strict=True))
        try:
            out: bytes = self.aead.decrypt(nonce, payload, header)
        except (InvalidTag, ValueError):
            return None
        return out


def decode_pn(largest: int, truncated: int, length: int) -> int:
    """RFC 9000 A.3: the full packet number nearest the next expected one."""
    expected = largest + 1
    win = 1 << (length * 8)
    half, mask = win // 2, win - 1
    candidate = (expected & ~mask) | truncated
    if candidate <= expected - half and candidate < (1 << 62) - win:
        return candidate + win
    if candidate > expected + half and candidate >= win:
        return candidate - win
    return candidate


class LongHeader:
    """One long-header packet's header fields (before header protection is removed)."""

    __slots__ = ("dcid", "end", "kind", "pn_offset", "scid", "start", "version")

    def __init__(self, start: int, version: int, kind: int, dcid: bytes, scid: bytes, pn_offset: int,
                 end: int) -> None:
        self.start, self.version, self.kind, self.dcid, self.scid = start, version, kind, dcid, scid
        self.pn_offset, self.end = pn_offset, end


def long_header(data: bytes, pos: int) -> LongHeader | None:
    """The long-header packet at ``pos`` (RFC 9000 17.2), None when it is not one or is cut. Retry, version
    negotiation and unknown versions run to the datagram's end (``pn_offset`` -1)."""
    end = len(data)
    if end - pos < 7 or not data[pos] & 0x80:
        return None
    version = int.from_bytes(data[pos + 1:pos + 5], "big")
    p = pos + 5
    n = data[p]
    if n > MAX_CID or p + 1 + n >= end:
        return None
    dcid = data[p + 1:p + 1 + n]
    p += 1 + n
    n = data[p]
    if n > MAX_CID or p + 1 + n > end:
        return None
    scid = data[p + 1:p + 1 + n]
    p += 1 + n
    if not supported(version):
        return LongHeader(pos, version, -1, dcid, scid, -1, end)
    kind = packet_type(version, (data[pos] >> 4) & 3)
    if kind == RETRY:
        return LongHeader(pos, version, kind, dcid, scid, -1, end)
    if kind == INITIAL:
        token, p = varint(data, p)
        if token < 0 or p + token > end:
            return None
        p += token
    length, p = varint(data, p)
    if length < 0 or p + length > end or length < 4 + TAG:
        return None
    return LongHeader(pos, version, kind, dcid, scid, p, p + length)


def client_initial(datagram: bytes) -> tuple[int, bytes] | None:
    """(version, Destination Connection ID) when the datagram opens with an Initial packet of a version read here."""
    head = long_header(datagram, 0)
    if head is None or head.kind != INITIAL or head.pn_offset < 0:
        return None
    return head.version, head.dcid


def unprotect(keys: Keys, data: bytes, head: LongHeader, largest: int) -> tuple[int, bytes] | None:
    """(packet number, plaintext payload) of the long-header packet ``head`` of ``data`` (RFC 9001 5.3-5.4), None
    when it is too short to sample or its tag does not verify."""
    pn_offset = head.pn_offset
    if pn_offset < 0 or pn_offset + 4 + SAMPLE > head.end:
        return None
    mask = keys.mask(data[pn_offset + 4:pn_offset + 4 + SAMPLE])
    first = data[head.start] ^ (mask[0] & 0x0F)
    pn_len = (first & 3) + 1
    truncated = 0
    for i in range(pn_len):
        truncated = truncated << 8 | (data[pn_offset + i] ^ mask[1 + i])
    header = bytes((first,)) + data[head.start + 1:pn_offset] + truncated.to_bytes(pn_len, "big")
    pn = decode_pn(largest, truncated, pn_len)
    plain = keys.open(pn, data[pn_offset + pn_len:head.end], header)
    return None if plain is None else (pn, plain)


class CryptoStream:
    """One direction's CRYPTO stream (RFC 9000 19.6): out-of-order pieces wait until the bytes before them came."""

    __slots__ = ("buffered", "next", "pending")

    def __init__(self) -> None:
        self.next = 0  # offset of the first byte not handed on yet
        self.pending: dict[int, bytes] = {}  # offset -> bytes ahead of ``next``
        self.buffered = 0

    def add(self, offset: int, data: bytes, stats: QuicStats) -> bytes:
        """The contiguous bytes this piece makes available (empty when none)."""
        end = offset + len(data)
        if end <= self.next or not data:
            return b""  # a retransmission of what was handed on
        if offset < self.next:
            data, offset = data[self.next - offset:], self.next
        if offset > self.next:
            if end - self.next > MAX_CRYPTO_BUFFER or self.buffered + len(data) > MAX_CRYPTO_BUFFER:
                stats.oversized += 1
                return b""
            old = self.pending.get(offset)
            if old is None or len(old) < len(data):
                self.buffered += len(data) - (len(old) if old is not None else 0)
                self.pending[offset] = data
            return b""
        out = [data]
        self.next = end
        for start in sorted(self.pending):  # in offset order, so one pass takes every piece that joins on
            if start > self.next:
                break
            piece = self.pending.pop(start)
            self.buffered -= len(piece)
            if start + len(piece) > self.next:
                out.append(piece[self.next - start:])
                self.next = start + len(piece)
        return b"".join(out)


class QuicConnection:
    """Both directions of one UDP flow whose first datagram was a client Initial."""

    __slots__ = ("client_keys", "crypto", "datagrams", "largest", "retry_cid", "server_keys", "stats", "tls",
                 "version")

    def __init__(self, version: int, dcid: bytes, stats: QuicStats, tls_stats: TlsStats) -> None:
        self.stats = stats
        self.version = version
        self.client_keys, self.server_keys = self._keys(version, dcid)
        self.tls = TlsConnection(tls_stats)
        self.crypto = (CryptoStream(), CryptoStream())  # from the client, from the server
        self.largest = [-1, -1]  # largest Initial packet number read per direction
        self.datagrams = 0
        self.retry_cid: bytes | None = None  # a Retry's Source Connection ID, until the client uses it

    @staticmethod
    def _keys(version: int, dcid: bytes) -> tuple[Keys, Keys]:
        client, server = initial_secrets(version, dcid)
        return Keys(version, client), Keys(version, server)

    def feed(self, from_client: bool, datagram: bytes, frame: Frame) -> int:
        """One datagram of the flow; the handshake messages it completed go into ``frame``. How many Initial packets
        were decrypted."""
        self.datagrams += 1
        if self.datagrams > MAX_DATAGRAMS:
            self.stats.skipped += 1
            return 0
        self.stats.datagrams += 1
        pos, read = 0, 0
        for _ in range(MAX_PACKETS):
            if len(datagram) - pos < 7 or not datagram[pos] & 0x80:
                break  # a short-header packet (or padding) runs to the end
            head = long_header(datagram, pos)
            if head is None:
                self.stats.malformed += 1
                break
            if head.kind == RETRY and not from_client:
                self.retry_cid = head.scid
            elif head.kind == INITIAL and head.version == self.version:
                read += self._initial(from_client, datagram, head, frame)
            pos = head.end
        return read

    def _initial(self, from_client: bool, data: bytes, head: LongHeader, frame: Frame) -> int:
        if from_client and self.retry_cid is not None and head.dcid == self.retry_cid:
            self.client_keys, self.server_keys = self._keys(self.version, head.dcid)
            self.retry_cid = None
        keys = self.client_keys if from_client else self.server_keys
        side = 0 if from_client else 1
        opened = unprotect(keys, data, head, self.largest[side])
        if opened is None:
            self.stats.undecryptable += 1
            return 0
        pn, plain = opened
        self.stats.initials += 1
        if pn > self.largest[side]:
            self.largest[side] = pn
        self._frames(from_client, plain, frame)
        return 1

    def _frames(self, from_client: bool, plain: bytes, frame: Frame) -> None:
        """RFC 9000 19: the frames an Initial packet may carry; another type ends the packet (counted)."""
        stream = self.crypto[0 if from_client else 1]
        pos, end = 0, len(plain)
        while pos < end:
            kind = plain[pos]
            pos += 1
            if kind in (0x00, 0x01):  # PADDING, PING
                continue
            if kind in (0x02, 0x03):  # ACK (with ECN counts)
                values = [0, 0, 0, 0]
                for i in range(4):
                    values[i], pos = varint(plain, pos)
                ranges = values[2]
                if min(values) < 0 or ranges > end:
                    self.stats.malformed += 1
                    return
                for _ in range(2 * ranges + (3 if kind == 0x03 else 0)):
                    value, pos = varint(plain, pos)
                    if value < 0:
                        self.stats.malformed += 1
                        return
            elif kind == 0x06:  # CRYPTO
                offset, pos = varint(plain, pos)
                length, pos = varint(plain, pos)
                if offset < 0 or length < 0 or pos + length > end:
                    self.stats.malformed += 1
                    return
                data = stream.add(offset, plain[pos:pos + length], self.stats)
                pos += length
                if data:
                    self.tls.handshake(from_client, data, frame)
            elif kind in (0x1C, 0x1D):  # CONNECTION_CLOSE
                code, pos = varint(plain, pos)
                if kind == 0x1C:
                    code, pos = varint(plain, pos)
                reason, pos = varint(plain, pos)
                if code < 0 or reason < 0 or pos + reason > end:
                    self.stats.malformed += 1
                    return
                pos += reason
            else:
                self.stats.malformed += 1
                return
