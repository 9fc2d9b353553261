"""A sensor worker process: the sealed chunks of its flow-hash share -> one long-lived Pipeline -> its sink.

The supervisor (:mod:`collectors.sensor`) sends it a batch of chunk paths at a time over a pipe and gets back,
per batch, the packets processed and any warnings. A batch of several chunks (the worker fell behind) is read
as one capture so the deep path starts once per batch. After each batch the flow table is swept at the time
up to which the capture is complete (the seal time less :data:`EXPIRE_MARGIN_NS`), so a connection ended by
FIN/RST ships a few seconds after its end, not when the sensor stops.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from collectors.pcapio import CaptureError
from collectors.selection import DEEP_BYTES_PER_DIRECTION
from secops.config import Settings
from secops.runtime import tune_process

NS = 1_000_000_000
EXPIRE_MARGIN_NS = NS // 2  # packets reach dumpcap up to libpcap's 250 ms block timeout (plus scheduling) late
PCAP_HEADER = 24


@dataclass(frozen=True)
class WorkerConfig:
    share: int
    observer: str
    output: str  # "es" or "ndjson" (stdout, shared with the other workers under ``lock``)
    deep: bool = True
    max_flows: int = 500_000
    deep_bytes_max: int = DEEP_BYTES_PER_DIRECTION
    tshark_path: str = "tshark"
    engine: str = "auto"


@dataclass(frozen=True)
class Batch:
    chunks: tuple[Path, ...]
    complete_ns: int  # no packet timestamped before this is still to come for this share


@dataclass(frozen=True)
class BatchDone:
    share: int
    chunks: tuple[Path, ...]
    packets: int
    conns: int
    warnings: tuple[str, ...]
    damaged: tuple[Path, ...]
    flows_evicted: int
    decode_errors: int


Sink = Callable[[dict[str, Any]], None]


class NdjsonOut:
    """Whole batches of lines to stdout under a lock shared by every process of the sensor."""

    def __init__(self, lock: Any) -> None:
        import orjson

        self.dumps = orjson.dumps
        self.lock = lock
        self.lines: list[bytes] = []

    def add(self, doc: dict[str, Any]) -> None:
        self.lines.append(self.dumps(doc, default=str) + b"\n")

    def flush(self) -> None:
        if not self.lines:
            return
        data, self.lines = memoryview(b"".join(self.lines)), []
        with self.lock:
            while data:
                data = data[os.write(1, data):]

    def close(self) -> None:
        self.flush()


class BackgroundOut:
    """Hands each flushed batch to a thread that writes it, so processing never waits for a bulk request
    (a slow cluster delays documents, not the next chunk; a link that drops packets silently makes one request
    hang for its whole timeout). At most ``depth`` batches wait; then ``flush`` blocks (back-pressure: a
    worker's chunks wait on disk, under the disk budget) or, with ``wait=False``, keeps the documents for the
    next flush (the sensor's supervisor, whose housekeeping must never stop). ``close`` hands over the rest,
    ends the thread and closes the writer unless the caller keeps it (``close_writer=False``)."""

    def __init__(self, writer: Any, depth: int = 64, *, wait: bool = True, close_writer: bool = True) -> None:
        self.writer = writer
        self.wait = wait
        self.close_writer = close_writer
        self.docs: list[dict[str, Any]] = []
        self.batches: queue.Queue[list[dict[str, Any]] | None] = queue.Queue(depth)
        self.thread = threading.Thread(target=self._write, name="bulk-out", daemon=True)
        self.thread.start()

    def add(self, doc: dict[str, Any]) -> None:
        self.docs.append(doc)

    def flush(self) -> None:
        if self.docs:
            try:
                self.batches.put(self.docs, block=self.wait)
            except queue.Full:
                return  # the writer is behind: these documents go with the next flush
            self.docs = []

    def _write(self) -> None:
        while (docs := self.batches.get()) is not None:
            for doc in docs:
                self.writer.add(doc)
            self.writer.flush()

    def close(self) -> None:
        self.wait = True
        self.flush()
        self.batches.put(None)
        self.thread.join()
        if self.close_writer:
            self.writer.close()


def open_output(output: str, settings: Settings, lock: Any, spool_name: str, *, wait: bool = True) -> Any:
    """An object with add/flush/close: a BulkWriter on the configured cluster (behind a :class:`BackgroundOut`,
    ``wait`` as there), or NDJSON on stdout."""
    if output == "ndjson":
        return NdjsonOut(lock)
    from secops.es.client import make_client
    from secops.es.store import Store

    # Its own spool; templates checked before the first send; the background flush replays the spool as soon
    # as the store answers again, even when no new connection comes to trigger a flush.
    store = Store.from_settings(make_client(settings), settings)
    return BackgroundOut(store.writer(spool=spool_name, background_flush=True), wait=wait)


PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")


def _header(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(PCAP_HEADER)


def merged(chunks: list[Path], into: Path) -> Path:
    """Concatenate classic-pcap chunks with identical file headers into one file (records as they are)."""
    with open(into, "wb") as out:
        out.write(_header(chunks[0]))
        for chunk in chunks:
            with open(chunk, "rb") as f:
                f.seek(PCAP_HEADER)
                while block := f.read(1 << 20):
                    out.write(block)
    return into


class Worker:
    def __init__(self, cfg: WorkerConfig, out: Any, report: Callable[[str], None]) -> None:
        from collectors.ingest import Pipeline

        self.cfg = cfg
        self.out = out
        self.pipeline = Pipeline(out.add, observer=cfg.observer, max_flows=cfg.max_flows, deep=cfg.deep,
                                 tshark_path=cfg.tshark_path, on_warning=report, engine=cfg.engine,
                                 deep_bytes_max=cfg.deep_bytes_max)

    def run_batch(self, batch: Batch) -> BatchDone:
        stats = self.pipeline.stats
        before = (stats.packets, stats.conns, self.pipeline.flows.evicted, sum(self.pipeline.flows.errors().values()))
        warnings: list[str] = []
        damaged: list[Path] = []
        present = tuple(c for c in batch.chunks if c.exists())  # a chunk the disk budget took is accounted there
        with_packets = tuple(c for c in present if c.stat().st_size > PCAP_HEADER)
        alone = list(with_packets)
        if len(with_packets) > 1 and self.cfg.deep:  # behind: one deep pass for the whole batch
            first = _header(with_packets[0])
            together = [c for c in with_packets if first[:4] in PCAP_MAGICS and _header(c) == first]
            if len(together) > 1:
                alone = [c for c in with_packets if c not in together]
                tmp = together[0].with_name(f".batch-{os.getpid()}.pcap")
                try:
                    self._process(merged(together, tmp), damaged, warnings)
                finally:
                    tmp.unlink(missing_ok=True)
        for c in alone:
            self._process(c, damaged, warnings)
        self.pipeline.expire(batch.complete_ns - EXPIRE_MARGIN_NS)
        self.out.flush()
        flows = self.pipeline.flows
        return BatchDone(self.cfg.share, batch.chunks, stats.packets - before[0], stats.conns - before[1],
                         tuple(warnings), tuple(damaged), flows.evicted - before[2],
                         sum(flows.errors().values()) - before[3])

    def _process(self, path: Path, damaged: list[Path], warnings: list[str]) -> None:
        try:
            self.pipeline.process_file(path)
        except CaptureError as e:
            damaged.append(path)
            warnings.append(f"damaged chunk skipped: {e}")
        except Exception as e:  # one bad chunk must never stop the sensor
            damaged.append(path)
            warnings.append(f"{path}: processing failed: {type(e).__name__}: {e}")

    def finish(self) -> BatchDone:
        stats = self.pipeline.stats
        before = (stats.packets, stats.conns)
        self.pipeline.finish()
        self.out.flush()
        return BatchDone(self.cfg.share, (), stats.packets - before[0], stats.conns - before[1], (), (), 0, 0)


def worker_main(cfg: WorkerConfig, settings: Settings, conn: Connection, lock: Any) -> None:
    """Process entry point: batches in, :class:`BatchDone` out, ``None`` ends it (open flows are flushed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    tune_process()
    send_lock = threading.Lock()

    def report(msg: str) -> None:
        with send_lock, contextlib.suppress(OSError):
            conn.send(("warn", cfg.share, msg))

    out = open_output(cfg.output, settings, lock, f"sensor-share-{cfg.share}")
    worker = Worker(cfg, out, report)
    try:
        while True:
            try:
                batch = conn.recv()
            except EOFError:
                return
            if batch is None:
                done = worker.finish()
                with send_lock:
                    conn.send(("final", done))
                return
            with send_lock:
                conn.send(("begin", batch.chunks))
            done = worker.run_batch(batch)
            with send_lock:
                conn.send(("done", done))
    finally:
        out.close()

