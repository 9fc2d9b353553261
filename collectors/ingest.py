"""The capture pipeline: read -> decode -> flow table -> secops.conn documents, plus the deep path
(protocol metadata from ``collectors.protocols``) and passive asset observations, into any sink.

Every flow's service comes from protocol detection on its first payload bytes, inside the flow engine
(``collectors.protocols.detect``), so a connection document ships the moment its flow ends, with
``network.protocol`` saying what the flow spoke. The same detection selects the frames the analyzers need;
the engine copies them into a pcapng stream that one tshark per file dissects on the other core while the
flow path goes on (``collectors.protocols.stream``). Deep documents ship as tshark produces them. All
documents reach the sink from the calling thread.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from collectors.conn import WRITE_CONN, Observations, conn_doc, conn_text, ip_str, mac_str, oui_vendor
from collectors.deep_spares import DEEP_PROCESS_MIN_BYTES
from collectors.flowconst import TCP
from collectors.flowpath import DeepCut, Engine, NativeFlowPath, open_flow_path
from collectors.flows import ConnRecord
from collectors.protocols.detect import SERVICES, UPGRADES, Prober
from collectors.protocols.document_text import DocumentLines, DocumentText, Shipped
from collectors.protocols.expected import ExpectedConnections
from collectors.selection import DEEP_BYTES_PER_DIRECTION
from secops.ecs import doc_id

if TYPE_CHECKING:
    from collectors.protocols.stream import MetadataStream

Sink = Callable[[dict[str, Any]], None]
TextSink = Callable[[DocumentText], None]
Warn = Callable[[str], None]


@dataclass
class IngestStats:
    files: int = 0
    packets: int = 0
    bytes: int = 0
    undecoded: int = 0
    conns: int = 0
    deep_docs: int = 0
    observations: int = 0
    deep_frames: int = 0  # frames the detection selected for the analyzers
    deep_cut_bytes: int = 0  # TCP payload bytes kept from the analyzers by the per-direction cap
    flows_evicted: int = 0
    warnings: int = 0
    decode_errors: Counter = field(default_factory=Counter)


REGISTERED_MAC = "00:00:0c:00:00:01"  # an OUI in the IEEE registry (Cisco's): its lookup loads netaddr's index
MAX_PARKED = 20_000  # connection records held back until their file's deep path is read (FTP data channels)


class Pipeline:
    """Stateful across files (the sensor feeds it chunk after chunk); call :meth:`finish` at the end."""

    def __init__(self, sink: Sink, *, observer: str | None = None, max_flows: int = 500_000, deep: bool = True,
                 tshark_path: str = "tshark", on_warning: Warn | None = None,
                 on_packets: Callable[[int], None] | None = None, verify_checksums: bool = False,
                 engine: Engine = "auto", deep_bytes_max: int = DEEP_BYTES_PER_DIRECTION,
                 deep_process_min_bytes: int | None = None, text_sink: TextSink | None = None,
                 ndjson: Callable[[bytes], object] | None = None) -> None:
        """``deep_process_min_bytes``: files at least this large run their analyzers in a process of their own
        (offline ingest); None never does (the sensor, whose workers already keep every core busy).
        ``text_sink``: where the documents an analyzer process wrote go as their JSON text, unparsed (the NDJSON and
        Elasticsearch writers: ``DocumentText``); without it they are parsed for ``sink``. ``ndjson``: the text sink
        only copies the text, and this writes NDJSON bytes as they are: an analyzer process's documents go there a
        block at a time (``DocumentLines``), and no document's layout is read (``DocumentText.laid_out``)."""
        self.sink = sink
        self.text_sink = text_sink
        self.ndjson = ndjson
        self.observer = observer
        self.deep = deep
        self.deep_bytes_max = deep_bytes_max
        self.prober = Prober(deep)  # the flow path's probes; it notes FTP control connections (data channels)
        self.flows = open_flow_path(self._flow_done, engine=engine, max_flows=max_flows,
                                    verify_checksums=verify_checksums, probe=self.prober,
                                    services=SERVICES, collect=deep, deep_bytes_max=deep_bytes_max, upgrades=UPGRADES)
        self.observations = Observations(observer)
        self.expected = ExpectedConnections()
        self._parked: list[ConnRecord] = []
        self.stats = IngestStats()
        self.tshark_path = tshark_path
        self._warn = on_warning
        self.on_packets = on_packets
        self.deep_process_min_bytes = deep_process_min_bytes
        # connection documents written straight to ``ndjson`` by the Rust writer (None: through conn_text)
        self._conn_ndjson = WRITE_CONN if ndjson is not None and text_sink is not None else None

    # -- warnings ---------------------------------------------------------------------------------
    def warn(self, msg: str) -> None:
        self.stats.warnings += 1
        if self._warn:
            self._warn(msg)

    # -- flows --------------------------------------------------------------------------------------
    def _flow_done(self, f: ConnRecord) -> None:
        if self.prober.ftp_seen and self.deep and f.proto == TCP and not f.service and len(self._parked) < MAX_PARKED:
            # maybe an FTP data channel whose announcement the deep path has not read yet: shipped with the file
            self._parked.append(f)
            return
        self._ship_conn(f)

    def _release_parked(self) -> None:
        parked, self._parked = self._parked, []
        for f in parked:
            self._ship_conn(f)

    def _ship_conn(self, f: ConnRecord) -> None:
        """The connection's document: its JSON text written in Rust for a text sink (``conn_text``; None where the
        writer is not built or does not model a value), else the dict."""
        services = f.service.split(",") if f.service else None
        if f.proto == TCP and self.expected:  # an FTP data channel its control connection announced
            announced = self.expected.claim(ip_str(f.o_ip), ip_str(f.r_ip), f.r_port, f.start / 1e9)
            if announced:
                services = [*(services or ()), announced]
        self.stats.conns += 1
        # NDJSON as it is: the Rust writer's line, no DocumentText (1 us a record)
        line = self._conn_ndjson(f, self.observer, services) if self._conn_ndjson is not None else None
        if line is not None:
            self.ndjson(line + b"\n")
        else:
            text = conn_text(f, self.observer, services) if self.text_sink is not None else None
            if text is not None:
                self.text_sink(text)
            else:
                self.sink(conn_doc(f, self.observer, services))
        self.observations.from_conn(f, services)

    def _ship_observations(self) -> None:
        for obs in self.observations.drain(texts=self.text_sink is not None):
            self.stats.observations += 1
            if isinstance(obs, DocumentText):
                assert self.text_sink is not None
                self.text_sink(obs)
            else:
                self.sink(obs)

    # -- deep path ----------------------------------------------------------------------------------
    def _ship_deep(self, docs: Iterable[Shipped]) -> None:
        for doc in docs:
            if isinstance(doc, DocumentLines):
                if self.ndjson is not None and self.text_sink is not None and not self.observer:
                    count, block = doc.ndjson()
                    self.stats.deep_docs += count
                    self.ndjson(block)
                else:
                    self._ship_deep(doc.documents())
                continue
            self.stats.deep_docs += 1
            if isinstance(doc, DocumentText):
                if self.text_sink is not None and not self.observer and (self.ndjson is not None or doc.laid_out()):
                    self.text_sink(doc)
                    continue
                doc = doc.parse()
            if self.observer:  # whose sensor saw it (the console fetches its pcap there); one document per sensor
                doc["observer"] = {"name": self.observer}
                doc["_id"] = doc_id(doc["_id"], self.observer)
            self.sink(doc)

    # -- files ---------------------------------------------------------------------------------------
    def process_file(self, path: str | Path) -> None:
        """Run one capture file through both paths; documents go to the sink as they are final."""
        path = Path(path)
        self.stats.files += 1
        stream = None
        if self.deep:
            from collectors.protocols.stream import MetadataStream  # tshark plumbing only when it is used
            own_process = self.deep_process_min_bytes is not None and path.is_file() and \
                path.stat().st_size >= self.deep_process_min_bytes
            stream = MetadataStream(path.name, self.tshark_path, self.warn, expected=self.expected,
                                    own_process=own_process)
            if own_process:
                stream.start_processes()

        taken = [self.flows.selected]
        cut_before = self.flows.deep_cut
        # the native core splits the selection by host pair as it selects: the main process walks none of it
        routed = self.flows if stream is not None and stream.own_process and \
            isinstance(self.flows, NativeFlowPath) else None
        if routed is not None:
            from collectors.protocols import deep_fanout
            shares = deep_fanout.DEEP_PROCESSES
            routed.route(shares, deep_fanout.HostPairRouter(shares).share)

        def between_blocks() -> None:
            if routed is not None and stream is not None:
                stream.write_shares(routed.take_shares(), routed.linktypes())
                self._ship_deep(stream.ready())
                return
            blocks = self.flows.take_selected()
            if blocks and stream is not None:
                selected = self.flows.selected
                stream.write(blocks, self.flows.linktypes(), selected - taken[0])
                taken[0] = selected
                self._ship_deep(stream.ready())

        aborted = False
        try:
            self._fast(path, between_blocks)
        except (OSError, KeyboardInterrupt):  # the output closed or failed, or the operator stopped the run
            aborted = True
            if routed is not None:
                routed.take_shares()
                routed.route(1)
            if stream is not None:
                stream.abort()  # nothing more can be written: the analyzers stop now, not after their backlog
            raise
        finally:
            if not aborted:
                self._end_file(path, stream, routed, between_blocks, cut_before)

    def _end_file(self, path: Path, stream: MetadataStream | None, routed: NativeFlowPath | None,
                  between_blocks: Callable[[], None], cut_before: DeepCut) -> None:
        """The file's last selected frames to the analyzers, their remaining documents, then what waited for them
        (connections that may be FTP data, observations)."""
        try:
            between_blocks()
        finally:
            if routed is not None:
                routed.take_shares()  # empty unless writing them failed (that error is on its way up)
                routed.route(1)
            if stream is not None:
                registry = self._load_vendor_registry(stream.own_process)
                self._ship_deep(stream.close())
                if registry is not None:
                    registry.join()
            self._release_parked()
            self.stats.deep_frames = self.flows.selected
            self._report_cut(path, cut_before)
            self._ship_observations()

    def _load_vendor_registry(self, analyzer_processes: bool) -> threading.Thread | None:
        """netaddr's OUI index (0.11 s of parsing at the first vendor lookup of a run) loaded in a thread while this
        file's analyzer processes finish, rather than in the single-threaded step after them; joined before any
        lookup (netaddr's first load is not safe to race)."""
        if not analyzer_processes or not self.observations.pending or oui_vendor.cache_info().currsize:
            return None
        thread = threading.Thread(target=oui_vendor, args=(REGISTERED_MAC,), name="secops-oui", daemon=True)
        thread.start()
        return thread

    def _report_cut(self, path: Path, before: DeepCut) -> None:
        """One warning per file when the per-direction cap kept payload from the analyzers (the connections
        say which: ``secops.conn.deep_cut_bytes``)."""
        cut = self.flows.deep_cut
        self.stats.deep_cut_bytes = cut.bytes
        if cut.sides > before.sides:
            self.warn(f"{path}: protocol metadata cut on {cut.sides - before.sides} flow direction(s) longer than "
                      f"{self.deep_bytes_max} payload bytes ({cut.bytes - before.bytes} bytes not analysed; "
                      f"setting sensor.deep_bytes_per_direction)")

    def _fast(self, path: Path, between_blocks: Callable[[], None]) -> None:
        errors_before = sum(self.flows.errors().values())
        counts = self.flows.process_file(path, self.warn, self.on_packets, between_blocks)
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
        self._release_parked()
        self._ship_observations()
        self.stats.decode_errors = self.flows.errors()
        self.stats.flows_evicted = self.flows.evicted
        return self.stats



def ndjson_sinks(out: BinaryIO) -> tuple[Sink, TextSink]:
    """(for dicts, for documents kept as JSON text: ``DocumentText``) writing one NDJSON line each to ``out``."""
    import orjson

    dumps = orjson.dumps

    def sink(doc: dict[str, Any]) -> None:
        out.write(dumps(doc, default=str))
        out.write(b"\n")

    def text_sink(doc: DocumentText) -> None:
        out.write(doc.text)
        out.write(b"\n")
    return sink, text_sink


def main(argv: list[str] | None = None) -> int:
    """Lean NDJSON reader without the full CLI's imports: ``python3 -m collectors.ingest PCAP...``."""
    import sys

    from collectors.pcapio import CaptureError
    from secops.runtime import buffered_stdout, tune_process

    tune_process()
    out = buffered_stdout()
    sink, text_sink = ndjson_sinks(out)

    def warn(msg: str) -> None:
        print(f"warning: {msg}", file=sys.stderr)

    pipe = Pipeline(sink, on_warning=warn, deep_process_min_bytes=DEEP_PROCESS_MIN_BYTES, text_sink=text_sink,
                    ndjson=out.write)
    status = 0
    try:
        for path in argv if argv is not None else sys.argv[1:]:
            try:
                pipe.process_file(path)
            except CaptureError as e:
                print(f"error: {e}", file=sys.stderr)
                status = 2
        pipe.finish()
        out.flush()
    except BrokenPipeError:  # the reader of the output went away (``| head``): stop quietly, as click does
        return 1
    return status


if __name__ == "__main__":
    from secops.runtime import exit_now

    exit_now(main())
