"""Protocols on ports their tshark dissector does not claim: one more look, with decode-as, at those connections.

tshark hands a TCP payload to the FTP, SMB, Modbus, DNP3, S7comm or IEC-104 dissector only on that protocol's
registered port (some have heuristics, most do not). The flow engines detect those protocols on any port from a
flow's first payload (``collectors.protocols.detect``); here, at the end of a run, the same probes run over each
connection's first payload bytes (``RunContext.frames``), and the connections that spoke one of them on another
port are read again: FTP from their payload (``read_ftp``, as ``native_tcp`` reads port 21's), the others in one
tshark pass over a capture of those connections only, each port decoded as what it spoke, through fresh analyzers
of those protocols. A connection the main pass already analysed as that protocol
(a tshark heuristic found it) is not read again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from collectors.protocols.base import Analyzer, RunContext, command_for
from collectors.protocols.detect import SERVICES, TCP, probe
from collectors.protocols.dnp3 import Dnp3Analyzer
from collectors.protocols.documents import Doc, Flow
from collectors.protocols.ftp import FtpAnalyzer
from collectors.protocols.iec104 import Iec104Analyzer
from collectors.protocols.modbus import ModbusAnalyzer
from collectors.protocols.reread import ConnectionFrames, Wanted, endpoint, sequenced
from collectors.protocols.s7comm import S7commAnalyzer
from collectors.protocols.smb import SmbAnalyzer
from collectors.protocols.tshark import Packet, TsharkRun, run_tshark

Warn = Callable[[str], None]
Analyze = Callable[..., Iterator[Doc]]

# detected service -> (tshark dissector to decode its port as, the ports tshark already decodes it on, analyzer)
DISSECTORS: dict[str, tuple[str, frozenset[int], type[Analyzer]]] = {
    "ftp": ("ftp", frozenset({21}), FtpAnalyzer),
    "smb": ("nbss", frozenset({139, 445}), SmbAnalyzer),
    "modbus": ("mbtcp", frozenset({502}), ModbusAnalyzer),
    "dnp3": ("dnp3", frozenset({20000}), Dnp3Analyzer),
    "s7comm": ("tpkt", frozenset({102}), S7commAnalyzer),
    "iec104": ("iec60870_104", frozenset({2404}), Iec104Analyzer),
}
MAX_PORTS = 64  # decode-as rules per pass


def spoken_elsewhere(frames: ConnectionFrames, analysed: set[tuple[str, str]]) -> dict[str, list[Wanted]]:
    """Detected service -> connections that spoke it on a port its dissector does not claim and that the main pass
    did not analyse as that protocol (``analysed``: dataset and Community ID of its documents)."""
    out: dict[str, list[Wanted]] = {}
    for opening in frames.openings():
        for from_orig, first in ((True, opening.client), (False, opening.server)):
            if first is None:
                continue
            service = SERVICES[probe(TCP, from_orig, first[1], first[2])[0]]
            if not service:
                continue
            if service in DISSECTORS and opening.flow.resp_p not in DISSECTORS[service][1] \
                    and (DISSECTORS[service][2].DATASET, opening.flow.community_id) not in analysed:
                out.setdefault(service, []).append((opening.flow, opening.start))
            break  # the first side that names a protocol decides (an HTTP reply is not read as IEC-104's 0x68)
    return out


def look_again(context: RunContext, run_name: str, warn: Warn, analysed: set[tuple[str, str]],
               analyze: Analyze) -> Iterator[Doc]:
    """Documents of the connections :func:`spoken_elsewhere` finds, read with their ports decoded as spoken (FTP
    from their payload, as ``native_tcp`` reads port 21's; the others by tshark)."""
    found = spoken_elsewhere(context.frames, analysed)
    ftp = found.pop("ftp", None)
    if ftp:
        for doc in read_ftp(context, ftp, warn):
            if (doc["event"]["dataset"], doc["network"]["community_id"]) not in analysed:
                yield doc
    if not found:
        return
    subset = context.frames.subset(wanted for conns in found.values() for wanted in conns)
    if subset is None:
        return
    ports: dict[int, str] = {}
    for service, conns in found.items():
        for flow, _ in conns:
            ports.setdefault(flow.resp_p, DISSECTORS[service][0])
    if len(ports) > MAX_PORTS:
        warn(f"{run_name}: protocols on {len(ports)} unusual ports, the first {MAX_PORTS} read")
    options = [arg for port, dissector in sorted(ports.items())[:MAX_PORTS]
               for arg in ("-d", f"tcp.port=={port},{dissector}")]
    analyzers = tuple(dict.fromkeys(DISSECTORS[service][2] for service in found))
    cmd = command_for(analyzers, subset.path, context.tshark, options)
    run = TsharkRun()
    again = RunContext(subset.path, context.tshark, ConnectionFrames(subset.path), context.expected,
                       frozenset(ports))
    try:
        packets: Iterator[Packet] = run_tshark(cmd, run, lambda m: warn(f"{run_name} (unusual ports): {m}"))
        for doc in analyze(packets, again, run, warn, run_name, analyzers=analyzers):
            if (doc["event"]["dataset"], doc["network"]["community_id"]) not in analysed:
                yield doc
    finally:
        subset.close()


def read_ftp(context: RunContext, conns: list[Wanted], warn: Warn) -> list[Doc]:
    """FTP control connections on other ports, read from their payload in capture order: each direction put back
    in sequence order (``tcp_reassembly``) and cut into lines for ``FtpAnalyzer``, as ``native_tcp`` reads port 21's
    (a tshark pass with FTP decoded on their ports cost a tshark start, 0.3 s of CPU, per run). After a client's
    ``AUTH TLS`` (or SSL) only the server's reply to it is read: TLS follows, which no analyzer of this look reads;
    other mechanisms (GSSAPI's ADAT and ENC) stay lines and are read on."""
    from collectors.protocols.native_tcp import LineReader, Stats  # native_tcp imports this package's modules

    ports = frozenset(flow.resp_p for flow, _ in conns)
    analyzer = FtpAnalyzer(warn, RunContext(context.pcap, context.tshark, context.frames, context.expected, ports))
    payloads = context.frames.tcp_payloads(conns)
    stats, docs = Stats(), []
    for flow, _ in conns:
        session = _FtpSession()
        lines = {True: LineReader(), False: LineReader()}
        for from_client, ts, chunks, last in sequenced(payloads.get(flow.stream, ()),
                                                       endpoint(flow.orig_h, flow.orig_p)):
            found = [line for chunk in chunks for line in lines[from_client].lines(chunk, stats)]
            docs += session.read(analyzer, flow, from_client, ts, found + lines[from_client].end() if last else found)
    docs.extend(analyzer.finish())
    return docs


class _FtpSession:
    """Which directions of one control connection are still lines."""

    def __init__(self) -> None:
        self.client_lines = self.server_lines = True
        self.tls_asked = False  # the client sent AUTH TLS/SSL: the server's reply ends the lines

    def read(self, analyzer: FtpAnalyzer, flow: Flow, from_client: bool, ts: float, lines: list[bytes]) -> list[Doc]:
        docs: list[Doc] = []
        for line in lines:
            if not (self.client_lines if from_client else self.server_lines):
                break
            docs += analyzer.line(flow, from_client, ts, line)
            if from_client and line[:5].upper() == b"AUTH " and line[5:8].upper() in (b"TLS", b"SSL"):
                self.client_lines, self.tls_asked = False, True
            elif not from_client and self.tls_asked and line[:3].isdigit() and line[3:4] != b"-":
                self.server_lines = False  # the final reply to AUTH TLS
        return docs
