"""HTTP/1.x of the connections the deep path reads natively (``native_tcp``): one face, two implementations.

- :class:`RustHttp`: ``collectors._rs.HttpEngine`` (collectors/rust/src/http.rs), which reads both directions,
  pairs the messages and writes each document as JSON text, so no Python object is built per message. Compressed
  bodies go through the reference's own ``http_wire.Body`` (Python's zlib), called from the engine, and so do
  Authorization headers (``http.basic_user``). Measured on the shared captures' 97 HTTP connections
  (benchmarks/http_native.py, the face alone): 14.6 us a connection against the compiled reference's 41.3 us.
- :class:`PythonHttp`: ``http.HttpConnection`` per connection into one ``HttpAnalyzer`` (no run context: what is
  read here is all there is), the reference the engine is tested against (document for document, counter for
  counter, warning for warning), used when the extension is not built or when ``RUST`` is False.

A connection is named by an int (``open``); ``feed`` takes a direction's bytes or an int (a hole of that many bytes)
and returns the documents they completed; ``switched`` tells that a CONNECT or an Upgrade not read through left
HTTP (the caller hands the connection back to tshark and ``forget``s it); ``end`` finishes it. ``expire`` and
``finish`` are ``HttpAnalyzer``'s (``finish`` also gives its warnings). ``wire`` is the run's ``WireStats``.

``raw``: the documents are passed on as their JSON text (``orjson.Fragment``) instead of dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from collectors.protocols.base import EngineDocuments, built_rust, cuts_warning
from collectors.protocols.documents import Flow, Written
from collectors.protocols.http import MAX_RECORDS_PER_FLOW, HttpAnalyzer, HttpConnection
from collectors.protocols.http_wire import WireStats

if TYPE_CHECKING:
    from collectors._rs import HttpEngine


ENGINE: type[HttpEngine] | None = built_rust("HttpEngine")

Warn = Callable[[str], None]

RUST = True  # False: the Python reference reads HTTP even where the engine is built (the peer in A/B runs)


def native_http(warn: Warn, raw: bool = False) -> RustHttp | PythonHttp:
    """The HTTP reader of one run: the Rust engine when it is built (and ``RUST``), else the Python reference."""
    return RustHttp(ENGINE, warn, raw) if RUST and ENGINE is not None else PythonHttp(warn, raw)


def dropped_warning(count: int) -> str:
    """``HttpAnalyzer.finish``'s warning for records dropped past MAX_RECORDS_PER_FLOW."""
    return f"http: {count} record(s) beyond {MAX_RECORDS_PER_FLOW} per connection dropped"


class PythonHttp:
    """``HttpConnection`` per connection into one ``HttpAnalyzer``."""

    def __init__(self, warn: Warn, raw: bool = False) -> None:
        self.analyzer = HttpAnalyzer(warn)  # no capture to look at again: what it reads here is all there is
        self.analyzer.raw = raw
        self.wire = WireStats()
        self.conns: dict[int, HttpConnection] = {}

    def open(self, conn_id: int, flow: Flow) -> None:
        self.conns[conn_id] = HttpConnection(self.analyzer, flow, self.wire)

    def feed(self, conn_id: int, from_client: bool, data: bytes | int, ts: float) -> list[Written]:
        conn = self.conns[conn_id]
        conn.feed(from_client, data, ts)
        return conn.take_docs()

    def switched(self, conn_id: int) -> bool:
        return self.conns[conn_id].switched

    def forget(self, conn_id: int) -> None:
        self.conns.pop(conn_id, None)

    def end(self, conn_id: int, ts: float) -> list[Written]:
        conn = self.conns.pop(conn_id)
        conn.end(ts)
        return conn.take_docs()

    def expire(self, now: float) -> list[Written]:
        return list(self.analyzer.expire(now))

    def finish(self) -> list[Written]:
        return list(self.analyzer.finish())


class RustHttp:
    """``collectors._rs.HttpEngine``: the same documents as :class:`PythonHttp`, written as JSON by the engine."""

    def __init__(self, engine: type[HttpEngine], warn: Warn, raw: bool = False) -> None:
        self.warn = warn
        self.engine = engine()
        self.documents = EngineDocuments(raw)

    def open(self, conn_id: int, flow: Flow) -> None:
        self.engine.open(conn_id, flow.orig_h, flow.orig_p, flow.resp_h, flow.resp_p, flow.stream)

    def feed(self, conn_id: int, from_client: bool, data: bytes | int, ts: float) -> list[Written]:
        return self.documents(self.engine.feed(conn_id, from_client, data, ts))

    def switched(self, conn_id: int) -> bool:
        return self.engine.switched(conn_id)

    def forget(self, conn_id: int) -> None:
        self.engine.forget(conn_id)

    def end(self, conn_id: int, ts: float) -> list[Written]:
        return self.documents(self.engine.end(conn_id, ts))

    def expire(self, now: float) -> list[Written]:
        return self.documents(self.engine.expire(now))

    def finish(self) -> list[Written]:
        docs = self.documents(self.engine.finish())
        if self.engine.cut_values:  # HttpAnalyzer.report_cuts's warning
            self.warn(cuts_warning(HttpAnalyzer.SERVICE, self.engine.cut_values))
        if self.engine.dropped_records:
            self.warn(dropped_warning(self.engine.dropped_records))
        return docs

    @property
    def wire(self) -> WireStats:
        """The engine's counters as the run's ``WireStats``."""
        e = self.engine
        return WireStats(cut_lines=e.cut_lines, bad_chunks=e.bad_chunks, lost_directions=e.lost_directions,
                         bombs=e.bombs, undecodable=e.undecodable, not_http=e.not_http)
