"""What every protocol module shares: the analyzer face (flows and document building are in ``documents``).

A protocol module (dns.py, http.py, ...) is one small ``Analyzer`` subclass, shaped like a Zeek
protocol script: the tshark layers/display filter and fields it needs (``LAYERS``, ``FILTER``,
``FIELDS``), how its record is filled from packets (``handle``) and how a finished record becomes
an ECS document (``emit`` through ``make_doc``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import orjson

from collectors.protocols.documents import MAX_VALUE_CHARS, Flow, Written, flow_of, make_doc
from collectors.protocols.tshark import BASE_FIELDS, Packet, build_command, tcp_packet

if TYPE_CHECKING:
    from collectors.protocols.expected import ExpectedConnections
    from collectors.protocols.reread import ConnectionFrames

Warn = Callable[[str], None]
DocumentWriter = Callable[..., tuple[bytes, int]]


def built_rust(name: str) -> Any:
    """``collectors._rs.<name>`` (collectors/rust), or None where the extension is not built (the Python reference
    then does the work)."""
    try:
        from collectors import _rs
    except ImportError:
        return None
    return getattr(_rs, name, None)


# make_doc's document as JSON, with the number of values cut
WRITE_DOCUMENT: DocumentWriter | None = built_rust("write_document")


class EngineDocuments:
    """A Rust engine's documents (JSON bytes, or the dict of its ``make_doc`` fallback) as a run hands them on: as
    ``orjson.Fragment`` for a process pipe (``raw``), else parsed into dicts."""

    def __init__(self, raw: bool) -> None:
        self.wrap: Callable[[bytes], Any] = orjson.Fragment if raw else orjson.loads

    def __call__(self, written: list[Any]) -> list[Written]:
        return [self.wrap(doc) if isinstance(doc, bytes) else doc for doc in written] if written else []


def finish_engine(engine: Any, documents: EngineDocuments, warn: Warn, service: str) -> list[Written]:
    """A Rust engine's last documents (``finish``), and its analyzer's ``report_cuts`` warning for the values it
    cut, once."""
    docs = documents(engine.finish())
    if engine.cut_values:
        warn(cuts_warning(service, engine.cut_values))
        engine.cut_values = 0
    return docs


@dataclass(frozen=True, slots=True)
class RunContext:
    """The capture being read, the tshark to read it with, and its frames by connection (for modules that need a
    second look)."""

    pcap: Path
    tshark: str
    frames: ConnectionFrames
    expected: ExpectedConnections | None = None  # connections announced on others (FTP data), for the pipeline
    server_ports: frozenset[int] = frozenset()  # server ports decoded as an analyzer's protocol (unusual ports)


class Analyzer:
    """Base of a protocol module: turns the packets of its layers into finished documents."""

    DATASET: ClassVar[str]
    SERVICE: ClassVar[str]  # Zeek service name, goes to network.protocol
    LAYERS: ClassVar[frozenset[str]]  # names in frame.protocols this module handles
    FILTER: ClassVar[str]  # its part of the combined display filter
    FIELDS: ClassVar[tuple[str, ...]]
    COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = ()  # tshark custom columns (title, format) it reads
    PORTS: ClassVar[frozenset[int]] = frozenset()  # server ports that orient its flows

    def __init__(self, warn: Warn, context: RunContext | None = None) -> None:
        self.warn = warn
        self.context = context
        # its registered ports, and the ones a look at unusual ports decoded as this protocol (orientation)
        self.server_ports = self.PORTS | (context.server_ports if context is not None else frozenset())
        self.cut_values = 0  # values cut to MAX_VALUE_CHARS in this module's documents
        # documents as JSON text (``WRITE_DOCUMENT``), for an owner whose consumer only serialises them (the analyzer
        # process's pipe to its parent): no dict is built and none is serialised again
        self.raw = False

    def document(self, flow: Flow, ts: float, identity: Iterable[Any], fields: dict[str, Any],
                 protocol: str | list[str], keep_empty: tuple[str, ...] = ()) -> Written:
        """``make_doc`` for this module's dataset, counting the values it had to cut."""
        if self.raw and WRITE_DOCUMENT is not None:
            try:
                text, cuts = WRITE_DOCUMENT(self.DATASET, flow.transport, flow.orig_h, flow.orig_p, flow.resp_h,
                                            flow.resp_p, ts, tuple(identity), fields, protocol, keep_empty)
            except TypeError:  # a value JSON cannot hold as it is: the dict goes, and its consumer decides
                pass
            else:
                self.cut_values += cuts
                return orjson.Fragment(text)
        doc = make_doc(self.DATASET, flow, ts, identity, fields, protocol, keep_empty)
        self.cut_values += len(doc.get("secops", {}).get("truncated", ()))
        return doc

    def report_cuts(self) -> None:
        """One warning for every value this module cut (called when the capture ends)."""
        if self.cut_values:
            self.warn(cuts_warning(self.SERVICE, self.cut_values))
            self.cut_values = 0

    def wants(self, layers: set[str]) -> bool:
        return not self.LAYERS.isdisjoint(layers)

    def handle(self, pkt: Packet) -> Iterable[Written]:
        raise NotImplementedError

    def expire(self, now: float) -> Iterable[Written]:
        """Records that can no longer complete by capture time ``now`` (keeps memory bounded)."""
        return ()

    def finish(self) -> Iterable[Written]:
        """Records still open when the capture ends (unanswered requests, ...)."""
        self.report_cuts()
        return ()


class FieldsReader(Protocol):
    """A ``*_wire`` reader: a connection's bytes in, the fields tshark would print for the frame out."""

    def feed(self, from_client: bool, chunk: bytes | int) -> None: ...

    def take(self) -> dict[str, list[str]]: ...


def reader_documents(analyzer: Analyzer, reader: FieldsReader, flow: Flow, from_client: bool,
                     chunks: Iterable[bytes | int], ts: float, seq: int,
                     layers: list[str] | Callable[[], list[str]]) -> list[Written]:
    """One frame's reassembled chunks through a connection's ``*_wire`` reader; the PDUs they completed, as tshark
    prints that frame, into the protocol's analyzer (the frame's raw sequence number places them, as it places
    tshark's). ``layers``: the frame's layers above TCP, or where to read them once the fields are taken (a
    reader of several protocols knows them then)."""
    for chunk in chunks:
        reader.feed(from_client, chunk)
    fields = reader.take()
    if not fields:
        return []
    fields["tcp_seq_raw"] = [str(seq)]
    src, sport, dst, dport = flow.ends(from_client)
    stack = layers if isinstance(layers, list) else layers()
    return list(analyzer.handle(tcp_packet(ts, src, dst, sport, dport, flow.stream, fields, stack)))


def cuts_warning(service: str, count: int) -> str:
    """The warning for ``count`` values a module cut to ``MAX_VALUE_CHARS`` in one run."""
    return f"{service}: {count} value(s) longer than {MAX_VALUE_CHARS} characters truncated (listed in " \
        "secops.truncated)"


def flow_by_server_port(pkt: Packet, server_ports: frozenset[int]) -> tuple[Flow, bool] | None:
    """Orient a packet's flow with the side on a well-known server port as responder.

    Returns the flow and whether this packet was sent by the originator (client). Without a
    known port the lower port is taken as the server's, as Zeek's likely-server-port rule does.
    """
    probe = flow_of(pkt, True)
    if probe is None:
        return None
    sender_serves = probe.orig_p in server_ports and probe.resp_p not in server_ports
    if not sender_serves and probe.resp_p not in server_ports and probe.orig_p < probe.resp_p:
        sender_serves = True
    if sender_serves:
        return Flow(probe.transport, probe.resp_h, probe.resp_p, probe.orig_h, probe.orig_p, probe.stream), False
    return probe, True


MAX_OPEN_RECORDS = 100_000  # records a module keeps waiting for their answer, over all connections


def evict_oldest(records: dict[Any, Any], limit: int = MAX_OPEN_RECORDS) -> list[Any]:
    """Remove and return the oldest entries (insertion order) beyond ``limit``: a flood of
    never-answered requests is logged as unanswered instead of growing memory."""
    out = []
    while len(records) > limit:
        out.append(records.pop(next(iter(records))))
    return out


def pop_oldest_other(records: dict[Any, Any], current: object) -> Any:
    """Remove and return the oldest entry (insertion order) that is not ``current``; None when there is none. A
    table past its byte budget logs the oldest other connections' waiting records this way."""
    key = next((k for k, v in records.items() if v is not current), None)
    return None if key is None else records.pop(key)


def layers_above_tcp(protocols: list[str]) -> list[str] | None:
    """The layers tshark decoded above the innermost TCP header (None without TCP)."""
    if "tcp" not in protocols:
        return None
    return protocols[len(protocols) - protocols[::-1].index("tcp"):]


def occurrences(pkt: Packet, *names: str) -> list[tuple[str | None, ...]]:
    """Zip several fields that occur once per PDU (several PDUs may share one frame)."""
    cols = [pkt.values(n) for n in names]
    count = max((len(c) for c in cols), default=0)
    return [tuple(c[i] if i < len(c) else None for c in cols) for i in range(count)]


def command_for(analyzers: Iterable[type[Analyzer]], pcap: Path | None, tshark_path: str,
                extra_options: Iterable[str] = ()) -> list[str]:
    """One tshark invocation for these modules: their filters or'ed, their fields and custom columns."""
    analyzers = tuple(analyzers)
    display_filter = " or ".join(f"({a.FILTER})" for a in analyzers if a.FILTER)
    fields: dict[str, None] = dict.fromkeys(BASE_FIELDS)
    columns: list[str] = []
    for a in analyzers:
        fields.update(dict.fromkeys(a.FIELDS))
        columns += [f'"{title}","{fmt}"' for title, fmt in a.COLUMNS]
    # custom columns resolve numbers to the names tshark knows (cipher suites, RPC operations);
    # they also replace the default columns, which nothing here reads
    options = [*extra_options, *(["-o", "gui.column.format:" + ",".join(columns)] if columns else [])]
    return build_command(tshark_path, pcap, display_filter, list(fields), options)
