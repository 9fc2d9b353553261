"""A deep-path document that crossed the analyzer process's pipe, kept as the JSON text the child wrote.

The parent used to parse every document line back into a dict, only for the NDJSON writer to serialise it again: on
the 1M-packet real-trace benchmark that was 2.7 s of the parent's 5.2 s of CPU (143k documents, 17 us each to
parse). A :class:`DocumentText` carries the text and what the writers need from it, read from its first and last
bytes: ``@timestamp`` and ``event.dataset`` (the index) and ``_id``. ``make_doc``'s documents (and
``collectors._rs.write_document``'s, byte for byte the same) start and end that way; a line that does not is parsed
as before (``from_line`` returns None), so the layout is checked, never assumed.

The NDJSON writer copies the text; the Elasticsearch writer sends it with ``event.ingested`` put in and ``_id``
taken out (``source``); anything else calls ``parse``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

# '{"@timestamp":"<ISO time>","event":{"dataset":"<dataset>"': make_doc's first keys as orjson writes them
_HEAD = re.compile(rb'\{"@timestamp":"([0-9:.TZ+-]{1,40})","event":\{"dataset":"([a-z0-9_.]{1,100})"')
# ',"_id":"<id>"}': its last key. A JSON string cannot hold an unescaped quote, so this can only be the top-level key
_TAIL = re.compile(rb',"_id":"([0-9A-Za-z_.:-]{1,128})"\}')
_ID_KEY = b',"_id":"'
_EVENT_AT = len(b'","event":{')  # from the end of the timestamp to the event object's first key
DOCUMENT_LINE = b'["d",'  # how orjson writes the child's document lines: ["d",{...}]


class DocumentText:
    """One document as JSON text (``make_doc``'s layout), with its time, dataset and id."""

    __slots__ = ("_event_at", "_id_at", "_id_end", "dataset", "doc_id", "text", "timestamp")

    def __init__(self, text: bytes, timestamp: str, dataset: str, doc_id: str, event_at: int, id_at: int,
                 id_end: int = -1) -> None:
        """``text[id_at:id_end]`` is the ``_id`` member with its comma: ``,"_id":"..."`` at the end (make_doc's
        layout; ``id_end`` -1: up to the closing brace) or ``"_id":"...",`` as the first member (conn_doc's)."""
        self.text = text
        self.timestamp = timestamp
        self.dataset = dataset
        self.doc_id = doc_id
        self._event_at = event_at  # where the event object's first key starts
        self._id_at = id_at
        self._id_end = id_end if id_end >= 0 else len(text) - 1

    @classmethod
    def from_text(cls, text: bytes) -> DocumentText | None:
        """The document, or None when ``text`` does not start and end as ``make_doc``'s documents do (or holds an
        ``event.ingested`` already: the Elasticsearch writer would add a second one)."""
        doc = cls(text, "", "", "", -1, -1)
        return doc if doc.laid_out() else None

    @classmethod
    def from_line(cls, line: bytes) -> DocumentText | None:
        """The document of a child's ``["d",{...}]`` line, its layout not read yet: a writer that only copies the
        text never needs it (2.7 us a document, 0.4 s of the parent's CPU on the 1M-packet benchmark); any other
        asks ``laid_out`` first."""
        if not line.startswith(DOCUMENT_LINE) or not line.endswith(b"]"):
            return None
        return cls(line[len(DOCUMENT_LINE):-1], "", "", "", -1, -1)

    def laid_out(self) -> bool:
        """Whether the text starts and ends as ``make_doc``'s documents do (see ``from_text``): its time, dataset and
        id are read then."""
        if self._id_at > 0:
            return True
        text = self.text
        head = _HEAD.match(text)
        if head is None:
            return False
        id_at = text.rfind(_ID_KEY)
        tail = _TAIL.fullmatch(text, id_at) if id_at > 0 else None
        if tail is None or b'"ingested":' in text:
            return False
        self.timestamp, self.dataset, self.doc_id = head[1].decode(), head[2].decode(), tail[1].decode()
        self._event_at, self._id_at, self._id_end = head.end(1) + _EVENT_AT, id_at, len(text) - 1
        return True

    def parse(self) -> dict[str, Any]:
        return orjson.loads(self.text)  # type: ignore[no-any-return]

    def source(self, ingested: str) -> bytes:
        """The Elasticsearch ``_source``: the text with ``event.ingested`` as the event's first key and without
        ``_id`` (a metadata field Elasticsearch refuses in a source). Equal, as JSON, to what the writer makes of the
        parsed dict."""
        text, at, cut, end = self.text, self._event_at, self._id_at, self._id_end
        if cut > at:  # the id is the last member
            return b"".join((text[:at], b'"ingested":"', ingested.encode(), b'",', text[at:cut], text[end:]))
        return b"".join((text[:cut], text[end:at], b'"ingested":"', ingested.encode(), b'",', text[at:]))


class DocumentLines:
    """A child's document lines as its pipe delivered them (``["d",{...}]``, one or a damaged one each): written as
    one NDJSON block by a writer that only copies text (``ndjson``; 0.2 s of the parent's CPU on the 1M-packet
    benchmark went to handling 140k documents one by one), else taken one by one (``documents``)."""

    __slots__ = ("lines",)

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines

    def ndjson(self) -> tuple[int, bytes]:
        """(how many documents, their text one per line); damaged lines (cut short) are left out."""
        cut = len(DOCUMENT_LINE)
        kept = [line[cut:-1] for line in self.lines if line.endswith(b"]")]
        return len(kept), b"\n".join(kept) + b"\n" if kept else b""

    def documents(self) -> list[dict[str, Any] | DocumentText]:
        """Each document as its text (``DocumentText``); a damaged line dropped."""
        docs: list[dict[str, Any] | DocumentText] = []
        for line in self.lines:
            doc = DocumentText.from_line(line)
            if doc is not None:
                docs.append(doc)
        return docs


Shipped = dict[str, Any] | DocumentText | DocumentLines  # finished deep-path documents as a run hands them on
