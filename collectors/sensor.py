"""Live capture: per worker, a ``dumpcap`` ring -> sealed pcap chunks -> a worker process with its own Pipeline.

Why dumpcap and not a ring of our own (measured on this 2-core machine, 300k packets of ~400 bytes replayed
with tcpreplay into a veth, see benchmarks/live_capture.py):

- scapy's listen socket (the sensor before): one Python call per frame, 33% lost at 100k pkt/s, 68% at 400k.
- dumpcap: libpcap's memory-mapped TPACKET_V3 ring (the kernel mechanism a native ring of our own would use),
  written to disk in C: 300,000 of 300,000 at 400k pkt/s for 0.32 s of CPU. A ring read from Python instead
  would pay about 1 us per packet before any processing, so only C would do; dumpcap is that C, well kept.

How the flows are split (Zeek cluster / Suricata fanout style): each worker has its own dumpcap whose BPF filter
keeps one share of a symmetric address hash (:mod:`collectors.flow_share`), so the kernel splits the traffic
for free and every worker sees whole flows. Measured against the alternative, every worker reading every chunk
and keeping its share in Python: that costs 0.29 s of CPU per worker per 300k packets (1M pkt/s per pass),
while the second dumpcap with its share filter added 0.02 s for the same packets. Two dumpcaps split 300k
packets 150,321 / 149,679 with none lost and none duplicated (the last share is the complement of the others).

The capture never waits for processing: dumpcap only writes its ring (``-b interval:S``), this supervisor
renames each file dumpcap has closed to a spool chunk and hands it to the share's worker; a worker that falls
behind gets several chunks at once (one deep pass for all). Capture is cut only by the disk budget: processed
chunks go first, then the oldest unprocessed ones, whose packets are counted as dropped (disk). Kernel drops
come from dumpcap's own socket statistics. A worker that dies is reported and restarted (its open flows are
lost, the chunk it was on is kept for the analyst and counted as failed); so is a capture process that dies.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from collectors.dumpcap import RING_PREFIX, DumpcapRing, RingOptions
from collectors.flow_share import is_ethernet, share_filter
from collectors.pcap_spool import Spool, count_packets
from collectors.sensor_worker import (
    PCAP_HEADER,
    BackgroundOut,
    Batch,
    BatchDone,
    WorkerConfig,
    open_output,
    worker_main,
)
from secops.config import Settings
from secops.ecs import doc_id, iso

MB = 1024 * 1024
MAX_BATCH_CHUNKS = 64
MAX_BATCH_BYTES = 512 * MB
RESTART_PAUSE = 1.0


@dataclass
class ChunkRef:
    path: Path
    opened_ns: int
    sealed_ns: int
    size: int


@dataclass
class Share:
    """One flow-hash share: its capture process, its worker, its backlog."""

    index: int
    rings: list[DumpcapRing] = field(default_factory=list)
    pending: deque[ChunkRef] = field(default_factory=deque)  # sealed, not yet processed (in flight first)
    in_flight: int = 0
    proc: Any = None
    conn: Connection | None = None
    closed: bool = True  # the results reader saw the worker's pipe end
    finished: bool = False
    last_start: float = 0.0
    capture_retry_at: float = 0.0
    seq: int = 0

    @property
    def ring(self) -> DumpcapRing | None:
        return self.rings[-1] if self.rings else None


@dataclass
class Counters:
    processed: int = 0
    conns: int = 0
    chunks: int = 0
    chunks_damaged: int = 0
    chunks_failed: int = 0
    disk_dropped: int = 0
    chunks_dropped: int = 0
    worker_restarts: int = 0
    capture_restarts: int = 0
    flows_evicted: int = 0
    decode_errors: int = 0


class Sensor:
    """``run()`` blocks until ``stop()`` (or ``duration`` seconds), then processes the backlog before returning
    (a second ``stop()`` abandons it)."""

    def __init__(self, settings: Settings, interface: str, *, output: str = "es", out: Any = None,
                 bpf: str | None = None, observer: str | None = None, rotate_seconds: int | None = None,
                 rotate_mb: int | None = None, workers: int | None = None, deep: bool = True,
                 on_warning: Any = None) -> None:
        s = settings.sensor
        self.settings = settings
        self.interface = interface
        self.output = output
        self.bpf = bpf if bpf is not None else s.bpf
        self.name = observer or socket.gethostname()
        self.rotate_seconds = rotate_seconds or s.rotate_seconds
        self.rotate_mb = rotate_mb or s.rotate_mb
        self.workers = min(workers or s.workers or os.cpu_count() or 1, 16)
        self.deep = deep
        self.budget = s.pcap_budget_mb * MB
        self.min_free = s.min_free_mb * MB
        self.spool = Spool(settings.paths.pcaps())
        self.warn = on_warning or (lambda msg: None)
        self.ctx = multiprocessing.get_context("spawn")
        self.out_lock = self.ctx.Lock()
        # The supervisor's reports are handed to a writer thread and never waited for: its housekeeping (dead
        # processes, the disk budget) must go on while a bulk request hangs on a silently cut link.
        if out is None:
            self.out = open_output(output, settings, self.out_lock, "sensor", wait=False)
        else:
            self.out = BackgroundOut(out, wait=False, close_writer=False) if output == "es" else out
        self.shares = [Share(i) for i in range(self.workers)]
        self.retained: deque[ChunkRef] = deque()  # processed chunks kept for extraction, oldest first
        self.counters = Counters()
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._stops = 0
        self._next_stats = 0.0
        self._abort = threading.Event()
        self._results_done = threading.Event()

    def stop(self) -> None:
        """The first call ends capture (the backlog is still processed), the second abandons the backlog."""
        self._stops += 1
        if self._stops > 1:
            self._abort.set()
        self._stop.set()

    # -- workers ---------------------------------------------------------------------------------------
    def _start_worker(self, share: Share) -> None:
        s = self.settings.sensor
        cfg = WorkerConfig(share.index, self.name, self.output, deep=self.deep, max_flows=s.flow_table_max,
                           deep_bytes_max=s.deep_bytes_per_direction, tshark_path=s.tshark_path)
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=worker_main, args=(cfg, self.settings, child, self.out_lock),
                                name=f"secops-sensor-worker-{share.index}", daemon=True)
        proc.start()
        child.close()
        with self.lock:
            share.proc, share.conn, share.closed, share.in_flight = proc, parent, False, 0
            share.last_start = time.monotonic()
            self._dispatch(share)

    def _dispatch(self, share: Share) -> None:
        """Send the share's next batch if its worker is idle (caller holds the lock)."""
        if share.in_flight or not share.pending or share.conn is None or share.closed or share.finished:
            return
        batch: list[ChunkRef] = []
        size = 0
        for ref in share.pending:
            if batch and (len(batch) >= MAX_BATCH_CHUNKS or size + ref.size > MAX_BATCH_BYTES):
                break
            batch.append(ref)
            size += ref.size
        try:
            share.conn.send(Batch(tuple(r.path for r in batch), batch[-1].sealed_ns))
            share.in_flight = len(batch)
        except OSError:
            share.closed = True

    def _results(self) -> None:
        """Read every worker's reports until all have finished (a thread)."""
        while True:
            with self.lock:
                conns = {s.conn: s for s in self.shares if s.conn is not None and not s.closed}
                if not conns and all(s.finished for s in self.shares):
                    break
            if not conns:
                time.sleep(0.1)
                continue
            for conn in wait(list(conns), timeout=0.2):
                share = conns[conn]
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    with self.lock:
                        share.closed = True
                    continue
                self._on_report(share, msg)
        self._results_done.set()

    def _on_report(self, share: Share, msg: tuple) -> None:
        kind = msg[0]
        if kind == "warn":
            self.warn(f"worker {msg[1]}: {msg[2]}")
        elif kind == "done":
            done: BatchDone = msg[1]
            for path in done.damaged:
                self.warn(f"worker {share.index}: {path.name} is damaged; skipped, capture goes on")
            for text in done.warnings:
                self.warn(f"worker {share.index}: {text}")
            with self.lock:
                self._account(done)
                for _ in done.chunks:
                    ref = share.pending.popleft()
                    self._retain(ref)
                share.in_flight = 0
                self.counters.chunks += len(done.chunks)
                self.counters.chunks_damaged += len(done.damaged)
                self._dispatch(share)
        elif kind == "final":
            with self.lock:
                self._account(msg[1])
                share.finished = True

    def _account(self, done: BatchDone) -> None:
        c = self.counters
        c.processed += done.packets
        c.conns += done.conns
        c.flows_evicted += done.flows_evicted
        c.decode_errors += done.decode_errors

    def _retain(self, ref: ChunkRef) -> None:
        if ref.size <= PCAP_HEADER:  # an empty ring file (quiet link) holds nothing for an analyst
            ref.path.unlink(missing_ok=True)
        elif ref.path.exists():
            self.retained.append(ref)

    def _supervise(self) -> None:
        """Restart a worker or capture process that died (reported, counted, capture goes on)."""
        now = time.monotonic()
        for share in self.shares:
            proc = share.proc
            if proc is not None and not share.finished and proc.exitcode is not None and share.closed \
                    and now - share.last_start >= RESTART_PAUSE:
                with self.lock:
                    lost = [share.pending.popleft() for _ in range(share.in_flight)]
                    for ref in lost:
                        self._retain(ref)
                    self.counters.chunks_failed += len(lost)
                    self.counters.worker_restarts += 1
                    share.conn = None
                on = f" while processing {', '.join(r.path.name for r in lost)} (kept in the spool, skipped)" \
                    if lost else ""
                self.warn(f"worker {share.index} died (exit code {proc.exitcode}){on}; restarted, the flows it "
                          "held open are lost")
                self._start_worker(share)
            ring = share.ring
            if ring is not None and not ring.alive and not self._stop.is_set() and now >= share.capture_retry_at:
                ring.stop()  # seals its last file, lets go of its socket
                why = "; ".join(ring.counters.errors[-1:]) or f"exit status {ring.proc.returncode}"
                self.counters.capture_restarts += 1
                share.capture_retry_at = now + RESTART_PAUSE
                self.warn(f"capture process of share {share.index} exited ({why}); restarting it")
                try:
                    self._start_capture(share)
                except Exception as e:  # tried again after the pause, reported each time
                    self.warn(f"capture process of share {share.index} did not restart: {e}")

    # -- capture ---------------------------------------------------------------------------------------
    def _start_capture(self, share: Share) -> None:
        capture_filter = share_filter(share.index, self.workers, self.bpf, vlan=is_ethernet(self.interface))
        opts = RingOptions(self.interface, self.spool.share_dir(share.index), capture_filter, self.rotate_seconds,
                           self.rotate_mb, self.settings.sensor.buffer_mb, self.settings.sensor.dumpcap_path)
        ring = DumpcapRing(opts, lambda path, opened, sealed: self._sealed(share, path, opened, sealed), self.warn)
        share.rings.append(ring)
        ring.start()

    def _sealed(self, share: Share, path: Path, opened_ns: int, sealed_ns: int) -> None:
        """A ring file dumpcap has closed becomes a chunk in the share's backlog (from the reader thread)."""
        with self.lock:
            share.seq += 1
            try:
                chunk = Spool.seal_live(path, opened_ns, share.seq)
                size = chunk.stat().st_size
            except OSError as e:
                self.warn(f"ring file {path} vanished before processing: {e}")
                return
            share.pending.append(ChunkRef(chunk, opened_ns, sealed_ns, size))
            self._dispatch(share)

    def _adopt_leftovers(self) -> None:
        """Ring files a previous run left (it died mid-capture) are processed first; old chunks are retained."""
        for share in self.shares:
            for path in sorted(self.spool.share_dir(share.index).glob(f"{RING_PREFIX}_*.pcap")):
                mtime = path.stat().st_mtime_ns
                self._sealed(share, path, mtime, mtime)
        known = {r.path for s in self.shares for r in s.pending}
        self.retained.extend(ChunkRef(c.path, c.start_ns, c.mtime_ns, c.size) for c in self.spool.chunks()
                             if c.path not in known)

    # -- disk budget -----------------------------------------------------------------------------------
    def _enforce_budget(self) -> None:
        with self.lock:
            total = sum(r.size for r in self.retained) + sum(r.size for s in self.shares for r in s.pending)
            for share in self.shares:
                for live in self.spool.share_dir(share.index).glob(f"{RING_PREFIX}_*.pcap"):
                    with contextlib.suppress(FileNotFoundError):
                        total += live.stat().st_size
            while total > self.budget or shutil.disk_usage(self.spool.dir).free < self.min_free:
                victim = self.retained.popleft() if self.retained else self._oldest_unprocessed()
                if victim is None:
                    break
                victim.path.unlink(missing_ok=True)
                total -= victim.size

    def _oldest_unprocessed(self) -> ChunkRef | None:
        """Take the oldest chunk no worker has started on; its packets are counted as lost to the disk."""
        candidates = [s for s in self.shares if len(s.pending) > s.in_flight]
        if not candidates:
            return None
        share = min(candidates, key=lambda s: s.pending[s.in_flight].opened_ns)
        ref = share.pending[share.in_flight]
        del share.pending[share.in_flight]
        self.counters.disk_dropped += count_packets(ref.path)
        self.counters.chunks_dropped += 1
        if not self.counters.chunks_dropped & (self.counters.chunks_dropped - 1):  # 1, 2, 4, 8 ...: not a flood
            self.warn(f"spool over its disk budget: unprocessed chunk {ref.path.name} deleted "
                      f"({self.counters.chunks_dropped} so far, {self.counters.disk_dropped} packets)")
        return ref

    # -- reporting -------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            c = self.counters
            now = time.time_ns()
            oldest = [s.pending[0].sealed_ns for s in self.shares if s.pending]
            kernel = sum(r.kernel_drops() if r.alive else r.counters.kernel_drops
                         for s in self.shares for r in s.rings)
            return {
                "packets_captured": sum(r.counters.packets for s in self.shares for r in s.rings),
                "packets_dropped": kernel + c.disk_dropped,
                "packets_dropped_kernel": kernel,
                "packets_dropped_disk": c.disk_dropped,
                "packets_processed": c.processed,
                "lag_seconds": round(max(0, now - min(oldest)) / 1e9, 3) if oldest else 0.0,
                "backlog_chunks": sum(len(s.pending) for s in self.shares),
                "chunks": c.chunks, "chunks_damaged": c.chunks_damaged, "chunks_failed": c.chunks_failed,
                "chunks_dropped": c.chunks_dropped, "connections": c.conns,
                "workers": self.workers, "worker_restarts": c.worker_restarts,
                "capture_restarts": c.capture_restarts, "flows_evicted": c.flows_evicted,
                "decode_errors": c.decode_errors,
                "spool_bytes": sum(r.size for r in self.retained) + sum(r.size for s in self.shares
                                                                       for r in s.pending),
            }

    def counters_doc(self) -> dict[str, Any]:
        now = time.time()
        return {
            "_id": doc_id("sensor", self.name, self.interface, time.time_ns()),
            "@timestamp": iso(now),
            "event": {"dataset": "secops.sensor", "kind": "metric"},
            "observer": {"name": self.name, "ingress": {"interface": {"name": self.interface}}},
            "secops": {"sensor": self.snapshot()},
        }

    def _report(self) -> dict[str, Any]:
        doc = self.counters_doc()
        self.out.add(doc)
        self.out.flush()
        return doc

    # -- the run ---------------------------------------------------------------------------------------
    def run(self, duration: float | None = None, on_ready: Any = None) -> dict[str, Any]:
        """Capture until stopped; ``on_ready()`` is called once every capture process runs."""
        self.spool.dir.mkdir(parents=True, exist_ok=True)
        self._adopt_leftovers()
        for share in self.shares:
            self._start_worker(share)
        results = threading.Thread(target=self._results, name="sensor-results", daemon=True)
        results.start()
        try:
            for share in self.shares:
                self._start_capture(share)
            if on_ready is not None:
                on_ready()
            self._loop(duration)
        finally:
            self._stop.set()
            for share in self.shares:
                for ring in share.rings:
                    ring.stop()
            self._drain()
            for share in self.shares:
                if share.proc is not None:
                    share.proc.join(30)
                    if share.proc.exitcode is None:
                        share.proc.kill()
            self._results_done.wait(10)
            self._enforce_budget()  # chunks processed after the last tick: the spool ends within its budget
        report = self._report()["secops"]["sensor"]
        self.out.close()  # every report handed to the writer (a writer the caller gave stays open)
        return report

    def _tick(self) -> None:
        """Housekeeping every few hundred ms: dead processes, the disk budget, the periodic report."""
        self._supervise()
        self._enforce_budget()
        if time.monotonic() >= self._next_stats:
            self._next_stats = time.monotonic() + self.settings.sensor.stats_seconds
            self._report()

    def _loop(self, duration: float | None) -> None:
        deadline = time.monotonic() + duration if duration else None
        self._next_stats = time.monotonic() + self.settings.sensor.stats_seconds
        while not self._stop.wait(0.2):
            if deadline and time.monotonic() >= deadline:
                break
            self._tick()

    def _drain(self) -> None:
        """Process what was captured, then let every worker flush its open flows and end."""
        while not self._abort.is_set():
            with self.lock:
                if not any(s.pending for s in self.shares):
                    break
            self._tick()
            time.sleep(0.1)
        if self._abort.is_set():
            self.warn("stopped before the backlog was processed; its chunks stay in the spool")
        for share in self.shares:
            with self.lock:
                share.pending.clear()
                if share.conn is not None and not share.closed:
                    with contextlib.suppress(OSError):
                        share.conn.send(None)
                else:
                    share.finished = True
