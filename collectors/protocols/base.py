"""What every protocol module shares: flow orientation, the analyzer face, document building.

A protocol module (dns.py, http.py, ...) is one small ``Analyzer`` subclass, shaped like a Zeek
protocol script: the tshark layers/display filter and fields it needs (``LAYERS``, ``FILTER``,
``FIELDS``), how its record is filled from packets (``handle``) and how a finished record becomes
an ECS document (``emit`` through ``make_doc``).
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from collectors.community_id import community_id as packed_community_id
from collectors.protocols.tshark import BASE_FIELDS, Packet, build_command, to_int
from secops.ecs import doc_id, iso, put
from secops.es.templates import MAX_KEYWORD_CHARS

if TYPE_CHECKING:
    from collectors.protocols.expected import ExpectedConnections
    from collectors.protocols.reread import ConnectionFrames

Doc = dict[str, Any]
Warn = Callable[[str], None]

_TRANSPORT_NUM = {"tcp": 6, "udp": 17}


@dataclass(frozen=True, slots=True)
class Flow:
    """A connection oriented like Zeek: originator (client) first."""

    transport: str
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    stream: str  # tshark's stream index, unique per connection within one run

    @property
    def community_id(self) -> str:
        return community_id(self.transport, self.orig_h, self.resp_h, self.orig_p, self.resp_p)

    def key(self) -> tuple[str, str]:
        return (self.transport, self.stream)


@lru_cache(maxsize=65536)
def community_id(transport: str, saddr: str, daddr: str, sport: int, dport: int) -> str:
    """Community ID of a flow given as address text (the flow path's packed-address implementation: 2 us a call
    against the ``communityid`` package's 54 us)."""
    family = socket.AF_INET6 if ":" in saddr else socket.AF_INET
    try:
        src, dst = socket.inet_pton(family, saddr), socket.inet_pton(family, daddr)
    except OSError:
        raise ValueError(f"not an address pair: {saddr!r}, {daddr!r}") from None
    return packed_community_id(_TRANSPORT_NUM[transport], src, dst, sport, dport)


def flow_of(pkt: Packet, sender_is_orig: bool) -> Flow | None:
    """The innermost IP/transport endpoints of a packet, oriented by who sent it.

    Packets quoted inside ICMP errors are not the protocol talking; they yield None.
    """
    protos = pkt.protocols
    fam = transport = None
    for name in reversed(protos):  # innermost first: tunnels carry the conversation inside
        if name in ("icmp", "icmpv6"):
            return None
        if transport is None and name in ("tcp", "udp"):
            transport = name
        elif fam is None and transport is not None and name in ("ip", "ipv6"):
            fam = name
    if fam is None or transport is None:
        return None
    src, dst = pkt.last(f"{fam}.src"), pkt.last(f"{fam}.dst")
    sport = to_int(pkt.last(f"{transport}.srcport"))
    dport = to_int(pkt.last(f"{transport}.dstport"))
    if src is None or dst is None or sport is None or dport is None:
        return None
    stream = pkt.last(f"{transport}.stream") or f"{src}:{sport}-{dst}:{dport}"
    if sender_is_orig:
        return Flow(transport, src, sport, dst, dport, stream)
    return Flow(transport, dst, dport, src, sport, stream)


def sender_is_orig(pkt: Packet, flow: Flow) -> bool:
    """Whether this packet travels originator -> responder on an already oriented flow."""
    src = flow_of(pkt, True)
    return src is not None and (src.orig_h, src.orig_p) == (flow.orig_h, flow.orig_p)


# any string a protocol module logs (names, URIs, banners, file names, ...): cut where Elasticsearch stops
# indexing keywords, so a rule still sees what the document holds
MAX_VALUE_CHARS = MAX_KEYWORD_CHARS


def clip(value: Any, limit: int = MAX_VALUE_CHARS) -> tuple[Any, bool]:
    """``value`` with every string in it (lists and answer records included) cut at ``limit``."""
    if isinstance(value, str):
        return (value[:limit], True) if len(value) > limit else (value, False)
    if isinstance(value, list):
        items = [clip(v, limit) for v in value]
        return [v for v, _ in items], any(cut for _, cut in items)
    if isinstance(value, dict):
        pairs = {k: clip(v, limit) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(cut for _, cut in pairs.values())
    return value, False


def fits(value: Any, limit: int = MAX_VALUE_CHARS) -> bool:
    """Whether no string in ``value`` (lists and answer records included) is longer than ``limit``: the common
    case, checked without building anything."""
    if isinstance(value, str):
        return len(value) <= limit
    if isinstance(value, list):
        return all(fits(v, limit) for v in value)
    if isinstance(value, dict):
        return all(fits(v, limit) for v in value.values())
    return True


def truncation(dotted: str, original: Any) -> dict[str, Any]:
    """The ``secops.truncated`` entry for a value that was cut (same shape as ``secops.es.templates``' cuts)."""
    text = original if isinstance(original, str) else orjson.dumps(original, default=str).decode()
    return {"field": dotted, "length": len(text),
            "sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()}


def make_doc(dataset: str, flow: Flow, ts: float, identity: Iterable[Any], fields: dict[str, Any],
             protocol: str | list[str]) -> Doc:
    """A finished ECS document: endpoints, Community ID, deterministic id and dotted ``fields``.

    Values longer than ``MAX_VALUE_CHARS`` are cut; each cut is listed in ``secops.truncated`` the way the bulk
    writer lists its keyword cuts (field, original length, SHA-256 of the original; lists and objects are
    measured as their JSON text).
    """
    cid = flow.community_id
    doc: Doc = {
        "@timestamp": iso(ts),
        "event": {"dataset": dataset, "kind": "event", "module": "secops", "category": ["network"],
                  "type": ["protocol"]},
        "source": {"ip": flow.orig_h, "port": flow.orig_p},
        "destination": {"ip": flow.resp_h, "port": flow.resp_p},
        "network": {"transport": flow.transport, "community_id": cid, "protocol": protocol},
    }
    truncated = []
    for dotted, value in fields.items():  # one pass: a document has many fields, and few are long (measured hot)
        if value is None or value == "" or value == []:
            continue
        if (len(value) > MAX_VALUE_CHARS) if isinstance(value, str) else \
                isinstance(value, (list, dict)) and not fits(value):
            truncated.append(truncation(dotted, value))
            fields[dotted] = value = clip(value)[0]
        put(doc, dotted, value)
    if truncated:
        fields["secops.truncated"] = value = [*(fields.get("secops.truncated") or ()), *truncated]
        put(doc, "secops.truncated", value)
    doc["_id"] = doc_id(dataset, cid, f"{ts:.6f}", *identity)
    return doc


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

    def document(self, flow: Flow, ts: float, identity: Iterable[Any], fields: dict[str, Any],
                 protocol: str | list[str]) -> Doc:
        """``make_doc`` for this module's dataset, counting the values it had to cut."""
        doc = make_doc(self.DATASET, flow, ts, identity, fields, protocol)
        self.cut_values += len(doc.get("secops", {}).get("truncated", ()))
        return doc

    def report_cuts(self) -> None:
        """One warning for every value this module cut (called when the capture ends)."""
        if self.cut_values:
            self.warn(f"{self.SERVICE}: {self.cut_values} value(s) longer than {MAX_VALUE_CHARS} characters "
                      "truncated (listed in secops.truncated)")
            self.cut_values = 0

    def wants(self, layers: set[str]) -> bool:
        return not self.LAYERS.isdisjoint(layers)

    def handle(self, pkt: Packet) -> Iterable[Doc]:
        raise NotImplementedError

    def expire(self, now: float) -> Iterable[Doc]:
        """Records that can no longer complete by capture time ``now`` (keeps memory bounded)."""
        return ()

    def finish(self) -> Iterable[Doc]:
        """Records still open when the capture ends (unanswered requests, ...)."""
        self.report_cuts()
        return ()


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
