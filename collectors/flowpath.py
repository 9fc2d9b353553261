"""The flow path: capture file -> decoder -> flow table -> :class:`~collectors.flows.ConnRecord`, on one of two
engines with identical output.

- ``native``: ``collectors._flowcore`` (C, built by ``pip install``): walks classic-pcap records, decodes and
  tracks flows without a Python call per packet. Frames it does not decode itself (IP fragments, ARP, rare
  link types) go to the Python :class:`~collectors.decode.Decoder`, whose packets it then tracks.
- ``python``: :class:`~collectors.decode.Decoder` + :class:`~collectors.flows.FlowTable`, the reference the C
  core is tested against, and the fallback where no compiler was available at install time.

``auto`` picks ``native`` when the extension imports.

Both engines detect each flow's service from its first payload bytes (``probe``, from
``collectors.protocols.detect``) and, with ``collect``, copy the frames the deep path selected into a pcapng
stream fragment that :meth:`take_selected` hands out (``collectors.selection``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from collectors.decode import TCP, UDP, Decoder
from collectors.flows import LIKELY_SERVER_PORTS, ConnRecord, FlowTable, Probe
from collectors.pcapio import PcapFormat, feed_capture, read_capture
from collectors.selection import DEEP_BYTES_PER_DIRECTION, FrameSelection

try:
    from collectors._flowcore import FlowCore
except ImportError:  # no compiler at install time: the Python engine still works, only slower
    FlowCore = None

Engine = Literal["auto", "native", "python"]
Emit = Callable[[ConnRecord], None]
Warn = Callable[[str], None]
Progress = Callable[[int], None] | None
Block = Callable[[], None] | None  # called between blocks of a file (the deep path takes the selected frames)
MAX_PACKET = 262_144  # larger frames are damage (jumbo frames top out near 64 KiB, TSO near 256 KiB)


class DeepCut(NamedTuple):
    """What the per-direction byte cap kept from the deep path so far (``deep_bytes_max``)."""

    bytes: int  # TCP payload bytes not selected
    sides: int  # flow directions cut


@dataclass
class FileCounts:
    packets: int = 0
    bytes: int = 0
    undecoded: int = 0


def native_available() -> bool:
    return FlowCore is not None


class PythonFlowPath:
    name = "python"

    def __init__(self, emit: Emit, *, max_flows: int, verify_checksums: bool, probe: Probe | None = None,
                 services: tuple[str, ...] = ("",), collect: bool = False,
                 deep_bytes_max: int = DEEP_BYTES_PER_DIRECTION, upgrades: tuple[int, ...] | None = None) -> None:
        self.decoder = Decoder(verify_checksums=verify_checksums)
        self.selection = FrameSelection() if collect and probe is not None else None
        self.table = FlowTable(emit, max_flows=max_flows, probe=probe, services=services, selection=self.selection,
                               deep_bytes_max=deep_bytes_max, upgrades=upgrades)

    def process_file(self, path: Path, on_warning: Warn, on_packets: Progress, on_block: Block = None) -> FileCounts:
        decode, add, selection = self.decoder.decode, self.table.add, self.selection
        n = nbytes = undecoded = oversized = 0
        for ts, linktype, buf, off, caplen, wirelen in read_capture(path, on_warning=on_warning):
            n += 1
            nbytes += wirelen
            if caplen > MAX_PACKET:
                oversized += 1
                continue
            pkts = decode(linktype, buf, off, caplen, ts)
            if not pkts:  # no flow of its own (IP fragment awaiting the rest, ARP, unknown link): tshark's
                undecoded += 1
                if selection is not None:
                    selection.add(linktype, ts, buf[off:off + caplen], wirelen)
                continue
            selected = False
            if selection is not None:
                self.table.frame = (linktype, ts, buf, off, caplen, wirelen)
            for p in pkts:
                selected |= add(p, ts)
            if selection is not None:
                self.table.frame = None
                if selected:
                    selection.add(linktype, ts, buf[off:off + caplen], wirelen)
            if not n & 0x3FFF:
                if on_packets is not None:
                    on_packets(n)
                if on_block is not None:
                    on_block()
        if oversized:
            self.decoder.errors["oversized_packet"] += oversized
        return FileCounts(n, nbytes, undecoded)

    def add_decoded(self, pkts: list[tuple], ts: int) -> None:
        """Packets of one frame from another decoder (collectors.decode.Pkt tuples); no frame, so nothing is
        selected for the deep path (as in the native core)."""
        for p in pkts:
            self.table.add(p, ts)

    def sweep(self, now_ns: int) -> None:
        self.table.sweep(now_ns)

    def take_selected(self) -> bytes:
        return self.selection.take() if self.selection is not None else b""

    def linktypes(self) -> tuple[int, ...]:
        return self.selection.linktypes() if self.selection is not None else ()

    @property
    def selected(self) -> int:
        return self.selection.count if self.selection is not None else 0

    @property
    def probes(self) -> int:
        return self.table.probes

    @property
    def deep_cut(self) -> DeepCut:
        return DeepCut(self.table.deep_cut_bytes, self.table.deep_cut_sides)

    def finish(self) -> None:
        self.table.flush()

    def errors(self) -> Counter[str]:
        return self.decoder.errors

    @property
    def evicted(self) -> int:
        return self.table.evicted

    @property
    def open_flows(self) -> int:
        return len(self.table.flows)


class NativeFlowPath:
    name = "native"

    def __init__(self, emit: Emit, *, max_flows: int, verify_checksums: bool, probe: Probe | None = None,
                 services: tuple[str, ...] = ("",), collect: bool = False,
                 deep_bytes_max: int = DEEP_BYTES_PER_DIRECTION, upgrades: tuple[int, ...] | None = None) -> None:
        if FlowCore is None:
            raise RuntimeError("the native flow core (collectors._flowcore) is not built: reinstall with a C "
                               "compiler (apt-get install gcc python3-dev; pip install -e .) or use the python engine")
        self.emit = emit
        self.decoder = Decoder(verify_checksums=verify_checksums)  # frames the core hands back
        self.core = FlowCore(ConnRecord, self.decoder.decode, LIKELY_SERVER_PORTS[TCP], LIKELY_SERVER_PORTS[UDP],
                             max_flows=max_flows, verify_checksums=verify_checksums, probe=probe, services=services,
                             collect=collect, deep_bytes_max=deep_bytes_max, upgrades=upgrades)

    def _ship(self) -> None:
        for rec in self.core.drain():
            self.emit(rec)

    def process_file(self, path: Path, on_warning: Warn, on_packets: Progress, on_block: Block = None) -> FileCounts:
        core = self.core
        before = core.counters()
        feed_pcap, feed = core.feed_pcap, core.feed
        done = [0]

        def pcap_block(buf: bytes, pos: int, fmt: PcapFormat) -> tuple[int, int, int]:
            result = feed_pcap(buf, pos, fmt.linktype, fmt.big_endian, fmt.ns_mult, fmt.snaplen)
            self._ship()
            done[0] += result[2]
            if on_packets is not None:
                on_packets(done[0])
            if on_block is not None:
                on_block()
            return result

        def record(ts: int, linktype: int, buf: bytes, off: int, caplen: int, wirelen: int) -> None:
            feed(linktype, buf, off, caplen, wirelen, ts)
            done[0] += 1
            if not done[0] & 0x3FFF:
                self._ship()
                if on_packets is not None:
                    on_packets(done[0])
                if on_block is not None:
                    on_block()

        try:
            feed_capture(path, pcap_block, record, on_warning=on_warning)
        finally:
            self._ship()
        after = core.counters()
        return FileCounts(after["packets"] - before["packets"], after["bytes"] - before["bytes"],
                          after["undecoded"] - before["undecoded"])

    def add_decoded(self, pkts: list[tuple], ts: int) -> None:
        self.core.add(pkts, ts)
        self._ship()

    def sweep(self, now_ns: int) -> None:
        self.core.sweep(now_ns)
        self._ship()

    def take_selected(self) -> bytes:
        return self.core.take_selected()

    def route(self, shares: int, share: Callable[[int, bytes, int, int], int] | None = None) -> None:
        """Frames selected from now on go to one of ``shares`` runs (``take_shares``), each by its host pair
        (``deep_fanout.HostPairRouter.share``, which ``share`` is, for the frames the core does not read itself);
        1 goes back to one selection stream. Take the selection first."""
        self.core.set_shares(shares, share)

    def take_shares(self) -> list[tuple[bytes, int]]:
        """(blocks, frame count) per share selected since the last take."""
        return self.core.take_shares()

    def linktypes(self) -> tuple[int, ...]:
        return self.core.linktypes()

    @property
    def selected(self) -> int:
        return self.core.counters()["selected"]

    @property
    def probes(self) -> int:
        return self.core.counters()["probes"]

    @property
    def deep_cut(self) -> DeepCut:
        counters = self.core.counters()
        return DeepCut(counters["deep_cut_bytes"], counters["deep_cut_sides"])

    def finish(self) -> None:
        self.core.flush()
        self._ship()

    def errors(self) -> Counter[str]:
        return self.decoder.errors + Counter(self.core.error_counts())

    @property
    def evicted(self) -> int:
        return self.core.counters()["evicted"]

    @property
    def open_flows(self) -> int:
        return self.core.counters()["flows"]


FlowPath = PythonFlowPath | NativeFlowPath


def open_flow_path(emit: Emit, *, engine: Engine = "auto", max_flows: int = 500_000, verify_checksums: bool = False,
                   probe: Probe | None = None, services: tuple[str, ...] = ("",), collect: bool = False,
                   deep_bytes_max: int = DEEP_BYTES_PER_DIRECTION, upgrades: tuple[int, ...] | None = None) -> FlowPath:
    """A flow path on the chosen engine; with ``probe`` it detects services (and, per ``upgrades``, the protocol a
    service switches to, as STARTTLS to TLS), with ``collect`` also selects (at most ``deep_bytes_max`` TCP payload
    bytes per flow direction)."""
    kw = {"max_flows": max_flows, "verify_checksums": verify_checksums, "probe": probe, "services": services,
          "collect": collect, "deep_bytes_max": deep_bytes_max, "upgrades": upgrades}
    if engine == "python" or (engine == "auto" and FlowCore is None):
        return PythonFlowPath(emit, **kw)
    return NativeFlowPath(emit, **kw)
