"""HTTP/1.x messages read natively (``collectors.protocols.http_wire``), then paired into documents
(``http.HttpConnection`` / ``HttpAnalyzer``).

Input: one byte that seeds the cutting, then segments in the framing of ``seeds.pack_frames``, each one byte of
kind (bit 0: from the server, bit 1: a hole of 1 + the next 16-bit number of bytes instead of data) and its
payload. Each direction's stream is read three ways: whole (adjacent data joined), segment by segment, and each
segment cut in random pieces of 1-40 bytes. Contract: nothing raises; the three readings give the same messages
and counters (the reader is incremental: the cutting must not matter); a pending line never passes
``MAX_LINE_BYTES``, at most ``MAX_HEADERS`` headers of bounded size are kept, a decoded body never passes
``MAX_DECODED_BYTES``, every byte is counted; the connection's documents, segment by segment and in pieces, are
equal, serialise, and hold no string longer than ``MAX_VALUE_CHARS``.
"""

from __future__ import annotations

import gzip
import random
import zlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import orjson

from collectors.decode import TCP
from collectors.protocols.documents import Flow, fits
from collectors.protocols.http import NO_BODY_STATUS, HttpAnalyzer, HttpConnection
from collectors.protocols.http_wire import (
    LOST,
    MAX_DECODED_BYTES,
    MAX_HEADERS,
    MAX_LINE_BYTES,
    Message,
    MessageReader,
    WireStats,
)
from tests.fuzz.seeds import pack_frames, payloads, unpack_frames

FLOW = Flow("tcp", "198.18.0.1", 40000, "198.18.0.2", 80, "h")
CAPTURES = ("http/get.pcap", "http/methods.pcap", "http/pipelined-requests.pcap", "http/100-continue.pcap",
            "http/missing-zlib-header.pcap", "http/http_09.pcap", "http/multipart-form-data.pcap",
            "http/concurrent-range-requests.pcap", "http/websocket.pcap", "http/version-mismatch.pcap",
            "http/http-desync-request-response-5.pcap", "nflog-http.pcap")

Segment = tuple[int, bytes | int]  # (side: 0 client, 1 server; data or a hole's size)
R = TypeVar("R")


def segments(data: bytes) -> list[Segment]:
    out: list[Segment] = []
    for f in unpack_frames(data):
        if not f:
            continue
        side = f[0] & 1
        out.append((side, 1 + int.from_bytes(f[1:3], "big")) if f[0] & 2 else (side, f[1:]))
    return out


def pieces(chunk: bytes | int, rng: random.Random) -> Iterator[bytes | int]:
    if isinstance(chunk, int):
        yield chunk
        return
    pos = 0
    while pos < len(chunk):
        step = rng.randint(1, 40)
        yield chunk[pos:pos + step]
        pos += step


def no_body(status: int) -> bool:
    return status < 200 or status in NO_BODY_STATUS


def read_side(chunks: list[bytes | int], is_request: bool) -> tuple[list[Message], WireStats, int]:
    messages: list[Message] = []
    stats = WireStats()
    reader = MessageReader(is_request, messages.append, stats, no_body)
    fed = 0
    for chunk in chunks:
        reader.feed(chunk, 1.0)
        fed += chunk if isinstance(chunk, int) else len(chunk)
        assert len(reader.buf) <= MAX_LINE_BYTES
        assert len(reader.headers) <= MAX_HEADERS
        if reader.body is not None:
            assert 0 <= reader.body.decoded <= MAX_DECODED_BYTES and reader.body.raw >= 0
        assert reader.bytes == fed
    reader.end(1.0)
    assert reader.state == LOST
    for m in messages:
        assert len(m.start) <= MAX_LINE_BYTES and len(m.headers) <= MAX_HEADERS
        assert all(len(k) <= MAX_LINE_BYTES and len(v) <= MAX_LINE_BYTES for k, v in m.headers.items())
        assert m.body >= 0
        if "content-encoding" in m.headers and m.body > fed:
            assert m.body <= MAX_DECODED_BYTES
        # a reply's status is any three digits, "000" too (Zeek's HTTP_ReplyCode reads them so)
        assert m.status is None if is_request else m.status is not None and 0 <= m.status <= 999
    return messages, stats, reader.bytes


def joined(chunks: list[bytes | int]) -> list[bytes | int]:
    out: list[bytes | int] = []
    for chunk in chunks:
        if out and isinstance(chunk, bytes) and isinstance(out[-1], bytes):
            out[-1] += chunk
        else:
            out.append(chunk)
    return out


def assert_cutting_changes_nothing(segs: list[Segment], rng: random.Random,
                                   read: Callable[[list[bytes | int], bool], object]) -> None:
    """Each direction read whole, segment by segment and in random pieces gives the same result."""
    for side in (0, 1):
        chunks = [c for s, c in segs if s == side]
        whole = read(joined(chunks), side == 0)
        one_by_one = read(chunks, side == 0)
        cut = read([p for c in chunks for p in pieces(c, rng)], side == 0)
        assert whole == one_by_one == cut, (whole, one_by_one, cut)


def assert_documents_fit(docs: list[dict]) -> None:
    for doc in docs:
        orjson.dumps(doc)
        assert fits(doc)


def connection_docs(segs: list[Segment], rng: random.Random | None) -> list[dict]:
    analyzer = HttpAnalyzer(lambda _text: None)
    conn = HttpConnection(analyzer, FLOW, WireStats())
    docs: list[dict] = []
    for i, (side, chunk) in enumerate(segs):
        if conn.switched:
            break
        for piece in (pieces(chunk, rng) if rng else (chunk,)):
            conn.feed(side == 0, piece, 1000.0 + i)
        docs += conn.take_docs()
    conn.end(2000.0)
    docs += conn.take_docs()
    docs += analyzer.finish()
    return docs


def check_stream_reader(data: bytes, read_direction: Callable[[list[bytes | int], bool], object],
                        read_connection: Callable[[list[Segment], random.Random | None], R]) -> R:
    """One input through a TCP stream reader (its first byte seeds the cutting, the rest are segments): each
    direction and the whole connection read the same whatever the cutting; the connection's result."""
    rng = random.Random(data[0])
    segs = segments(data[1:])
    assert_cutting_changes_nothing(segs, rng, read_direction)
    whole = read_connection(segs, None)
    assert read_connection(segs, rng) == whole
    return whole


def TestOneInput(data: bytes) -> None:
    if data:
        assert_documents_fit(check_stream_reader(data, read_side, connection_docs))


def _framed(parts: list[tuple[int, bytes]]) -> bytes:
    return b"\x07" + pack_frames(bytes([side]) + payload for side, payload in parts)


def seeds() -> list[bytes]:
    """The HTTP segments of the shared captures (each capture a connection-ish stream), and messages built to RFC
    9112: chunked with trailers, gzip and deflate bodies (zlib header and raw), HEAD, 204/304, 1xx, HTTP/0.9, a hole
    inside a body, a line past ``MAX_LINE_BYTES``."""
    out = []
    for name in CAPTURES:
        parts = [(0 if dport == 80 or (sport != 80 and dport < sport) else 1, payload)
                 for sport, dport, payload in payloads([name], TCP, per_file=60)]
        if parts:
            out.append(_framed(parts))
    body = b"hello " * 300
    chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in (body[:100], body[100:1000], body[1000:]))
    raw_deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    out.append(_framed([
        (0, b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nUser-Agent: fuzz\r\n\r\n"),
        (1, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"),
        (1, b"%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(gzip.compress(body)), gzip.compress(body))),
        (0, b"HEAD / HTTP/1.1\r\n\r\nPOST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde"),
        (1, b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No\r\n\r\n"),
        (0, b"PUT /z HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n"),
        (1, b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n"),
        (0, b"GET /d HTTP/1.1\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n"),
        (1, b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n%s" % (
            len(zlib.compress(body)), zlib.compress(body))),
        (0, b"GET /r HTTP/1.1\r\n\r\n"),
        (1, b"HTTP/1.0 200 OK\r\nContent-Encoding: deflate\r\n\r\n" + raw_deflate.compress(body) + raw_deflate.flush()),
    ]))
    out.append(_framed([(0, b"GET /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nab"), (2, b"\x00\x03"), (0, b"abcde"),
                        (1, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nok"), (3, b"\x00\x01"), (1, b"!"),
                        (0, b"GET /" + b"a" * (MAX_LINE_BYTES + 10) + b" HTTP/1.1\r\n\r\n")]))
    out.append(_framed([(0, b"GET /old\r\n"), (1, b"<html>0.9 reply</html>")]))
    out.append(_framed([(0, b"GET /bomb HTTP/1.1\r\n\r\n"), (1, b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n"
                                                                + gzip.compress(bytes(1 << 20)))]))
    return out
