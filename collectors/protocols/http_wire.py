"""HTTP/1.x messages read from one direction of a reassembled connection (RFC 9112), as Zeek's HTTP analyzer reads
them.

A :class:`MessageReader` takes the direction's bytes in any cutting (and the holes the reassembler skipped) and
hands each finished message to its sink: the start line, the headers (names lower-cased, the first of a repeated
header kept), and the body length after transfer decoding: chunks joined, then gzip/deflate undone (``zlib``), the
length Zeek logs. Framing follows RFC 9112 6.3: no body for responses to HEAD and for 1xx/204/304 (the caller says,
``no_body``), chunked when Transfer-Encoding names it, else Content-Length, else a response runs to the end of the
connection and a request has none.

Bounds: a start or header line is cut at ``MAX_LINE_BYTES`` (the rest of it skipped), at most ``MAX_HEADERS``
headers are kept, a chunk size has at most 16 hex digits, and a body is decompressed in steps of ``INFLATE_STEP``
bytes up to ``MAX_DECODED_BYTES`` (a decompression bomb costs bounded memory and time; its length is then cut and
counted). A hole inside a Content-Length body counts as body bytes (Zeek counts bytes lost in gaps); a hole anywhere
else ends what the direction can still be read for (the message in progress is finished with what it had).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass

MAX_LINE_BYTES = 16 * 1024
MAX_HEADERS = 100
MAX_DECODED_BYTES = 64 << 20
INFLATE_STEP = 256 * 1024
MAX_CHUNK_DIGITS = 16
# RFC 9110 5.6.2 token characters: what a method may be made of (Zeek rejects a request line whose method is not)
TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
STATUS_LINE = re.compile(rb"^(?i:http)/(\d+\.\d+)[ \t]+(\d{3})(?:[ \t]+([^\r\n]*))?")

START, HEADERS, BODY_LENGTH, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS, BODY_CLOSE, LOST = range(9)


@dataclass
class WireStats:
    """Damage met while reading, for one warning per run."""

    cut_lines: int = 0
    bad_chunks: int = 0
    lost_directions: int = 0  # directions no longer read after a hole outside a body
    bombs: int = 0  # bodies whose decompressed length passed MAX_DECODED_BYTES
    undecodable: int = 0  # bodies whose gzip/deflate data did not decompress (raw length logged)
    not_http: int = 0  # lines where a response's status line should have been


@dataclass(slots=True, init=False)
class Message:
    """One finished message of a direction."""

    start: bytes
    headers: dict[str, str]
    body: int  # entity length after transfer decoding (Content-Length when neither chunked nor compressed)
    ts: float  # capture time of the frame that completed its start line (Zeek's ts of the request)
    status: int | None = None  # responses: the status code
    complete: bool = True  # False: the connection ended (or a hole came) before the message did

    def __init__(self, start: bytes, headers: dict[str, str], body: int, ts: float, status: int | None = None,
                 complete: bool = True) -> None:
        self.start = start
        self.headers = headers
        self.body = body
        self.ts = ts
        self.status = status
        self.complete = complete


@dataclass(init=False)
class Body:
    """A body being read: its bytes counted raw and after decompression."""

    encoding: str | None
    raw: int = 0
    decoded: int = 0
    failed: bool = False
    capped: bool = False
    inflater: zlib._Decompress | None = None
    head: bytes = b""  # a deflate body's first byte, until the second tells whether a zlib header starts it

    def __init__(self, encoding: str | None, raw: int = 0, decoded: int = 0, failed: bool = False, capped: bool = False,
                 inflater: zlib._Decompress | None = None, head: bytes = b"") -> None:
        self.encoding = encoding
        self.raw = raw
        self.decoded = decoded
        self.failed = failed
        self.capped = capped
        self.inflater = inflater
        self.head = head

    def add(self, data: bytes | int, stats: WireStats) -> None:
        """Body bytes (an int: bytes lost in a hole)."""
        if isinstance(data, int):
            self.raw += data
            self.failed = self.failed or self.encoding is not None
            return
        self.raw += len(data)
        if self.encoding is None or self.failed or self.capped or not data:
            return
        if self.inflater is None:
            if len(self.head) + len(data) < 2:  # where TCP cut the body must not change how it is read
                self.head += data
                return
            data, self.head = self.head + data, b""
            # gzip, or deflate with its zlib header; deflate without one (servers send that too) is raw
            zlib_header = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            wbits = 47 if self.encoding != "deflate" or zlib_header else -15
            self.inflater = zlib.decompressobj(wbits)
        try:
            out = self.inflater.decompress(data, INFLATE_STEP)
            while True:
                self.decoded += len(out)
                if self.decoded > MAX_DECODED_BYTES:
                    self.capped = True
                    self.decoded = MAX_DECODED_BYTES
                    stats.bombs += 1
                    return
                tail = self.inflater.unconsumed_tail
                if not tail:
                    return
                out = self.inflater.decompress(tail, INFLATE_STEP)
        except zlib.error:
            self.failed = True
            stats.undecodable += 1

    def length(self) -> int:
        return self.raw if self.encoding is None or self.failed else self.decoded


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    # ASCII digits only: str.isdigit() also takes superscripts, which int() refuses (found by the fuzz replay)
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None


class MessageReader:
    """One direction's messages (``is_request``: the client's)."""

    def __init__(self, is_request: bool, sink: Callable[[Message], None], stats: WireStats,
                 no_body: Callable[[int], bool] = lambda status: False) -> None:
        self.is_request = is_request
        self.sink = sink
        self.stats = stats
        self.no_body = no_body  # responses: whether this status (and the request it answers) has no body
        self.state = START
        self.buf = b""
        self.skipping = False  # the rest of a cut line is dropped up to its end
        self.start = b""
        self.headers: dict[str, str] = {}
        self.status: int | None = None
        self.start_ts = 0.0
        self.declared: int | None = None
        self.remaining = 0
        self.body: Body | None = None
        self.bytes = 0  # every byte of the direction, holes included (HTTP/0.9 replies are counted whole)

    # -- input -----------------------------------------------------------------------------------------
    def feed(self, data: bytes | int, ts: float) -> None:
        """Bytes of the direction in order, or an int: a hole of that many bytes."""
        if isinstance(data, int):
            self.bytes += data
            self._hole(data, ts)
            return
        total = self.bytes + len(data)
        if self.state == LOST:
            self.bytes = total
            return
        if self.buf:
            data, self.buf = self.buf + data, b""
        try:
            self._read(data, total - len(data), ts)
        finally:
            self.bytes = total

    def _read(self, data: bytes, origin: int, ts: float) -> None:
        """``data`` (starting at byte ``origin`` of the direction) through the state machine. While a message is
        finished, ``bytes`` is where it ended, however the stream was cut (an HTTP/0.9 reply is counted to there)."""
        pos, end = 0, len(data)
        while pos < end and self.state != LOST:
            state = self.state
            if state in (BODY_LENGTH, CHUNK_DATA):
                take = min(self.remaining, end - pos)
                assert self.body is not None
                self.body.add(data[pos:pos + take], self.stats)
                pos += take
                self.remaining -= take
                if not self.remaining:
                    if state == BODY_LENGTH:
                        self.bytes = origin + pos
                        self._finish(ts)
                    else:
                        self.state = CHUNK_END
                continue
            if state == BODY_CLOSE:
                assert self.body is not None
                self.body.add(data[pos:], self.stats)
                return
            nl = data.find(b"\n", pos)
            if self.skipping:
                if nl < 0:
                    return
                self.skipping = False
                pos = nl + 1
                continue
            if nl < 0:
                rest = data[pos:]
                if len(rest) > MAX_LINE_BYTES:  # an endless line: read its start, skip the rest
                    self.stats.cut_lines += 1
                    self.skipping = True
                    self.bytes = origin + pos + MAX_LINE_BYTES
                    self._line(rest[:MAX_LINE_BYTES], ts)
                else:
                    self.buf = rest
                return
            line = data[pos:nl]
            if len(line) > MAX_LINE_BYTES:
                self.stats.cut_lines += 1
                line = line[:MAX_LINE_BYTES]
                self.bytes = origin + pos + MAX_LINE_BYTES
            else:
                self.bytes = origin + nl + 1
            pos = nl + 1
            self._line(line[:-1] if line.endswith(b"\r") else line, ts)

    def _line(self, line: bytes, ts: float) -> None:
        state = self.state
        if state == START:
            if not line.strip():
                return  # empty lines between messages (RFC 9112 2.2)
            self.start_ts = ts
            if self.is_request:
                method, space, rest = line.partition(b" ")
                if not space or not method or not rest.strip() or not TCHAR.issuperset(method):
                    self.stats.not_http += 1  # no request line (Zeek: bad_HTTP_request): the direction is not read on
                    self.state, self.buf = LOST, b""
                    return
                self.start, self.headers, self.state = line, {}, HEADERS  # HTTP/0.9 too: Zeek reads its headers
                return
            found = STATUS_LINE.match(line)
            if found is None:
                self.stats.not_http += 1
                return
            self.start, self.status, self.headers, self.state = line, int(found.group(2)), {}, HEADERS
        elif state == HEADERS:
            if not line:
                self._headers_done(ts)
                return
            if line[:1] in (b" ", b"\t"):
                return  # obsolete line folding: the value's continuation is not kept
            name, colon, value = line.partition(b":")
            if colon and len(self.headers) < MAX_HEADERS:
                self.headers.setdefault(name.strip().lower().decode("latin-1"), value.strip().decode("latin-1"))
        elif state in (CHUNK_SIZE, CHUNK_END):
            if state == CHUNK_END and not line:
                self.state = CHUNK_SIZE
                return
            digits = line.split(b";", 1)[0].strip()
            if not digits or len(digits) > MAX_CHUNK_DIGITS or digits.strip(b"0123456789abcdefABCDEF"):
                self.stats.bad_chunks += 1
                self._finish(ts)  # the body ends where its framing broke; what follows is read as a new message
                return
            size = int(digits, 16)
            if size:
                self.state, self.remaining = CHUNK_DATA, size
            else:
                self.state = TRAILERS
        elif state == TRAILERS and not line:
            self._finish(ts)

    def _headers_done(self, ts: float) -> None:
        headers = self.headers
        coding = headers.get("content-encoding")
        encoding = coding.strip().lower() if coding else None
        self.body = Body(encoding if encoding in ("gzip", "x-gzip", "deflate") else None)
        if self.body.encoding == "x-gzip":
            self.body.encoding = "gzip"
        self.declared = _int(headers.get("content-length"))
        transfer = headers.get("transfer-encoding")
        if not self.is_request and self.status is not None and self.no_body(self.status):
            self._finish(ts)
        elif transfer is not None and "chunked" in transfer.lower():
            self.state = CHUNK_SIZE
        elif self.declared is not None:
            self.remaining = self.declared
            if self.declared:
                self.state = BODY_LENGTH
            else:
                self._finish(ts)
        elif self.is_request:
            self._finish(ts)  # a request has a body only when Content-Length or Transfer-Encoding frames one
        else:
            self.state = BODY_CLOSE

    def _hole(self, size: int, ts: float) -> None:
        if self.buf and self.state in (START, HEADERS):  # the line the hole cut is read as far as it got
            line, self.buf = self.buf, b""
            self._line(line[:-1] if line.endswith(b"\r") else line, ts)
        if self.state in (BODY_LENGTH, BODY_CLOSE):
            assert self.body is not None
            take = min(size, self.remaining) if self.state == BODY_LENGTH else size
            self.body.add(take, self.stats)
            if self.state == BODY_LENGTH:
                self.remaining -= take
                if not self.remaining:
                    self._finish(ts)
                    if take < size:
                        self._lose(ts)
            return
        self._lose(ts)

    def _lose(self, ts: float) -> None:
        if self.state in (HEADERS, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS):
            self._finish(ts, complete=False)
        if self.state != LOST:
            self.stats.lost_directions += 1
        self.state, self.buf = LOST, b""

    # -- output ----------------------------------------------------------------------------------------
    def _finish(self, ts: float, complete: bool = True) -> None:
        body = self.body
        if body is None:
            length = 0
        elif body.encoding is None and "transfer-encoding" not in self.headers and self.declared is not None:
            length = self.declared  # Content-Length: what the sender declared (bytes lost in holes included)
        else:
            length = body.length()
        self._emit(ts, length, complete)

    def _emit(self, ts: float, body: int, complete: bool = True) -> None:
        message = Message(self.start, self.headers, body, self.start_ts, self.status, complete)
        self.state, self.body, self.declared, self.headers, self.status = START, None, None, {}, None
        self.sink(message)

    def end(self, ts: float) -> None:
        """The connection ended: a message in progress is finished with what it had (a pending line read)."""
        if self.buf and self.state not in (LOST, BODY_CLOSE):
            line, self.buf = self.buf, b""
            self._line(line[:-1] if line.endswith(b"\r") else line, ts)
        if self.state == BODY_CLOSE:
            self._finish(ts)
        elif self.state in (HEADERS, BODY_LENGTH, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS):
            self._finish(ts, complete=False)
        self.state = LOST
