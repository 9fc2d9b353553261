"""Deep path: protocol metadata documents, dissected by one tshark process per capture.

``extract_metadata(pcap)`` runs tshark once with the combined display filter and field list of
every protocol module and hands each packet to the modules whose layers it carries. It yields
finished ECS documents (``secops.dns``, ``secops.http``, ``secops.tls``, ...) as they complete and
the still-open records when the capture ends. Problems (unreadable or truncated files, tshark
errors) become warnings through ``on_warning``; documents extracted before the problem are kept.
The ingest pipeline does not hand tshark whole files: ``collectors.protocols.stream`` feeds it only the
frames the flow engines selected (``collectors.protocols.detect``), through :func:`analyze`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from collectors.protocols.base import Analyzer, RunContext, command_for
from collectors.protocols.dhcp import DhcpAnalyzer
from collectors.protocols.dnp3 import Dnp3Analyzer
from collectors.protocols.dns import DnsAnalyzer
from collectors.protocols.documents import Doc
from collectors.protocols.ftp import FtpAnalyzer
from collectors.protocols.http import HttpAnalyzer
from collectors.protocols.iec104 import Iec104Analyzer
from collectors.protocols.modbus import ModbusAnalyzer
from collectors.protocols.other_ports import DISSECTORS, look_again
from collectors.protocols.reread import ConnectionFrames
from collectors.protocols.s7comm import S7commAnalyzer
from collectors.protocols.smb import SmbAnalyzer
from collectors.protocols.ssh import SshAnalyzer
from collectors.protocols.tls import TlsAnalyzer
from collectors.protocols.tshark import Packet, TsharkRun, run_tshark

ANALYZERS: tuple[type[Analyzer], ...] = (
    DnsAnalyzer, HttpAnalyzer, TlsAnalyzer, DhcpAnalyzer, SshAnalyzer, SmbAnalyzer, FtpAnalyzer,
    ModbusAnalyzer, Dnp3Analyzer, S7commAnalyzer, Iec104Analyzer,
)

EXPIRE_EVERY = 4096  # packets between sweeps for records that timed out
OTHER_PORT_DATASETS = frozenset(cls.DATASET for _, _, cls in DISSECTORS.values())

__all__ = ["ANALYZERS", "analyze", "extract_metadata", "tshark_command"]


def tshark_command(pcap: Path | None, tshark_path: str = "tshark",
                   analyzers: tuple[type[Analyzer], ...] = ANALYZERS) -> list[str]:
    """The single tshark invocation covering every protocol module."""
    return command_for(analyzers, pcap, tshark_path)


def extract_metadata(pcap: Path, *, tshark_path: str = "tshark",
                     on_warning: Callable[[str], None] | None = None) -> Iterator[Doc]:
    """Yield protocol metadata documents for one pcap/pcapng file (whole or pre-filtered)."""
    warn = on_warning or (lambda _msg: None)
    path = Path(pcap)
    if not path.is_file():
        warn(f"{path}: not a readable file")
        return
    if path.stat().st_size == 0:
        warn(f"{path.name}: empty file, no packets")
        return
    run = TsharkRun()
    packets = run_tshark(tshark_command(path, tshark_path), run, lambda m: warn(f"{path.name}: {m}"))
    context = RunContext(path, tshark_path, ConnectionFrames(path))
    yield from analyze(packets, context, run, warn, path.name)


def analyze(packets: Iterable[Packet], context: RunContext, run: TsharkRun, warn: Callable[[str], None],
            name: str, analyzers: tuple[type[Analyzer], ...] = ANALYZERS) -> Iterator[Doc]:
    """Protocol modules over one tshark run's packets: documents as they complete, then the rest; for the whole
    set, then the connections that spoke a protocol on a port tshark does not decode it on (``other_ports``)."""
    modules = [cls(warn, context) for cls in analyzers]
    whole = analyzers is ANALYZERS
    analysed: set[tuple[str, str]] = set()  # (dataset, Community ID): connections a heuristic already decoded
    for doc in _analyze(packets, modules, run, warn, name):
        if whole and doc["event"]["dataset"] in OTHER_PORT_DATASETS:
            analysed.add((doc["event"]["dataset"], doc["network"]["community_id"]))
        yield doc
    if whole:
        yield from look_again(context, name, warn, analysed, analyze)


def _analyze(packets: Iterable[Packet], analyzers: list[Analyzer], run: TsharkRun, warn: Callable[[str], None],
             name: str) -> Iterator[Doc]:
    for pkt in packets:
        if run.packets % EXPIRE_EVERY == 0:
            for analyzer in analyzers:
                yield from analyzer.expire(pkt.ts)
        layers = set(pkt.protocols)
        for analyzer in analyzers:
            if analyzer.wants(layers):
                try:
                    yield from analyzer.handle(pkt)
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    warn(f"{name}: frame {pkt.number}: {analyzer.SERVICE} record skipped ({exc})")
    for analyzer in analyzers:
        yield from analyzer.finish()
