"""S7comm over natively read TCP connections (``native_tcp``): one face, two implementations.

- :class:`RustS7comm`: ``collectors._rs.S7commEngine`` (collectors/rust/src/s7comm.rs), which reads each
  connection's TPKTs, COTP TPDUs (reassembly and tshark's heuristics included) and S7comm PDUs as
  ``s7comm_wire.S7commReader`` does and writes each frame's document as ``S7commAnalyzer.handle`` makes it, as JSON
  text, so no tshark-shaped packet is built per frame. Measured on the S7comm connections of an analyzer process's
  captured input of real traces (/var/tmp/child-in-0.bin: 80 connections, 5,120 frames, a document each): 3.1 us a
  frame (201 us a connection) against the compiled reference's 13.4 us (857 us); through ``TcpNative`` (reassembly
  included) 4.6 us a frame instead of 16.4 us.
- :class:`PythonS7comm`: an ``S7commReader`` per connection, each frame's fields (with its raw sequence number as
  ``tcp_seq_raw``, which places the document) through one ``S7commAnalyzer``: the path ``native_tcp`` took before
  the engine, and the reference the engine is tested against (document for document, counter for counter), used
  when the extension is not built or when ``RUST`` is False.

A connection is named by an int (``open``); ``feed`` takes one frame's
reassembled chunks in one direction (bytes, or an int for a hole) and returns the document that frame makes, if
any; ``damage`` is what the connection's reader skipped as damaged so far (``native_tcp.ics_damage``); ``end``
drops the connection's reader. ``S7commAnalyzer`` keeps nothing between frames: ``end``, ``expire`` and ``finish``
make no documents (``finish`` gives the warning for values cut). ``counters`` are the run's ``S7commStats``.

``raw``: the documents are passed on as their JSON text (``orjson.Fragment``) instead of dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from collectors.protocols.base import EngineDocuments, built_rust, finish_engine, reader_documents
from collectors.protocols.documents import Flow, Written
from collectors.protocols.s7comm import S7commAnalyzer
from collectors.protocols.s7comm_wire import S7commReader, S7commStats

if TYPE_CHECKING:
    from collectors._rs import S7commEngine

ENGINE: type[S7commEngine] | None = built_rust("S7commEngine")

Warn = Callable[[str], None]
Chunk = bytes | int

RUST = True  # False: the Python reference reads S7comm even where the engine is built (the peer in A/B runs)
LAYERS = ["tpkt", "cotp", "s7comm"]  # the layers tshark names above TCP (native_tcp.ICS_LAYERS)
# S7commStats' counters, in the engine's order
STATS = ("bad_lengths", "bad_versions", "cotp_rejected", "dropped_bytes", "evicted", "holes", "not_s7", "pdus",
         "ses_claimed", "tpkts")


def native_s7comm(warn: Warn, raw: bool = False) -> RustS7comm | PythonS7comm:
    """The S7comm reader of one run: the Rust engine when it is built (and ``RUST``), else the Python reference."""
    return RustS7comm(ENGINE, warn, raw) if RUST and ENGINE is not None else PythonS7comm(warn, raw)


def add_stats(total: S7commStats, more: S7commStats) -> None:
    for name in STATS:
        setattr(total, name, getattr(total, name) + getattr(more, name))


class PythonS7comm:
    """``S7commReader`` per connection, each frame's fields through one ``S7commAnalyzer`` (context None)."""

    def __init__(self, warn: Warn, raw: bool = False) -> None:
        self.analyzer = S7commAnalyzer(warn)
        self.analyzer.raw = raw
        self.closed = S7commStats()  # the counters of the connections ended
        self.conns: dict[int, tuple[S7commReader, Flow]] = {}

    def open(self, conn_id: int, flow: Flow) -> None:
        """A connection read as S7comm from now on (``flow``: client first, its stream unique in the run)."""
        self.conns[conn_id] = (S7commReader(), flow)

    def feed(self, conn_id: int, from_client: bool, chunks: Sequence[Chunk], ts: float, seq: int) -> list[Written]:
        """One frame's reassembled chunks in one direction; the document of the PDUs it completed (``seq``: the
        frame's raw TCP sequence number, which places the document as it places tshark's)."""
        reader, flow = self.conns[conn_id]
        return reader_documents(self.analyzer, reader, flow, from_client, chunks, ts, seq, LAYERS)

    def damage(self, conn_id: int) -> int:
        got = self.conns.get(conn_id)
        if got is None:
            return 0
        t = got[0].stats
        return t.bad_versions + t.bad_lengths + t.evicted

    def end(self, conn_id: int, ts: float) -> list[Written]:
        item = self.conns.pop(conn_id, None)
        if item is not None:
            add_stats(self.closed, item[0].stats)
        return []

    def forget(self, conn_id: int) -> None:
        self.end(conn_id, 0.0)

    def expire(self, now: float) -> list[Written]:
        return list(self.analyzer.expire(now))

    def finish(self) -> list[Written]:
        return list(self.analyzer.finish())

    @property
    def counters(self) -> S7commStats:
        total = S7commStats()
        add_stats(total, self.closed)
        for reader, _flow in self.conns.values():
            add_stats(total, reader.stats)
        return total


class RustS7comm:
    """``collectors._rs.S7commEngine``: the same documents as :class:`PythonS7comm`, written as JSON by the engine."""

    def __init__(self, engine: type[S7commEngine], warn: Warn, raw: bool = False) -> None:
        self.warn = warn
        self.engine = engine()
        self.documents = EngineDocuments(raw)

    def open(self, conn_id: int, flow: Flow) -> None:
        self.engine.open(conn_id, flow.orig_h, flow.orig_p, flow.resp_h, flow.resp_p)

    def feed(self, conn_id: int, from_client: bool, chunks: Sequence[Chunk], ts: float, seq: int) -> list[Written]:
        pieces = chunks if isinstance(chunks, list) else list(chunks)
        return self.documents(self.engine.feed(conn_id, from_client, pieces, ts, seq))

    def damage(self, conn_id: int) -> int:
        return self.engine.damage(conn_id)

    def end(self, conn_id: int, ts: float) -> list[Written]:
        return self.documents(self.engine.end(conn_id, ts))

    def forget(self, conn_id: int) -> None:
        self.engine.end(conn_id, 0.0)

    def expire(self, now: float) -> list[Written]:
        return self.documents(self.engine.expire(now))

    def finish(self) -> list[Written]:
        return finish_engine(self.engine, self.documents, self.warn, S7commAnalyzer.SERVICE)

    @property
    def counters(self) -> S7commStats:
        total = S7commStats()
        for name, value in zip(STATS, self.engine.counters, strict=True):
            setattr(total, name, value)
        return total
