"""TCP connections the deep path reads itself instead of handing them to tshark: the FTP control channel, HTTP/1.x,
TLS, the ICS protocols tshark decodes by port (Modbus/TCP, DNP3, S7comm, IEC 60870-5-104), SMB2 and DCE-RPC.

:class:`~collectors.protocols.native.NativeFrames` hands every decoded TCP frame of the selected-frame stream to
:meth:`TcpNative.take`, which decides once per connection, at its first frame, who reads it:

- FTP: the lower port is 21 (tshark decodes port 21 as FTP, the lower port first), unless a SYN named the other
  side as the server (tshark then tries the server's port first) or both ports are 21;
- HTTP: the first payload is an HTTP request or status line (``detect.http_request``/``http_response``, the flow
  path's probes), on any port: Zeek's dynamic protocol detection. A SYN before any payload goes to tshark and
  decides nothing;
- TLS: the first payload is a TLS handshake record holding a ClientHello or ServerHello (``detect.tls_client_hello``/
  ``tls_server_hello``), on any port; an SSLv2 ClientHello, DTLS, QUIC and STARTTLS sessions (whose first payload is
  not TLS) stay with tshark. ``READ_TLS = False`` leaves every TLS connection to tshark;
- Modbus/TCP (502), DNP3 (20000), S7comm (102), IEC 60870-5-104 (2404): one side on that port and the other on no
  ICS port (or both on it), and the first payload is neither HTTP nor TLS (those are read as such). DNP3 and
  S7comm go to their Rust engines (``dnp3_native``, ``s7comm_native``); for Modbus/TCP and IEC-104 the ``*_wire``
  readers give each frame the fields tshark would print for it, and the same analyzers (``ModbusAnalyzer``, ...)
  make the documents.
  On 1M packets of real traces this took 26k of tshark's 66k frames per analyzer process: tshark's CPU went from
  5.2 s to 2.7 s. ``READ_ICS = False`` leaves them to tshark;
- SMB2 (``smb_wire``): one side on 445 or 139 and the first payload an SMB message after a NetBIOS session header
  (``detect.smb``); DCE-RPC over TCP on any other port: the first payload a bind or bind acknowledgement
  (``detect.dce_rpc``; tshark finds it on any port by its heuristic). The reader gives each frame the fields tshark
  prints for it and ``SmbAnalyzer`` makes the documents; SMB1 past the multi-protocol NEGOTIATE is handed back to
  tshark. On 1M packets of real traces this took about 9k of tshark's 21k frames per analyzer process: tshark's CPU
  went from about 1.05 s to 0.6 s. ``READ_SMB = False`` leaves them to tshark;
- everything else goes to tshark, and the decision is remembered so a connection is never split between readers
  (frames of such a connection skip decoding: ``tshark_reads``).

A native connection is put back in sequence order per direction (``tcp_reassembly``: first copy wins, holes
counted and skipped, a direction starts where the peer's first ACK points), and its bytes go to a per-protocol
reader: FTP into ``ftp_native`` (the Rust engine, or its reference: ``LineReader`` lines into ``FtpAnalyzer.line``),
HTTP into ``http_native`` (the Rust engine, or its reference ``http.HttpConnection``: ``http_wire`` messages paired
by ``HttpAnalyzer``), TLS into ``tls_native`` (the Rust engine, or ``tls_wire`` frames into ``TlsAnalyzer``),
S7comm into ``s7comm_native`` and DNP3 into ``dnp3_native`` (the Rust engines, or ``S7commReader`` fields into
``S7commAnalyzer`` and ``Dnp3Reader`` frames into ``Dnp3Analyzer``), the other ICS protocols into their ``*_wire``
reader. Documents and announcements are those of the tshark path; the differences are named in
tests/unit/test_tcp_native.py, test_tls_native.py and
test_ics_native.py (and the wire readers' own tests).

Hand-back: a session that leaves its protocol in-band is given back to tshark from the frame that says so, and
tshark reads that exchange and what follows as it did before: FTP ``AUTH`` (TLS follows; Zeek hands the connection
to its TLS analyzer the same way), an HTTP CONNECT (TLS or another protocol through a proxy) or a request with an
Upgrade header (WebSocket, h2c). Frames of such a connection that were already read here stay read here (when the
switching message is the connection's first, as it nearly always is, tshark sees the whole connection).

Where every engine above is built, the connection table, the reassembly and the dispatch to the engines are Rust
(``collectors._rs.TcpTable``, collectors/rust/src/tcp.rs): ``NativeFrames`` hands it plain Ethernet/IPv4 TCP frames
as they lie in the pcapng block (``frame``) and other decoded TCP packets (``take``); the decision above stays here
(``_table_decide``), and so do the Modbus/TCP and IEC-104 readers and the engines' expiry, which the table calls. The
Python table below is its reference (``RUST_TABLE = False``; tests/unit/test_tcp_table.py holds them equal).

Measured (300k packets of real traces, /var/tmp/b300k.pcap, 131,924 selected frames; load 1.8-2.7 on 2 cores):
14,170 FTP and 43,750 HTTP frames leave tshark's input (49,640 still reach it, 107,560 before); the whole ingest
takes 13.3 s CPU instead of 17.5-17.9 s (tshark's conv statistics: 2.6 s), the analyzers' process peaks at 207 MB
instead of 288 MB; every document outside secops.http is byte-identical with tshark reading these connections.

Bounds: at most ``MAX_CONNECTIONS`` connections (decisions included) are remembered; connections idle for
``IDLE_SECONDS`` of capture time are swept (holes skipped, what waited handed on); what waits behind holes in all
connections together is bounded by ``MAX_HELD_BYTES`` (``tcp_reassembly.Budget``); an FTP line is cut at
``MAX_LINE_BYTES`` (HTTP's bounds are in ``http_wire``). Damage is counted and reported once per run
(``finish``), never raised; a reader's own failure on odd input gives the connection to tshark (``take``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collectors.conn import ip_str
from collectors.decode import ACK, BUF, CAPLEN, DPORT, DST, FLAGS, L4OFF, PLEN, SEQ, SPORT, SRC
from collectors.flowconst import F_ACK, F_FIN, F_RST, F_SYN
from collectors.protocols import detect
from collectors.protocols.base import EngineDocuments, built_rust, reader_documents
from collectors.protocols.detect import PROBE_BYTES, http_request, http_response, tls_client_hello, tls_server_hello
from collectors.protocols.dnp3 import Dnp3Analyzer
from collectors.protocols.dnp3_native import PythonDnp3, RustDnp3, native_dnp3
from collectors.protocols.dnp3_wire import Dnp3Reader
from collectors.protocols.documents import Flow, Written
from collectors.protocols.expected import ExpectedConnections
from collectors.protocols.ftp_native import RustFtp, native_ftp
from collectors.protocols.http_native import RustHttp, native_http
from collectors.protocols.http_wire import MAX_DECODED_BYTES
from collectors.protocols.http_wire import MAX_LINE_BYTES as MAX_HTTP_LINE
from collectors.protocols.iec104 import Iec104Analyzer
from collectors.protocols.iec104_wire import Iec104Reader
from collectors.protocols.modbus import ModbusAnalyzer
from collectors.protocols.modbus_wire import ModbusReader
from collectors.protocols.s7comm import S7commAnalyzer
from collectors.protocols.s7comm_native import PythonS7comm, RustS7comm, native_s7comm
from collectors.protocols.s7comm_wire import S7commReader
from collectors.protocols.smb import SmbAnalyzer
from collectors.protocols.smb_wire import SmbReader, SmbSessions
from collectors.protocols.tcp_reassembly import Budget, Chunk, Direction, distance
from collectors.protocols.tls_native import RustTls, native_tls
from collectors.protocols.tls_wire import HANDSHAKE

if TYPE_CHECKING:
    from collectors._rs import TcpTable

Warn = Callable[[str], None]

FTP_PORT = 21
MAX_CONNECTIONS = 65_536
# what may wait behind holes in all connections together, each waiting segment charged its bytes and
# tcp_reassembly.SEGMENT_OVERHEAD: past it, the direction a segment would wait in skips its holes (counted)
MAX_HELD_BYTES = 64 << 20
IDLE_SECONDS = 300.0  # Zeek's tcp_inactivity_timeout
SWEEP_SECONDS = 60.0  # capture time between sweeps (each looks at every connection)
CLOSE_DELAY_SECONDS = 5.0  # Zeek's tcp_close_delay / tcp_reset_delay: a closed connection's state lives this long
MAX_LINE_BYTES = 8192  # longer command/reply lines are cut here (counted)
# sequence distance past which a segment starts a new connection on the same endpoints (port reuse): far beyond the
# payload a direction hands the deep path (selection.DEEP_BYTES_PER_DIRECTION, 1 MiB by default), and a new random
# initial sequence number lands further away 97% of the time
REUSE_DISTANCE = 64 << 20
TSHARK, FTP, HTTP, TLS, MODBUS, DNP3, S7COMM, IEC104, SMB = 0, 1, 2, 3, 4, 5, 6, 7, 8
READ_TLS = True  # False: TLS connections stay with tshark (the oracle's peer)
READ_ICS = True  # False: Modbus/TCP, DNP3 over TCP, S7comm and IEC 60870-5-104 stay with tshark (the oracle's peer)
READ_SMB = True  # False: SMB2 and DCE-RPC over TCP stay with tshark (the oracle's peer)
SMB_PORTS = frozenset({445, 139})  # the ports tshark decodes SMB on (elsewhere ``other_ports`` looks again)
# the connection table and reassembly in Rust (``collectors._rs.TcpTable``) where every engine is: False keeps them
# here (the reference it is tested against)
RUST_TABLE = True
TABLE: type[TcpTable] | None = built_rust("TcpTable")
# the ports tshark decodes them on (S7comm: ISO-TSAP, TPKT)
ICS_PORTS = {502: MODBUS, 20000: DNP3, 102: S7COMM, 2404: IEC104}
# the layers tshark names above TCP for each, as the analyzers look for them
ICS_LAYERS = {MODBUS: ["mbtcp", "modbus"], DNP3: ["dnp3"], S7COMM: ["tpkt", "cotp", "s7comm"],
              IEC104: ["iec60870_104", "iec60870_asdu"]}
# the flow path's probes of each: they decide between two ICS ports (``ics_server_port``)
ICS_PROBES: dict[int, Callable[[bytes, int], bool]] = {
    MODBUS: detect.modbus, DNP3: detect.dnp3, S7COMM: detect.s7comm, IEC104: detect.iec104}
IcsReader = ModbusReader | Dnp3Reader | S7commReader | Iec104Reader | SmbReader
ICS_READERS: dict[int, Callable[[], IcsReader]] = {
    MODBUS: ModbusReader, DNP3: Dnp3Reader, S7COMM: S7commReader, IEC104: Iec104Reader}
IcsEngine = RustDnp3 | PythonDnp3 | RustS7comm | PythonS7comm  # frame in, document out (``TcpNative.ics_engines``)
IcsAnalyzer = ModbusAnalyzer | Dnp3Analyzer | S7commAnalyzer | Iec104Analyzer | SmbAnalyzer
ICS_ANALYZERS: dict[int, Callable[[Warn], IcsAnalyzer]] = {
    MODBUS: ModbusAnalyzer, DNP3: Dnp3Analyzer, S7COMM: S7commAnalyzer, IEC104: Iec104Analyzer, SMB: SmbAnalyzer}


@dataclass
class Stats:
    """What the native TCP readers met, for the run's one warning."""

    frames: int = 0  # frames taken out of tshark's input
    connections: int = 0
    handed_back: int = 0  # connections given back to tshark (in-band switch to TLS)
    gaps: int = 0
    gap_bytes: int = 0
    cut_lines: int = 0  # FTP lines cut at MAX_LINE_BYTES (the FTP reader's count, taken at finish)
    failures: int = 0  # connections a reader failed on (a bug: reported)
    reused: int = 0  # connections that ended because their endpoints opened a new one
    ics_damaged: int = 0  # DNP3 frames with a bad CRC or length, S7comm TPKTs with a bad version or length, ...
    budget_holes: int = 0  # holes skipped early (also in gaps): what waited behind holes reached MAX_HELD_BYTES
    budget_hole_bytes: int = 0


def ics_server_port(sport: int, dport: int, payload: bytes = b"") -> int:
    """The ICS port of a connection read as that protocol (0: none): one side on it and the other on no ICS port,
    or both on the same one (DNP3 outstations and masters often both use 20000). tshark tries the lower port's
    dissector first, but those of the ports met beside an ICS port (SOCKS' 1080, ...) refuse ICS payloads and
    hand them on.

    With each side on a different ICS port, the first ``payload`` decides, as Zeek's dynamic protocol detection
    does: the port whose protocol's probe (``detect``) accepts it, the lower one if both do. tshark only tries the
    lower port's dissector there (IEC-104 sent from port 102 or 502 is not read as such), and the pipeline's second
    look then reads the connection again as what the probe found; reading it here spares that second pass."""
    if sport == dport:
        return sport if sport in ICS_PORTS else 0
    if dport in ICS_PORTS:
        if sport not in ICS_PORTS:
            return dport
        head = payload[:PROBE_BYTES]
        for port in sorted((sport, dport)):
            if ICS_PROBES[ICS_PORTS[port]](head, len(payload)):
                return port
        return 0
    return sport if sport in ICS_PORTS else 0


def smb_client_sends(sport: int, dport: int, payload: bytes) -> bool | None:
    """Whether the sender of a connection's first payload is its client, if it is read as SMB or DCE-RPC over TCP
    (None: it is not). SMB: one side on 445 or 139 and an SMB message after a NetBIOS session header
    (``detect.smb``). DCE-RPC: a bind or bind acknowledgement (``detect.dce_rpc``) on any other port, as tshark's
    heuristic finds it on any port (135 is its own)."""
    head = payload[:PROBE_BYTES]
    if sport in SMB_PORTS or dport in SMB_PORTS:
        if sport == dport or not detect.smb(head, len(payload)):
            return None
        return dport in SMB_PORTS
    if detect.dce_rpc(head, len(payload)):
        return payload[2] == 11  # the client binds
    return None


def ics_damage(reader: IcsReader | None) -> int:
    """What an ICS reader skipped as damaged (Modbus/TCP's reader only ignores what does not look like it)."""
    if isinstance(reader, Dnp3Reader):
        d = reader.stats
        return d.crc_failures + d.malformed + d.rejected_segments + d.table_segments_dropped
    if isinstance(reader, S7commReader):
        t = reader.stats
        return t.bad_versions + t.bad_lengths + t.evicted
    if isinstance(reader, Iec104Reader):
        return reader.stats.malformed
    if isinstance(reader, SmbReader):
        return reader.damaged
    return 0


def segment_payload(p: tuple) -> bytes:
    """The payload a decoded TCP packet captured (its length on the wire is ``p[PLEN]``)."""
    if p[PLEN] <= 0:
        return b""
    buf, l4 = p[BUF], p[L4OFF]
    start = l4 + (buf[l4 + 12] >> 4) * 4 if l4 + 20 <= len(buf) else len(buf)
    return bytes(buf[start:start + min(p[CAPLEN], p[PLEN])])


class LineReader:
    """A direction's bytes as lines (LF ends a line, a CR before it is dropped), cut at ``MAX_LINE_BYTES``."""

    __slots__ = ("buf", "cutting")

    def __init__(self) -> None:
        self.buf = b""
        self.cutting = False  # inside a line already cut: its rest is dropped

    def lines(self, chunk: Chunk, stats: Stats) -> list[bytes]:
        if isinstance(chunk, int):  # a hole: the line it cut is lost (Zeek: content gap)
            self.buf, self.cutting = b"", False
            return []
        data = self.buf + chunk if self.buf else chunk
        out = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self.cutting:
                self.cutting = False
            else:
                out.append(data[start:end].rstrip(b"\r")[:MAX_LINE_BYTES])
            start = end + 1
        rest = data[start:]
        if len(rest) > MAX_LINE_BYTES and not self.cutting:
            out.append(rest[:MAX_LINE_BYTES])
            stats.cut_lines += 1
            self.cutting = True
            rest = b""
        elif self.cutting:
            rest = b""
        self.buf = rest
        return out

    def end(self) -> list[bytes]:
        rest, self.buf = self.buf, b""
        return [rest.rstrip(b"\r")] if rest and not self.cutting else []


class Connection:
    """One natively read connection: its orientation, both directions' reassembly, its protocol reader."""

    __slots__ = ("client", "dirs", "ended", "fins", "flow", "ftp", "http", "ics", "ics_id", "kind", "last_ts", "tls")

    def __init__(self, kind: int, flow: Flow, client: tuple[bytes, int], ts: float,
                 http: int | None = None, tls: int | None = None,
                 ics: IcsReader | None = None, ics_id: int | None = None, ftp: int | None = None) -> None:
        self.kind = kind
        self.ftp = ftp  # the connection's id in TcpNative.ftp (ftp_native)
        self.http = http  # the connection's id in TcpNative.http (http_native)
        self.tls = tls  # the connection's id in TcpNative.tls (tls_native)
        self.ics = ics
        self.ics_id = ics_id  # the connection's id in its ICS engine (TcpNative.ics_engines: DNP3, S7comm)
        self.flow = flow
        self.client = client  # (address, port) of the originator
        self.dirs = (Direction(), Direction())  # from the client, from the server
        self.last_ts = ts
        self.fins = 0  # bit 0: the client sent a FIN, bit 1: the server did
        self.ended: float | None = None  # capture time of the RST, or of the FIN that closed both directions

    def held(self) -> int:
        """What its directions hold against the table's budget."""
        return self.dirs[0].held() + self.dirs[1].held()


class TcpNative:
    """The connection table and readers of one deep-path run."""

    def __init__(self, name: str, warn: Warn, expected: ExpectedConnections | None, raw: bool = False) -> None:
        """``raw``: the analyzers write their documents as JSON text (``Analyzer.raw``), for a process pipe."""
        self.name = name
        self.warn = warn
        self.ftp = native_ftp(warn, expected, raw)  # ftp_native: the Rust engine or FtpAnalyzer's lines
        self.http = native_http(warn, raw)  # http_native: the Rust engine or HttpAnalyzer, no second look
        self.tls = native_tls(warn, raw)  # tls_native: the Rust engine or TlsAnalyzer, no second look
        # the ICS protocols read frame in, document out (the Rust engines, or their readers and analyzers)
        self.ics_engines: dict[int, IcsEngine] = {DNP3: native_dnp3(warn, raw), S7COMM: native_s7comm(warn, raw)}
        # the others: a ``*_wire`` reader per connection, its fields into the protocol's analyzer
        self.ics = {kind: make(warn) for kind, make in ICS_ANALYZERS.items() if kind not in self.ics_engines}
        for analyzer in self.ics.values():
            analyzer.raw = raw
        self.conns: dict[tuple, Connection | int] = {}  # a Connection, or TSHARK for one tshark reads
        self._natives: dict[tuple, Connection] = {}  # the Connections of ``conns``, in its order (sweeps walk these)
        self._streams = 0
        self._next_sweep: float | None = None
        self._stats = Stats()
        self.budget = Budget(MAX_HELD_BYTES)  # what waits behind holes in all connections (the Rust table's own)
        # with every engine built: the connection table in Rust, which reads plain IPv4 frames in place (``frame``)
        self.table: TcpTable | None = self._rust_table(raw)
        self.ics_read_here: dict[int, Connection] = {}  # the table's Modbus/TCP, IEC-104, SMB connections, by id
        self.smb_sessions = SmbSessions()  # SMB2 trees, over the run's connections (as tshark keeps them)

    def _rust_table(self, raw: bool) -> TcpTable | None:
        dnp3, s7comm = self.ics_engines[DNP3], self.ics_engines[S7COMM]
        if not RUST_TABLE or TABLE is None or not isinstance(self.http, RustHttp) or \
                not isinstance(self.tls, RustTls) or not isinstance(self.ftp, RustFtp) or \
                not isinstance(dnp3, RustDnp3) or not isinstance(s7comm, RustS7comm):
            return None
        return TABLE(self.http.engine, self.tls.engine, self.ftp.engine, dnp3.engine, s7comm.engine, self,
                     EngineDocuments(raw).wrap, MAX_CONNECTIONS, self.budget.limit)

    @property
    def stats(self) -> Stats:
        """The run's counters (those the Rust table keeps taken from it)."""
        s = self._stats
        if self.table is not None:
            (s.frames, s.handed_back, s.gaps, s.gap_bytes, s.reused, s.ics_damaged, s.budget_holes,
             s.budget_hole_bytes) = self.table.counts
        else:
            s.budget_holes, s.budget_hole_bytes = self.budget.holes, self.budget.hole_bytes
        return s

    def tshark_reads(self, src: bytes, dst: bytes, sport: int, dport: int) -> bool:
        """Whether the connection of these endpoints was already given to tshark (no need to decode its frames)."""
        if self.table is not None:
            return self.table.tshark_reads(src, dst, sport, dport)
        key = (src, sport, dst, dport) if (src, sport) < (dst, dport) else (dst, dport, src, sport)
        return self.conns.get(key) == TSHARK

    def take(self, p: tuple, ts: float, docs: list[Written]) -> bool:
        """Whether this decoded TCP packet is read here (its documents into ``docs``); False: tshark's.

        A reader's bug on odd input must not stop the deep path: the connection is then forgotten (what it had
        read is lost, counted in ``failures``) and its later frames go to tshark."""
        if self.table is not None:
            return self.table.take(p[SRC], p[DST], p[SPORT], p[DPORT], p[FLAGS], p[SEQ], p[ACK], segment_payload(p),
                                   p[PLEN], ts, docs)
        src, dst, sport, dport = p[SRC], p[DST], p[SPORT], p[DPORT]
        key = (src, sport, dst, dport) if (src, sport) < (dst, dport) else (dst, dport, src, sport)
        try:
            return self._take(key, p, ts, docs)
        except Exception as exc:
            failed = self.conns.get(key)
            if isinstance(failed, Connection):
                self._forget(failed)  # its readers' state goes with it
            self._failed(exc, "its later frames go to tshark")
            self._to_tshark(key)
            return False

    def _to_tshark(self, key: tuple) -> None:
        """tshark reads the connection of ``key`` from now on: what it held behind holes leaves the budget."""
        conn = self.conns.get(key)
        if isinstance(conn, Connection):
            self.budget.held -= conn.held()
            del self._natives[key]
            if isinstance(conn.ics, SmbReader):
                conn.ics.release()
        self.conns[key] = TSHARK

    def _failed(self, exc: Exception, then: str) -> None:
        self._stats.failures += 1
        if self._stats.failures == 1:
            self.warn(f"{self.name}: native TCP reading failed on one connection ({type(exc).__name__}: {exc}); "
                      f"{then}")

    def _forget(self, conn: Connection) -> None:
        """Drop what the protocol readers hold for a connection, without reading on (its reading failed)."""
        if conn.ftp is not None:
            self.ftp.forget(conn.ftp)
        if conn.http is not None:
            self.http.forget(conn.http)
        if conn.tls is not None:
            self.tls.close(conn.tls)
        if conn.ics_id is not None:
            self.ics_engines[conn.kind].forget(conn.ics_id)

    def _take(self, key: tuple, p: tuple, ts: float, docs: list[Written]) -> bool:
        src, sport = p[SRC], p[SPORT]
        if self._next_sweep is None or ts >= self._next_sweep:
            self._next_sweep = ts + SWEEP_SECONDS
            docs += self.sweep(ts - IDLE_SECONDS)
        conn = self.conns.get(key)
        if conn == TSHARK:
            return False
        payload = segment_payload(p)
        if conn is None:
            conn = self._decide(key, p, ts, payload)
            if len(self.conns) > MAX_CONNECTIONS:
                docs += self._close(next(iter(self.conns)))
        if not isinstance(conn, Connection):
            return False
        flags = p[FLAGS]
        from_client = (src, sport) == conn.client
        side = 0 if from_client else 1
        if self._reused(conn, side, p, ts):  # the same endpoints, a new connection: the old one ends here
            self._stats.reused += 1
            docs += self._close(key)
            return self._take(key, p, ts, docs)
        if flags & F_SYN and not flags & F_RST:
            conn.dirs[side].syn(p[SEQ])
        elif flags & F_ACK:
            conn.dirs[1 - side].acked(p[ACK])
        conn.last_ts = ts
        if flags & (F_FIN | F_RST) and conn.ended is None:
            conn.fins |= 3 if flags & F_RST else 1 << side
            if conn.fins == 3:
                conn.ended = ts
        if p[PLEN] > 0:
            chunks = conn.dirs[side].add(p[SEQ], payload, p[PLEN], self.budget)
            if conn.ics is not None or conn.ics_id is not None:
                if not self._read_ics(conn, from_client, ts, p[SEQ], chunks, docs):
                    self._stats.handed_back += 1
                    self._stats.ics_damaged += ics_damage(conn.ics)  # what it skipped before tshark took over
                    self._to_tshark(key)
                    return False
            elif not self._read(conn, key, from_client, ts, chunks, docs):
                if conn.http is not None:
                    self.http.forget(conn.http)
                if conn.ftp is not None:
                    self.ftp.forget(conn.ftp)
                self._stats.handed_back += 1
                self._to_tshark(key)
                return False
        self._stats.frames += 1
        return True

    @staticmethod
    def _reused(conn: Connection, side: int, p: tuple, ts: float) -> bool:
        """Whether this segment starts a new connection on the same endpoints (port reuse): it comes after the
        connection closed (both FINs or a RST) and is a SYN or comes later than Zeek keeps a closed connection's
        state; or its sequence number is too far from its direction's stream to belong to it (the SYN is rarely
        among the selected frames)."""
        if conn.ended is not None and (ts - conn.ended > CLOSE_DELAY_SECONDS or p[FLAGS] & (F_SYN | F_ACK) == F_SYN):
            return True
        expected = conn.dirs[side].next_seq
        return expected is not None and abs(distance(p[SEQ], expected)) > REUSE_DISTANCE

    def _decide(self, key: tuple, p: tuple, ts: float, payload: bytes) -> Connection | int | None:
        """Who reads a connection first seen now (None: not decided yet, a SYN before any payload)."""
        src, dst, sport, dport = p[SRC], p[DST], p[SPORT], p[DPORT]
        chosen = self._choose(src, dst, sport, dport, p[FLAGS], payload)
        if chosen is None:
            return None
        kind, sender_is_client = chosen
        if kind == TSHARK:
            self.conns[key] = TSHARK
            return TSHARK
        conn = self.conns[key] = self._natives[key] = self._open(kind, sender_is_client, (src, sport), (dst, dport),
                                                                 ts)
        return conn

    def _table_decide(self, src: bytes, dst: bytes, sport: int, dport: int, flags: int, payload: bytes,
                      ts: float) -> tuple[int, bool, int] | int | None:
        """``_decide`` for the Rust table: None, TSHARK, or (kind, whether the sender is the client, the id its
        readers know it by); the table keeps the connection."""
        chosen = self._choose(src, dst, sport, dport, flags, payload)
        if chosen is None or chosen[0] == TSHARK:
            return None if chosen is None else TSHARK
        kind, sender_is_client = chosen
        conn = self._open(kind, sender_is_client, (src, sport), (dst, dport), ts)
        if conn.ics is not None:
            self.ics_read_here[self._streams] = conn
        return kind, sender_is_client, self._streams

    def _choose(self, src: bytes, dst: bytes, sport: int, dport: int, flags: int,
                payload: bytes) -> tuple[int, bool] | None:
        """(who reads a connection first seen now, whether the frame's sender is its client); None: not decided
        yet (a SYN before any payload)."""
        kind, sender_is_client = TSHARK, True
        if min(sport, dport) == FTP_PORT and sport != dport:
            named_other = flags & F_SYN and not flags & F_ACK and dport != FTP_PORT
            kind, sender_is_client = (TSHARK if named_other else FTP), sport != FTP_PORT
        elif not payload:
            return None  # a SYN selected before detection: the first payload decides
        elif http_request(payload[:PROBE_BYTES], len(payload)):
            kind = HTTP
        elif http_response(payload[:PROBE_BYTES], len(payload)):
            kind, sender_is_client = HTTP, False
        elif payload[0] == HANDSHAKE and tls_client_hello(payload[:PROBE_BYTES], len(payload)):
            kind = TLS if READ_TLS else TSHARK  # a TLS record (an SSLv2 ClientHello stays with tshark)
        elif tls_server_hello(payload[:PROBE_BYTES], len(payload)):
            kind, sender_is_client = TLS if READ_TLS else TSHARK, False
        elif READ_ICS and (ics_port := ics_server_port(sport, dport, payload)):
            # on its port, unless the first payload spoke HTTP or TLS (Zeek's DPD; tshark's ICS dissectors refuse it
            # and its second look reads it)
            kind, sender_is_client = ICS_PORTS[ics_port], sport != ics_port or sport == dport
        elif READ_SMB and (client_sends := smb_client_sends(sport, dport, payload)) is not None:
            kind, sender_is_client = SMB, client_sends
        return kind, sender_is_client

    def _open(self, kind: int, sender_is_client: bool, sender: tuple[bytes, int], receiver: tuple[bytes, int],
              ts: float) -> Connection:
        """A connection read here from now on: its flow, its readers' state."""
        client, server = (sender, receiver) if sender_is_client else (receiver, sender)
        self._streams += 1
        flow = Flow("tcp", ip_str(client[0]), client[1], ip_str(server[0]), server[1], f"native-{self._streams}")
        http = self._streams if kind == HTTP else None
        if http is not None:
            self.http.open(http, flow)
        tls = self._streams if kind == TLS else None
        if tls is not None:
            self.tls.open(tls, flow)
        ftp = self._streams if kind == FTP else None
        if ftp is not None:
            self.ftp.open(ftp, flow)
        engine = self.ics_engines.get(kind)
        ics_id = self._streams if engine is not None else None
        if engine is not None:
            engine.open(self._streams, flow)
        make_ics = ICS_READERS.get(kind) if engine is None else None
        ics = make_ics() if make_ics is not None else None
        if kind == SMB:
            ics = SmbReader(self.smb_sessions, cifs=server[1] != 139)
        self._stats.connections += 1
        return Connection(kind, flow, client, ts, http, tls, ics, ics_id, ftp)

    # -- the Rust table's calls for what stays in Python (Modbus/TCP and IEC-104 readers, the engines' expiry) ----
    def _table_ics_feed(self, conn_id: int, from_client: bool, chunks: list[Chunk], ts: float,
                        seq: int) -> tuple[list[Written], bool]:
        """The frame's documents, and whether the connection stays here (False: tshark reads on from this frame)."""
        conn = self.ics_read_here[conn_id]
        assert conn.ics is not None
        docs = self._read_python(conn, from_client, chunks, ts, seq)
        return docs, not (isinstance(conn.ics, SmbReader) and conn.ics.switched)

    def _read_python(self, conn: Connection, from_client: bool, chunks: list[Chunk], ts: float,
                     seq: int) -> list[Written]:
        """A frame's chunks through the connection's ``*_wire`` reader and its protocol's analyzer."""
        reader = conn.ics
        assert reader is not None
        layers = reader.layers_taken if isinstance(reader, SmbReader) else ICS_LAYERS[conn.kind]
        return reader_documents(self.ics[conn.kind], reader, conn.flow, from_client, chunks, ts, seq, layers)

    def _table_ics_damage(self, conn_id: int) -> int:
        conn = self.ics_read_here.get(conn_id)
        return ics_damage(conn.ics) if conn is not None else 0

    def _table_ics_drop(self, conn_id: int) -> None:
        conn = self.ics_read_here.pop(conn_id, None)
        if conn is not None and isinstance(conn.ics, SmbReader):
            conn.ics.release()

    def _read(self, conn: Connection, key: tuple, from_client: bool, ts: float, chunks: list[Chunk],
              docs: list[Written]) -> bool:
        """Reassembled bytes through the connection's reader; False when the connection goes back to tshark."""
        http, ftp = conn.http, conn.ftp
        if conn.tls is not None:
            self._read_tls(conn, from_client, ts, chunks, docs)
            return True
        for chunk in chunks:
            if isinstance(chunk, int):
                self._stats.gaps += 1
            if http is not None:
                docs += self.http.feed(http, from_client, chunk, ts)
                if self.http.switched(http):  # CONNECT or Upgrade: tshark reads on from this frame
                    return False
                continue
            if ftp is not None:
                docs += self.ftp.feed(ftp, from_client, chunk, ts)
                if self.ftp.switched(ftp):  # the client's AUTH: TLS follows, tshark reads on from this frame
                    return False
        return True

    def _read_tls(self, conn: Connection, from_client: bool, ts: float, chunks: list[Chunk],
                  docs: list[Written]) -> None:
        """A frame's bytes through the TLS reader (``tls_native``): the record reader, then one analyzer step."""
        assert conn.tls is not None
        self._count_holes(chunks)
        docs += self.tls.feed(conn.tls, from_client, chunks, ts)

    def _count_holes(self, chunks: list[Chunk]) -> None:
        for chunk in chunks:
            if isinstance(chunk, int):
                self._stats.gaps += 1

    def _read_ics(self, conn: Connection, from_client: bool, ts: float, seq: int, chunks: list[Chunk],
                  docs: list[Written]) -> bool:
        """A frame's bytes through the ICS (or SMB) reader; the PDUs they completed, as tshark prints that frame,
        into the protocol's analyzer (the frame's raw sequence number places them, as it places tshark's). DNP3 and
        S7comm: both in their engine (``ics_engines``). False: the connection goes back to tshark from this frame
        (an SMB reader met SMB1 past the negotiation)."""
        self._count_holes(chunks)
        if conn.ics_id is not None:
            docs += self.ics_engines[conn.kind].feed(conn.ics_id, from_client, chunks, ts, seq)
            return True
        found = self._read_python(conn, from_client, chunks, ts, seq)
        if isinstance(conn.ics, SmbReader) and conn.ics.switched:
            return False
        docs += found
        return True

    def _close(self, key: tuple) -> list[Written]:
        """Forget a connection: what waited behind holes is read, partial lines end. Should a reader fail on it,
        what the readers hold for it is dropped all the same, and the failure raised."""
        conn = self.conns.pop(key)
        if not isinstance(conn, Connection):
            return []
        del self._natives[key]
        self.budget.held -= conn.held()
        try:
            return self._end(conn, key)
        except Exception:
            self._forget(conn)
            raise
        finally:
            if isinstance(conn.ics, SmbReader):
                conn.ics.release()

    def _close_quietly(self, key: tuple) -> list[Written]:
        """``_close`` for a connection other than the current frame's (idle, or at the end): a reader's failure on
        it is counted and reported, and the others are closed on."""
        try:
            return self._close(key)
        except Exception as exc:
            self._failed(exc, "what it had read is lost")
            return []

    def _end(self, conn: Connection, key: tuple) -> list[Written]:
        docs: list[Written] = []
        ics_id = conn.ics_id
        engine = self.ics_engines.get(conn.kind) if ics_id is not None else None
        self._stats.ics_damaged += engine.damage(ics_id) if engine is not None and ics_id is not None \
            else ics_damage(conn.ics)
        for side, direction in enumerate(conn.dirs):
            rest = direction.flush()
            if conn.ics is not None or conn.ics_id is not None:
                if rest:
                    self._read_ics(conn, side == 0, conn.last_ts, direction.next_seq or 0, rest, docs)
                self._stats.gap_bytes += direction.gap_bytes
                continue
            if rest or conn.tls is None:
                self._read(conn, key, side == 0, conn.last_ts, rest, docs)
            self._stats.gap_bytes += direction.gap_bytes
            if conn.ftp is not None:
                docs += self.ftp.end(conn.ftp, side == 0, conn.last_ts)
        if conn.ftp is not None:
            self.ftp.forget(conn.ftp)
        if conn.http is not None:
            docs += self.http.end(conn.http, conn.last_ts)
        if conn.tls is not None:
            self.tls.close(conn.tls)
        if engine is not None and ics_id is not None:
            docs += engine.end(ics_id, conn.last_ts)
        return docs

    def sweep(self, idle_before: float) -> list[Written]:
        """Connections idle since ``idle_before`` (capture time) are closed; tshark's decisions forgotten."""
        docs: list[Written] = []
        if self.table is not None:
            self.table.sweep(idle_before, docs)
            return docs
        # In the table's order: the idle connections are closed and, while the table is more than half full,
        # tshark's decisions forgotten. The walk costs what it closes and drops, not the table's size (a capture
        # whose clock jumps a minute a frame sweeps at every frame): first the entries removed while the table is
        # over half full, found from its front; then the idle connections left, from ``_natives``.
        over = len(self.conns) - MAX_CONNECTIONS // 2
        first: list[tuple] = []
        if over > 0:
            for key, c in self.conns.items():
                if not isinstance(c, Connection) or c.last_ts < idle_before:
                    first.append(key)
                    if len(first) == over:
                        break
        for key in first:
            if isinstance(self.conns.get(key), Connection):
                docs += self._close_quietly(key)
            else:
                self.conns.pop(key)
        for key in [k for k, c in self._natives.items() if c.last_ts < idle_before]:
            docs += self._close_quietly(key)
        return docs + self._expire_readers(idle_before)

    def _expire_readers(self, idle_before: float) -> list[Written]:
        """What the readers hold for connections idle since ``idle_before``: requests never answered, ..."""
        docs = self.http.expire(idle_before + IDLE_SECONDS)
        for engine in self.ics_engines.values():
            docs += engine.expire(idle_before + IDLE_SECONDS)
        docs += self.ftp.expire(idle_before + IDLE_SECONDS)
        return docs

    def finish(self) -> list[Written]:
        """End of the run: every connection closed, the commands still waiting logged, one warning for damage."""
        docs: list[Written] = []
        if self.table is not None:
            self.table.close_all(docs)
        for key in list(self.conns):
            docs += self._close_quietly(key)
        docs += self.ftp.finish()
        docs += self.http.finish()
        docs += self.tls.finish()
        for kind in ICS_ANALYZERS:  # in the same order with or without the engines
            engine = self.ics_engines.get(kind)
            docs += engine.finish() if engine is not None else self.ics[kind].finish()
        s, w = self.stats, self.http.wire
        s.cut_lines = self.ftp.cut_lines
        if w.cut_lines or w.bad_chunks or w.lost_directions or w.bombs or w.undecodable:
            self.warn(f"{self.name}: natively read HTTP: {w.cut_lines} line(s) cut at {MAX_HTTP_LINE} bytes, "
                      f"{w.bad_chunks} broken chunked bod(ies), {w.lost_directions} direction(s) not read further "
                      f"after a hole or a protocol switch, {w.bombs} bod(ies) decompressed past "
                      f"{MAX_DECODED_BYTES >> 20} MiB (length cut there), {w.undecodable} compressed bod(ies) that "
                      "did not decompress (raw length logged)")
        t = self.tls.counters
        if t.oversized or t.unknown_records or t.holes or t.malformed:
            self.warn(f"{self.name}: natively read TLS: {t.oversized} record(s) or handshake message(s) past their "
                      f"bound, {t.unknown_records} unknown record type(s), {t.holes} direction(s) not read further "
                      f"after a hole, {t.malformed} malformed hello or certificate message(s)")
        if s.ics_damaged:
            self.warn(f"{self.name}: natively read ICS and SMB: {s.ics_damaged} damaged unit(s) skipped as tshark "
                      "skips them (DNP3 frames with a bad CRC or length or rejected at a segment's start, reassembly "
                      "bounds; S7comm TPKTs with a bad version or length, COTP reassemblies dropped; IEC-104 segments "
                      "without an APDU start, short or cut ASDUs; SMB directions stopped by a hole or bytes that are "
                      "no NetBIOS header, SMB2 bodies shorter than their fixed part, DCE-RPC PDUs past their bounds)")
        if s.gaps or s.cut_lines or s.budget_holes:
            early = (f", {s.budget_holes} of the holes ({s.budget_hole_bytes} bytes) skipped early: what waited behind "
                     f"holes in all connections reached {self.budget.limit} bytes" if s.budget_holes else "")
            self.warn(f"{self.name}: {s.gaps} hole(s) ({s.gap_bytes} bytes) in {s.connections} natively read TCP "
                      f"connection(s), {s.cut_lines} line(s) cut at {MAX_LINE_BYTES} bytes{early}")
        return docs
