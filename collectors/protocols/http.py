"""HTTP/1.x: one record per request/response pair, as Zeek's http.log.

Requests queue up per connection; the next final response (status >= 200) closes the oldest one,
interim 1xx responses are noted as ``info_code`` (and stay the status when nothing final follows,
as a 101 upgrade). Request lines are read as Zeek reads them: the URI runs up to the whitespace
before ``HTTP/``; a request line without a version is HTTP/0.9, whose response Zeek does not
parse (status 0, every response byte counted as body); a method alone is no request. Body sizes
are entity lengths after transfer decoding: Content-Length where the body is neither chunked nor
compressed, else the de-chunked, decompressed body tshark reports (Zeek counts the same).
Basic-auth user names are kept, passwords never are.

Two readers feed one pairing path (``HttpAnalyzer.request``/``answer``, ``_close``, ``emit``): tshark's packets
(``handle``) and the messages of connections the deep path reads natively (:class:`HttpConnection`, on
``collectors.protocols.http_wire``; ``collectors.protocols.native_tcp`` decides which). The native reader follows
Zeek where tshark's fields cannot: a record's ts is the frame that completed its request line, a body's length is
counted after de-chunking and decompression whatever its bytes, a hole inside a Content-Length body counts, and a
request line whose method is no RFC 9110 token ends the reading of that direction (Zeek: bad_HTTP_request).

Bounds (hostile input must not blind the sensor): logged values are cut at ``MAX_VALUE_CHARS``
by ``make_doc`` (the document lists the cut fields in ``secops.truncated``, a warning counts them), at most
``MAX_PENDING`` requests wait per connection and ``MAX_WAITING_BYTES`` of them in all connections together (the
oldest other connections' requests are logged unanswered past it), at most ``MAX_RECORDS_PER_FLOW`` records come
from one connection, idle connections are swept by ``expire``.

Second look: tshark reports a message only once its body is reassembled, and it recognises HTTP on unregistered
ports only by a heuristic on single segments. Connections left with unanswered requests (response lost in a gap) or
with responses nobody asked for (request on an odd port) are read again at the end of the run from their payload
(``ConnectionFrames.tcp_payloads``: that connection's frames only) by the native reader, and the reading with more
complete exchanges is kept per connection. (This was one more tshark pass, with body reassembly off and HTTP decoded
on the server ports: a tshark start, 0.3 s of CPU, per run.)
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import unquote

from collectors.protocols.base import Analyzer, RunContext, Warn, evict_oldest, occurrences, pop_oldest_other
from collectors.protocols.documents import MAX_VALUE_CHARS as MAX_VALUE_CHARS  # the bound the docstring names
from collectors.protocols.documents import Flow, Written, flow_of
from collectors.protocols.http_wire import LOST, STATUS_LINE, Message, MessageReader, WireStats
from collectors.protocols.reread import Wanted, directions
from collectors.protocols.tshark import Packet, to_int

MAX_PENDING = 100  # requests waiting for their response on one connection; older ones are logged
# what the requests waiting for their response hold in all connections together (MAX_OPEN_RECORDS connections of
# MAX_PENDING requests held 4.8 GB for 180 MB read, more with long header values): each is charged EXCHANGE_OVERHEAD
# and the UTF-8 bytes of the fields it keeps; past it the oldest other connections' requests are logged unanswered
# (as past MAX_OPEN_RECORDS connections). The Rust engine reads both here.
MAX_WAITING_BYTES = 32 << 20
EXCHANGE_OVERHEAD = 512
MAX_RECORDS_PER_FLOW = 10_000  # records from one connection; the rest are counted and dropped
MAX_ORPHANS = 20_000  # responses kept for the second look; more are logged as they come
IDLE_TIMEOUT = 300.0  # seconds of capture time: Zeek's tcp_inactivity_timeout
MAX_NATIVE_STREAMS = 256  # connections tshark did not parse as HTTP that are read here instead
MAX_NATIVE_BYTES = 1 << 20  # payload bytes per direction read for them
# first bytes of an HTTP message tshark left unparsed (HTTP/0.9, a lower-case status line, a request
# still waiting for more headers): Zeek's HTTP analyzer reads them
NATIVE_CANDIDATE = (
    '(tcp.payload matches "^(?i)http/[0-9]" and !http.response) or '
    '(tcp.payload matches "^(GET|HEAD|POST|PUT|DELETE|OPTIONS|TRACE|CONNECT|PATCH) [^ ]" and !http.request)'
)
# RFC 3986 reserved and unreserved characters: what Zeek's request-line parser takes as URI
URI_CHARS = frozenset(":/?#[]@!$&'()*+,;=-_.~%abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
VERSION_START = re.compile(r"\s*HTTP/")
NO_BODY_STATUS = frozenset({204, 304})
# layers of other analyzers: their packets can reach this module only through their own filters
NOT_HTTP_LAYERS = frozenset({"tls", "dtls", "ssh", "smb", "smb2", "dcerpc", "ftp", "dns", "modbus", "dnp3",
                             "s7comm", "iec60870_104", "dhcp"})
EMPTY_URI = ("url.original", "secops.http.uri_raw")  # kept when empty: the request had an empty URI


@dataclass(init=False)
class Exchange:
    flow: Flow
    ts: float
    depth: int
    method: str | None = None
    uri: str | None = None
    version: str | None = None
    host: str | None = None
    user_agent: str | None = None
    referrer: str | None = None
    auth_scheme: str | None = None
    username: str | None = None
    req_mime: str | None = None
    req_len: int = 0
    status: int | None = None
    reason: str | None = None
    info_code: int | None = None
    resp_len: int = 0
    resp_mime: str | None = None
    location: str | None = None
    flow_logged: bool = False  # its connection had produced records when this one was left open
    weight: int = field(default=0, compare=False)  # what it is charged against MAX_WAITING_BYTES while it waits

    def __init__(self, flow: Flow, ts: float, depth: int, method: str | None = None, uri: str | None = None,
                 version: str | None = None, host: str | None = None, user_agent: str | None = None,
                 referrer: str | None = None, auth_scheme: str | None = None, username: str | None = None,
                 req_mime: str | None = None, req_len: int = 0, status: int | None = None, reason: str | None = None,
                 info_code: int | None = None, resp_len: int = 0, resp_mime: str | None = None,
                 location: str | None = None, flow_logged: bool = False) -> None:
        self.flow = flow
        self.ts = ts
        self.depth = depth
        self.method = method
        self.uri = uri
        self.version = version
        self.host = host
        self.user_agent = user_agent
        self.referrer = referrer
        self.auth_scheme = auth_scheme
        self.username = username
        self.req_mime = req_mime
        self.req_len = req_len
        self.status = status
        self.reason = reason
        self.info_code = info_code
        self.resp_len = resp_len
        self.resp_mime = resp_mime
        self.location = location
        self.flow_logged = flow_logged
        self.weight = 0


@dataclass(init=False)
class FlowState:
    """What one connection holds between packets (dropped when it idles out)."""

    flow: Flow
    last_ts: float
    open: deque[Exchange] = field(default_factory=deque)
    depth: int = 0
    records: int = 0
    saw_request: bool = False
    early_info: int | None = None  # 1xx seen before its request was complete
    held: int = field(default=0, compare=False)  # the weights of its open exchanges

    def __init__(self, flow: Flow, last_ts: float, open: deque[Exchange] | None = None, depth: int = 0,
                 records: int = 0, saw_request: bool = False, early_info: int | None = None) -> None:
        self.flow = flow
        self.last_ts = last_ts
        self.open = deque() if open is None else open
        self.depth = depth
        self.records = records
        self.saw_request = saw_request
        self.early_info = early_info
        self.held = sum(ex.weight for ex in self.open)


def request_weight(ex: Exchange) -> int:
    """What a request waiting for its response is charged against MAX_WAITING_BYTES."""
    weight = EXCHANGE_OVERHEAD
    for value in (ex.method, ex.uri, ex.version, ex.host, ex.user_agent, ex.referrer, ex.auth_scheme, ex.username,
                  ex.req_mime):
        if value is not None:
            weight += len(value.encode("utf-8", "surrogatepass"))
    return weight


def parse_request_line(method: str, uri: str | None, version: str | None) -> tuple[str, str] | None:
    """(URI, version) of a request line as Zeek's HTTP analyzer reads it, from tshark's split of
    it at spaces; None for a method without anything after it (Zeek: bad_HTTP_request)."""
    rest = " ".join(part for part in (uri, version) if part)
    if not rest:
        return None
    end = 0
    while end < len(rest) and rest[end] in URI_CHARS:
        end += 1
    if end == len(rest) and rest.startswith("HTTP/"):
        end = 0  # "OPTIONS HTTP/1.1": the URI is empty
    # VERSION_START.search(rest, end), without trying every start in a run of blanks (the square of the run: 16 KB
    # of tabs cost 0.7 s): the first "HTTP/" from ``end`` on, taken back over the blanks before it (not before end)
    found = rest.find("HTTP/", end)
    if found < 0:
        return rest, "0.9"
    start = found
    while start > end and rest[start - 1].isspace():
        start -= 1
    return rest[:start], rest[found + 5:].strip()


def body_length(pkt: Packet, index: int = 0, count: int = 1) -> int:
    """Entity length of the ``index``-th of ``count`` messages in this frame after transfer decoding.

    Content-Length counts when the body is neither chunked nor compressed (binary bodies come
    out of tshark's text field cut at their first NUL). Otherwise ``http.file_data`` is the
    de-chunked, decompressed body as text: bytes that are not valid UTF-8 come back as one
    U+FFFD each, so they count one byte each.
    """
    header = _per_message_reader(pkt, index, count)
    if header("http.content_encoding") is None and header("http.transfer_encoding") is None:
        declared = to_int(header("http.content_length"))
        if declared is not None:
            return declared
    data = header("http.file_data")
    if data is None:
        return 0
    if data.isascii():
        return len(data)
    return len(data.encode("utf-8", "surrogatepass")) - 2 * data.count("\ufffd")


def _per_message_reader(pkt: Packet, index: int, count: int):
    """Header values of the ``index``-th of ``count`` messages in a frame: tshark lists each header
    once per message carrying it, so a list as long as the messages aligns; otherwise unknown."""
    def header(name: str) -> str | None:
        values = pkt.values(name)
        if count == 1:
            return values[0] if values else None
        return values[index] if len(values) == count else None
    return header


Header = Callable[[str], "str | None"]  # a message's header by its (lower-case) name


def _no_headers(name: str) -> str | None:
    return None


TSHARK_HEADERS = {"host": "http.host", "user-agent": "http.user_agent", "referer": "http.referer",
                  "authorization": "http.authorization", "content-type": "http.content_type",
                  "location": "http.location", "content-length": "http.content_length",
                  "transfer-encoding": "http.transfer_encoding", "content-encoding": "http.content_encoding"}


def tshark_headers(pkt: Packet, index: int, count: int) -> Header:
    """The headers of the ``index``-th of ``count`` messages in a frame, by HTTP name, from tshark's fields."""
    field = _per_message_reader(pkt, index, count)
    return lambda name: field(TSHARK_HEADERS[name])


def message_bytes(pkt: Packet) -> int:
    """Bytes of the message this frame completes (reassembled across segments, or this segment)."""
    reassembled = to_int(pkt.last("tcp.reassembled.length"))
    return reassembled if reassembled is not None else to_int(pkt.last("tcp.len"), 0) or 0


def basic_user(authorization: str | None) -> tuple[str | None, str | None]:
    """(scheme, user name) of an Authorization header; the password is dropped here."""
    if not authorization:
        return None, None
    scheme, _, cred = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return scheme, None
    try:
        decoded = base64.b64decode(cred.strip(), validate=False).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return scheme, None
    return scheme, decoded.split(":", 1)[0]


class HttpAnalyzer(Analyzer):
    DATASET = "secops.http"
    SERVICE = "http"
    LAYERS = frozenset({"http"})
    FILTER = f"http.request or http.response or {NATIVE_CANDIDATE}"
    FIELDS = (
        "http.request.method", "http.request.uri", "http.request.version", "http.host", "http.user_agent",
        "http.referer", "http.authorization", "http.response.code", "http.response.phrase",
        "http.response.version", "http.content_type", "http.file_data", "http.location", "http.content_length",
        "http.content_encoding", "http.transfer_encoding", "tcp.reassembled.length", "tcp.len",
    )

    def wants(self, layers: set[str]) -> bool:
        return "http" in layers or ("tcp" in layers and layers.isdisjoint(NOT_HTTP_LAYERS))

    def __init__(self, warn: Warn, context: RunContext | None = None) -> None:
        super().__init__(warn, context)
        self.state: dict[tuple[str, str], FlowState] = {}
        self.orphans: list[Exchange] = []  # responses without a request, kept for the second look
        self.done: list[Exchange] | None = None  # a payload read (``parse_exchanges``): keep exchanges, emit none
        self.dropped_records = 0
        self.held = 0  # the states' ``held`` together
        self.native: dict[str, Wanted] = {}  # streams whose messages tshark left unparsed (flow, time seen)

    def _state(self, key: tuple[str, str], flow: Flow, ts: float) -> FlowState:
        st = self.state.get(key)
        if st is None:
            st = self.state[key] = FlowState(flow, ts)
        st.last_ts = ts
        return st

    def handle(self, pkt: Packet) -> Iterable[Written]:
        if pkt.first("http.request.method") is not None:
            yield from self._request(pkt)
            return
        responses = occurrences(pkt, "http.response.code", "http.response.phrase")
        if not responses:
            self._note_unparsed(pkt)
            return
        probe = flow_of(pkt, False)
        if probe is None:
            return
        st = self._state(probe.key(), probe, pkt.ts)
        yield from self._evict_stale()
        for index, (code_text, phrase) in enumerate(responses):
            code = to_int(code_text)
            if code is None:
                continue
            header = tshark_headers(pkt, index, len(responses))
            yield from self.answer(st, pkt.ts, code, phrase, header,
                                   partial(body_length, pkt, index, len(responses)), lambda: message_bytes(pkt))

    # -- the pairing both readers share (tshark's packets, messages read natively) ------------------------
    def request(self, st: FlowState, ts: float, method: str, uri: str | None, version: str | None,
                header: Header, body: Callable[[], int]) -> Iterable[Written]:
        """A request (its line as split at spaces, its headers, its body length): it waits for its response."""
        line = parse_request_line(method, uri, version)
        if line is None:
            return  # a method alone is no request (Zeek: bad_HTTP_request)
        uri, version = line
        st.saw_request = True
        st.depth += 1
        scheme, user = basic_user(header("authorization"))
        framed = header("content-length") is not None or header("transfer-encoding") is not None
        ex = Exchange(
            st.flow, ts, st.depth, method=method, uri=uri, version=version,
            host=header("host"), user_agent=header("user-agent"), referrer=header("referer"),
            auth_scheme=scheme, username=user, req_mime=header("content-type"),
            # a request has a body only when Content-Length or Transfer-Encoding frames one (RFC 9112 6.3)
            req_len=body() if framed else 0,
            info_code=st.early_info,
        )
        st.early_info = None
        ex.weight = request_weight(ex)
        st.open.append(ex)
        st.held += ex.weight
        self.held += ex.weight
        while len(st.open) > MAX_PENDING:  # pipelined flood: the oldest waits no longer
            yield from self._close(self._answered(st), st)
        while self.held > MAX_WAITING_BYTES:  # a flood over many connections: the oldest others' requests are logged
            stale = pop_oldest_other(self.state, st)
            if stale is None:
                break
            self.held -= stale.held
            for old in stale.open:
                yield from self._emit_bounded(old, stale)

    def _answered(self, st: FlowState) -> Exchange:
        """The connection's oldest open exchange, no longer waiting."""
        ex = st.open.popleft()
        st.held -= ex.weight
        self.held -= ex.weight
        return ex

    def answer(self, st: FlowState, ts: float, code: int, phrase: str | None, header: Header,
               body: Callable[[], int], whole: Callable[[], int]) -> Iterable[Written]:
        """A response: a 1xx is noted on the oldest open request, a final one closes it (``whole``: every byte
        of the reply, the body of an HTTP/0.9 exchange)."""
        if 100 <= code < 200:
            if st.open:
                st.open[0].info_code = st.open[0].status = code
                st.open[0].reason = phrase
            else:  # "100 Continue" answers the request headers before the whole request is read
                st.early_info = code
            return
        if st.open:
            ex = self._answered(st)
        else:
            st.depth += 1
            ex = Exchange(st.flow, ts, st.depth)
        ex.status, ex.reason = code, phrase
        ex.resp_mime = header("content-type")
        ex.location = header("location")
        if ex.version == "0.9":  # Zeek does not parse a reply to HTTP/0.9: all of it is body
            ex.status, ex.reason, ex.resp_len = 0, None, whole()
        elif ex.method == "HEAD" or code in NO_BODY_STATUS:
            ex.resp_len = 0
        else:
            ex.resp_len = body()
        yield from self._close(ex, st)

    def _close(self, ex: Exchange, st: FlowState) -> Iterable[Written]:
        """A finished exchange: logged now, kept for the second look, or collected (second look)."""
        if ex.method is None and not st.saw_request and len(self.orphans) < MAX_ORPHANS:
            ex.flow_logged = st.records > 0
            self.orphans.append(ex)  # one-way capture or request on an odd port: look again at the end
        elif self.done is not None:
            self.done.append(ex)
        else:
            yield from self._emit_bounded(ex, st)

    def _evict_stale(self) -> Iterable[Written]:
        """Connection floods: past MAX_OPEN_RECORDS connections the oldest one's requests are logged."""
        for st in evict_oldest(self.state):
            self.held -= st.held
            for ex in st.open:
                yield from self._emit_bounded(ex, st)

    def _note_unparsed(self, pkt: Packet) -> None:
        """A segment that starts like an HTTP message tshark did not parse (the filter's last clause)."""
        flow = flow_of(pkt, True)
        if flow is None or flow.transport != "tcp" or not flow.stream.isdigit() or flow.stream in self.native:
            return
        known = self.state.get(flow.key())
        if known is not None and known.records:
            return  # tshark already parses this connection (a segment of a message it reassembles)
        if len(self.native) >= MAX_NATIVE_STREAMS:
            return
        self.native[flow.stream] = (flow, pkt.ts)

    def _emit_bounded(self, ex: Exchange, st: FlowState) -> Iterable[Written]:
        st.records += 1
        self.native.pop(ex.flow.stream, None)  # tshark parsed this connection
        if st.records > MAX_RECORDS_PER_FLOW:
            self.dropped_records += 1
            return
        yield self.emit(ex)


    def _request(self, pkt: Packet) -> Iterable[Written]:
        """Every request of the frame (pipelined requests share segments)."""
        probe = flow_of(pkt, True)
        if probe is None:
            return
        st = self._state(probe.key(), probe, pkt.ts)
        yield from self._evict_stale()
        lines = occurrences(pkt, "http.request.method", "http.request.uri", "http.request.version")
        for index, (method, uri_text, version_text) in enumerate(lines):
            yield from self.request(st, pkt.ts, method or "", uri_text, version_text,
                                    tshark_headers(pkt, index, len(lines)),
                                    partial(body_length, pkt, index, len(lines)))

    def emit(self, ex: Exchange) -> Written:
        version = (ex.version or "").removeprefix("HTTP/") or None
        uri = ex.uri
        fields: dict[str, Any] = {
            "http.request.method": ex.method,
            # Zeek logs the URI with %-escapes decoded (what detections match), bytes that are not UTF-8 as \xHH as its
            # logs write them (a lone surrogate would make the document unserialisable); the raw form is kept too
            "url.original": unquote(uri, errors="backslashreplace") if uri is not None else None,
            "secops.http.uri_raw": uri,
            "url.domain": ex.host,  # Zeek's host column: the Host header as sent
            "http.version": version,
            "user_agent.original": ex.user_agent,
            "http.request.referrer": ex.referrer,
            "http.request.mime_type": ex.req_mime,
            "http.request.body.bytes": ex.req_len,
            "http.response.status_code": ex.status,
            "http.response.mime_type": ex.resp_mime,
            "http.response.body.bytes": ex.resp_len if ex.status is not None else 0,
            "secops.http.trans_depth": ex.depth,
            "secops.http.status_msg": ex.reason,
            "secops.http.info_code": ex.info_code,
            "secops.http.location": ex.location,
            "secops.http.authorization_scheme": ex.auth_scheme,
            "user.name": ex.username,
        }
        # "OPTIONS HTTP/1.1": an empty URI is a value (Zeek's "(empty)"), not a missing one
        return self.document(ex.flow, ex.ts, ("http", ex.depth), fields, self.SERVICE,
                             EMPTY_URI if ex.uri == "" else ())

    def expire(self, now: float) -> Iterable[Written]:
        """Connections idle for Zeek's TCP inactivity timeout: their unanswered requests are logged."""
        idle = [key for key, st in self.state.items() if st.last_ts < now - IDLE_TIMEOUT]
        for key in idle:
            st = self.state.pop(key)
            self.held -= st.held
            if st.open and self.context is not None \
                    and len(self.orphans) + len(st.open) <= MAX_ORPHANS:
                for ex in st.open:  # the second look may still find their responses
                    ex.flow_logged = st.records > 0
                self.orphans.extend(st.open)
            else:
                for ex in st.open:
                    yield from self._emit_bounded(ex, st)

    def finish(self) -> Iterable[Written]:
        for st in self.state.values():
            for ex in st.open:
                ex.flow_logged = st.records > 0
        rest = [ex for st in self.state.values() for ex in st.open] + self.orphans
        self.state.clear()
        self.held = 0
        self.orphans = []
        if rest and self.context is not None:
            rest = self._second_look(rest)
        if self.native and self.context is not None:
            rest = self._prefer_better(rest, self._native_look(self.native), set(self.native))
        per_flow: dict[str, FlowState] = {}
        for ex in sorted(rest, key=lambda e: e.ts):
            st = per_flow.setdefault(ex.flow.stream, FlowState(ex.flow, ex.ts))
            yield from self._emit_bounded(ex, st)
        self.report_cuts()
        if self.dropped_records:
            self.warn(f"http: {self.dropped_records} record(s) beyond {MAX_RECORDS_PER_FLOW} per connection dropped")

    def _second_look(self, rest: list[Exchange]) -> list[Exchange]:
        """Re-read the connections of incomplete exchanges from their payload (``_native_look``); keep the better
        result per stream. (A tshark pass over them cost a tshark start, 0.3 s of CPU, per run.)"""
        by_stream: dict[str, list[Exchange]] = {}
        for ex in rest:
            by_stream.setdefault(ex.flow.stream, []).append(ex)
        # streams that already produced records keep their leftovers (re-reading would duplicate)
        wanted = {stream: (exs[0].flow, min(ex.ts for ex in exs)) for stream, exs in by_stream.items()
                  if exs[0].flow.transport == "tcp" and stream.isdigit() and not any(ex.flow_logged for ex in exs)}
        if not wanted:
            return rest
        return self._prefer_better(rest, self._native_look(wanted), set(wanted))

    @staticmethod
    def _prefer_better(old: list[Exchange], new: list[Exchange], streams: set[str]) -> list[Exchange]:
        """Per stream of ``streams``, the reading with more complete exchanges (request and response)."""
        by_stream: dict[str, list[Exchange]] = {}
        for ex in old:
            by_stream.setdefault(ex.flow.stream, []).append(ex)
        recovered: dict[str, list[Exchange]] = {}
        for ex in new:
            if ex.flow.stream in streams:
                recovered.setdefault(ex.flow.stream, []).append(ex)
        out = []
        for stream in by_stream.keys() | recovered.keys():
            before, after = by_stream.get(stream, []), recovered.get(stream, [])
            complete = sum(1 for ex in after if ex.method and ex.status is not None)
            better = complete > sum(1 for ex in before if ex.method and ex.status is not None)
            out += after if better or (not before and after) else before
        return out

    def _native_look(self, streams: dict[str, Wanted]) -> list[Exchange]:
        """Read the payload of connections tshark did not parse and parse HTTP/1.x here, as Zeek does."""
        assert self.context is not None
        segments = self.context.frames.tcp_payloads(streams.values())
        out = []
        for stream, (flow, _seen) in streams.items():
            if stream not in segments:
                continue
            first_ts = segments[stream][0].ts
            client, server = directions(segments[stream], flow, MAX_NATIVE_BYTES)
            if not STATUS_LINE.match(client):
                out += parse_exchanges(flow, first_ts, client, server)
            else:  # the first speaker answered: it is the server
                swapped = Flow(flow.transport, flow.resp_h, flow.resp_p, flow.orig_h, flow.orig_p, flow.stream)
                out += parse_exchanges(swapped, first_ts, server, client)
        return out


def parse_exchanges(flow: Flow, ts: float, client: bytes, server: bytes) -> list[Exchange]:
    """Requests and responses of one connection's payload paired in order (Zeek's HTTP reading), through the same
    reader as the connections read natively (``HttpConnection``)."""
    analyzer = HttpAnalyzer(lambda _m: None)
    analyzer.done = []
    conn = HttpConnection(analyzer, flow, WireStats())
    conn.feed(True, client, ts)
    conn.feed(False, server, ts)
    conn.end(ts)
    return sorted([*analyzer.done, *(ex for st in analyzer.state.values() for ex in st.open), *analyzer.orphans],
                  key=lambda ex: ex.depth)


UPGRADES_READ_THROUGH = frozenset({"websocket", "h2c"})  # protocols after a 101 that no analyzer reads


def read_through_upgrade(upgrade: str | None) -> bool:
    """Whether a request with this Upgrade header (None: none) stays with the native reader: no header, or only
    protocols no analyzer reads after the switch."""
    if upgrade is None:
        return True
    names = {token.strip().split("/", 1)[0].lower() for token in upgrade.split(",")}
    return bool(names) and names <= UPGRADES_READ_THROUGH


class HttpConnection:
    """One connection read natively (``native_tcp``): both directions through ``http_wire``, their messages paired
    by the analyzer's ``request``/``answer``, as tshark's packets are.

    A request that may lead to a protocol an analyzer reads (CONNECT: TLS through a proxy; an Upgrade to anything but
    WebSocket or h2c, such as RFC 2817's TLS) is not read here: the connection ``switched`` and the caller hands it
    back to tshark from that frame on, which reads the exchange and what the tunnel carries as it did before. An
    Upgrade to WebSocket or h2c stays here (no analyzer reads those frames; handing them back cost a second look
    at the run's capture for each such connection): the exchange is logged, and a 101 reply ends the reading of
    both directions (what follows is another protocol; counted as lost directions), with or without the Upgrade
    request seen."""

    def __init__(self, analyzer: HttpAnalyzer, flow: Flow, stats: WireStats) -> None:
        self.analyzer = analyzer
        self.flow = flow
        self.docs: list[Written] = []
        self.methods: deque[str] = deque()  # requests read whose final response has not come (HEAD framing)
        self.switched = False
        self.client = MessageReader(True, self._request, stats)
        self.server = MessageReader(False, self._response, stats, self._no_body)

    def feed(self, from_client: bool, data: bytes | int, ts: float) -> None:
        (self.client if from_client else self.server).feed(data, ts)

    def end(self, ts: float) -> None:
        """The connection ended: messages in progress are finished with what they had; an HTTP/0.9 request still
        open is answered by every byte the server sent (Zeek does not parse that reply: status 0, as the tshark
        path's second look logs it, also when the server sent nothing)."""
        self.client.end(ts)
        self.server.end(ts)
        st = self.analyzer.state.get(self.flow.key())
        if st is not None and st.open and st.open[0].version == "0.9":
            self.docs += self.analyzer.answer(st, ts, 0, None, _no_headers, lambda: 0, lambda: self.server.bytes)

    def take_docs(self) -> list[Written]:
        out, self.docs = self.docs, []
        return out

    def _state(self, ts: float) -> FlowState:
        return self.analyzer._state(self.flow.key(), self.flow, ts)

    def _no_body(self, status: int) -> bool:
        """Zeek's ``ExpectReplyMessageBody``: none for a HEAD's reply, a 1xx, 204 or 304; any other status, one
        below 100 included (``HTTP_ReplyCode`` reads any three digits), has a body."""
        return 100 <= status < 200 or status in NO_BODY_STATUS or bool(self.methods and self.methods[0] == "HEAD")

    def _request(self, msg: Message) -> None:
        if self.switched:
            return
        method, _, rest = msg.start.decode("utf-8", "replace").partition(" ")
        if method.upper() == "CONNECT" or not read_through_upgrade(msg.headers.get("upgrade")):
            self.switched = True
            self.client.state = self.server.state = LOST
            return
        line = parse_request_line(method, rest.strip() or None, None)
        if line is None:
            return  # a method alone is no request
        st = self._state(msg.ts)
        self.docs += self.analyzer._evict_stale()
        self.methods.append(method.upper())
        self.docs += self.analyzer.request(st, msg.ts, method, rest.strip() or None, None, msg.headers.get,
                                           lambda: msg.body)

    def _response(self, msg: Message) -> None:
        st = self._state(msg.ts)
        self.docs += self.analyzer._evict_stale()
        status = STATUS_LINE.match(msg.start)
        if msg.status is None or status is None:
            return
        if msg.status >= 200 and self.methods:
            self.methods.popleft()
        phrase = (status.group(3) or b"").decode("utf-8", "replace") or None
        # an HTTP/0.9 request's reply counts whole (Zeek does not parse it): every byte the server sent so far
        self.docs += self.analyzer.answer(st, msg.ts, msg.status, phrase, msg.headers.get, lambda: msg.body,
                                          lambda: self.server.bytes)
        if msg.status == 101:  # switching protocols without an Upgrade request seen: what follows is not HTTP
            self.client.state = self.server.state = LOST
