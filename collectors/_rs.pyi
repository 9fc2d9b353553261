"""The Rust engines (collectors/rust): documents written as JSON text, without Python objects per message."""

from collections.abc import Callable
from typing import Any

class DnsEngine:
    """DNS, mDNS and LLMNR over UDP: ``dns_wire.parse`` and ``DnsAnalyzer`` in one, each document as JSON bytes."""

    messages: int
    truncated: int
    too_short: int
    records_cut: int
    cut_values: int

    def message(self, payload: bytes, kind: str, src: str, sport: int, dst: str, dport: int,
                ts: float, sweep: bool = False) -> list[bytes]: ...
    def frame(self, buf: bytes, off: int, caplen: int, ts: float) -> list[bytes] | None: ...
    def expire(self, now: float) -> list[bytes]: ...
    def finish(self) -> list[bytes]: ...

class TlsEngine:
    """TLS over natively read TCP connections: ``tls_wire.TlsConnection`` and ``TlsAnalyzer`` in one, each document
    as JSON bytes (or, where the writer refuses a value, what ``fallback`` returns: make_doc's dict)."""

    oversized: int
    unknown_records: int
    holes: int
    malformed: int
    cut_values: int
    sessions: int

    def __init__(self, certificate: Callable[[bytes, float, str, int], dict[str, Any] | None],
                 fallback: Callable[[str, int, str, int, float, dict[str, Any]],
                                    tuple[dict[str, Any], int]]) -> None: ...
    def open(self, conn_id: int, client_h: str, client_p: int, server_h: str, server_p: int) -> None: ...
    def feed(self, conn_id: int, from_client: bool, chunks: list[bytes | int],
             ts: float) -> list[bytes | dict[str, Any]]: ...
    def close(self, conn_id: int) -> None: ...
    def finish(self) -> list[bytes | dict[str, Any]]: ...

class S7commEngine:
    """S7comm over natively read TCP connections: ``s7comm_wire.S7commReader`` per connection and
    ``S7commAnalyzer`` in one, each frame's document as JSON bytes (see ``collectors.protocols.s7comm_native``)."""

    cut_values: int
    connections: int
    # S7commStats' counters of the run: bad_lengths, bad_versions, cotp_rejected, dropped_bytes, evicted, holes,
    # not_s7, pdus, ses_claimed, tpkts
    counters: tuple[int, int, int, int, int, int, int, int, int, int]

    def __init__(self) -> None: ...
    def open(self, conn_id: int, orig_h: str, orig_p: int, resp_h: str, resp_p: int) -> None: ...
    def feed(self, conn_id: int, from_client: bool, chunks: list[bytes | int], ts: float,
             seq: int) -> list[bytes]: ...
    def damage(self, conn_id: int) -> int: ...
    def end(self, conn_id: int, ts: float) -> list[bytes]: ...
    def expire(self, now: float) -> list[bytes]: ...
    def finish(self) -> list[bytes]: ...

class Dnp3Engine:
    """DNP3 over natively read TCP connections: ``dnp3_wire.Dnp3Reader`` per connection and ``Dnp3Analyzer`` in
    one, each document as JSON bytes (see ``collectors.protocols.dnp3_native``)."""

    cut_values: int
    connections: int
    exchanges: int

    def __init__(self, max_open: int | None = None) -> None: ...
    def open(self, conn_id: int, orig_h: str, orig_p: int, resp_h: str, resp_p: int, stream: str) -> None: ...
    def feed(self, conn_id: int, from_client: bool, chunks: list[bytes | int], ts: float) -> list[bytes]: ...
    def damage(self, conn_id: int) -> int: ...
    def stats(self, conn_id: int) -> tuple[int, ...]: ...
    def end(self, conn_id: int) -> None: ...
    def finish(self) -> list[bytes]: ...

def write_document(dataset: str, transport: str, orig_h: str, orig_p: int, resp_h: str, resp_p: int, ts: float,
                   identity: tuple[Any, ...], fields: dict[str, Any], protocol: str | list[str],
                   keep_empty: tuple[str, ...] = ()) -> tuple[bytes, int]:
    """``documents.make_doc(dataset, Flow(transport, orig_h, orig_p, resp_h, resp_p, ...), ts, identity, fields,
    protocol, keep_empty)`` as the bytes ``orjson.dumps`` writes of it, and ``len(doc["secops"]["truncated"])`` (0
    without): no dict built, ``fields`` left as it is. TypeError where orjson would refuse the document (lone
    surrogates, integers past 64 bits, other types, nesting) or where make_doc would put a key into a dict the
    document also holds elsewhere: the caller falls back to make_doc. A timestamp or flow make_doc refuses raises
    what make_doc raises."""
    ...

class HttpEngine:
    """HTTP/1.x of natively read connections: ``http.HttpConnection`` and ``HttpAnalyzer`` (no run context) in one,
    each document as JSON bytes (see ``collectors.protocols.http_native``)."""

    cut_values: int
    dropped_records: int
    cut_lines: int
    bad_chunks: int
    lost_directions: int
    not_http: int
    bombs: int
    undecodable: int
    connections: int

    def __init__(self, max_open: int | None = None) -> None: ...
    def open(self, conn_id: int, orig_h: str, orig_p: int, resp_h: str, resp_p: int, stream: str) -> None: ...
    def feed(self, conn_id: int, from_client: bool, data: bytes | int, ts: float) -> list[bytes]: ...
    def switched(self, conn_id: int) -> bool: ...
    def forget(self, conn_id: int) -> None: ...
    def end(self, conn_id: int, ts: float) -> list[bytes]: ...
    def expire(self, now: float) -> list[bytes]: ...
    def finish(self) -> list[bytes]: ...


class FtpEngine:
    """The FTP control channel of natively read connections: ``native_tcp.LineReader`` per direction and
    ``FtpAnalyzer.line`` (announcing through ``announce``, ``ExpectedConnections.expect``) in one, each document as
    JSON bytes (see ``collectors.protocols.ftp_native``)."""

    cut_lines: int
    cut_values: int
    sessions: int
    connections: int
    longest_line: int

    def __init__(self, announce: Callable[[str, str, int, str, float], None] | None = None,
                 max_open: int | None = None) -> None: ...
    def open(self, conn_id: int, orig_h: str, orig_p: int, resp_h: str, resp_p: int, stream: str) -> None: ...
    def feed(self, conn_id: int, from_client: bool, data: bytes | int, ts: float) -> list[bytes]: ...
    def switched(self, conn_id: int) -> bool: ...
    def end(self, conn_id: int, from_client: bool, ts: float) -> list[bytes]: ...
    def forget(self, conn_id: int) -> None: ...
    def expire(self, now: float) -> list[bytes]: ...
    def finish(self) -> list[bytes]: ...



class TcpTable:
    """The natively read TCP connections of one run over the Rust engines: ``native_tcp``'s connection table and
    ``tcp_reassembly`` in one (see collectors/rust/src/tcp.rs). ``owner`` is the ``TcpNative`` it calls back for
    decisions, the Modbus/TCP and IEC-104 readers, the engines' expiry and failures."""

    # frames, handed_back, gaps, gap_bytes, reused, ics_damaged, budget_holes, budget_hole_bytes
    counts: tuple[int, int, int, int, int, int, int, int]
    held_bytes: int  # what waits behind holes in all connections, as max_held_bytes counts it


    def __init__(self, http: HttpEngine, tls: TlsEngine, ftp: FtpEngine, dnp3: Dnp3Engine, s7comm: S7commEngine,
                 owner: Any, wrap: Callable[[bytes], Any], max_connections: int = 65536,
                 max_held_bytes: int = 64 << 20) -> None: ...
    def frame(self, buf: bytes, off: int, caplen: int, ts: float, docs: list[Any]) -> int: ...
    def take(self, src: bytes, dst: bytes, sport: int, dport: int, flags: int, seq: int, ack: int, payload: bytes,
             plen: int, ts: float, docs: list[Any]) -> bool: ...
    def tshark_reads(self, src: bytes, dst: bytes, sport: int, dport: int) -> bool: ...
    def sweep(self, idle_before: float, docs: list[Any]) -> None: ...
    def close_all(self, docs: list[Any]) -> None: ...

def write_conn(f: tuple[Any, ...], observer: str | None = None, services: list[str] | None = None) -> bytes | None:
    """``orjson.dumps(collectors.conn.conn_doc(f, observer, services))`` of a ``ConnRecord``, byte for byte, read
    from the record's fields; None where the writer does not model a value (an int beyond 64 bits, a time outside
    1970-9999, a string orjson refuses, an address neither 4 nor 16 bytes, a record of another shape): the caller
    builds the dict instead."""


def write_observation(kind: str, ts_ns: int, ip: str, mac: str | None = None, port: int | None = None,
                      transport: str | None = None, service: str | None = None, vendor: str | None = None,
                      observer: str | None = None) -> bytes | None:
    """``orjson.dumps(collectors.conn.Observations._doc(...))`` of one passive observation ("address": its vendor the
    only extra; "service": port, transport and service); None where the writer does not model a value."""
