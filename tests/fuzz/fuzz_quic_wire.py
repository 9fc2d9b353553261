"""QUIC Initial packets read natively (``collectors.protocols.quic_wire``), then logged by ``TlsAnalyzer`` from the
frames they make.

Input: one byte choosing the version (v1, v2, draft-29), then datagrams as ``pack_frames`` packs them, each opening
with one byte of kind: bit 0 from the server, bit 1 raw (the rest of the datagram is fed as it is), otherwise the
rest is the plaintext of an Initial packet that the harness protects with the connection's keys (RFC 9001 5, so
the fuzzer reaches the frame walk, the CRYPTO reassembly and the TLS handshake reader behind the AEAD); bit 2 adds
a raw tail coalesced behind it (the next datagram's bytes). Contract: nothing raises; a direction never holds more
than ``MAX_CRYPTO_BUFFER`` bytes of CRYPTO data ahead of its stream nor more than one handshake message of pending
bytes; datagrams past ``MAX_DATAGRAMS`` are not read; the documents serialise and hold no string longer than
``MAX_VALUE_CHARS``.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from collectors.protocols.quic_wire import (
    DRAFTS,
    MAX_CRYPTO_BUFFER,
    MAX_DATAGRAMS,
    V1,
    V2,
    Keys,
    QuicConnection,
    QuicStats,
    expand_label,
    initial_secrets,
    long_header,
    unprotect,
)
from collectors.protocols.tls import TlsAnalyzer
from collectors.protocols.tls_wire import MAX_HANDSHAKE_BYTES, Frame, TlsStats
from collectors.protocols.tshark import udp_packet
from tests.fuzz.fuzz_http_wire import assert_documents_fit
from tests.fuzz.seeds import TRACES, pack_frames, payloads, unpack_frames

UDP = 17
VERSIONS = (V1, V2, min(DRAFTS))
DCID, SCID = bytes.fromhex("0011223344556677"), bytes.fromhex("a1a2a3a4")
_KEYS: dict[tuple[int, bool], tuple[bytes, bytes, bytes]] = {}


def keys(version: int, client: bool) -> tuple[bytes, bytes, bytes]:
    if (version, client) not in _KEYS:
        secret = initial_secrets(version, DCID)[0 if client else 1]
        prefix = "quicv2 " if version == V2 else "quic "
        _KEYS[version, client] = (expand_label(secret, prefix + "key", 16), expand_label(secret, prefix + "iv", 12),
                                  expand_label(secret, prefix + "hp", 16))
    return _KEYS[version, client]


def protect(version: int, client: bool, pn: int, payload: bytes) -> bytes:
    """An Initial packet carrying ``payload`` (padded to a sample's worth), protected as RFC 9001 5 says."""
    key, iv, hp = keys(version, client)
    payload = payload + bytes(max(0, 4 - len(payload)))
    dcid, scid = (DCID, SCID) if client else (SCID, DCID)
    kind = 1 if version == V2 else 0
    header = bytes((0xC1 | kind << 4,)) + version.to_bytes(4, "big") + bytes((len(dcid),)) + dcid + \
        bytes((len(scid),)) + scid + b"\x00" + struct.pack("!H", 0x4000 | (2 + len(payload) + 16)) + \
        (pn & 0xFFFF).to_bytes(2, "big")
    nonce = bytes(a ^ b for a, b in zip(iv, pn.to_bytes(12, "big"), strict=True))
    sealed = AESGCM(key).encrypt(nonce, payload, header)
    mask = Cipher(algorithms.AES(hp), modes.ECB()).encryptor().update(sealed[2:18])
    out = bytearray(header + sealed)
    out[0] ^= mask[0] & 0x0F
    out[len(header) - 2] ^= mask[1]
    out[len(header) - 1] ^= mask[2]
    return bytes(out)


def check(conn: QuicConnection) -> None:
    for stream in conn.crypto:
        assert 0 <= stream.buffered <= MAX_CRYPTO_BUFFER
        assert sum(len(p) for p in stream.pending.values()) == stream.buffered
    for side in conn.tls.sides:
        assert len(side.handshake) < 4 + MAX_HANDSHAKE_BYTES


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    version = VERSIONS[data[0] % len(VERSIONS)]
    stats = QuicStats()
    conn, analyzer = QuicConnection(version, DCID, stats, TlsStats()), TlsAnalyzer(lambda _text: None)
    items = unpack_frames(data[1:], limit=MAX_DATAGRAMS + 8)
    pns = [0, 0]
    docs: list[dict] = []
    for i, item in enumerate(items):
        if not item:
            continue
        kind, body = item[0], item[1:]
        client = not kind & 1
        if kind & 2:
            datagram = body
        else:
            datagram = protect(version, client, pns[0 if client else 1], body)
            pns[0 if client else 1] += 1
        if kind & 4 and i + 1 < len(items):
            datagram += items[i + 1]
        frame = Frame()
        conn.feed(client, datagram, frame)
        check(conn)
        src, dst, sport, dport = ("198.18.0.1", "198.18.0.2", 51000, 443) if client else (
            "198.18.0.2", "198.18.0.1", 443, 51000)
        if frame:
            docs += analyzer.handle(udp_packet(1000.0 + i, src, dst, sport, dport, "u", frame.fields,
                                               ["quic", "tls"]))
    assert stats.datagrams <= MAX_DATAGRAMS
    docs += analyzer.finish()
    assert_documents_fit(docs)


def seeds() -> list[bytes]:
    """The Initial plaintexts of the shared QUIC captures, re-protected by the harness (one connection each)."""
    out = []
    for name in ("quic/chromium-115.0.5790.110-api-cirrus-com.pcap", "ppp/quic-interop-retry.pcap"):
        if not (TRACES / name).is_file():
            continue
        items: list[bytes] = []
        client_keys: dict[int, tuple[Keys, Keys]] = {}
        for _sport, _dport, datagram in payloads([name], UDP, per_file=100):
            head = long_header(datagram, 0)
            if head is None or head.pn_offset < 0:
                continue
            if not client_keys:
                client, server = initial_secrets(V1, head.dcid)
                client_keys[0] = (Keys(V1, client), Keys(V1, server))
            for which, k in enumerate(client_keys[0]):
                opened = unprotect(k, datagram, head, -1)
                if opened is not None:
                    items.append(bytes((which,)) + opened[1])
                    break
        if items:
            out.append(b"\x00" + pack_frames(items))
            out.append(b"\x01" + pack_frames(items))
    return out
