"""TLS over natively read TCP connections (``native_tcp``): one face, two implementations.

- :class:`RustTls`: ``collectors._rs.TlsEngine`` (collectors/rust/src/tls.rs), which reads records and handshake
  messages, keeps the sessions and writes each document as JSON text, so no tshark-shaped packet is built per frame.
  The leaf certificate's fields still come from ``collectors.protocols.x509`` (one call per document, cached by DER).
  Measured on an analyzer process's captured input of real traces (/var/tmp/child-in-0.bin: 1,913 TLS connections,
  17,240 frames): 82-85 us a connection (9.1-9.4 us a frame) against the compiled reference's 373-466 us (41-52 us),
  the process's CPU 4.5 s instead of 4.9-5.0 s, its documents and warnings the same.
- :class:`PythonTls`: ``tls_wire.TlsConnection`` frames into a ``TlsAnalyzer``, the reference the engine is tested
  against (document for document, counter for counter, warning for warning), used when the extension is not built
  or when ``RUST`` is False.

``raw``: the documents are passed on as their JSON text (``orjson.Fragment``) instead of dicts (``deep_process``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from collectors.protocols import tls_wire
from collectors.protocols.base import EngineDocuments, built_rust, finish_engine
from collectors.protocols.documents import Flow, Written, make_doc
from collectors.protocols.tls import TlsAnalyzer
from collectors.protocols.tls_wire import Frame, Held, TlsConnection, TlsStats
from collectors.protocols.tshark import tcp_packet

if TYPE_CHECKING:
    from collectors._rs import TlsEngine

ENGINE: type[TlsEngine] | None = built_rust("TlsEngine")

Warn = Callable[[str], None]
Chunk = bytes | int

RUST = True  # False: the Python reference reads TLS even where the engine is built (the peer in A/B runs)


def native_tls(warn: Warn, raw: bool = False) -> RustTls | PythonTls:
    """The TLS reader of one run: the Rust engine when it is built (and ``RUST``), else the Python reference."""
    return RustTls(ENGINE, warn, raw) if RUST and ENGINE is not None else PythonTls(warn, raw)


class PythonTls:
    """``TlsConnection`` per connection, each frame's fields through one ``TlsAnalyzer`` (context None)."""

    def __init__(self, warn: Warn, raw: bool = False) -> None:
        self.analyzer = TlsAnalyzer(warn)  # no capture to look at again (no second look): it reads all there is
        self.analyzer.raw = raw
        self.stats = TlsStats()
        self.held = Held(tls_wire.MAX_HELD_BYTES)  # what the connections hold of records and messages not complete yet
        self.conns: dict[int, tuple[TlsConnection, Flow]] = {}

    def open(self, conn_id: int, flow: Flow) -> None:
        """A connection read as TLS from now on (``flow``: client first, its stream unique in the run)."""
        self.conns[conn_id] = (TlsConnection(self.stats, self.held), flow)

    def feed(self, conn_id: int, from_client: bool, chunks: Sequence[Chunk], ts: float) -> list[Written]:
        """One frame's reassembled chunks (an int: a hole) in one direction; the documents its step completed."""
        conn, flow = self.conns[conn_id]
        frame = Frame()
        for chunk in chunks:
            conn.feed(from_client, chunk, frame)
        if from_client:
            src, sport, dst, dport = flow.orig_h, flow.orig_p, flow.resp_h, flow.resp_p
        else:
            src, sport, dst, dport = flow.resp_h, flow.resp_p, flow.orig_h, flow.orig_p
        return list(self.analyzer.handle(tcp_packet(ts, src, dst, sport, dport, flow.stream, frame.fields, ["tls"])))

    def close(self, conn_id: int) -> None:
        """The connection's reader dropped (its session stays until logged or ``finish``)."""
        closed = self.conns.pop(conn_id, None)
        if closed is not None:
            self.held.held -= closed[0].held()

    def finish(self) -> list[Written]:
        """Sessions never logged, oldest first; the warning for values cut."""
        return list(self.analyzer.finish())

    @property
    def counters(self) -> TlsStats:
        return self.stats


class RustTls:
    """``collectors._rs.TlsEngine``: the same documents as :class:`PythonTls`, written as JSON by the engine."""

    def __init__(self, engine: type[TlsEngine], warn: Warn, raw: bool) -> None:
        self.warn = warn
        self.engine = engine(self._certificate, self._make_doc)
        self.documents = EngineDocuments(raw)

    def _certificate(self, der: bytes, ts: float, resp_h: str, resp_p: int) -> dict[str, Any] | None:
        """``TlsAnalyzer.emit``'s certificate fields and warning."""
        from collectors.protocols.x509 import CertificateError, server_certificate_fields  # see TlsAnalyzer.emit

        try:
            return server_certificate_fields(der, ts)
        except CertificateError as exc:
            self.warn(f"tls: server certificate of {resp_h}:{resp_p} not readable: {exc}")
            return None

    @staticmethod
    def _make_doc(orig_h: str, orig_p: int, resp_h: str, resp_p: int, ts: float,
                  fields: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """``make_doc`` where the JSON writer refuses a value (``Analyzer.document``'s fallback), and its cuts."""
        flow = Flow("tcp", orig_h, orig_p, resp_h, resp_p, "")
        doc = make_doc(TlsAnalyzer.DATASET, flow, ts, ("tls",), fields, TlsAnalyzer.SERVICE)
        return doc, len(doc.get("secops", {}).get("truncated", ()))

    def open(self, conn_id: int, flow: Flow) -> None:
        self.engine.open(conn_id, flow.orig_h, flow.orig_p, flow.resp_h, flow.resp_p)

    def feed(self, conn_id: int, from_client: bool, chunks: Sequence[Chunk], ts: float) -> list[Written]:
        pieces = chunks if isinstance(chunks, list) else list(chunks)
        return self.documents(self.engine.feed(conn_id, from_client, pieces, ts))

    def close(self, conn_id: int) -> None:
        self.engine.close(conn_id)

    def finish(self) -> list[Written]:
        return finish_engine(self.engine, self.documents, self.warn, TlsAnalyzer.SERVICE)

    @property
    def counters(self) -> TlsStats:
        e = self.engine
        return TlsStats(e.oversized, e.unknown_records, e.holes, e.malformed)
