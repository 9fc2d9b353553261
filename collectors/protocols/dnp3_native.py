"""DNP3 over the TCP connections the deep path reads natively (``native_tcp``): one face, two implementations.

- :class:`RustDnp3`: ``collectors._rs.Dnp3Engine`` (collectors/rust/src/dnp3.rs), which reads each connection's
  bytes as ``dnp3_wire.Dnp3Reader`` does (link frames, CRCs, transport reassembly, bounds, damage counters) and makes
  the exchanges' documents as ``Dnp3Analyzer`` does, written as JSON text: no tshark-shaped packet per frame.
- :class:`PythonDnp3`: a ``Dnp3Reader`` per connection whose fields, shaped as tshark prints the frame
  (``tshark.tcp_packet``), go into one ``Dnp3Analyzer``: the reference the engine is tested against (document for
  document, counter for counter, warning for warning), used when the extension is not built or when ``RUST`` is
  False.

A connection is named by an int (``open``); ``feed`` takes one frame of a direction: its reassembled chunks (bytes,
or an int for a hole of that many bytes), its capture time and raw TCP sequence number, and returns the documents
the exchanges it completed make (the reader steps its frame count once per call, as tshark ages reassembly by
frames). ``damage`` is what ``native_tcp.ics_damage`` counts of the connection's reader, ``stats`` its whole
``Dnp3Stats``; ``end`` drops the reader (an exchange left open stays until answered or ``finish``, as in the
analyzer). ``expire`` is the analyzer's (it keeps no time bound: nothing). ``finish`` logs the exchanges never
answered and gives the analyzer's warning.

``raw``: the documents are passed on as their JSON text (``orjson.Fragment``) instead of dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from collectors.protocols.base import EngineDocuments, built_rust, finish_engine, reader_documents
from collectors.protocols.dnp3 import Dnp3Analyzer
from collectors.protocols.dnp3_wire import Dnp3Reader, Dnp3Stats
from collectors.protocols.documents import Flow, Written

if TYPE_CHECKING:
    from collectors._rs import Dnp3Engine

ENGINE: type[Dnp3Engine] | None = built_rust("Dnp3Engine")

Warn = Callable[[str], None]

RUST = True  # False: the Python reference reads DNP3 even where the engine is built (the peer in A/B runs)

LAYERS = ["dnp3"]  # native_tcp.ICS_LAYERS[DNP3]
# Dnp3Stats' counters in the order of ``stats``
STATS = ("bad_header_crc", "crc_failures", "frames", "hole_bytes", "hunted_bytes", "malformed", "messages",
         "rejected_bytes", "rejected_segments", "table_bytes_dropped", "table_segments_dropped")


def native_dnp3(warn: Warn, raw: bool = False) -> RustDnp3 | PythonDnp3:
    """The DNP3 reader of one run: the Rust engine when it is built (and ``RUST``), else the Python reference."""
    return RustDnp3(ENGINE, warn, raw) if RUST and ENGINE is not None else PythonDnp3(warn, raw)


class PythonDnp3:
    """``Dnp3Reader`` per connection, its frames as tshark prints them into one ``Dnp3Analyzer``."""

    def __init__(self, warn: Warn, raw: bool = False) -> None:
        self.analyzer = Dnp3Analyzer(warn)  # no capture to look at again: what it reads here is all there is
        self.analyzer.raw = raw
        self.conns: dict[int, tuple[Dnp3Reader, Flow]] = {}

    def open(self, conn_id: int, flow: Flow) -> None:
        self.conns[conn_id] = (Dnp3Reader(), flow)

    def feed(self, conn_id: int, from_client: bool, chunks: list[bytes | int], ts: float,
             seq: int) -> list[Written]:
        reader, flow = self.conns[conn_id]
        return reader_documents(self.analyzer, reader, flow, from_client, chunks, ts, seq, LAYERS)

    def damage(self, conn_id: int) -> int:
        got = self.conns.get(conn_id)
        if got is None:
            return 0
        d = got[0].stats
        return d.crc_failures + d.malformed + d.rejected_segments + d.table_segments_dropped

    def stats(self, conn_id: int) -> tuple[int, ...]:
        got = self.conns.get(conn_id)
        s = got[0].stats if got is not None else Dnp3Stats()
        return tuple(getattr(s, name) for name in STATS)

    def end(self, conn_id: int, ts: float = 0.0) -> list[Written]:
        """The connection is over (its open exchanges stay until ``finish``, as the analyzer's do)."""
        self.conns.pop(conn_id, None)
        return []

    def forget(self, conn_id: int) -> None:
        self.conns.pop(conn_id, None)

    def expire(self, now: float) -> list[Written]:
        return list(self.analyzer.expire(now))

    def finish(self) -> list[Written]:
        return list(self.analyzer.finish())


class RustDnp3:
    """``collectors._rs.Dnp3Engine``: the same documents as :class:`PythonDnp3`, written as JSON by the engine."""

    def __init__(self, engine: type[Dnp3Engine], warn: Warn, raw: bool = False) -> None:
        self.warn = warn
        self.engine = engine()
        self.documents = EngineDocuments(raw)

    def open(self, conn_id: int, flow: Flow) -> None:
        self.engine.open(conn_id, flow.orig_h, flow.orig_p, flow.resp_h, flow.resp_p, flow.stream)

    def feed(self, conn_id: int, from_client: bool, chunks: list[bytes | int], ts: float,
             seq: int) -> list[Written]:
        # seq: the analyzer does not read tcp_seq_raw (it places nothing by it)
        return self.documents(self.engine.feed(conn_id, from_client, chunks, ts))

    def damage(self, conn_id: int) -> int:
        return self.engine.damage(conn_id)

    def stats(self, conn_id: int) -> tuple[int, ...]:
        return tuple(self.engine.stats(conn_id))

    def end(self, conn_id: int, ts: float = 0.0) -> list[Written]:
        self.engine.end(conn_id)
        return []

    def forget(self, conn_id: int) -> None:
        self.engine.end(conn_id)

    def expire(self, now: float) -> list[Written]:
        return []  # Dnp3Analyzer keeps no time bound (Analyzer.expire)

    def finish(self) -> list[Written]:
        return finish_engine(self.engine, self.documents, self.warn, Dnp3Analyzer.SERVICE)
