"""BulkWriter: batched, retrying, spool-backed writes to Elasticsearch.

Delivery is at-least-once: a batch leaves memory only when Elasticsearch acknowledged it or it is
fsync'd in the spool. Documents carry deterministic ids, so replaying a batch that partly landed
before a crash overwrites instead of duplicating: at-least-once plus idempotent ids = exactly one
copy. Callers acknowledge their own input (a pcap chunk, a queue message) only after ``flush()``.

While the store is down, batches go straight to the spool and the node is probed every
``probe_seconds`` (a cheap request waiting at most that long, so a silently dropped link never holds the
writer for a whole request timeout); when it answers, the spool is replayed in order before new batches are sent.
A writer may be made while the store is unreachable: its ``prepare`` step (the index templates) runs
before the first document is sent, so until the store answers everything is spooled, and nothing is ever
written into an index whose mappings were guessed.

When a batch can be neither sent nor spooled (the spool's disk is full, or failing), the writer stops
taking documents and raises :class:`DeliveryFailed`, whose one-line message is the exact account: how
many documents Elasticsearch took, how many the spool holds, how many were not kept. Callers stop reading
their input there, so nothing after that point is silently dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import TransportError
from elasticsearch import Elasticsearch
from elasticsearch import exceptions as es_exc

from secops.config import BulkSettings
from secops.ecs import get, iso
from secops.es.spool import Spool, SpoolCorrupt
from secops.es.templates import MAX_KEYWORD_CHARS, bound_keywords, index_for

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
Item = tuple[str, str, bytes]  # (index, id, serialised source)


class StoreDown(Exception):
    """The whole request failed in a way that retrying later may fix."""


class DeliveryFailed(RuntimeError):
    """Documents could be neither sent nor spooled; the writer refuses further input (one-line account)."""


@dataclass
class WriterStats:
    written: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: int = 0
    retries: int = 0
    corrupt_files: list[str] = field(default_factory=list)
    spool_files_replayed: int = 0
    not_kept: int = 0  # documents lost because neither Elasticsearch nor the spool could take them


class JsonDocument(Protocol):
    """A document kept as JSON text, with what the writer needs to place it (``DocumentText``)."""

    dataset: str
    timestamp: str
    doc_id: str

    def source(self, ingested: str) -> bytes: ...

    def parse(self) -> dict[str, Any]: ...


def _default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def dumps(doc: Mapping[str, Any]) -> bytes:
    return orjson.dumps(doc, default=_default, option=orjson.OPT_NON_STR_KEYS)


class BulkWriter:
    """Buffer documents, send them in bulk, spool what cannot be sent, replay the spool."""

    def __init__(
        self,
        es: Elasticsearch,
        spool: Spool | Path,
        settings: BulkSettings | None = None,
        *,
        prefix: str = "secops",
        background_flush: bool = False,
        on_flush: Callable[[int], None] | None = None,
        prepare: Callable[[], object] | None = None,
    ):
        self.es = es
        self._prepare = prepare  # run once before the first send; until it succeeds the store counts as down
        self.spool = spool if isinstance(spool, Spool) else Spool(Path(spool))
        self.cfg = settings or BulkSettings()
        self.prefix = prefix
        self.stats = WriterStats()
        self.on_flush = on_flush
        self._buf: list[Item] = []
        self._bytes = 0
        self._first_at: float | None = None
        self._down_until = 0.0
        self._ingested_at, self._ingested_iso = 0.0, ""
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._own_files: dict[str, int] = {}  # spool files this writer wrote -> documents, until replayed
        self._failure: OSError | None = None
        self._thread: threading.Thread | None = None
        if background_flush:
            self._thread = threading.Thread(target=self._flush_loop, name="bulk-flush", daemon=True)
            self._thread.start()

    # -- input -----------------------------------------------------------------------------
    def add(self, doc: Mapping[str, Any], *, index: str | None = None, doc_id: str | None = None) -> None:
        """Queue one document. Its id is ``doc_id`` or its ``_id`` key; its index follows from
        ``event.dataset`` and ``@timestamp`` unless given (or given as ``_index``)."""
        self._refuse_after_failure()
        source = dict(doc)
        doc_id = doc_id or source.pop("_id", None)
        index = index or source.pop("_index", None)
        if not doc_id:
            raise ValueError("every document needs a deterministic id (doc_id= or _id)")
        event = source.get("event")
        if isinstance(event, dict) and "ingested" not in event:
            # When the data arrived: detection windows are cut on this, so old captures still get evaluated.
            source["event"] = {**event, "ingested": self._ingested_now()}
        if index is None:
            dataset = get(source, "event.dataset")
            if not dataset:
                raise ValueError(f"document {doc_id} has no event.dataset and no index")
            index = index_for(self.prefix, dataset, get(source, "@timestamp"))
        body = dumps(source)
        if len(body) > MAX_KEYWORD_CHARS:  # only then can a string be too long to index: cut it, say so
            body = dumps(bound_keywords(source))
        self._queue((index, doc_id, body))

    def add_text(self, doc: JsonDocument) -> None:
        """Queue a document already written as JSON (an analyzer process's, ``collectors.protocols.document_text``)
        without parsing it: its index and id come with it. One long enough to hold a value Elasticsearch would not
        index is parsed and cut as ``add`` cuts it."""
        self._refuse_after_failure()
        body = doc.source(self._ingested_now())
        if len(body) > MAX_KEYWORD_CHARS:
            self.add(doc.parse())
            return
        self._queue((index_for(self.prefix, doc.dataset, doc.timestamp), doc.doc_id, body))

    def _refuse_after_failure(self) -> None:
        """Once a batch could be neither sent nor spooled, every later document is counted lost and refused."""
        if self._failure is not None:
            self.stats.not_kept += 1
            raise self._failed()

    def _queue(self, item: Item) -> None:
        with self._lock:
            if self._first_at is None:
                self._first_at = time.monotonic()
            self._buf.append(item)
            self._bytes += len(item[2])
            full = len(self._buf) >= self.cfg.batch_docs or self._bytes >= self.cfg.batch_bytes
            if full or time.monotonic() - self._first_at >= self.cfg.flush_seconds:
                self.flush()

    def _ingested_now(self) -> str:
        now = time.time()
        if now - self._ingested_at >= 0.05:  # one clock read per 50 ms, not per document
            self._ingested_at, self._ingested_iso = now, iso(now)
        return self._ingested_iso

    def add_many(self, docs: Iterable[Mapping[str, Any]]) -> None:
        for doc in docs:
            self.add(doc)

    # -- output ----------------------------------------------------------------------------
    def flush(self) -> None:
        with self._lock:
            if not self._buf:
                return
            lines, self._buf = self._buf, []
            self._bytes, self._first_at = 0, None
            if self.spool.pending() and time.monotonic() >= self._down_until:
                self.replay()  # the store may be back: empty the spool before sending anything new
            if self.spool.pending() or time.monotonic() < self._down_until:
                # Keep order: new documents queue behind what is already spooled.
                self._spool(lines)
                return
            try:
                self._send(lines)
            except StoreDown as exc:
                log.warning("Elasticsearch unavailable (%s); spooling %d documents", exc, len(lines))
                self._spool(lines)
                self._down_until = time.monotonic() + self.cfg.probe_seconds
            if self.on_flush:
                self.on_flush(len(lines))

    def _spool(self, lines: list[Item]) -> None:
        try:
            path = self.spool.append([Spool.encode(*item) for item in lines])
        except OSError as exc:
            raise self._lose(exc, len(lines)) from None
        self._own_files[path.name] = len(lines)
        self.stats.spooled += len(lines)

    def _lose(self, exc: OSError, count: int) -> DeliveryFailed:
        """Record that ``count`` documents could not be kept; from now on the writer refuses input."""
        self.stats.not_kept += count
        self._failure = exc
        return self._failed()

    def _failed(self) -> DeliveryFailed:
        """The exact account once a batch could be neither sent nor spooled."""
        exc = self._failure
        reason = (exc.strerror or type(exc).__name__) if exc else "unknown"
        st = self.stats
        own = sum(self._own_files.values())
        dead = f", {st.rejected} rejected by Elasticsearch (kept in {self.spool.dead_dir})" if st.rejected else ""
        return DeliveryFailed(
            f"documents could not be stored: Elasticsearch did not take them and the spool {self.spool.dir} "
            f"cannot be written ({reason}); input stopped there. Kept: {st.written} documents in Elasticsearch, "
            f"{own} in the spool ({len(self._own_files)} files, sent when Elasticsearch answers){dead}. "
            f"Not kept: {st.not_kept} documents (the batch that did not fit and any after it) and whatever the "
            f"input had not yet produced. Free space or start Elasticsearch, then run the same input again (ids "
            f"are deterministic: no duplicates).")

    def replay(self) -> int:
        """Send spooled files in order; stops (keeping the rest) if the store goes away again.
        Returns the number of documents replayed."""
        replayed = 0
        with self._lock:
            files = self.spool.files()
            if files:
                try:
                    self._probe()
                except StoreDown as exc:
                    log.warning("replay paused, Elasticsearch unavailable (%s)", exc)
                    self._down_until = time.monotonic() + self.cfg.probe_seconds
                    return 0
            for path in files:
                try:
                    records = self.spool.read(path)
                except SpoolCorrupt as exc:
                    moved = self.spool.quarantine(path)
                    log.error("corrupt spool file skipped: %s (moved to %s)", exc, moved)
                    self.stats.corrupt_files.append(path.name)
                    continue
                lines = [(r.index, r.id, dumps(r.source)) for r in records]
                try:
                    for start in range(0, len(lines), self.cfg.batch_docs):
                        self._send(lines[start:start + self.cfg.batch_docs])
                except StoreDown as exc:
                    log.warning("replay paused, Elasticsearch unavailable (%s)", exc)
                    self._down_until = time.monotonic() + self.cfg.probe_seconds
                    break
                path.unlink()
                self._own_files.pop(path.name, None)
                replayed += len(lines)
                self.stats.spool_files_replayed += 1
            else:
                self._down_until = 0.0
            self.stats.replayed += replayed
        return replayed

    def _probe(self) -> None:
        """Before a replay: one cheap request that waits at most ``probe_seconds`` for any answer. A link that
        drops packets silently then costs that much per probe, not a bulk request's whole timeout and retries,
        and the writer sees the link come back within a probe period or two."""
        try:
            self.es.options(request_timeout=self.cfg.probe_seconds).cluster.health()
        except (TransportConnectionError, es_exc.ConnectionError, es_exc.ConnectionTimeout) as exc:
            raise StoreDown(type(exc).__name__) from None
        except (es_exc.ApiError, TransportError):
            pass  # it answered: the replay itself decides what the answer means

    def _ready(self) -> None:
        """Run the prepare step once; a store that cannot be reached (or has no master yet) is StoreDown."""
        if self._prepare is None:
            return
        try:
            self._prepare()
        except (TransportConnectionError, es_exc.ConnectionError, es_exc.ConnectionTimeout) as exc:
            raise StoreDown(type(exc).__name__) from None
        except es_exc.ApiError as exc:
            if exc.meta.status not in RETRYABLE_STATUS:
                raise
            raise StoreDown(f"{type(exc).__name__} {exc.meta.status}") from None
        except TransportError as exc:
            raise StoreDown(type(exc).__name__) from None
        self._prepare = None

    def _send(self, lines: list[Item]) -> None:
        """Send records with retries for the whole request and for throttled items."""
        self._ready()
        pending = lines
        attempt = 0
        while pending:
            body = b"".join(_bulk_pair(item) for item in pending)
            try:
                resp = self.es.bulk(operations=body, filter_path="errors,items.*.status,items.*.error")
            except (TransportConnectionError, es_exc.ConnectionError, es_exc.ConnectionTimeout) as exc:
                retry_exc: Exception = exc
            except es_exc.ApiError as exc:
                if exc.meta.status not in RETRYABLE_STATUS:
                    raise
                retry_exc = exc
            except TransportError as exc:
                retry_exc = exc
            else:
                pending = self._handle_items(pending, resp)
                if not pending:
                    return
                retry_exc = StoreDown(f"{len(pending)} documents throttled")
            attempt += 1
            # A refused connection is retried once (a blip), not max_retries times: spool and probe instead.
            refused = isinstance(retry_exc, (TransportConnectionError, es_exc.ConnectionError))
            if attempt > self.cfg.max_retries or (refused and attempt > 1):
                raise StoreDown(type(retry_exc).__name__) from None
            self.stats.retries += 1
            time.sleep(self.cfg.backoff_seconds * (2 ** (attempt - 1)))

    def _handle_items(self, sent: list[Item], resp: Any) -> list[Item]:
        if not resp.get("errors"):
            self.stats.written += len(sent)
            return []
        retry, rejected = [], []
        for line, item in zip(sent, resp["items"], strict=True):
            result = next(iter(item.values()))
            status = result.get("status", 0)
            if status < 300:
                self.stats.written += 1
            elif status in RETRYABLE_STATUS:
                retry.append(line)
            else:
                index, doc_id, source = line
                error = dumps(result.get("error", {}))
                rejected.append(Spool.encode(index, doc_id, source)[:-2] + b',"error":' + error + b"}\n")
        if rejected:
            try:
                path = self.spool.dead_letter(rejected)
            except OSError as exc:
                raise self._lose(exc, len(rejected)) from None
            self.stats.rejected += len(rejected)
            log.error("%d documents rejected by Elasticsearch, kept in %s", len(rejected), path)
        return retry

    # -- lifecycle -------------------------------------------------------------------------
    def _flush_loop(self) -> None:
        while not self._stop.wait(min(1.0, self.cfg.flush_seconds)):
            with self._lock:
                due = self._first_at is not None and time.monotonic() - self._first_at >= self.cfg.flush_seconds
                try:
                    if due:
                        self.flush()
                    elif self.spool.pending() and time.monotonic() >= self._down_until:
                        self.replay()
                except DeliveryFailed as exc:
                    log.error("%s", exc)  # the next add() raises it to the caller, which stops its input
                    return

    def close(self) -> None:
        """Flush what is buffered and try once more to replay the spool (nothing more after a failure:
        its account stays exact)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self._failure is not None:
            return
        self.flush()
        if self.spool.pending():
            self._down_until = 0.0
            self.replay()

    def __enter__(self) -> BulkWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bulk_pair(item: Item) -> bytes:
    index, doc_id, source = item
    return b'{"index":{"_index":' + orjson.dumps(index) + b',"_id":' + orjson.dumps(doc_id) + b"}}\n" + source + b"\n"


