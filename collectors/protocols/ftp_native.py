"""The FTP control channel of the connections the deep path reads natively (``native_tcp``): one face, two
implementations.

- :class:`RustFtp`: ``collectors._rs.FtpEngine`` (collectors/rust/src/ftp.rs), which splits each direction into
  lines, reads commands and replies, pairs them and writes each document as JSON text, so no Python object is
  built per line. The data channels named by PORT/EPRT commands and 227/229 replies are announced by a call back
  into the run's ``ExpectedConnections.expect``, with the arguments ``FtpAnalyzer.announce`` gives it (EPRT's
  argument is read by ``ftp.eprt`` itself). Measured on an analyzer process's captured input of real traces
  (/var/tmp/child-in-0.bin: 2,560 FTP control connections, 19,440 frames, 9,360 documents, 480 announcements): the
  face alone 16.3 us a connection (2.2 us a feed) against the compiled reference's 38.6 us (5.1 us); those frames
  through ``TcpNative`` 5.8 us a frame instead of 9.7 us (0.11 s instead of 0.19 s of the process's ~2.6 s).
- :class:`PythonFtp`: ``native_tcp.LineReader`` per direction into one ``FtpAnalyzer.line``, the reference the
  engine is tested against (document for document, announcement for announcement, counter for counter, warning
  for warning), used when the extension is not built or when ``RUST`` is False.

A connection is named by an int (``open``); ``feed`` takes a direction's bytes or an int (a hole of that many
bytes: the partial line is lost) and returns the documents its lines completed; ``switched`` tells that the feed
stopped at a client's ``AUTH`` (TLS follows: the caller hands the connection back to tshark from that frame on and
``forget``s it; the lines after it in that feed are not read). ``end`` ends one direction (its partial line is
read, unless it is the client's ``AUTH``): a connection's directions end in turn, each after the bytes its
reassembly still held, as ``TcpNative`` closes them. ``expire`` (nothing: a session's commands wait until the run
ends) and ``finish`` are ``FtpAnalyzer``'s (``finish`` also gives its warning). ``cut_lines`` counts the lines cut
at ``MAX_LINE_BYTES``.

``raw``: the documents are passed on as their JSON text (``orjson.Fragment``) instead of dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from collectors.protocols.base import EngineDocuments, RunContext, built_rust, finish_engine
from collectors.protocols.documents import Flow, Written
from collectors.protocols.expected import ExpectedConnections
from collectors.protocols.ftp import FtpAnalyzer

if TYPE_CHECKING:
    from collectors._rs import FtpEngine
    from collectors.protocols.native_tcp import LineReader, Stats

ENGINE: type[FtpEngine] | None = built_rust("FtpEngine")

Warn = Callable[[str], None]

RUST = True  # False: the Python reference reads FTP even where the engine is built (the peer in A/B runs)


def native_ftp(warn: Warn, expected: ExpectedConnections | None, raw: bool = False) -> RustFtp | PythonFtp:
    """The FTP reader of one run: the Rust engine when it is built (and ``RUST``), else the Python reference."""
    return RustFtp(ENGINE, warn, expected, raw) if RUST and ENGINE is not None else PythonFtp(warn, expected, raw)


def is_auth(line: bytes) -> bool:
    """The client's ``AUTH``: it leaves FTP for TLS (Zeek hands the connection to its TLS analyzer)."""
    return line[:4].upper() == b"AUTH"


class PythonFtp:
    """``native_tcp.LineReader`` per direction into one ``FtpAnalyzer`` (announcing into ``expected``)."""

    def __init__(self, warn: Warn, expected: ExpectedConnections | None, raw: bool = False) -> None:
        from collectors.protocols.native_tcp import Stats  # native_tcp imports this module

        self.analyzer = FtpAnalyzer(warn, RunContext(None, "", None, expected))  # type: ignore[arg-type]
        self.analyzer.raw = raw
        self.stats: Stats = Stats()  # only its cut_lines
        self.conns: dict[int, tuple[Flow, tuple[LineReader, LineReader]]] = {}
        self._switched: set[int] = set()

    def open(self, conn_id: int, flow: Flow) -> None:
        from collectors.protocols.native_tcp import LineReader

        self.conns[conn_id] = (flow, (LineReader(), LineReader()))

    def feed(self, conn_id: int, from_client: bool, data: bytes | int, ts: float) -> list[Written]:
        flow, readers = self.conns[conn_id]
        self._switched.discard(conn_id)
        docs: list[Written] = []
        for line in readers[0 if from_client else 1].lines(data, self.stats):
            if from_client and is_auth(line):  # in-band switch to TLS: tshark reads on
                self._switched.add(conn_id)
                break
            docs += self.analyzer.line(flow, from_client, ts, line)
        return docs

    def switched(self, conn_id: int) -> bool:
        return conn_id in self._switched

    def end(self, conn_id: int, from_client: bool, ts: float) -> list[Written]:
        flow, readers = self.conns[conn_id]
        docs: list[Written] = []
        for line in readers[0 if from_client else 1].end():
            if not (from_client and is_auth(line)):
                docs += self.analyzer.line(flow, from_client, ts, line)
        return docs

    def forget(self, conn_id: int) -> None:
        self.conns.pop(conn_id, None)
        self._switched.discard(conn_id)

    def expire(self, now: float) -> list[Written]:
        return list(self.analyzer.expire(now))

    def finish(self) -> list[Written]:
        return list(self.analyzer.finish())

    @property
    def cut_lines(self) -> int:
        return self.stats.cut_lines

    @property
    def longest_line(self) -> int:
        """The longest partial line held (bounded by ``MAX_LINE_BYTES``)."""
        return max((len(r.buf) for _, readers in self.conns.values() for r in readers), default=0)


class RustFtp:
    """``collectors._rs.FtpEngine``: the same documents and announcements as :class:`PythonFtp`."""

    def __init__(self, engine: type[FtpEngine], warn: Warn, expected: ExpectedConnections | None,
                 raw: bool = False) -> None:
        self.warn = warn
        self.engine = engine(expected.expect if expected is not None else None)
        self.documents = EngineDocuments(raw)

    def open(self, conn_id: int, flow: Flow) -> None:
        self.engine.open(conn_id, flow.orig_h, flow.orig_p, flow.resp_h, flow.resp_p, flow.stream)

    def feed(self, conn_id: int, from_client: bool, data: bytes | int, ts: float) -> list[Written]:
        return self.documents(self.engine.feed(conn_id, from_client, data, ts))

    def switched(self, conn_id: int) -> bool:
        return self.engine.switched(conn_id)

    def end(self, conn_id: int, from_client: bool, ts: float) -> list[Written]:
        return self.documents(self.engine.end(conn_id, from_client, ts))

    def forget(self, conn_id: int) -> None:
        self.engine.forget(conn_id)

    def expire(self, now: float) -> list[Written]:
        return self.documents(self.engine.expire(now))

    def finish(self) -> list[Written]:
        return finish_engine(self.engine, self.documents, self.warn, FtpAnalyzer.SERVICE)

    @property
    def cut_lines(self) -> int:
        return self.engine.cut_lines

    @property
    def longest_line(self) -> int:
        return self.engine.longest_line
