"""Native TCP reading (collectors/protocols/native_tcp.py, tcp_reassembly.py, http_wire.py) against tshark, the
differential oracle.

Every shared capture with an FTP control channel or an HTTP connection goes through the ingest pipeline twice: with
the deep path reading those connections itself (``stream.NATIVE_TCP``) and with tshark reading them. Every document
(FTP and HTTP records, connection records with their ``ftp-data`` services, TLS inside proxy tunnels, everything
else) must be equal, or the difference is named here with its reason and the documents must be equal once that
difference is taken out. The reassembler and the readers also meet hostile input.
"""

from __future__ import annotations

import gzip
import json
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.decode import BUF, CAPLEN, DPORT, DST, L4OFF, PLEN, PROTO, SPORT, SRC, TCP, Decoder
from collectors.ingest import Pipeline
from collectors.pcapio import read_capture
from collectors.protocols import stream
from collectors.protocols.detect import http_request, http_response
from collectors.protocols.documents import Flow
from collectors.protocols.expected import ExpectedConnections
from collectors.protocols.ftp import eprt, epsv_port, host_port
from collectors.protocols.http import parse_exchanges, read_through_upgrade
from collectors.protocols.http_wire import MAX_DECODED_BYTES, Message, MessageReader, WireStats
from collectors.protocols.native import NativeFrames
from collectors.protocols.native_tcp import MAX_LINE_BYTES, LineReader, Stats, TcpNative
from collectors.protocols.tcp_reassembly import MAX_WAITING_BYTES, Direction
from collectors.protocols.tshark import Packet
from collectors.selection import interface_block, packet_block
from tests.support.frames import eth
from tests.unit.test_flowcore import CAPTURES, TESTDATA

REQUEST_TS = ("a request spanning several segments (a POST body, headers cut in two): the native record has Zeek's "
              "ts, the frame that completed the request line; tshark's the frame that completed the whole message. "
              "The timestamp (and the document id made from it) differ, nothing else")
DPD = ("the first payload is an HTTP request, so the connection is read as HTTP on any port (Zeek's DPD, "
       "the flow path's detection); tshark dissects port 22 as SSH and logs no HTTP record but an SSH one, from "
       "the server's banner (Zeek's conn.log names no service: the two sides' protocols differ)")
# Differences the test expects, by capture: (reason, what is taken out before the documents must be equal). The
# tshark path's second look at exchanges tshark left incomplete reads their payload with the native reader too (a
# tshark pass over them cost a tshark start per run), so those connections agree on both paths (gtp1_gn_normal_incl_
# fragmentation.pcap: tshark lost a request in a fragmented tunnel, and the second look finds it).
KNOWN_DIFFERENCES: dict[str, tuple[str, str]] = {
    "empire_psexec_dcerpc_tcp_svcctl_WORKSTATION5_2020-09-20121608.pcap": (REQUEST_TS, "http-ts"),
    "empire_smbexec_dcerpc_smb_svcctl_WORKSTATION5_2020-09-20025716.pcap": (REQUEST_TS, "http-ts"),
    "100-continue.pcap": (REQUEST_TS, "http-ts"),
    "missing-zlib-header.pcap": (REQUEST_TS, "http-ts"),
    "multipart-form-data.pcap": (REQUEST_TS, "http-ts"),
    "http-to-ssh.pcap": (DPD, "http-on-22"),
}

FTP_CAPTURES = [TESTDATA / p for p in ("attacks/bruteforce/ftp-bruteforce.pcap", "zeek/traces/ftp/bigtransfer.pcap",
                                       "zeek/traces/ftp/ipv4.pcap", "zeek/traces/ftp/ipv6.pcap")]


def tcp_payloads(capture: Path, with_empty: bool = False) -> Iterator[tuple[tuple, bytes]]:
    """(decoded packet, captured payload) of every TCP segment with payload (or of every one), decoded as the
    pipeline does."""
    decoder = Decoder()
    for ts, linktype, buf, off, caplen, _wire in read_capture(capture, lambda _m: None):
        packets = decoder.decode(linktype, buf, off, caplen, ts)
        if not packets or packets[-1][PROTO] != TCP or (packets[-1][PLEN] <= 0 and not with_empty):
            continue
        p = packets[-1]
        l4, b = p[L4OFF], p[BUF]
        start = l4 + (b[l4 + 12] >> 4) * 4 if l4 + 20 <= len(b) else len(b)
        yield p, bytes(b[start:start + min(p[CAPLEN], p[PLEN])])


def speaks_http(capture: Path) -> bool:
    """Whether some TCP payload of the capture starts like an HTTP message (the flow path's probes)."""
    return any(http_request(payload[:512], p[PLEN]) or http_response(payload[:512], p[PLEN])
               for p, payload in tcp_payloads(capture))


HTTP_CAPTURES = [c for c in CAPTURES if speaks_http(c)]
NATIVE_CAPTURES = FTP_CAPTURES + [c for c in HTTP_CAPTURES if c not in FTP_CAPTURES]


def by_id(docs: list[dict]) -> dict[str, dict]:
    return {d["_id"]: d for d in docs}


def without(docs: dict[str, dict], kind: str) -> list[dict]:
    """The documents with a named difference taken out, in a stable order."""
    out = []
    for doc in docs.values():
        if kind == "http-on-22" and doc["event"]["dataset"] in ("secops.http", "secops.ssh") \
                and doc["destination"]["port"] == 22:
            continue
        if doc["event"]["dataset"] == "secops.http" and kind == "http-ts":
            doc = {k: v for k, v in doc.items() if k not in ("@timestamp", "_id")}
        out.append(doc)
    return sorted(out, key=lambda d: json.dumps(d, sort_keys=True))


def pipeline_docs(capture: Path, native: bool, monkeypatch: pytest.MonkeyPatch, **kw) -> dict[str, dict]:
    monkeypatch.setattr(stream, "NATIVE_TCP", native)
    docs: list[dict] = []
    pipe = Pipeline(docs.append, on_warning=lambda _m: None, **kw)
    pipe.process_file(capture)
    pipe.finish()
    return by_id(docs)


def test_shared_captures_are_in_the_set() -> None:
    assert all(c in CAPTURES for c in FTP_CAPTURES) and len(HTTP_CAPTURES) >= 30
    assert {"methods.pcap", "http_09.pcap", "pipelined-requests.pcap", "connect-with-smtp.pcap", "websocket.pcap",
            "missing-zlib-header.pcap", "cooper-grill-dvwa.pcapng"} <= {c.name for c in HTTP_CAPTURES}


Without = Callable[[dict[str, dict], str], list[dict]]  # the documents with a named difference taken out


def assert_equal_or_named(capture: Path, native: dict[str, dict], tshark: dict[str, dict],
                          known: dict[str, tuple[str, str]], without: Without) -> None:
    """Both readers' documents are equal, or differ by exactly the difference ``known`` names for the capture."""
    if capture.name in known:
        reason, kind = known[capture.name]
        assert native != tshark, f"{capture.name} no longer differs: {reason}"
        assert without(native, kind) == without(tshark, kind), reason
    else:
        assert native == tshark


def native_tcp_frames(monkeypatch: pytest.MonkeyPatch,
                      measure: Callable[[TcpNative], int] = lambda tcp: tcp.stats.frames) -> list[int]:
    """Filled, at the end of each run, with how many frames the native TCP readers took out of tshark's input (or
    what ``measure`` reads of them once the run has finished)."""
    taken: list[int] = []
    original = NativeFrames.finish

    def finish(self: NativeFrames) -> list[dict]:
        docs = original(self)
        assert self.tcp is not None
        taken.append(measure(self.tcp))
        return docs

    monkeypatch.setattr(NativeFrames, "finish", finish)
    return taken


@pytest.mark.parametrize("capture", NATIVE_CAPTURES, ids=lambda c: c.name)
def test_native_documents_equal_tshark(capture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The differential oracle: every document of the pipeline, TCP read natively or by tshark."""
    native = pipeline_docs(capture, True, monkeypatch)
    tshark = pipeline_docs(capture, False, monkeypatch)
    assert any(d["event"]["dataset"] in ("secops.ftp", "secops.http") for d in native.values())
    assert_equal_or_named(capture, native, tshark, KNOWN_DIFFERENCES, without)


def test_native_frames_do_not_reach_tshark(monkeypatch: pytest.MonkeyPatch) -> None:
    """The FTP control frames are read here: tshark's input holds none of them."""
    taken = native_tcp_frames(monkeypatch)
    docs = pipeline_docs(TESTDATA / "attacks/bruteforce/ftp-bruteforce.pcap", True, monkeypatch)
    assert taken == [180]  # 30 sessions of 6 selected frames (the greeting precedes detection: never selected)
    assert sum(1 for d in docs.values() if d["event"]["dataset"] == "secops.ftp") == 90


def test_a_websocket_upgrade_stays_with_the_native_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Upgrade exchange is logged here and the frames after the 101 are taken too: no analyzer reads WebSocket,
    and a connection handed back cost a second look at the run's capture. A CONNECT or an Upgrade to another protocol
    (RFC 2817's TLS) still goes back to tshark, which reads what follows."""
    handed_back: list[int] = []
    original = NativeFrames.finish

    def finish(self: NativeFrames) -> list:
        assert self.tcp is not None
        handed_back.append(self.tcp.stats.handed_back)
        return original(self)

    monkeypatch.setattr(NativeFrames, "finish", finish)
    taken = native_tcp_frames(monkeypatch)
    docs = pipeline_docs(TESTDATA / "zeek/traces/http/websocket.pcap", True, monkeypatch)
    http_docs = [d for d in docs.values() if d["event"]["dataset"] == "secops.http"]
    assert [d["http"]["response"]["status_code"] for d in http_docs] == [101]
    assert handed_back == [0] and taken[0] > 0
    assert [read_through_upgrade(v) for v in (None, "websocket", "WebSocket", "h2c", "websocket, h2c")] == [True] * 5
    assert [read_through_upgrade(v) for v in ("TLS/1.0", "websocket, TLS/1.2", "", "HTTP/2.0")] == [False] * 4


def test_data_channels_travel_from_the_analyzers_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """In the analyzers' own process (``deep_process``) the native reader's announcements reach the parent's
    pipeline as "e" lines: the data connections are ftp-data there too."""
    capture = TESTDATA / "zeek/traces/ftp/ipv4.pcap"
    child = pipeline_docs(capture, True, monkeypatch, deep_process_min_bytes=0)
    thread = pipeline_docs(capture, True, monkeypatch)
    services = [d["network"].get("protocol") for d in child.values() if d["event"]["dataset"] == "secops.conn"]
    assert sum(1 for s in services if s and "ftp-data" in s) >= 2
    assert child == thread


# -- FTP's data-channel arguments (RFC 959 4.1.2, RFC 2428) ----------------------------------------------------
def test_data_channel_arguments() -> None:
    assert host_port(b"Entering Passive Mode (192,168,1,2,4,1)") == ("192.168.1.2", 1025)
    assert host_port(b"=192,168,1,2,4,1") == ("192.168.1.2", 1025)
    assert host_port(b"(300,168,1,2,4,1)") is None and host_port(b"1,2,3") is None
    assert eprt(b"|1|132.235.1.2|6275|") == ("132.235.1.2", 6275)
    assert eprt(b"|2|1080::8:800:200C:417A|5282|") == ("1080::8:800:200c:417a", 5282)
    assert eprt(b"|2|132.235.1.2|6275|") is None and eprt(b"|1|x|1|") is None and eprt(b"1|1|1.2.3.4|1|") is None
    assert eprt(b"|1|1.2.3.4|99999|") is None and eprt(b"") is None
    assert epsv_port(b"Entering Extended Passive Mode (|||6446|)") == 6446
    assert epsv_port(b"(aaa6446a)") is None and epsv_port(b"(|||0|)") is None and epsv_port(b"(||6446|)") is None


# -- synthetic connections -------------------------------------------------------------------------------------
CLIENT, SERVER = b"\x0a\0\0\1", b"\x0a\0\0\2"


def tcp_frame(payload: bytes, seq: int, from_client: bool, sport: int = 40000, dport: int = 21,
              flags: int = 0x18, ack: int | None = None) -> bytes:
    """A TCP segment between 10.0.0.1:sport and 10.0.0.2:dport (without ``ack``: the ACK flag is off)."""
    ports = (sport, dport) if from_client else (dport, sport)
    hosts = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
    if ack is None:
        flags &= ~0x10
    tcp = struct.pack("!HHIIBBHHH", *ports, seq & 0xFFFFFFFF, ack or 0, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, *hosts) + tcp
    return b"\0\x11\x22\x33\x44\x55" * 2 + b"\x08\x00" + ip


def pcapng(frames: list[bytes], start: float = 1000.0) -> bytes:
    return interface_block(1) + b"".join(packet_block(0, int((start + i) * 1e9), f, len(f))
                                         for i, f in enumerate(frames))


def read_native(data: bytes, expected: ExpectedConnections | None = None, step: int = 0) -> tuple[bytes, list[dict],
                                                                                                    list[str]]:
    warnings: list[str] = []
    native = NativeFrames("t", warnings.append, expected)
    kept, docs = b"", []
    for i in range(0, len(data), step or len(data)):
        part, more = native.split(data[i:i + (step or len(data))])
        kept += part
        docs += more
    docs += native.finish()
    return kept, docs, warnings


def conversation(*segments: tuple[bool, bytes], dport: int = 21) -> list[bytes]:
    """Frames of one connection, each direction's sequence numbers counting on."""
    seqs = {True: 1000, False: 5000}
    frames = []
    for from_client, payload in segments:
        frames.append(tcp_frame(payload, seqs[from_client], from_client, dport=dport, ack=seqs[not from_client]))
        seqs[from_client] += len(payload)
    return frames


def test_commands_replies_and_announcements_from_lines() -> None:
    """Pipelined commands in one segment, a multi-line reply split over segments, PORT/EPRT/PASV/EPSV."""
    expected = ExpectedConnections()
    frames = conversation(
        (True, b"USER anna\r\nPASS secret\r\n"),
        (False, b"331 need password\r\n230-Welcome\r\n230-more text\r\n"),
        (False, b"230 done\r\n"),
        (True, b"PORT 10,0,0,1,156,64\r\n"),
        (False, b"200 ok\r\n"),
        (True, b"EPSV\r\n"),
        (False, b"229 Entering Extended Passive Mode (|||6446|)\r\n"),
    )
    kept, docs, warnings = read_native(pcapng(frames), expected, step=5)
    assert kept == interface_block(1) and not warnings
    got = [(d["secops"]["ftp"]["command"], d["secops"]["ftp"].get("reply_code"), d["secops"]["ftp"].get("reply_msg"),
            d.get("user", {}).get("name"), d["secops"]["ftp"].get("arg")) for d in docs]
    assert got == [("USER", 331, "need password", "anna", "anna"), ("PASS", 230, "Welcome", "anna", None),
                   ("PORT", 200, "ok", "anna", "10,0,0,1,156,64"),
                   ("EPSV", 229, "Entering Extended Passive Mode (|||6446|)", "anna", None)]
    assert expected.claim("10.0.0.2", "10.0.0.1", 40000, 1004.0) == "ftp-data"
    assert expected.claim("10.0.0.1", "10.0.0.2", 6446, 1007.0) == "ftp-data"


def test_retransmission_reordering_and_holes() -> None:
    """A retransmission with other bytes loses to the first copy; a reordered segment waits; a hole is skipped
    at the end and counted in the run's one warning."""
    frames = [
        tcp_frame(b"USER a\r\n", 1000, True),
        tcp_frame(b"USER b\r\n", 1000, True),  # same sequence range again, other bytes: the first copy wins
        tcp_frame(b"PWD\r\n", 1000 + 8 + 6, True),  # ahead of "NOOP\r\n"
        tcp_frame(b"NOOP\r\n", 1000 + 8, True),
        tcp_frame(b"SYST\r\n", 1000 + 8 + 6 + 5 + 100, True),  # after a hole of 100 bytes never filled
    ]
    _, docs, warnings = read_native(pcapng(frames))
    assert [(d["secops"]["ftp"]["command"], d["user"]["name"]) for d in docs] == [
        ("USER", "a"), ("NOOP", "a"), ("PWD", "a"), ("SYST", "a")]
    assert len(warnings) == 1 and "1 hole(s) (100 bytes) in 1 natively read TCP connection(s)" in warnings[0]


def test_auth_tls_goes_back_to_tshark() -> None:
    """From the AUTH command on, the connection's frames go to tshark, which reads the TLS that follows."""
    frames = conversation((False, b"220 hi\r\n"), (True, b"FEAT\r\n"), (False, b"211 end\r\n"),
                          (True, b"AUTH TLS\r\n"), (False, b"234 go\r\n"), (True, b"\x16\x03\x01\x00\x05hello"))
    kept, docs, _ = read_native(pcapng(frames))
    assert [d["secops"]["ftp"]["command"] for d in docs] == ["FEAT"]
    assert kept == interface_block(1) + b"".join(packet_block(0, int((1000 + i) * 1e9), f, len(f))
                                                 for i, f in enumerate(frames) if i >= 3)


def test_other_tcp_stays_with_tshark() -> None:
    """Not port 21 (or a SYN naming the high port as the server): every byte goes to tshark untouched."""
    frames = [tcp_frame(b"USER a\r\n", 1, True, 40000, 8021), tcp_frame(b"", 1, True, 21, 40000, flags=0x02),
              tcp_frame(b"USER a\r\n", 2, True, 21, 40000)]
    data = pcapng(frames)
    kept, docs, _ = read_native(data)
    assert kept == data and docs == []


# -- reassembly and lines under hostile input ------------------------------------------------------------------
def test_sequence_wraps_around() -> None:
    d = Direction()
    assert d.add(0xFFFFFFFE, b"ab") == [b"ab"]
    assert d.add(1, b"d") == []
    assert d.add(0, b"c") == [b"c", b"d"]
    assert d.add(0xFFFFFFFF, b"XY") == [] and d.overlaps == 1 and d.delivered == 4


def test_waiting_bytes_are_bounded() -> None:
    d = Direction()
    d.add(0, b"x")
    out = []
    for i in range(1, 2000):
        out += d.add(1000 + i * 1000, b"y" * 1000)
        assert d.waiting_bytes <= MAX_WAITING_BYTES
    assert d.gaps > 0 and any(isinstance(c, int) for c in out)


def test_endless_line_is_cut() -> None:
    stats = Stats()
    reader = LineReader()
    lines = []
    for _ in range(100):
        lines += reader.lines(b"A" * 4096, stats)
    lines += reader.lines(b"\r\nNOOP\r\n", stats)
    assert [len(x) for x in lines] == [MAX_LINE_BYTES, 4] and stats.cut_lines == 1 and len(reader.buf) == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3000), st.binary(max_size=300)), max_size=40))
def test_random_segments_never_raise(segments: list[tuple[bool, int, bytes]]) -> None:
    """Random payloads at random sequence numbers in both directions: no exception, the frames taken, bounded."""
    frames = [tcp_frame(payload, 1000 + seq, from_client) for from_client, seq, payload in segments]
    frames.append(tcp_frame(b"USER z\r\n", 50, True, 40001))  # another connection: unaffected
    frames.append(tcp_frame(b"200 ok\r\n", 60, False, 40001))
    kept, docs, _ = read_native(pcapng(frames))
    assert kept == interface_block(1)
    mine = [d for d in docs if d["source"]["port"] == 40001]
    assert [(d["secops"]["ftp"]["command"], d["secops"]["ftp"]["reply_code"]) for d in mine] == [("USER", 200)]


def test_flood_of_lines_uses_bounded_memory() -> None:
    """Megabytes of commands never answered and of one endless line: memory stays small."""
    native = NativeFrames("flood", lambda _m: None)
    native.split(interface_block(1))
    count = 0
    tracemalloc.start()
    for i in range(100):
        count += len(native.split(pcapng([tcp_frame(b"NOOP\r\n" * 200, 1000 + i * 1200, True),
                                          tcp_frame(b"B" * 1400, 9000 + i * 1400, False)])[16 * 2:])[1])
    count += len(native.finish())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 100 * 200 and peak < 8 << 20


# -- HTTP read natively ----------------------------------------------------------------------------------------
def http_docs(*segments: tuple[bool, bytes]) -> tuple[bytes, list[dict], list[str]]:
    frames = []
    seqs = {True: 1000, False: 5000}
    for from_client, payload in segments:
        frames.append(tcp_frame(payload, seqs[from_client], from_client, 40000, 8080, ack=seqs[not from_client]))
        seqs[from_client] += len(payload)
    return read_native(pcapng(frames))


def test_pipelining_interim_replies_head_chunks_and_gzip() -> None:
    """Zeek's http.log semantics on one connection: pipelined requests pair in order, a 100 Continue is the
    info_code, HEAD's reply has no body, chunks are joined and gzip undone for the body length."""
    body = gzip.compress(b"x" * 5000)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 700]), body[i:i + 700]) for i in range(0, len(body), 700))
    _, docs, warnings = http_docs(
        (True, b"POST /up HTTP/1.1\r\nHost: h\r\nAuthorization: Basic YW5uYTpzZWNyZXQ=\r\nContent-Length: 4\r\n"
               b"Expect: 100-continue\r\n\r\n"),
        (False, b"HTTP/1.1 100 Continue\r\n\r\n"),
        (True, b"abcd"),
        (False, b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
        (True, b"HEAD /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"),
        (False, b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"),
        (False, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n" + chunked[:900]),
        (False, chunked[900:] + b"0\r\n\r\n"),
    )
    got = [(d["http"]["request"]["method"], d["url"]["original"], d["http"]["response"]["status_code"],
            d["http"]["request"]["body"]["bytes"], d["http"]["response"]["body"]["bytes"],
            d["secops"]["http"].get("info_code"), d.get("user", {}).get("name")) for d in docs]
    assert got == [("POST", "/up", 201, 4, 2, 100, "anna"), ("HEAD", "/a", 200, 0, 0, None, None),
                   ("GET", "/b", 200, 0, 5000, None, None)]
    assert not warnings


def test_http_09_and_a_reply_read_to_the_close() -> None:
    _, docs, _ = http_docs((True, b"GET /old\r\n"), (False, b"<html>hi</html>\n"))
    assert [(d["http"]["version"], d["http"]["response"]["status_code"], d["http"]["response"]["body"]["bytes"])
            for d in docs] == [("0.9", 0, 16)]
    _, docs, _ = http_docs((True, b"GET / HTTP/1.0\r\n\r\n"), (False, b"HTTP/1.0 200 OK\r\n\r\n" + b"z" * 3000))
    assert [d["http"]["response"]["body"]["bytes"] for d in docs] == [3000]


def test_a_status_below_100_has_a_body_as_zeek_reads_it() -> None:
    """Zeek's ExpectReplyMessageBody: only a HEAD's reply, 1xx, 204 and 304 go without a body; status 000 or 099
    (HTTP_ReplyCode reads any three digits) is final and framed by its headers, so the next reply pairs right."""
    _, docs, _ = http_docs(
        (True, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"),
        (False, b"HTTP/1.1 099 Odd\r\nContent-Length: 7\r\n\r\n1234567HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    assert [(d["url"]["original"], d["http"]["response"]["status_code"], d["http"]["response"]["body"]["bytes"])
            for d in docs] == [("/a", 99, 7), ("/b", 200, 2)]


def test_connect_goes_back_to_tshark() -> None:
    """A CONNECT (and what the tunnel carries, TLS through a proxy) is tshark's from the CONNECT frame on; the
    requests before it stay read here."""
    frames = []
    seqs = {True: 1000, False: 5000}
    for from_client, payload in ((True, b"GET / HTTP/1.1\r\nHost: p\r\n\r\n"),
                                 (False, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
                                 (True, b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n"),
                                 (False, b"HTTP/1.1 200 Connection established\r\n\r\n"),
                                 (True, b"\x16\x03\x01\x00\x05hello")):
        frames.append(tcp_frame(payload, seqs[from_client], from_client, 40000, 3128, ack=seqs[not from_client]))
        seqs[from_client] += len(payload)
    kept, docs, _ = read_native(pcapng(frames))
    assert [d["http"]["request"]["method"] for d in docs] == ["GET"]
    assert kept == interface_block(1) + b"".join(packet_block(0, int((1000 + i) * 1e9), f, len(f))
                                                 for i, f in enumerate(frames) if i >= 2)


def test_gzip_bomb_is_cut_in_bounded_memory_and_time() -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join(packer.compress(bytes(1 << 20)) for _ in range(200)) + packer.flush()  # 200 MiB of zeros
    assert len(bomb) < 1 << 20
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
    tracemalloc.start()
    started = time.process_time()
    _, docs, warnings = http_docs((True, b"GET /bomb HTTP/1.1\r\n\r\n"), (False, head + bomb[:1400]),
                                  *[(False, bomb[i:i + 1400]) for i in range(1400, len(bomb), 1400)])
    elapsed = time.process_time() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [d["http"]["response"]["body"]["bytes"] for d in docs] == [MAX_DECODED_BYTES]
    assert peak < 16 << 20 and elapsed < 5.0
    assert any("1 bod(ies) decompressed past 64 MiB" in w for w in warnings)


def test_endless_lines_and_chunk_sizes_are_bounded() -> None:
    stats = WireStats()
    messages: list[Message] = []
    reader = MessageReader(False, messages.append, stats)
    reader.feed(b"HTTP/1.1 200 OK\r\nX-Long: ", 1.0)
    tracemalloc.start()
    for _ in range(2000):
        reader.feed(b"a" * 5000, 1.0)  # a 10 MB header line
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20 and stats.cut_lines == 1
    reader.feed(b"\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 100 + b"\r\n", 2.0)  # a chunk size of 100 digits
    assert stats.bad_chunks == 1 and [m.status for m in messages] == [200]


def real_http_streams() -> list[tuple[bytes, bytes]]:
    """(client bytes, server bytes) of the first HTTP connections in the shared captures, for mutation (the first
    sender is the client; segments in capture order)."""
    out = []
    for capture in HTTP_CAPTURES[:12]:
        streams: dict[frozenset, tuple[tuple, list[bytes]]] = {}
        for p, payload in tcp_payloads(capture):
            sender = (p[SRC], p[SPORT])
            first, sides = streams.setdefault(frozenset((sender, (p[DST], p[DPORT]))), (sender, [b"", b""]))
            sides[0 if sender == first else 1] += payload
        out += [(c, s) for _, (c, s) in streams.values() if http_request(c[:512], len(c))][:3]
    return out


_STREAMS: list[tuple[bytes, bytes]] = []


def streams_cached() -> list[tuple[bytes, bytes]]:
    if not _STREAMS:
        _STREAMS.extend(real_http_streams())
    return _STREAMS


def test_every_truncation_of_real_exchanges() -> None:
    flow = Flow("tcp", "192.0.2.1", 40000, "192.0.2.2", 80, "x")
    cuts = 0
    for client, server in streams_cached()[:10]:
        whole = parse_exchanges(flow, 1.0, client[:3000], server[:3000])
        for size in range(0, min(len(client), 600), 3):
            exchanges = parse_exchanges(flow, 1.0, client[:size], server[:3000])
            assert len(exchanges) <= len(whole) + 3
            cuts += 1
        for size in range(0, min(len(server), 600), 3):
            parse_exchanges(flow, 1.0, client[:3000], server[:size])
            cuts += 1
    assert cuts > 1000


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_http_never_raises(data: st.DataObject) -> None:
    """Real HTTP connections with bytes changed, cut anywhere and with holes: no exception, bounded output."""
    client, server = data.draw(st.sampled_from(streams_cached()))
    client, server = bytearray(client[:4000]), bytearray(server[:4000])
    for target in (client, server):
        for pos, value in data.draw(st.lists(st.tuples(st.integers(0, 3999), st.integers(0, 255)), max_size=10)):
            if pos < len(target):
                target[pos] = value
    stats = WireStats()
    messages: list[Message] = []
    readers = (MessageReader(True, messages.append, stats), MessageReader(False, messages.append, stats))
    cuts = data.draw(st.lists(st.integers(1, 700), min_size=1, max_size=20))
    for reader, stream_bytes in zip(readers, (bytes(client), bytes(server)), strict=True):
        pos = 0
        for i, cut in enumerate(cuts * 10):
            if pos >= len(stream_bytes):
                break
            reader.feed(stream_bytes[pos:pos + cut] if i % 7 != 6 else cut, float(i))
            pos += cut
        reader.end(99.0)
    assert len(messages) <= (len(client) + len(server)) // 2 + 2


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000), st.binary(max_size=2000))
def test_random_http_streams_never_raise(client: bytes, server: bytes) -> None:
    flow = Flow("tcp", "192.0.2.1", 40000, "192.0.2.2", 80, "x")
    parse_exchanges(flow, 1.0, b"GET / HTTP/1.1\r\n" + client, b"HTTP/1.1 200 OK\r\n" + server)
    parse_exchanges(flow, 1.0, client, server)


def test_port_reuse_starts_a_new_connection() -> None:
    """The same endpoints again with new sequence numbers (a new connection after the old one closed, its SYN not
    among the selected frames): both connections' records, each paired within its own connection."""
    first = conversation((True, b"USER a\r\n"), (False, b"331 more\r\n"))
    second = [tcp_frame(b"USER b\r\n", 900_000_000, True, ack=3_000_000_000),
              tcp_frame(b"230 ok\r\n", 3_000_000_000, False, ack=900_000_008)]
    _, docs, warnings = read_native(pcapng(first + second))
    assert [(d["user"]["name"], d["secops"]["ftp"]["reply_code"]) for d in docs] == [("a", 331), ("b", 230)]
    assert not warnings


def test_a_closed_connection_replayed_with_its_sequence_numbers_is_a_new_one() -> None:
    """The same endpoints and sequence numbers after both FINs (a replayed or looped capture, a client that reuses
    its port and an ISN): as Zeek, whose closed connection's state ends ``tcp_close_delay`` (5 s) later, a segment
    after that, or a SYN, opens a new connection; each one's request and reply are logged."""
    request, reply = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    fins = [tcp_frame(b"", 1000 + len(request), True, dport=80, flags=0x11, ack=5000 + len(reply)),
            tcp_frame(b"", 5000 + len(reply), False, dport=80, flags=0x11, ack=1001 + len(request))]
    closed = conversation((True, request), (False, reply), dport=80) + fins  # one frame a second
    _, docs, warnings = read_native(pcapng(closed) + pcapng(closed, start=1010.0)[len(interface_block(1)):])
    assert [(d["url"]["original"], d["http"]["response"]["status_code"]) for d in docs] == [("/a", 200)] * 2
    assert not warnings
    # within the close delay, the same segments are retransmissions of the closed connection: nothing new
    _, docs, _ = read_native(pcapng(closed + closed))
    assert len(docs) == 1


def test_link_control_is_kept_from_tshark() -> None:
    """ARP, PPPoE discovery and a PPPoE session's LCP never reach tshark (no analyzer reads them; the flow path
    learns addresses from ARP itself); IP inside PPPoE still does."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import ARP, Dot1Q
    from scapy.layers.ppp import PPP, PPP_LCP, PPPoE, PPPoED

    control = [eth() / ARP(psrc="198.18.0.1", pdst="198.18.0.2"), eth() / Dot1Q(vlan=3) / ARP(),
               eth() / PPPoED(), eth() / PPPoE(sessionid=1) / PPP(proto=0xC021) / PPP_LCP()]
    packet = IP(src="198.18.0.1", dst="198.18.0.2") / UDP(sport=5000, dport=6000)
    kept_back = [eth() / PPPoE(sessionid=1) / PPP(proto=0x0021) / packet]
    kept, docs, _ = read_native(pcapng([bytes(f) for f in control + kept_back]))
    assert not docs
    assert all(bytes(f) in kept for f in kept_back) and not any(bytes(f) in kept for f in control)


def test_tshark_gets_a_fragmented_datagram_whole_and_none_of_one_read_here() -> None:
    """An IPv4 datagram's fragments are kept from tshark while they wait for the rest: a datagram read here (DNS)
    costs tshark nothing, and one tshark reads (UDP to 6000) reaches it as one frame in its last fragment's place,
    numbered as that fragment (the frames before it in the stream taken out). tshark got every fragment before,
    those of datagrams read here too; and fragments of a datagram that never completes never reach it."""
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import IP, UDP, fragment

    ends = IP(src="198.18.0.1", dst="198.18.0.2", id=7)
    other = ends / UDP(sport=5000, dport=6000) / (b"d" * 3000)
    dns = IP(src="198.18.0.2", dst="198.18.0.1", id=8) / UDP(sport=53, dport=5353) / DNS(
        id=1, qr=1, qd=DNSQR(qname="big.example"), an=[DNSRR(rrname="big.example", type="TXT", rdata="t" * 200)] * 12)
    lonely = fragment(IP(src="198.18.0.3", dst="198.18.0.4", id=9) / UDP(sport=1, dport=2) / (b"x" * 3000),
                      fragsize=1000)[0]
    pieces = [eth() / f for f in fragment(other, fragsize=1000)]
    dns_pieces = [eth() / f for f in fragment(dns, fragsize=500)]
    assert len(pieces) == 4 and len(dns_pieces) >= 3
    frames = [bytes(f) for f in [*dns_pieces, eth() / lonely, *pieces]]
    native = NativeFrames("t", lambda _m: None)
    kept, docs = native.split(pcapng(frames))
    assert len(docs) == 1 and docs[0]["dns"]["answers"]
    assert _frames_of(kept) == [bytes(eth() / other)]  # the datagram as sent, in one frame
    assert native.taken_at.tolist() == list(range(1, len(frames)))  # the last block stands for the datagram
    packet = Packet({"frame_number": ["1"]}, [])
    (renumbered,) = native.renumber([packet])
    assert renumbered.number == len(frames)


def test_ipv6_fragments_are_kept_from_tshark_as_ipv4_ones_are() -> None:
    """IPv6 too: a fragmented DNS reply read here costs tshark nothing, and a datagram tshark reads reaches it as
    the datagram sent whole (fragment header out, its next header and the payload length in the fixed header)."""
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6

    other = IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=5000, dport=6000) / (b"d" * 3000)
    dns = IPv6(src="2001:db8::2", dst="2001:db8::1") / UDP(sport=53, dport=5353) / DNS(
        id=1, qr=1, qd=DNSQR(qname="big.example"), an=[DNSRR(rrname="big.example", type="TXT", rdata="t" * 200)] * 12)

    def pieces(packet: IPv6, ident: int) -> list[bytes]:
        with_header = packet.copy()
        with_header.remove_payload()
        with_header /= IPv6ExtHdrFragment(id=ident) / packet.payload
        return [bytes(eth() / f) for f in fragment6(with_header, 1000)]

    other_pieces, dns_pieces = pieces(other, 7), pieces(dns, 8)
    assert len(other_pieces) >= 3 and len(dns_pieces) >= 2
    native = NativeFrames("t", lambda _m: None)
    kept, docs = native.split(pcapng([*dns_pieces, *other_pieces]))
    assert len(docs) == 1 and docs[0]["dns"]["answers"]
    (whole,) = _frames_of(kept)
    assert whole == bytes(eth() / other)  # the datagram as sent, in one frame


def _frames_of(stream: bytes) -> list[bytes]:
    """The frames of a run of pcapng blocks (enhanced packet blocks only)."""
    out, pos = [], 0
    while pos + 12 <= len(stream):
        btype, length = struct.unpack_from("<II", stream, pos)
        if btype == 6:
            caplen = struct.unpack_from("<I", stream, pos + 20)[0]
            out.append(stream[pos + 28:pos + 28 + caplen])
        pos += length
    return out
