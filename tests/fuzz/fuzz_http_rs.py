"""The Rust HTTP reader (``collectors._rs.HttpEngine`` behind ``http_native.RustHttp``) against the Python reference
(``http_native.PythonHttp``: ``HttpConnection`` + ``HttpAnalyzer``), on the same calls.

Input: a script of operations on up to three connections: each operation's first byte picks the connection, the
direction and what happens (bytes of the direction: the next bytes of the input, of a length the second byte gives,
often with an HTTP message head from a small table spliced in, or a long run without a line end; a hole; the
connection's end; a sweep ``expire``);
``finish`` at the end. Contract: every call gives the same documents (``orjson.dumps`` of each, in order), the same
``switched``, the same ``WireStats`` counters and ``cut_values``, and ``finish`` the same warnings. Coverage guides
on the reference modules (the Rust side is not instrumented).
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import orjson

from collectors.protocols import http_native
from collectors.protocols.documents import Flow

FLOWS = (Flow("tcp", "198.18.0.1", 40000, "198.18.0.2", 80, "native-1"),
         Flow("tcp", "198.18.0.3", 40001, "198.18.0.2", 8080, "native-2"),
         Flow("tcp", "2001:db8::1", 40002, "2001:db8::2", 80, "native-3"))
# message heads the script splices in (their bodies come from the input)
PIECES = (
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n",
    b"POST /p%41%zz%C3 HTTP/1.0\r\nContent-Length: 3\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HEAD /h HTTP/1.1\r\n\r\n", b"HTTP/1.1 204 No\r\nContent-Length: 9\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"3;x\r\nabc\r\n0\r\nT: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 33\r\n\r\n" + gzip.compress(b"hello" * 3),
    b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n\r\n" + zlib.compress(b"x" * 100)[:-2],
    b"GET /\r\n", b"CONNECT h:443 HTTP/1.1\r\n\r\n", b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
    b"GET /t HTTP/1.1\r\nUpgrade: TLS/1.0\r\n\r\n", b"HTTP/1.1 101 Switching\r\n\r\n",
    b"GET / HTTP/1.1\r\nAuthorization: Basic dXNlcjpwdw==\r\n\r\n", b"OPTIONS  HTTP/1.1\r\n\r\n",
    b"HTTP/1.1 304 NM\r\nTransfer-Encoding: chunked\r\n\r\n", b"http/1.0 404\r\n\r\n",
)
START_TS = 1_700_000_000.0


def _dumps(docs: list[Any]) -> list[bytes]:
    return [orjson.dumps(d) for d in docs]


class Pair:
    """``PythonHttp`` and ``RustHttp`` fed the same calls; each call's results compared."""

    def __init__(self, raw: bool = True) -> None:
        assert http_native.ENGINE is not None
        self.py_warnings: list[str] = []
        self.rs_warnings: list[str] = []
        self.py = http_native.PythonHttp(self.py_warnings.append, raw)
        self.rs = http_native.RustHttp(http_native.ENGINE, self.rs_warnings.append, raw)
        self.docs = 0
        self.calls = 0

    def _same(self, py_docs: list[Any], rs_docs: list[Any], what: str) -> list[Any]:
        self.calls += 1
        a, b = _dumps(py_docs), _dumps(rs_docs)
        assert len(a) == len(b), f"{what}: {len(b)} Rust documents, {len(a)} Python\nrust: {b}\npython: {a}"
        for i, (p, r) in enumerate(zip(a, b)):
            assert p == r, f"{what}: document {i} differs\nrust:   {r!r}\npython: {p!r}"
        assert self.py.wire == self.rs.wire, f"{what}: counters\nrust:   {self.rs.wire}\npython: {self.py.wire}"
        assert self.py.analyzer.cut_values == self.rs.engine.cut_values, f"{what}: cut values"
        assert self.py.analyzer.dropped_records == self.rs.engine.dropped_records, f"{what}: dropped records"
        self.docs += len(a)
        return py_docs

    def open(self, conn_id: int, flow: Flow) -> None:
        self.py.open(conn_id, flow)
        self.rs.open(conn_id, flow)

    def feed(self, conn_id: int, from_client: bool, data: bytes | int, ts: float) -> list[Any]:
        what = f"feed({conn_id}, {from_client}, {data if isinstance(data, int) else data[:80]!r}, {ts!r})"
        docs = self._same(self.py.feed(conn_id, from_client, data, ts), self.rs.feed(conn_id, from_client, data, ts),
                          what)
        assert self.py.switched(conn_id) == self.rs.switched(conn_id), f"{what}: switched"
        return docs

    def switched(self, conn_id: int) -> bool:
        return self.py.switched(conn_id)

    def forget(self, conn_id: int) -> None:
        self.py.forget(conn_id)
        self.rs.forget(conn_id)

    def end(self, conn_id: int, ts: float) -> list[Any]:
        return self._same(self.py.end(conn_id, ts), self.rs.end(conn_id, ts), f"end({conn_id}, {ts!r})")

    def expire(self, now: float) -> list[Any]:
        return self._same(self.py.expire(now), self.rs.expire(now), f"expire({now!r})")

    def finish(self) -> list[Any]:
        cuts, dropped = self.py.analyzer.cut_values, self.py.analyzer.dropped_records
        docs = self._same_finish()
        assert self.py_warnings == self.rs_warnings, f"warnings\nrust:   {self.rs_warnings}\npython: {self.py_warnings}"
        assert cuts <= self.rs.engine.cut_values and dropped <= self.rs.engine.dropped_records
        return docs

    def _same_finish(self) -> list[Any]:
        py_docs, rs_docs = self.py.finish(), self.rs.finish()
        a, b = _dumps(py_docs), _dumps(rs_docs)
        assert a == b, f"finish\nrust:   {b}\npython: {a}"
        assert self.py.wire == self.rs.wire, "finish: counters"
        self.docs += len(a)
        return py_docs


def run_script(data: bytes) -> Pair:
    """Interpret ``data`` as a script of calls (see the module docstring) on a fresh pair."""
    pair = Pair()
    live: set[int] = set()
    ts = START_TS
    pos = 0
    opened = 0
    while pos + 2 <= len(data) and pair.calls < 64:
        op, arg = data[pos], data[pos + 1]
        pos += 2
        conn_id = op % 3
        ts += (arg & 0x0F) * (37.0 if op & 0x80 else 0.25)
        if conn_id not in live:
            if opened >= 6:
                continue
            pair.open(conn_id, FLOWS[conn_id])
            live.add(conn_id)
            opened += 1
        from_client = bool(op & 0x04)
        kind = (op >> 3) & 0x0F
        if kind == 0:
            pair.feed(conn_id, from_client, 1 + arg * 7, ts)
        elif kind == 1:
            pair.end(conn_id, ts)
            live.discard(conn_id)
            continue
        elif kind == 2:
            pair.expire(ts)
            continue
        elif kind < 7:
            piece = PIECES[(arg + kind) % len(PIECES)]
            cut = arg % (len(piece) + 1)
            pair.feed(conn_id, from_client, piece[:cut], ts)
            if cut < len(piece):
                pair.feed(conn_id, from_client, piece[cut:], ts)
        elif kind == 15:  # a long run without a line end: the line bound (MAX_LINE_BYTES) and its cut
            pair.feed(conn_id, from_client, bytes([0x41 + (arg & 7)]) * (arg * 130), ts)
        else:
            size = arg % 48
            chunk = data[pos:pos + size]
            pos += size
            pair.feed(conn_id, from_client, chunk, ts)
        if pair.switched(conn_id):
            pair.forget(conn_id)
            live.discard(conn_id)
    for conn_id in sorted(live):
        if data and data[-1] & 1:
            pair.end(conn_id, ts)
    pair.finish()
    return pair


def TestOneInput(data: bytes) -> None:
    run_script(data)


def seeds() -> list[bytes]:
    """Scripts opening one connection and playing a request and response of the table, cut in two."""
    out = []
    for i in range(len(PIECES)):
        kind = 3 + i % 4
        out.append(bytes([kind << 3 | 0x04, i, kind << 3, i + 1, 1 << 3, 0, 7 << 3 | 0x04, 8]) + b"GET /x\r\n")
    return out
