"""TLS records and handshake messages read natively (``collectors.protocols.tls_wire``), then logged by
``TlsAnalyzer`` from the frames they make.

Input: one byte that seeds the cutting, then segments as in ``fuzz_http_wire`` (one byte of kind: bit 0 from the
server, bit 1 a hole; then the payload). Each direction alone is read whole (adjacent data joined), segment by
segment and in random pieces of 1-40 bytes, into one frame; the connection is read segment by segment, each
segment whole and in pieces, one frame per segment. Contract: nothing raises; the cutting changes no field, no
counter and no frame; a direction never holds more than one record (``MAX_RECORD`` + header) and one handshake
message (``MAX_HANDSHAKE_BYTES`` + header) of pending bytes; at most ``MAX_CERTIFICATES`` certificates per message;
the documents are equal, serialise, and hold no string longer than ``MAX_VALUE_CHARS``.
"""

from __future__ import annotations

import random

from collectors.decode import TCP
from collectors.protocols.tls import TlsAnalyzer
from collectors.protocols.tls_wire import (
    HEADER,
    MAX_CERTIFICATES,
    MAX_HANDSHAKE_BYTES,
    MAX_RECORD,
    Frame,
    TlsConnection,
    TlsStats,
    frame_packet,
)
from collectors.protocols.tshark import ek_key
from tests.fuzz.fuzz_http_wire import Segment, assert_documents_fit, check_stream_reader, pieces
from tests.fuzz.seeds import pack_frames, payloads

CAPTURES = ("tls/tls1.2.pcap", "tls/tls13_wolfssl.pcap", "tls/tls1_1.pcap", "tls/dhe.pcap",
            "tls/tls-conn-with-extensions.pcap", "tls/tls13draft23-chrome67.0.3368.0-canary.pcap",
            "tls/chrome-63.0.3211.0-canary-tls_experiment.pcap", "tls/google-cert-repeat.pcap",
            "tls/tls-1.2-handshake-failure.pcap", "tls/certificate-request-failed.pcap", "tls/ml-dsa-44-cert.pcap",
            "tls/tls1.2-late-protocol-error.pcap")
CERTS, TYPES = ek_key("tls.handshake.certificate"), ek_key("tls.handshake.type")


def check(conn: TlsConnection) -> None:
    for side in conn.sides:
        assert len(side.buf) < HEADER + MAX_RECORD
        assert len(side.handshake) < 4 + MAX_HANDSHAKE_BYTES


def read_direction(chunks: list[bytes | int], from_client: bool) -> tuple[dict, TlsStats]:
    stats = TlsStats()
    conn, frame = TlsConnection(stats), Frame()
    for chunk in chunks:
        conn.feed(from_client, chunk, frame)
        check(conn)
    return frame.fields, stats


def read_connection(segs: list[Segment], rng: random.Random | None) -> tuple[list[dict], list[dict], TlsStats]:
    stats = TlsStats()
    conn, analyzer = TlsConnection(stats), TlsAnalyzer(lambda _text: None)
    frames, docs = [], []
    for i, (side, chunk) in enumerate(segs):
        frame = Frame()
        for piece in (pieces(chunk, rng) if rng else (chunk,)):
            conn.feed(side == 0, piece, frame)
            check(conn)
        assert len(frame.fields.get(CERTS, ())) <= MAX_CERTIFICATES * sum(
            1 for t in frame.fields.get(TYPES, ()) if t == "11")
        frames.append(frame.fields)
        src, dst, sport, dport = ("198.18.0.1", "198.18.0.2", 40000, 443) if side == 0 else (
            "198.18.0.2", "198.18.0.1", 443, 40000)
        docs += analyzer.handle(frame_packet(frame, 1000.0 + i, src, dst, sport, dport, "t"))
    docs += analyzer.finish()
    return frames, docs, stats


def TestOneInput(data: bytes) -> None:
    if data:
        _frames, docs, _stats = check_stream_reader(data, read_direction, read_connection)
        assert_documents_fit(docs)


def seeds() -> list[bytes]:
    """The TLS segments of the shared captures, each capture as one connection's stream (client: the higher port)."""
    out = []
    for name in CAPTURES:
        parts = [bytes([0 if sport > dport else 1]) + payload for sport, dport, payload in payloads([name], TCP)]
        if parts:
            out.append(b"\x05" + pack_frames(parts))
    return out
