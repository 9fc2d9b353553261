"""The capture pipeline: read -> decode -> flow table -> secops.conn documents, plus the deep path
(protocol metadata from ``collectors.protocols``) and passive asset observations, into any sink.

The deep path runs in a thread next to the flow path (tshark is a separate process, so both cores work).
Connection documents are annotated with the application protocols the deep path found for the same
flow (same Community ID, overlapping time) in ``network.protocol`` before they reach the sink.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.conn import Observations, conn_doc, ip_str, mac_str
from collectors.flowpath import Engine, open_flow_path
from collectors.flows import ConnRecord
from secops.ecs import get, parse_time

Sink = Callable[[dict[str, Any]], None]
Warn = Callable[[str], None]
SERVICE_SLACK_NS = 2_000_000_000


def _deep_extractor() -> Callable[..., Iterable[dict]] | None:
    """A2's deep path if it is installed (guarded so the fast path works on its own)."""
    try:
        from collectors.protocols import extract_metadata  # type: ignore[attr-defined]
    except ImportError:
        return None
    return extract_metadata


@dataclass
class IngestStats:
    files: int = 0
    packets: int = 0
    bytes: int = 0
    undecoded: int = 0
    conns: int = 0
    deep_docs: int = 0
    observations: int = 0
    flows_evicted: int = 0
    warnings: int = 0
    decode_errors: Counter = field(default_factory=Counter)


class Pipeline:
    """Stateful across files (the sensor feeds it chunk after chunk); call :meth:`finish` at the end."""

    def __init__(self, sink: Sink, *, observer: str | None = None, max_flows: int = 500_000, deep: bool = True,
                 tshark_path: str = "tshark", on_warning: Warn | None = None,
                 on_packets: Callable[[int], None] | None = None, verify_checksums: bool = False,
                 engine: Engine = "auto") -> None:
        self.sink = sink
        self.observer = observer
        self.flows = open_flow_path(self._flow_done, engine=engine, max_flows=max_flows,
                                    verify_checksums=verify_checksums)
        self.observations = Observations(observer)
        self.stats = IngestStats()
        self.tshark_path = tshark_path
        self.extract = _deep_extractor() if deep else None
        self._warn = on_warning
        self.on_packets = on_packets
        self.services: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self.pending: list[ConnRecord] | None = None

    # -- warnings ---------------------------------------------------------------------------------
    def warn(self, msg: str) -> None:
        self.stats.warnings += 1
        if self._warn:
            self._warn(msg)

    # -- flows --------------------------------------------------------------------------------------
    def _flow_done(self, f: ConnRecord) -> None:
        if self.pending is not None:
            self.pending.append(f)
        else:
            self._ship_flow(f)

    def _ship_flow(self, f: ConnRecord) -> None:
        services = None
        if self.services:
            hits = self.services.get(f.community_id)
            if hits:
                lo, hi = f.start - SERVICE_SLACK_NS, f.last + SERVICE_SLACK_NS
                services = sorted({s for ts, s in hits if lo <= ts <= hi})
        doc = conn_doc(f, self.observer, services or None)
        self.stats.conns += 1
        self.sink(doc)
        self.observations.from_conn(f, doc)

    def _ship_observations(self) -> None:
        for obs in self.observations.drain():
            self.stats.observations += 1
            self.sink(obs)

    # -- deep path ----------------------------------------------------------------------------------
    def _deep(self, path: Path, out: list[dict], errors: list[str]) -> None:
        try:
            for doc in self.extract(path, tshark_path=self.tshark_path, on_warning=errors.append):
                out.append(doc)
        except Exception as e:  # the deep path must never take the flow path down
            errors.append(f"{path}: protocol metadata failed: {type(e).__name__}: {e}")

    def _index_deep(self, doc: dict[str, Any]) -> None:
        cid = get(doc, "network.community_id")
        proto = get(doc, "network.protocol")
        ts = get(doc, "@timestamp")
        if not cid or not proto or not ts:
            return
        try:
            ts_ns = int(parse_time(ts).timestamp() * 1e9)
        except (TypeError, ValueError):
            return
        for p in proto if isinstance(proto, list) else [proto]:
            self.services[cid].append((ts_ns, str(p)))

    # -- files ---------------------------------------------------------------------------------------
    def process_file(self, path: str | Path) -> None:
        """Run one capture file through both paths; documents go to the sink as they are final."""
        path = Path(path)
        self.stats.files += 1
        deep_docs: list[dict] = []
        deep_errors: list[str] = []
        thread = None
        if self.extract is not None:
            self.pending = []
            thread = threading.Thread(target=self._deep, args=(path, deep_docs, deep_errors), daemon=True)
            thread.start()
        try:
            self._fast(path)
        finally:
            if thread is not None:
                thread.join()
                for msg in deep_errors:
                    self.warn(msg)
                for doc in deep_docs:
                    self._index_deep(doc)
                    self.stats.deep_docs += 1
                    self.sink(doc)
                pending, self.pending = self.pending or [], None
                for f in pending:
                    self._ship_flow(f)
            self._ship_observations()

    def _fast(self, path: Path) -> None:
        errors_before = sum(self.flows.errors().values())
        counts = self.flows.process_file(path, self.warn, self.on_packets)
        if self.on_packets is not None:
            self.on_packets(counts.packets)
        arp_new = self.flows.decoder.arp_new
        for ts_ns, ip, mac in arp_new:
            self.observations.address(ts_ns, ip_str(ip), mac_str(mac))
        arp_new.clear()
        stats = self.stats
        stats.packets += counts.packets
        stats.bytes += counts.bytes
        stats.undecoded += counts.undecoded
        errors = self.flows.errors()
        damaged = sum(errors.values()) - errors_before
        if damaged:
            top = ", ".join(f"{k} {v}" for k, v in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))[:4])
            self.warn(f"{path}: {damaged} damaged packets skipped ({top}); all others processed")
        stats.decode_errors = errors

    def expire(self, now_ns: int) -> None:
        """Emit the flows whose timers ran out by ``now_ns`` (the live sensor: no earlier packet is to come)."""
        self.flows.sweep(now_ns)
        self._ship_observations()

    def finish(self) -> IngestStats:
        """Emit every flow still open (end of input)."""
        self.flows.finish()
        self._ship_observations()
        self.stats.decode_errors = self.flows.errors()
        self.stats.flows_evicted = self.flows.evicted
        return self.stats


def ingest_files(paths: Iterable[str | Path], sink: Sink, **kw: Any) -> IngestStats:
    """Convenience: all files through one pipeline, flows flushed at the end."""
    pipe = Pipeline(sink, **kw)
    for p in paths:
        pipe.process_file(p)
    return pipe.finish()


def main(argv: list[str] | None = None) -> int:
    """Lean NDJSON reader without the full CLI's imports: ``python3 -m collectors.ingest PCAP...``."""
    import sys

    import orjson

    from collectors.pcapio import CaptureError

    out = sys.stdout.buffer

    def sink(doc: dict[str, Any]) -> None:
        out.write(orjson.dumps(doc, default=str) + b"\n")

    def warn(msg: str) -> None:
        print(f"warning: {msg}", file=sys.stderr)

    pipe = Pipeline(sink, on_warning=warn)
    status = 0
    for path in argv if argv is not None else sys.argv[1:]:
        try:
            pipe.process_file(path)
        except CaptureError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 2
    pipe.finish()
    out.flush()
    return status


if __name__ == "__main__":
    raise SystemExit(main())
