"""Live capture: scapy's AF_PACKET listen socket -> rotating pcap spool -> the ingest pipeline -> sink.

Three jobs, two threads: the capture thread only copies raw frames into the current chunk (no dissection)
and rotates it by size or age; the processing thread runs each sealed chunk through one long-lived
:class:`~collectors.ingest.Pipeline` (flows span chunks), ships the documents, writes a ``secops.sensor``
counter document (packets captured / dropped by the kernel or for lack of disk / processed, flows evicted,
decode errors) and applies the spool's disk budget, oldest chunks first.
"""

from __future__ import annotations

import queue
import shutil
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collectors.ingest import Pipeline
from collectors.pcap_spool import ChunkWriter, Spool
from secops.config import Settings
from secops.ecs import doc_id, iso

SOL_PACKET, PACKET_STATISTICS = 263, 6
MB = 1024 * 1024


class Sensor:
    """``run()`` blocks until ``stop()`` (or ``duration`` seconds); every chunk is processed before it returns."""

    def __init__(self, settings: Settings, interface: str, sink: Callable[[dict[str, Any]], None], *,
                 bpf: str | None = None, observer: str | None = None, rotate_seconds: float | None = None,
                 rotate_mb: float | None = None, on_warning: Callable[[str], None] | None = None) -> None:
        s = settings.sensor
        self.interface = interface
        self.bpf = bpf if bpf is not None else s.bpf
        self.name = observer or socket.gethostname()
        self.rotate_seconds = rotate_seconds or s.rotate_seconds
        self.rotate_bytes = int((rotate_mb or s.rotate_mb) * MB)
        self.budget = s.pcap_budget_mb * MB
        self.min_free = s.min_free_mb * MB
        self.spool = Spool(settings.paths.pcaps())
        self.sink = sink
        self.warn = on_warning or (lambda msg: None)
        self.pipeline = Pipeline(sink, observer=self.name, max_flows=s.flow_table_max,
                                 tshark_path=s.tshark_path, on_warning=self.warn)
        self.captured = self.dropped = self.disk_dropped = self.chunks_done = 0
        self.sealed: queue.Queue[Path | None] = queue.Queue()
        self._stop = threading.Event()
        self.error: BaseException | None = None

    def stop(self) -> None:
        self._stop.set()

    # -- capture ---------------------------------------------------------------------------------------
    def _open_socket(self) -> Any:
        from scapy.arch.linux import L2ListenSocket

        sock = L2ListenSocket(iface=self.interface, filter=self.bpf or None, promisc=True)
        sock.ins.settimeout(0.2)  # so stop() and time-based rotation are noticed on a quiet link
        return sock

    def _kernel_drops(self, sock: Any) -> int:
        try:
            raw = sock.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            return struct.unpack("II", raw)[1]  # tp_packets, tp_drops (reset by each read)
        except (OSError, AttributeError, struct.error):
            return 0

    def _capture(self, sock: Any) -> None:
        seq = 0
        writer: ChunkWriter | None = None
        opened = 0.0
        try:
            while not self._stop.is_set():
                if writer is not None and (writer.bytes >= self.rotate_bytes or
                                           time.monotonic() - opened >= self.rotate_seconds):
                    writer = self._seal(writer)
                    self.dropped += self._kernel_drops(sock)
                try:
                    _, frame, ts = sock.recv_raw(65535)
                except (TimeoutError, BlockingIOError, InterruptedError):
                    continue
                if frame is None:
                    continue
                ts_ns = int((ts or time.time()) * 1e9)
                if writer is None:
                    if shutil.disk_usage(self.spool.dir if self.spool.dir.exists() else Path("/")).free < \
                            self.min_free:
                        self.disk_dropped += 1
                        continue
                    seq += 1
                    writer = ChunkWriter(self.spool.new_chunk_path(ts_ns, seq))
                    opened = time.monotonic()
                writer.write(ts_ns, frame)
                self.captured += 1
        except BaseException as e:
            self.error = e
        finally:
            if writer is not None:
                self._seal(writer)
            self.dropped += self._kernel_drops(sock)
            self.sealed.put(None)

    def _seal(self, writer: ChunkWriter) -> None:
        writer.close()
        self.sealed.put(Spool.seal(writer.path))

    # -- processing ------------------------------------------------------------------------------------
    def _process(self) -> None:
        while True:
            chunk = self.sealed.get()
            if chunk is None:
                return
            try:
                self.pipeline.process_file(chunk)
            except Exception as e:  # a damaged chunk is reported, never fatal
                self.warn(f"{chunk}: {e}")
            self.chunks_done += 1
            self.spool.enforce(self.budget, self.min_free)
            self.sink(self.counters())

    def counters(self) -> dict[str, Any]:
        now = time.time()
        st = self.pipeline.stats
        return {
            "_id": doc_id("sensor", self.name, self.interface, time.time_ns()),
            "@timestamp": iso(now),
            "event": {"dataset": "secops.sensor", "kind": "metric"},
            "observer": {"name": self.name, "ingress": {"interface": {"name": self.interface}}},
            "secops": {"sensor": {
                "packets_captured": self.captured, "packets_dropped": self.dropped + self.disk_dropped,
                "packets_processed": st.packets, "flows_evicted": self.pipeline.flows.evicted,
                "decode_errors": sum(st.decode_errors.values()), "chunks": self.chunks_done,
                "spool_bytes": self.spool.total_bytes(),
            }},
        }

    def run(self, duration: float | None = None) -> dict[str, Any]:
        sock = self._open_socket()
        self.spool.dir.mkdir(parents=True, exist_ok=True)
        cap = threading.Thread(target=self._capture, args=(sock,), name="capture", daemon=True)
        proc = threading.Thread(target=self._process, name="process", daemon=True)
        cap.start()
        proc.start()
        try:
            deadline = time.monotonic() + duration if duration else None
            while cap.is_alive() and not self._stop.wait(0.2):
                if deadline and time.monotonic() >= deadline:
                    break
        finally:
            self._stop.set()
            cap.join()
            sock.close()
            proc.join()
            self.pipeline.finish()
            final = self.counters()
            self.sink(final)
        if self.error:
            raise self.error
        return final["secops"]["sensor"]
