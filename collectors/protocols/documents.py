"""Flows and documents: a connection oriented like Zeek, its Community ID, and the ECS document a protocol module
emits for it (``make_doc``: endpoints, deterministic id, values cut where Elasticsearch stops indexing them).

Compiled with mypyc (setup.py): every document of the deep path is built here.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from collectors.community_id import community_id as packed_community_id
from collectors.protocols.tshark import Packet, to_int
from secops.ecs import doc_id, iso, put
from secops.es.templates import MAX_KEYWORD_CHARS

Doc = dict[str, Any]
# a document, or its JSON text as a native engine wrote it, on its way to another process unparsed (``dns_udp``)
Written = Doc | orjson.Fragment

_TRANSPORT_NUM = {"tcp": 6, "udp": 17}


@dataclass(slots=True, unsafe_hash=True, init=False)
class Flow:
    """A connection oriented like Zeek: originator (client) first."""

    transport: str
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    stream: str  # tshark's stream index, unique per connection within one run

    def __init__(self, transport: str, orig_h: str, orig_p: int, resp_h: str, resp_p: int, stream: str) -> None:
        self.transport = transport
        self.orig_h = orig_h
        self.orig_p = orig_p
        self.resp_h = resp_h
        self.resp_p = resp_p
        self.stream = stream

    @property
    def community_id(self) -> str:
        return community_id(self.transport, self.orig_h, self.resp_h, self.orig_p, self.resp_p)

    def key(self) -> tuple[str, str]:
        return (self.transport, self.stream)

    def ends(self, from_orig: bool) -> tuple[str, int, str, int]:
        """(source address, source port, destination address, destination port) of a packet in this direction."""
        if from_orig:
            return self.orig_h, self.orig_p, self.resp_h, self.resp_p
        return self.resp_h, self.resp_p, self.orig_h, self.orig_p


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
             protocol: str | list[str], keep_empty: tuple[str, ...] = ()) -> Doc:
    """A finished ECS document: endpoints, Community ID, deterministic id and dotted ``fields``.

    Fields that are None, "" or [] are left out, except an empty string named in ``keep_empty`` (a value there,
    such as HTTP's empty request URI). Values longer than ``MAX_VALUE_CHARS`` are cut; each cut is listed in
    ``secops.truncated`` the way the bulk writer lists its keyword cuts (field, original length, SHA-256 of the
    original; lists and objects are measured as their JSON text).
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
        if value is None or value == [] or (value == "" and dotted not in keep_empty):
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
