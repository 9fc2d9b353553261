"""HTTP/1.x: one record per request/response pair, as Zeek's http.log.

Requests queue up per connection; the next final response (status >= 200) closes the oldest one,
interim 1xx responses are noted as ``info_code``. Body sizes are entity lengths after transfer
decoding (tshark de-chunks and decompresses, as Zeek counts). Basic-auth user names are kept,
passwords never are: only the Authorization scheme and the user name leave this module.

Second look: tshark reports a message only once its body is reassembled, and it recognises HTTP
on unregistered ports only by a heuristic on single segments. Connections left with unanswered
requests (response lost in a gap) or with responses nobody asked for (request on an odd port)
are read again, those streams only, with body reassembly off and HTTP decoded on the server
port; body sizes then come from Content-Length (Zeek also counts bytes lost in gaps).
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from collectors.protocols.base import Analyzer, Doc, Flow, RunContext, Warn, flow_of, make_doc
from collectors.protocols.tshark import BASE_FIELDS, Packet, TsharkRun, build_command, run_tshark, to_int


@dataclass
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


def body_length(pkt: Packet) -> int:
    """Entity length of the message in this frame after transfer decoding.

    ``http.file_data`` is the de-chunked, decompressed body as text: bytes that are not valid
    UTF-8 come back as one U+FFFD each, so they count one byte each.
    """
    data = pkt.first("http.file_data")
    if data is None:
        return 0
    if data.isascii():
        return len(data)
    return len(data.encode("utf-8", "surrogatepass")) - 2 * data.count("\ufffd")


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
    FILTER = "http.request or http.response"
    FIELDS = (
        "http.request.method", "http.request.uri", "http.request.version", "http.host", "http.user_agent",
        "http.referer", "http.authorization", "http.response.code", "http.response.phrase",
        "http.response.version", "http.content_type", "http.file_data", "http.location", "http.content_length",
    )

    def __init__(self, warn: Warn, context: RunContext | None = None) -> None:
        super().__init__(warn, context)
        self.open: dict[tuple[str, str], deque[Exchange]] = {}
        self.depth: dict[tuple[str, str], int] = {}
        self.flows: dict[tuple[str, str], Flow] = {}
        self.early_info: dict[tuple[str, str], int] = {}  # 1xx seen before its request was complete
        self.orphans: list[Exchange] = []  # responses without a request
        self.lengths_from_headers = False  # set for the second look (bodies not reassembled)
        self.done: list[Exchange] | None = None  # second look: keep exchanges instead of emitting
        self.emitted_streams: set[str] = set()

    def handle(self, pkt: Packet) -> Iterable[Doc]:
        if pkt.first("http.request.method") is not None:
            self._request(pkt)
            return
        code = pkt.int("http.response.code")
        if code is None:
            return
        probe = flow_of(pkt, False)
        if probe is None:
            return
        key = probe.key()
        queue = self.open.get(key)
        if 100 <= code < 200:
            if queue:
                queue[0].info_code = code
            else:  # "100 Continue" answers the request headers before tshark has the whole request
                self.early_info[key] = code
            return
        ex = Exchange(self.flows.get(key, probe), pkt.ts, self._next_depth(key)) if not queue else queue.popleft()
        ex.status = code
        ex.reason = pkt.first("http.response.phrase")
        ex.resp_mime = pkt.first("http.content_type")
        ex.location = pkt.first("http.location")
        ex.resp_len = 0 if ex.method == "HEAD" or code in (204, 304) else self._body(pkt)
        if ex.method is None:
            self.orphans.append(ex)
        elif self.done is not None:
            self.done.append(ex)
        else:
            self.emitted_streams.add(ex.flow.stream)
            yield self.emit(ex)

    def _body(self, pkt: Packet) -> int:
        if self.lengths_from_headers:
            declared = to_int(pkt.first("http.content_length"))
            if declared is not None:
                return declared
        return body_length(pkt)

    def _next_depth(self, key: tuple[str, str]) -> int:
        self.depth[key] = self.depth.get(key, 0) + 1
        return self.depth[key]

    def _request(self, pkt: Packet) -> None:
        flow = flow_of(pkt, True)
        if flow is None:
            return
        key = flow.key()
        self.flows.setdefault(key, flow)
        scheme, user = basic_user(pkt.first("http.authorization"))
        ex = Exchange(
            self.flows[key], pkt.ts, self._next_depth(key), method=pkt.first("http.request.method"),
            uri=pkt.first("http.request.uri"), version=pkt.first("http.request.version"),
            host=pkt.first("http.host"), user_agent=pkt.first("http.user_agent"),
            referrer=pkt.first("http.referer"), auth_scheme=scheme, username=user,
            req_mime=pkt.first("http.content_type"), req_len=self._body(pkt),
            info_code=self.early_info.pop(key, None),
        )
        self.open.setdefault(key, deque()).append(ex)

    def emit(self, ex: Exchange) -> Doc:
        version = (ex.version or "").removeprefix("HTTP/") or None
        fields: dict[str, Any] = {
            "http.request.method": ex.method,
            # Zeek logs the URI with %-escapes decoded (what detections match); the raw form is kept too
            "url.original": unquote(ex.uri, errors="surrogateescape") if ex.uri else None,
            "secops.http.uri_raw": ex.uri,
            "url.domain": ex.host,  # Zeek's host column: the Host header as sent (port included)
            "http.version": version,
            "user_agent.original": ex.user_agent,
            "http.request.referrer": ex.referrer,
            "http.request.mime_type": ex.req_mime,
            "http.request.body.bytes": ex.req_len if ex.method else None,
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
        return make_doc(self.DATASET, ex.flow, ex.ts, ("http", ex.depth), fields, self.SERVICE)

    def finish(self) -> Iterable[Doc]:
        rest = [ex for q in self.open.values() for ex in q] + self.orphans
        self.open.clear()
        self.orphans = []
        if rest and self.context is not None and not self.lengths_from_headers:
            rest = self._second_look(rest)
        for ex in sorted(rest, key=lambda e: e.ts):
            yield self.emit(ex)

    def _second_look(self, rest: list[Exchange]) -> list[Exchange]:
        """Re-read the streams of incomplete exchanges; keep the better result per stream."""
        assert self.context is not None
        streams = sorted({ex.flow.stream for ex in rest if ex.flow.transport == "tcp" and ex.flow.stream.isdigit()},
                         key=int)
        if not streams:
            return rest
        ports = sorted({ex.flow.resp_p for ex in rest if ex.method is None})
        options = ["-o", "http.desegment_body:FALSE"]
        for port in ports:
            options += ["-d", f"tcp.port=={int(port)},http"]
        cmd = build_command(self.context.tshark, self.context.pcap, f"tcp.stream in {{{' '.join(streams)}}}",
                            list(dict.fromkeys(BASE_FIELDS + self.FIELDS)), options)
        again = HttpAnalyzer(self.warn)
        again.lengths_from_headers, again.done = True, []
        for pkt in run_tshark(cmd, TsharkRun(), lambda m: self.warn(f"http second look: {m}")):
            if "http" in pkt.protocols:
                for _ in again.handle(pkt):
                    pass  # nothing is emitted: exchanges are collected in again.done
        recovered: dict[str, list[Exchange]] = {}
        for ex in [*again.done, *(e for q in again.open.values() for e in q), *again.orphans]:
            recovered.setdefault(ex.flow.stream, []).append(ex)
        out = []
        for stream in {ex.flow.stream for ex in rest}:
            old = [ex for ex in rest if ex.flow.stream == stream]
            new = recovered.get(stream, [])
            better = sum(1 for ex in new if ex.method and ex.status) > sum(1 for ex in old if ex.method and ex.status)
            # streams that already produced records keep their leftovers (re-reading would duplicate)
            out += new if better and stream not in self.emitted_streams else old
        return out


