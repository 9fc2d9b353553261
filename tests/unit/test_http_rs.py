"""Differential test of the Rust HTTP reader (``collectors._rs.HttpEngine``, ``http_native.RustHttp``) against the
Python reference (``http_native.PythonHttp``: ``HttpConnection`` + ``HttpAnalyzer`` + ``make_doc``): the same calls
on both, every document byte-equal (``_id`` and ``secops.truncated`` included), in order, the counters and warnings
equal.

Inputs: every shared capture with HTTP read by the native TCP path (``TcpNative``, with ``http_native.RUST`` on and
off: the whole path, hand-backs, sweeps and finish included); then generated streams in random cuttings, with holes
and sweeps: pipelining past MAX_PENDING, HEAD, 1xx, 101, 204/304, chunked (valid, broken, huge, trailers),
Content-Length with holes, gzip/deflate (valid, raw deflate, corrupt, trailing data, a bomb past the cap), HTTP/0.9,
lines past MAX_LINE_BYTES, more than MAX_HEADERS headers, non-UTF-8 bytes and %-escapes, basic auth, empty URIs,
CONNECT and Upgrade, orphans, the bounds on records per connection, orphans and open connections.
"""

from __future__ import annotations

import contextlib
import gzip
import random
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from collectors.decode import PLEN, PROTO, Decoder
from collectors.flowconst import TCP
from collectors.pcapio import CaptureError, read_capture
from collectors.protocols import http_native
from collectors.protocols.detect import http_request, http_response
from collectors.protocols.documents import Flow
from collectors.protocols.http import MAX_ORPHANS, MAX_PENDING, MAX_RECORDS_PER_FLOW
from collectors.protocols.http_wire import MAX_DECODED_BYTES, MAX_HEADERS, MAX_LINE_BYTES
from collectors.protocols.native_tcp import TcpNative
from tests.support import TESTDATA

if http_native.ENGINE is None:
    pytest.skip("collectors._rs has no HttpEngine (extension not built)", allow_module_level=True)

from tests.fuzz.fuzz_http_rs import PIECES, Pair, run_script

CAPTURES = sorted(p for p in TESTDATA.rglob("*") if p.is_file() and (".pcap" in p.name or p.suffix == ".cap"))
FLOW = Flow("tcp", "198.18.0.1", 40000, "198.18.0.2", 80, "native-1")
T0 = 1_700_000_000.0


def tcp_packets(capture: Path) -> Iterator[tuple[tuple, float]]:
    """(decoded TCP packet, ts) of every TCP segment of the capture, decoded as the pipeline does."""
    decoder = Decoder()
    try:
        for ts_ns, linktype, buf, off, caplen, _wire in read_capture(capture, lambda _m: None):
            packets = decoder.decode(linktype, buf, off, caplen, ts_ns)
            if packets and packets[-1][PROTO] == TCP:
                yield packets[-1], ts_ns / 1_000_000_000
    except CaptureError:
        return


def speaks_http(capture: Path) -> bool:
    from collectors.decode import BUF, CAPLEN, L4OFF
    for p, _ts in tcp_packets(capture):
        if p[PLEN] <= 0:
            continue
        b, l4 = p[BUF], p[L4OFF]
        start = l4 + (b[l4 + 12] >> 4) * 4 if l4 + 20 <= len(b) else len(b)
        payload = bytes(b[start:start + min(p[CAPLEN], p[PLEN])])
        if http_request(payload[:512], p[PLEN]) or http_response(payload[:512], p[PLEN]):
            return True
    return False


HTTP_CAPTURES = [c for c in CAPTURES if speaks_http(c)]


def native_run(capture: Path, rust: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list[bytes], list[str], Any]:
    """The documents (as JSON), warnings and counters of the native TCP path over a capture."""
    monkeypatch.setattr(http_native, "RUST", rust)
    warnings: list[str] = []
    native = TcpNative("t", warnings.append, None, raw=True)
    assert isinstance(native.http, http_native.RustHttp if rust else http_native.PythonHttp)
    docs: list[Any] = []
    for p, ts in tcp_packets(capture):
        native.take(p, ts, docs)
    try:
        docs += native.finish()
    except Exception as exc:  # the reference's own: a time datetime cannot write (both must raise it alike)
        warnings.append(f"finish raised {type(exc).__name__}: {exc}")
    return [orjson.dumps(d) for d in docs], warnings, (native.stats, native.http.wire)


def test_the_shared_captures_with_http_are_found() -> None:
    assert len(HTTP_CAPTURES) >= 10, HTTP_CAPTURES


@pytest.mark.parametrize("capture", HTTP_CAPTURES, ids=lambda p: str(p.relative_to(TESTDATA)))
def test_shared_captures_read_natively_give_the_same_documents(capture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    py_docs, py_warn, py_stats = native_run(capture, False, monkeypatch)
    rs_docs, rs_warn, rs_stats = native_run(capture, True, monkeypatch)
    assert len(rs_docs) == len(py_docs)
    for i, (a, b) in enumerate(zip(py_docs, rs_docs)):
        assert a == b, f"document {i}\nrust:   {b!r}\npython: {a!r}"
    assert rs_warn == py_warn
    assert rs_stats == py_stats


def test_the_captures_exercise_http() -> None:
    """The differential test above is not vacuous: the captures give many HTTP documents."""
    total = 0
    for capture in HTTP_CAPTURES:
        warnings: list[str] = []
        native = TcpNative("t", warnings.append, None, raw=True)
        docs: list[Any] = []
        for p, ts in tcp_packets(capture):
            native.take(p, ts, docs)
        with contextlib.suppress(OSError):  # the reference's own (a time datetime cannot write)
            docs += native.finish()
        total += sum(b'"secops.http"' in orjson.dumps(d) for d in docs)
    assert total >= 150, total


# -- generated streams -----------------------------------------------------------------------------------------
def play(client: bytes | list[bytes | int], server: bytes | list[bytes | int], rng: random.Random, *,
         holes: bool = False, end: bool = True, expire: bool = False, interleave: bool = True,
         pair: Pair | None = None, conn_id: int = 1, flow: Flow = FLOW, finish: bool = True) -> Pair:
    """Feed one connection's two directions to both implementations in random cuttings (optionally some cut pieces
    replaced by holes, the directions interleaved, sweeps between), then end it and finish."""
    pair = pair or Pair()
    pair.open(conn_id, flow)

    def pieces(stream: bytes | list[bytes | int]) -> list[bytes | int]:
        parts = stream if isinstance(stream, list) else [stream]
        out: list[bytes | int] = []
        for part in parts:
            if isinstance(part, int):
                out.append(part)
                continue
            pos = 0
            while pos < len(part):
                size = rng.choice((1, 2, 3, 7, 50, 500, 1460, 70000))
                chunk = part[pos:pos + size]
                out.append(len(chunk) if holes and rng.random() < 0.05 else chunk)
                pos += size
        return out

    queues = [(True, pieces(client)), (False, pieces(server))]
    if not interleave:
        queues = [(True, queues[0][1]), (False, queues[1][1])]
    ts = T0
    switched = False
    while any(q for _, q in queues) and not switched:
        if interleave:
            choices = [i for i, (_, q) in enumerate(queues) if q]
            side = rng.choice(choices)
        else:
            side = 0 if queues[0][1] else 1
        from_client, queue = queues[side]
        ts += rng.choice((0.0, 0.001, 1.0, 200.0)) if expire else 0.001
        if expire and rng.random() < 0.1:
            pair.expire(ts)
        pair.feed(conn_id, from_client, queue.pop(0), ts)
        switched = pair.switched(conn_id)
    if switched:
        pair.forget(conn_id)
    elif end:
        pair.end(conn_id, ts + 0.5)
    if finish:
        pair.finish()
    return pair


def req(line: str | bytes, *headers: str | bytes, body: bytes = b"") -> bytes:
    def enc(x: str | bytes) -> bytes:
        return x if isinstance(x, bytes) else x.encode()
    return enc(line) + b"\r\n" + b"".join(enc(h) + b"\r\n" for h in headers) + b"\r\n" + body


def chunked(*parts: bytes, trailer: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n" + trailer + b"\r\n"


OK = req("HTTP/1.1 200 OK", "Content-Length: 5", "Content-Type: text/html", body=b"hello")
GZ = gzip.compress(b"abc" * 4000)
ZL = zlib.compress(b"def" * 3000)
RAW_DEFLATE = zlib.compress(b"ghi" * 3000)[2:-4]


def scenarios() -> dict[str, tuple[bytes | list[bytes | int], bytes | list[bytes | int]]]:
    """(client stream, server stream) per case."""
    s: dict[str, tuple[bytes | list[bytes | int], bytes | list[bytes | int]]] = {}
    s["simple"] = (req("GET /index.html HTTP/1.1", "Host: example.com", "User-Agent: ua", "Referer: r"), OK)
    s["pipelined past MAX_PENDING"] = (
        b"".join(req(f"GET /{i} HTTP/1.1", f"Host: h{i}") for i in range(MAX_PENDING + 30)),
        OK * (MAX_PENDING + 10))
    s["head"] = (req("HEAD /h HTTP/1.1") + req("GET /g HTTP/1.1"),
                 req("HTTP/1.1 200 OK", "Content-Length: 1000") + OK)
    s["head lower-case"] = (req("head /h HTTP/1.1") + req("GET /g HTTP/1.1"),
                            req("HTTP/1.1 200 OK", "Content-Length: 10") + OK)
    s["100 continue early"] = (
        [req("POST /up HTTP/1.1", "Expect: 100-continue", "Content-Length: 4")[:-2], b"\r\nbody"],
        req("HTTP/1.1 100 Continue") + req("HTTP/1.1 102 Processing") + OK)
    s["1xx only"] = (req("GET / HTTP/1.1"), req("HTTP/1.1 103 Early Hints", "Link: x"))
    s["101 websocket"] = (req("GET /chat HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade") + b"\x81\x05hello",
                          req("HTTP/1.1 101 Switching Protocols", "Upgrade: websocket") + b"\x81\x02hi" + OK)
    s["101 without upgrade"] = (req("GET / HTTP/1.1") + req("GET /2 HTTP/1.1"),
                                req("HTTP/1.1 101 Switching") + OK)
    s["upgrade h2c, websocket"] = (req("GET / HTTP/1.1", "Upgrade: h2c, WebSocket/13"), OK)
    s["upgrade tls"] = (req("GET / HTTP/1.1") + req("OPTIONS * HTTP/1.1", "Upgrade: TLS/1.0"), OK + OK)
    s["upgrade empty"] = (req("GET / HTTP/1.1", "Upgrade: "), OK)
    s["upgrade nbsp"] = (req("GET / HTTP/1.1", b"Upgrade: \xa0websocket\x85"), OK)
    s["connect"] = (req("GET / HTTP/1.1") + req("CONNECT host:443 HTTP/1.1") + b"\x16\x03\x01", OK + b"\x16\x03")
    s["connect lower"] = (req("connect host:443 HTTP/1.1"), OK)
    s["204 304"] = (req("GET /a HTTP/1.1") + req("GET /b HTTP/1.1") + req("GET /c HTTP/1.1"),
                    req("HTTP/1.1 204 No Content", "Content-Length: 7") +
                    req("HTTP/1.1 304 Not Modified", "Transfer-Encoding: chunked") + OK)
    s["chunked"] = (req("POST /c HTTP/1.1", "Transfer-Encoding: chunked", body=chunked(b"ab", b"c" * 300)),
                    req("HTTP/1.1 200 OK", "Transfer-Encoding: gzip, Chunked",
                        body=b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n") + OK)
    s["chunk without crlf"] = (req("GET / HTTP/1.1"), req("HTTP/1.1 200 OK", "Transfer-Encoding: chunked",
                                                        body=b"3\r\nabc5\r\nhello\r\n0\r\n\r\n") + OK)
    s["chunk broken"] = (req("GET / HTTP/1.1") * 2, req("HTTP/1.1 200 OK", "Transfer-Encoding: chunked",
                                                        body=b"zz\r\nabc\r\n") + OK)
    s["chunk huge"] = (req("GET / HTTP/1.1") * 2, req("HTTP/1.1 200 OK", "Transfer-Encoding: chunked",
                                                      body=b"ffffffffffffffff\r\nabc"))
    s["chunk 17 digits"] = (req("GET / HTTP/1.1") * 2, req("HTTP/1.1 200 OK", "Transfer-Encoding: chunked",
                                                           body=b"00000000000000001\r\na\r\n0\r\n\r\n") + OK)
    s["chunk extension past the line bound"] = (
        req("GET / HTTP/1.1") * 2,
        req("HTTP/1.1 200 OK", "Transfer-Encoding: chunked", body=b"4;" + b"e" * (MAX_LINE_BYTES + 10) + b"\r\n"
            + b"abcd\r\n0\r\n\r\n") + OK)
    s["content-length with holes"] = (
        [req("POST /p HTTP/1.1", "Content-Length: 10000"), b"x" * 100, 5000, b"y" * 4900, req("GET / HTTP/1.1")],
        [req("HTTP/1.1 200 OK", "Content-Length: 3000"), 2000, b"z" * 900, 300, OK])
    s["hole in headers"] = ([req("GET / HTTP/1.1", "Host: a")[:20], 30, b"more"], OK)
    s["hole in chunked"] = (req("GET / HTTP/1.1"),
                            [req("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + b"5\r\nab", 3, b"\r\n0\r\n\r\n"])
    s["hole past content-length"] = (req("GET / HTTP/1.1"), [req("HTTP/1.1 200 OK", "Content-Length: 10"), 50, OK])
    s["hole in a body to the close"] = (req("GET / HTTP/1.1"), [req("HTTP/1.1 200 OK"), b"abc", 100, b"def"])
    s["gzip"] = (req("GET /z HTTP/1.1") * 4,
                 req("HTTP/1.1 200 OK", "Content-Encoding: gzip", f"Content-Length: {len(GZ)}", body=GZ) +
                 req("HTTP/1.1 200 OK", "Content-Encoding: X-GZIP", "Transfer-Encoding: chunked",
                     body=chunked(GZ[:100], GZ[100:])) +
                 req("HTTP/1.1 200 OK", "Content-Encoding: deflate", f"Content-Length: {len(ZL)}", body=ZL) +
                 req("HTTP/1.1 200 OK", "Content-Encoding: deflate", f"Content-Length: {len(RAW_DEFLATE)}",
                     body=RAW_DEFLATE))
    s["gzip corrupt and trailing"] = (
        req("GET /z HTTP/1.1") * 4,
        req("HTTP/1.1 200 OK", "Content-Encoding: gzip", "Content-Length: 30", body=b"\x1f\x8b" + b"\0" * 28) +
        req("HTTP/1.1 200 OK", "Content-Encoding: gzip", f"Content-Length: {len(GZ) + 7}", body=GZ + b"garbage") +
        req("HTTP/1.1 200 OK", "Content-Encoding: deflate", "Content-Length: 1", body=b"x") +
        req("HTTP/1.1 200 OK", b"Content-Encoding: gzip\xa0", body=GZ[:50]))
    s["gzip with holes"] = (req("GET /z HTTP/1.1") * 2,
                            [req("HTTP/1.1 200 OK", "Content-Encoding: gzip", f"Content-Length: {len(GZ)}"),
                             GZ[:40], len(GZ) - 40, OK])
    s["http/0.9"] = (req("GET /old").removesuffix(b"\r\n"), b"<html>raw reply</html>")
    s["http/0.9 no reply"] = (b"GET /old\r\n", b"")
    s["http/0.9 then more"] = (b"GET /a\r\n\r\nGET /b HTTP/1.0\r\n\r\n", b"raw")
    s["long uri"] = (req("GET /" + "a" * (MAX_LINE_BYTES + 100) + " HTTP/1.1", "Host: h"), OK)
    s["uri past the value bound"] = (req("GET /" + "%41" * 2000 + "b" * 3000 + " HTTP/1.1",
                                         "User-Agent: " + "u" * 5000), OK)
    s["endless line"] = (b"GET /" + b"b" * (MAX_LINE_BYTES * 3), b"HTTP/1.1 200 " + b"o" * (MAX_LINE_BYTES * 2))
    s["long header"] = (req("GET / HTTP/1.1", "X-Long: " + "v" * (MAX_LINE_BYTES + 5), "Host: after"), OK)
    s["too many headers"] = (req("GET / HTTP/1.1", *[f"X-{i}: {i}" for i in range(MAX_HEADERS + 20)], "Host: late"),
                             req("HTTP/1.1 200 OK", *[f"X-{i}: {i}" for i in range(MAX_HEADERS)],
                                 "Content-Length: 3", body=b"abc"))
    s["repeated headers, folding"] = (req("GET / HTTP/1.1", "Host: first", "HOST: second", " folded", "\tmore",
                                          "Noc olon", ": empty name", "User-Agent:   spaced   "), OK)
    s["non-utf8 and escapes"] = (
        req(b"GET /\xff\xfe%C3%A9%e2%82%ac%e2%82x%ff%%41%4 \xc3\xa9%C3\xc3\xa9?q=%F0%9F%98%80 HTTP/1.1",
            b"Host: h\xe9", b"User-Agent: \x00\x1f\x7f\"\\"), OK)
    s["surrogate escapes"] = (req(b"GET /%ED%A0%80%C0%AF%F4%90%80%80 HTTP/1.1"), OK)
    s["basic auth"] = (
        req("GET /1 HTTP/1.1", "Authorization: Basic dXNlcjpwYXNz") +
        req("GET /2 HTTP/1.1", "Authorization: basic !!dX@Nl#cg==") +
        req("GET /3 HTTP/1.1", "Authorization: Basic dXNlc") +
        req(b"GET /4 HTTP/1.1", b"Authorization: Basic \xe9\xe9") +
        req("GET /5 HTTP/1.1", "Authorization: Bearer token") +
        req("GET /6 HTTP/1.1", "Authorization: Basic") +
        req("GET /7 HTTP/1.1", "Authorization: Basic /w==") +
        req("GET /8 HTTP/1.1", "Authorization: "),
        OK * 8)
    s["empty uri"] = (req("OPTIONS  HTTP/1.1") + req("OPTIONS HTTP/1.1") + req("GET HTTP/1.1 HTTP/1.1"), OK * 3)
    s["odd versions"] = (req("GET / HTTP/HTTP/1.0") + req("GET / HTTP/") + req("GET /a b HTTP/1.1") +
                         req("GET /\u3000HTTP/1.1") + req(b"GET /x\x1cHTTP/1.1") + req("GET /x HTTP/1.1 extra") +
                         req("GET /x  http/1.1") + req("GET /\u00a0 HTTP/2"), OK * 8)
    s["method alone and not a token"] = (req("GET / HTTP/1.1") + b"GET\r\n" + req("G(T / HTTP/1.1"), OK * 3)
    s["not http request"] = (b"\x16\x03\x01garbage\r\n", OK)
    s["empty lines between"] = (b"\r\n\r\n" + req("GET / HTTP/1.1") + b"\n\n" + req("GET /2 HTTP/1.0"),
                                OK + b"\r\n" + OK)
    s["orphans"] = (b"", OK * 3 + req("HTTP/1.0 500 Err", "Location: /x"))
    s["orphans then request"] = (req("GET / HTTP/1.1"), OK * 3)
    s["status lines"] = (req("GET / HTTP/1.1") * 6,
                         req("http/1.0 200 ok") + b"garbage line\r\n" + req("HTTP/1.1 2000 OK") +
                         req("HTTP/1.1 200\tOK\rfoo") + req("HTTP/1.1   302   Found  ", "Location: /n") +
                         req(b"HTTP/1.1 200 \xff\xfe") + req("HTTP/1.1 200 "))
    s["content-length variants"] = (
        req("POST /a HTTP/1.1", "Content-Length:  3 ", body=b"abc") +
        req("POST /b HTTP/1.1", "Content-Length: 3a") + req("POST /c HTTP/1.1", "Content-Length: -1") +
        req(b"POST /d HTTP/1.1", b"Content-Length: \xd9\xa3") +
        req("POST /e HTTP/1.1", "Content-Length: " + "9" * 19) + req("POST /f HTTP/1.1", "Content-Length: 0") +
        req("POST /g HTTP/1.1", b"Content-Length: \x1c2\xa0", body=b"zz"),
        OK * 7)
    s["request without framing has no body"] = (req("POST /x HTTP/1.1", "Content-Type: a/b") + req("GET /y HTTP/1.1"),
                                                 OK * 2)
    s["ended mid-message"] = (req("POST /x HTTP/1.1", "Content-Length: 100", body=b"abc"),
                              req("HTTP/1.1 200 OK", "Content-Length: 100", body=b"abc"))
    s["ended mid-headers"] = (b"GET / HTTP/1.1\r\nHost: h\r\nUser-Ag", b"HTTP/1.1 200 OK\r\nContent-Type: t")
    s["ended mid-chunk"] = (req("GET / HTTP/1.1"),
                            req("HTTP/1.1 200 OK", "Transfer-Encoding: chunked", body=b"a\r\nab"))
    s["ended mid-line cr"] = (b"GET / HTTP/1.1\r\n\r", OK[:-2])
    s["reply to the close"] = (req("GET / HTTP/1.1"), req("HTTP/1.0 200 OK", "Content-Type: x", body=b"a" * 3000))
    s["ipv6 flow"] = (req("GET / HTTP/1.1"), OK)
    s["status below 100 has a body"] = (req("GET /a HTTP/1.1") + req("GET /b HTTP/1.1"),
                                        req("HTTP/1.1 099 Odd", "Content-Length: 7", body=b"1234567") + OK)
    return s


SCENARIOS = scenarios()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_generated_stream(name: str) -> None:
    client, server = SCENARIOS[name]
    flow = Flow("tcp", "2001:db8::1", 40000, "2001:db8::2", 80, "native-9") if "ipv6" in name else FLOW
    for seed in range(6):
        rng = random.Random(f"{name}-{seed}")
        play(client, server, rng, holes=seed >= 3, end=seed != 2, expire=seed in (1, 4), interleave=seed != 0,
             flow=flow)


def test_raw_off_gives_the_same_dicts() -> None:
    pair = Pair(raw=False)
    client, server = SCENARIOS["basic auth"]
    p = play(client, server, random.Random(1), pair=pair, interleave=False)
    assert p.docs == 8


def test_decompression_bomb_is_capped_the_same() -> None:
    bomb = gzip.compress(b"\0" * (MAX_DECODED_BYTES + (1 << 20)), 9)
    pair = play(req("GET /bomb HTTP/1.1"),
                req("HTTP/1.1 200 OK", "Content-Encoding: gzip", f"Content-Length: {len(bomb)}", body=bomb) + OK,
                random.Random(3))
    assert pair.rs.wire.bombs == 1


def test_many_connections_interleaved_with_sweeps() -> None:
    """Several connections at once, some idle past the sweep, some ended, some never ended, into one pair."""
    rng = random.Random(7)
    pair = Pair()
    names = sorted(SCENARIOS)
    streams: dict[int, list[tuple[bool, bytes | int]]] = {}
    for conn_id in range(40):
        client, server = SCENARIOS[rng.choice(names)]
        flow = Flow("tcp", f"198.18.1.{conn_id}", 40000 + conn_id, "198.18.0.2", 80, f"native-{conn_id}")
        pair.open(conn_id, flow)
        items: list[tuple[bool, bytes | int]] = []
        for from_client, stream in ((True, client), (False, server)):
            for part in stream if isinstance(stream, list) else [stream]:
                if isinstance(part, int):
                    items.append((from_client, part))
                else:
                    for i in range(0, len(part), 1000):
                        items.append((from_client, part[i:i + 1000]))
        rng.shuffle(items)  # the directions' own orders are kept below
        client_items = [x for x in items if x[0]]
        server_items = [x for x in items if not x[0]]
        merged = []
        while client_items or server_items:
            pick = client_items if client_items and (not server_items or rng.random() < 0.5) else server_items
            merged.append(pick.pop(0))
        streams[conn_id] = merged
    ts = T0
    live = set(streams)
    while live:
        conn_id = rng.choice(sorted(live))
        ts += rng.choice((0.01, 5.0, 90.0))
        if rng.random() < 0.05:
            pair.expire(ts)
        if not streams[conn_id]:
            if conn_id % 3:
                pair.end(conn_id, ts)
            live.discard(conn_id)
            continue
        from_client, data = streams[conn_id].pop(0)
        pair.feed(conn_id, from_client, data, ts)
        if pair.switched(conn_id):
            pair.forget(conn_id)
            live.discard(conn_id)
    pair.finish()
    assert pair.docs > 50


def test_records_per_connection_are_bounded_the_same() -> None:
    n = MAX_RECORDS_PER_FLOW + 20
    pair = play(req("GET / HTTP/1.1") * n, OK * n, random.Random(5))
    assert pair.rs.engine.dropped_records >= 20
    assert any("beyond" in w for w in pair.rs_warnings)


def test_orphans_are_bounded_the_same() -> None:
    n = MAX_ORPHANS + 30
    pair = play(b"", OK * n, random.Random(6))
    assert pair.docs == 30 + MAX_RECORDS_PER_FLOW  # past MAX_ORPHANS logged at once; at the end, one flow's bound


def test_open_records_are_evicted_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """More connections with open requests than MAX_OPEN_RECORDS: the oldest connections' requests are logged
    (their requests together under any bound of what waits: MAX_WAITING_BYTES is tested below)."""
    from collectors.protocols import http
    from collectors.protocols.base import MAX_OPEN_RECORDS
    monkeypatch.setattr(http, "MAX_WAITING_BYTES", 1 << 40)
    pair = Pair()
    request = req("GET /e HTTP/1.1", "Host: h")
    evicted = 0
    for conn_id in range(MAX_OPEN_RECORDS + 25):
        pair.open(conn_id, Flow("tcp", "198.18.0.1", 1024 + conn_id % 60000, "198.18.0.2", 80, f"native-{conn_id}"))
        evicted += len(pair.feed(conn_id, True, request, T0 + conn_id * 1e-3))
        if conn_id % 2:
            pair.end(conn_id, T0 + conn_id * 1e-3)
    assert evicted == 25
    pair.finish()


def test_waiting_requests_past_the_budget_are_logged_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past http.MAX_WAITING_BYTES (the requests waiting in all connections together, each charged EXCHANGE_OVERHEAD
    and its fields' UTF-8 bytes) the oldest other connections' requests are logged unanswered, alike; their
    connections read on afresh (responses, expiry, ends)."""
    from collectors.protocols import http
    monkeypatch.setattr(http, "MAX_WAITING_BYTES", 9000)
    rng = random.Random(12)
    pair = Pair()
    for conn_id in range(30):
        pair.open(conn_id, Flow("tcp", f"198.18.1.{conn_id}", 40000 + conn_id, "198.18.0.2", 80, f"native-{conn_id}"))
    ts, evicted, live = T0, 0, list(range(30))
    for step in range(900):
        conn_id = rng.choice(live)
        ts += rng.choice((0.01, 0.5, 40.0))
        if rng.random() < 0.7:
            agent = "\xe9" * rng.randrange(0, 400)  # two bytes each in UTF-8: charged as such on both sides
            request = req(f"GET /{step}?{'x' * rng.randrange(0, 300)} HTTP/1.1", f"Host: h{conn_id}",
                          f"User-Agent: {agent}".encode("latin-1"))
            evicted += len(pair.feed(conn_id, True, request, ts))
        elif rng.random() < 0.9:
            pair.feed(conn_id, False, OK, ts)
        elif rng.random() < 0.5:
            pair.expire(ts)
        elif len(live) > 10:
            pair.end(conn_id, ts)
            live.remove(conn_id)
    pair.finish()
    assert evicted > 20, evicted


def test_fuzz_seeds_and_random_scripts() -> None:
    from tests.fuzz.fuzz_http_rs import seeds
    for seed in seeds():
        run_script(seed)
    rng = random.Random(11)
    for _ in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(2, 120)))
        run_script(data)
    assert PIECES
