"""Differential test of the Rust FTP reader (``collectors._rs.FtpEngine`` behind ``ftp_native.RustFtp``) against the
Python reference (``ftp_native.PythonFtp``: ``native_tcp.LineReader`` lines into ``FtpAnalyzer.line``): the same
calls on both, every document's bytes equal, in order, after every call; the announcements of data channels (the
calls into ``ExpectedConnections.expect``, in order), the hand-backs (``switched``), the warnings and the cut-line
count equal.

Inputs: every shared capture with an FTP control connection and the FTP connections of an analyzer process's real
input (/var/tmp/child-in-0.bin, when present), read by ``native_tcp.TcpNative`` with ``ftp_native.RUST`` on and off
(the whole native TCP path: every frame's decision, documents, announcements, warnings, counters); generated
sessions (logins, PASV/EPSV/PORT/EPRT good and malformed, multi-line replies, replies without commands, long lines
cut, long values cut, holes mid-line, AUTH TLS, words that are not ASCII, pipelined floods) fed to the face in random
pieces, and generated frames through ``TcpNative`` (holes, AUTH hand-back, idle connections swept, port reuse, open
commands at finish).
"""

from __future__ import annotations

import dataclasses
import random
import struct
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from collectors.decode import DPORT, PROTO, SPORT, TCP, Decoder
from collectors.pcapio import CaptureError, read_capture
from collectors.protocols import ftp_native, native_tcp
from collectors.protocols.documents import Flow
from collectors.protocols.expected import ExpectedConnections
from collectors.protocols.ftp_native import PythonFtp, RustFtp
from tests.support import TESTDATA

ENGINE = ftp_native.ENGINE
pytestmark = pytest.mark.skipif(ENGINE is None, reason="collectors._rs lacks FtpEngine")

CHILD_INPUT = Path("/var/tmp/child-in-0.bin")  # an analyzer process's input of real traces (not in the repository)


def dumped(docs: list[Any]) -> list[bytes]:
    """Documents (orjson.Fragment or dict) as the JSON bytes their consumer writes."""
    return [orjson.dumps(d) for d in docs]


class Recorder(ExpectedConnections):
    """The run's expected connections, each announcement also listed."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    def expect(self, orig_h: str, resp_h: str, resp_p: int, service: str, ts: float) -> None:
        self.calls.append((orig_h, resp_h, resp_p, service, ts))
        super().expect(orig_h, resp_h, resp_p, service, ts)


class Pair:
    """The reference and the engine, fed the same calls; every call's documents, announcements, warnings and
    counters compared."""

    def __init__(self, raw: bool = True) -> None:
        assert ENGINE is not None
        self.py_warnings: list[str] = []
        self.rs_warnings: list[str] = []
        self.py_expected, self.rs_expected = Recorder(), Recorder()
        self.py = PythonFtp(self.py_warnings.append, self.py_expected, raw)
        self.rs = RustFtp(ENGINE, self.rs_warnings.append, self.rs_expected, raw)
        self.docs = 0
        self.switches = 0

    def check(self, py_docs: list[Any], rs_docs: list[Any], what: str) -> list[Any]:
        assert dumped(rs_docs) == dumped(py_docs), what
        assert self.rs_warnings == self.py_warnings, what
        assert self.rs_expected.calls == self.py_expected.calls, what
        assert self.rs.cut_lines == self.py.cut_lines, what
        assert self.rs.longest_line == self.py.longest_line, what
        self.docs += len(py_docs)
        return py_docs

    def open(self, conn_id: int, flow: Flow) -> None:
        self.py.open(conn_id, flow)
        self.rs.open(conn_id, flow)

    def feed(self, conn_id: int, from_client: bool, data: bytes | int, ts: float) -> bool:
        """Whether the feed stopped at the client's AUTH (both agree)."""
        what = f"feed({conn_id}, {from_client}, {data if isinstance(data, int) else data[:300]!r}, {ts!r})"
        self.check(self.py.feed(conn_id, from_client, data, ts), self.rs.feed(conn_id, from_client, data, ts), what)
        switched = self.py.switched(conn_id)
        assert self.rs.switched(conn_id) == switched, what
        self.switches += switched
        return switched

    def end(self, conn_id: int, from_client: bool, ts: float) -> list[Any]:
        return self.check(self.py.end(conn_id, from_client, ts), self.rs.end(conn_id, from_client, ts),
                          f"end({conn_id}, {from_client})")

    def forget(self, conn_id: int) -> None:
        self.py.forget(conn_id)
        self.rs.forget(conn_id)

    def expire(self, now: float) -> list[Any]:
        return self.check(self.py.expire(now), self.rs.expire(now), f"expire({now})")

    def finish(self) -> list[Any]:
        return self.check(self.py.finish(), self.rs.finish(), "finish")


# -- the whole native TCP path -------------------------------------------------------------------------------------
Packets = list[tuple[tuple[Any, ...], float]]


def tcp_packets(capture: Path, only_ftp: bool = False) -> Iterator[tuple[tuple[Any, ...], float]]:
    decoder = Decoder()
    try:
        for ts, linktype, buf, off, caplen, _wire in read_capture(capture, lambda _m: None):
            packets = decoder.decode(linktype, buf, off, caplen, ts)
            if packets and packets[-1][PROTO] == TCP:
                p = packets[-1]
                if not only_ftp or min(p[SPORT], p[DPORT]) == native_tcp.FTP_PORT:
                    yield p, ts / 1_000_000_000  # as NativeFrames hands them on
    except CaptureError:  # a baseline's text beside the captures
        return


@dataclasses.dataclass
class Run:
    taken: list[bool]
    docs: list[bytes]
    warnings: list[str]
    stats: tuple[Any, ...]
    announced: list[tuple[Any, ...]]


def native_run(packets: Packets, rust: bool, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setattr(ftp_native, "RUST", rust)
    warnings: list[str] = []
    expected = Recorder()
    native = native_tcp.TcpNative("deep", warnings.append, expected, raw=True)
    assert isinstance(native.ftp, RustFtp if rust else PythonFtp)
    docs: list[Any] = []
    taken = [native.take(p, ts, docs) for p, ts in packets]
    docs += native.finish()
    return Run(taken, dumped(docs), warnings, dataclasses.astuple(native.stats), expected.calls)


def assert_same_runs(packets: Packets, monkeypatch: pytest.MonkeyPatch, what: str) -> Run:
    py = native_run(packets, False, monkeypatch)
    rs = native_run(packets, True, monkeypatch)
    assert rs.docs == py.docs, what
    assert rs.announced == py.announced, what
    assert rs.warnings == py.warnings, what
    assert rs.stats == py.stats, what
    assert rs.taken == py.taken, what
    return py


CAPTURES = sorted(p for p in TESTDATA.rglob("*") if p.is_file() and (".pcap" in p.name or p.suffix == ".cap"))


@cache
def ftp_captures() -> list[Path]:
    """The shared captures with a TCP connection on port 21 (what native_tcp reads as FTP)."""
    return [c for c in CAPTURES if any(True for _ in tcp_packets(c, only_ftp=True))]


def test_captures_with_ftp_found() -> None:
    names = {c.name for c in ftp_captures()}
    assert {"ftp-bruteforce.pcap", "ipv4.pcap", "ipv6.pcap", "bigtransfer.pcap"} <= names, names


FTP_DOCS: dict[str, int] = {}


@pytest.mark.parametrize("capture", ftp_captures(), ids=lambda c: str(c.relative_to(TESTDATA)))
def test_shared_captures_native_path_both_ways(capture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    py = assert_same_runs(list(tcp_packets(capture)), monkeypatch, capture.name)
    FTP_DOCS[capture.name] = sum(b'"secops.ftp"' in d for d in py.docs)


def test_shared_captures_gave_ftp_documents_and_announcements(monkeypatch: pytest.MonkeyPatch) -> None:
    packets = [pt for name in ("zeek/traces/ftp/ipv4.pcap", "zeek/traces/ftp/ipv6.pcap")
               for pt in tcp_packets(TESTDATA / name)]
    py = assert_same_runs(packets, monkeypatch, "ipv4+ipv6")
    assert sum(b'"secops.ftp"' in d for d in py.docs) >= 20 and len(py.announced) >= 4


def stream_frames(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(link type, time in ns, frame) of an analyzer process's input: pcapng interface and packet blocks without a
    section header (``selection.interface_block``/``packet_block``: nanoseconds)."""
    linktypes: list[int] = []
    pos = 0
    while pos + 12 <= len(data):
        kind, total = struct.unpack_from("<II", data, pos)
        if total < 12:
            return
        if kind == 1:
            linktypes.append(struct.unpack_from("<H", data, pos + 8)[0])
        elif kind == 6:
            iface, high, low, caplen = struct.unpack_from("<IIII", data, pos + 8)
            yield linktypes[iface], high << 32 | low, data[pos + 28:pos + 28 + caplen]
        pos += total


@cache
def child_ftp_packets() -> Packets:
    decoder = Decoder()
    out = []
    for linktype, ts, frame in stream_frames(CHILD_INPUT.read_bytes()):
        packets = decoder.decode(linktype, frame, 0, len(frame), ts)
        if packets and packets[-1][PROTO] == TCP and min(packets[-1][SPORT], packets[-1][DPORT]) == 21:
            out.append((packets[-1], ts / 1_000_000_000))
    return out


@pytest.mark.skipif(not CHILD_INPUT.is_file(), reason="no analyzer process input at /var/tmp/child-in-0.bin")
def test_real_analyzer_input_ftp_connections_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    packets = child_ftp_packets()
    py = assert_same_runs(packets, monkeypatch, CHILD_INPUT.name)
    assert sum(b'"secops.ftp"' in d for d in py.docs) > 100


# -- generated sessions --------------------------------------------------------------------------------------------
WORDS = ("USER", "PASS", "ACCT", "user", "Pass", "CWD", "LIST", "RETR", "STOR", "PWD", "SYST", "TYPE", "QUIT", "NOOP",
         "FEAT", "MKD", "SIZE", "MDTM", "OPTS", "SITE", "PASV", "EPSV", "PORT", "EPRT", "port", "eprt", "pasv",
         "\u00fcser", "\u017fyst", "u\u017fer", "P\u0131ng", "\u00dfize", "A\u03a3", "ma\u03c3", "X\u00ff", "ﬆor")
NAMES = ("anna", "anonymous", "ftp", "root", "\u00e9t\u00e9", "a b c", "x" * 5000, "")


def text(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.5:
        return rng.choice((b"ok", b"Welcome to the server", b"", b"Opening BINARY mode", b"a\tb", b"quote\" \\"))
    if r < 0.7:
        return rng.randbytes(rng.randrange(0, 20)).replace(b"\n", b"")
    if r < 0.75:
        return "\u00e9t\u00e9 \u2603 \U0001f600".encode()
    if r < 0.8:
        return b"\xff\xfe \xed\xa0\x80 \xc3 \xe2\x82"  # not UTF-8
    if r < 0.83:
        return b"m" * rng.choice((4096, 4097, 5000, 9000))  # past MAX_KEYWORD_CHARS (or the line bound)
    return rng.choice((b"(|||6446|)", b"(1,2,3,4,5,6)", b"x 10,0,0,1,156,64 y"))


def host_port_text(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.4:
        n = [rng.randrange(256) for _ in range(6)]
        sep = rng.choice((b",", b", ", b",\t", b",  "))
        return sep.join(str(x).encode() for x in n)
    return rng.choice((b"1,2,3,4,5", b"256,1,1,1,1,1", b"1,2,3,4,5,600", b"1234,5,6,7,8,9", b"001,002,003,004,0,21",
                       b"1,2,3,4,5,6789", b"a1,2,3,4,5,6", b"1 ,2,3,4,5,6", b"9,9,9,9,9,9,9,9", b"(10,0,0,2,4,1).",
                       b"0,0,0,0,0,0", b"1,2,3,4,0,0", b"x", b"", b"1,2,3,4,5,\n6",
                       b"256,1,1,1,1,1 then 1,2,3,4,5,6", b"12345,1,2,3,4,5,6"))


def eprt_arg(rng: random.Random) -> bytes:
    return rng.choice((b"|1|10.0.0.1|6275|", b"|2|2001:db8::1|6275|", b"|1|10.0.0.1|0|", b"|1|10.0.0.1|65536|",
                       b"|2|10.0.0.1|80|", b"|1|::1|80|", b"!1!10.0.0.1!80!", b"1|1|10.0.0.1|80|", b"|1|010.0.0.1|80|",
                       b"|2|::ffff:1.2.3.4|80|", b"|2|fe80::1%eth0|21|", b"|2|2001:0db8:0:0:0:0:0:1|21|",
                       b"|1|10.0.0.1|80|  ", b"|3|10.0.0.1|80|", b"|1|10.0.0.1|8a|", b"|1|1.2.3.4|+80|", b"",
                       b"||||", b"|1|\xff|80|", b"a1a10.0.0.1a80a", b"#1#10.0.0.1#80#", b"|1|1.2.3.4|\xd9\xa1|"))


def epsv_text(rng: random.Random) -> bytes:
    if rng.random() < 0.4:
        d = bytes([rng.choice(b"|!#$%&'*+/=?^_~")])
        return b"Entering Extended Passive Mode (" + d * 3 + str(rng.randrange(0, 70000)).encode() + d + b")"
    return rng.choice((b"(|||6446|)", b"(|||0|)", b"(|||65535|)", b"(|||65536|)", b"(|||123456|)", b"(111231)",
                       b"(aaa5a)", b"(...5.)", b"(:::5:)", b"(|||5|", b"(||5|)", b"x (|||12|) (|||13|)", b"(  5 )",
                       b"(\x7f\x7f\x7f5\x7f)", b"(~~~00080~)", b"(|||0000080|)", b"(777777)", b"",
                       b"(111231) then (|||80|)", b"(aaa5a) then (|||81|)", b"(|||5|) (|||6|)"))


def client_line(rng: random.Random, long_ok: bool = True) -> bytes:
    r = rng.random()
    if r < 0.1:
        return b"PORT " + host_port_text(rng)
    if r < 0.17:
        return rng.choice((b"EPRT ", b"eprt ", b"EPRT  ")) + eprt_arg(rng)
    if r < 0.22:
        return rng.choice((b"USER ", b"user ")) + rng.choice(NAMES).encode()
    if r < 0.26:
        return rng.choice((b"PASS ", b"pass ", b"ACCT ")) + rng.choice((b"secret", b"", b"p w"))
    if r < 0.28:
        return rng.choice((b"", b" ", b" LIST", b"\r", b"  x"))
    if r < 0.29 and long_ok:
        return b"C" * rng.choice((4100, 5000, 8192, 8193, 9000))  # a command past the value or line bounds
    if r < 0.3:
        return rng.randbytes(rng.randrange(1, 12)).replace(b"\n", b"")
    word = rng.choice(WORDS).encode()
    return word + (b" " + text(rng) if rng.random() < 0.6 else b"")


def reply_lines(rng: random.Random) -> list[bytes]:
    r = rng.random()
    code = rng.choice((200, 220, 226, 230, 250, 257, 331, 350, 421, 425, 500, 530, 550, 150, 125, 110, 199, 999, 0))
    if r < 0.1:
        return [b"227 Entering Passive Mode (" + host_port_text(rng) + b")"]
    if r < 0.18:
        return [b"229 " + epsv_text(rng)]
    if r < 0.3:  # multi-line
        first = str(code).zfill(3).encode()
        lines = [first + b"-" + text(rng)]
        for _ in range(rng.randrange(0, 4)):
            lines.append(rng.choice((b" continued", first + b"-more", b"123 other code", b"", first + b"x")))
        if rng.random() < 0.9:
            lines.append(first + rng.choice((b" end", b"", b"  ", b"end")))
        return lines
    if r < 0.35:
        return [rng.choice((b"hello", b"", b"22", b"2a0 x", b"\xd9\xa1\xd9\xa2\xd9\xa3 eastern digits", b"2271 x",
                            b"227-(1,2,3,4,5,6)", b"229-(|||77|)"))]
    return [str(code).zfill(3).encode() + rng.choice((b" ", b"", b"-")) * (r < 0.97) + text(rng)]


def session(rng: random.Random) -> tuple[bytes, bytes]:
    """One control connection's bytes: client commands and server replies (replies sometimes before or without
    their commands), lines ended by CRLF, LF or CRCR LF."""
    client: list[bytes] = []
    server: list[bytes] = [b"220 Service ready"] if rng.random() < 0.8 else []
    for _ in range(rng.randrange(0, 14)):
        client.append(client_line(rng))
        if rng.random() < 0.85:
            server += reply_lines(rng)
        if rng.random() < 0.1:
            server += reply_lines(rng)  # a reply without a command
    if rng.random() < 0.05:
        client += [b"NOOP"] * rng.choice((99, 100, 101, 150))  # pipelined, never answered
    if rng.random() < 0.12:
        client.insert(rng.randrange(len(client) + 1), rng.choice((b"AUTH TLS", b"auth ssl", b"AUTHX", b"AuTh")))
    ends = lambda: rng.choice((b"\r\n", b"\r\n", b"\n", b"\r\r\n"))  # noqa: E731
    c = b"".join(line + ends() for line in client)
    s = b"".join(line + ends() for line in server)
    if rng.random() < 0.3:
        c = c[:-rng.randrange(1, 3)] if c else c  # the last line left open
    if rng.random() < 0.05:
        s += b"5" * rng.choice((8192, 8193, 20000))  # an endless last line
    return c, s


ADDRESSES = (("192.0.2.1", "198.51.100.7"), ("2001:db8::1", "2001:db8::21"), ("10.0.0.1", "10.0.0.1"))


def random_run(rng: random.Random, pair: Pair, connections: int | None = None) -> None:
    """Generated sessions cut into pieces of both directions in random order, with holes, interleaved across
    connections; each direction ended in turn (or the connection handed back at AUTH), ``finish`` at the end."""
    ts = 1_600_000_000.0 + rng.randrange(0, 10**6) / 7
    streams: dict[int, list[bytearray]] = {}
    for conn_id in range(1, (connections or rng.randrange(1, 5)) + 1):
        client, server = rng.choice(ADDRESSES)
        flow = Flow("tcp", client, rng.choice((40000, 21, 50001)), server, 21, f"native-{conn_id}")
        pair.open(conn_id, flow)
        streams[conn_id] = [bytearray(b) for b in session(rng)]
    steps = 0
    while streams and steps < 600:
        steps += 1
        conn_id = rng.choice(list(streams))
        sides = streams[conn_id]
        side = rng.choice([i for i in (0, 1) if sides[i]] or [0])
        ts += rng.choice((0.0, 0.0, 0.001, 0.5, 30.0))
        data = sides[side]
        if rng.random() < 0.03:
            switched = pair.feed(conn_id, side == 0, rng.randrange(1, 100), ts)  # a hole
            if data:
                del data[:rng.randrange(1, len(data) + 1)]
        else:
            n = rng.choice((1, 2, 3, 5, 7, 50, 200, 1460, len(data), rng.randrange(1, len(data) + 1))) if data else 0
            switched = pair.feed(conn_id, side == 0, bytes(data[:n]), ts)
            del data[:n]
        if switched:  # TcpNative hands the connection back to tshark: its readers are forgotten
            pair.forget(conn_id)
            del streams[conn_id]
        elif not sides[0] and not sides[1]:
            del streams[conn_id]
            if rng.random() < 0.8:
                for from_client in (True, False):
                    pair.end(conn_id, from_client, ts)
                pair.forget(conn_id)
    pair.expire(ts)
    pair.finish()


@pytest.mark.parametrize("seed", range(200))
def test_generated_sessions(seed: int) -> None:
    pair = Pair(raw=seed % 5 != 0)
    random_run(random.Random(seed), pair)


def test_generated_sessions_reach_what_they_are_meant_to() -> None:
    """The generator reaches what it is meant to: documents, announcements, cut lines, cut values, hand-backs."""
    pair = Pair()
    for seed in range(1000, 1150):
        random_run(random.Random(seed), pair)
    assert pair.docs > 1000 and pair.switches >= 5
    assert len(pair.py_expected.calls) > 30 and pair.py.cut_lines > 3
    assert any("truncated" in w for w in pair.py_warnings)


def test_every_piece_size_of_one_session() -> None:
    """A session with every feature, fed in pieces of every size from 1 byte to the whole."""
    client = (b"USER anna\r\nPASS secret\r\nPORT 10,0,0,1,156,64\r\nEPRT |2|2001:db8::1|6275|\r\nPASV\r\nEPSV\r\n"
              b"LIST\r\nRETR " + b"f" * 5000 + b"\r\nQUIT\r\nAUTH TLS\r\n")
    server = (b"220-hi\r\n220 there\r\n331 pw\r\n230-Welcome\r\n230-more\r\n230 done\r\n200 ok\r\n200 ok\r\n"
              b"227 Entering Passive Mode (10,0,0,2,4,1)\r\n229 Entering Extended Passive Mode (|||6446|)\r\n"
              b"150 here\r\n226 done\r\n" + b"5" * 9000 + b"\r\n221 bye\r\n")
    for size in (1, 2, 3, 4, 7, 64, 4096, 8192, 9000, len(client) + len(server)):
        pair = Pair(raw=size % 2 == 0)
        pair.open(1, Flow("tcp", "192.0.2.1", 40000, "198.51.100.7", 21, "native-1"))
        ts = 1000.0
        c, s = client, server
        while c or s:
            ts += 0.25
            if s:
                pair.feed(1, False, s[:size], ts)
                s = s[size:]
            if c:
                if pair.feed(1, True, c[:size], ts):
                    break
                c = c[size:]
        pair.finish()
        assert pair.docs >= 9 and pair.switches == 1 and len(pair.py_expected.calls) == 4, size


def test_finish_logs_open_commands_in_time_order() -> None:
    pair = Pair()
    for conn_id, ts in ((1, 5.0), (2, 3.0), (3, 5.0), (4, 1.0)):
        pair.open(conn_id, Flow("tcp", "192.0.2.1", 40000 + conn_id, "198.51.100.7", 21, f"native-{conn_id}"))
        pair.feed(conn_id, True, b"STAT\r\nLIST x\r\n", ts)
        pair.feed(conn_id, True, b"NLST", ts + 1)
        pair.end(conn_id, True, ts + 2)
        pair.end(conn_id, False, ts + 2)
        pair.forget(conn_id)
    assert len(pair.finish()) == 12


def test_sessions_are_evicted_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """More sessions than MAX_OPEN_RECORDS: the oldest sessions' commands are logged at the next command or reply
    (their commands together under any bound of what waits: MAX_WAITING_BYTES is tested below)."""
    from collectors.protocols import ftp
    from collectors.protocols.base import MAX_OPEN_RECORDS
    monkeypatch.setattr(ftp, "MAX_WAITING_BYTES", 1 << 40)
    pair = Pair()
    evicted = 0
    for conn_id in range(MAX_OPEN_RECORDS + 25):
        pair.open(conn_id, Flow("tcp", "198.18.0.1", 1024 + conn_id % 60000, "198.18.0.2", 21, f"native-{conn_id}"))
        pair.feed(conn_id, True, b"USER u\r\nLIST\r\n" if conn_id % 3 else b"\r\n", 1e9 + conn_id * 1e-3)
        evicted += pair.docs
        pair.docs = 0
        pair.forget(conn_id)
    assert ENGINE is not None and pair.rs.engine.sessions == MAX_OPEN_RECORDS
    assert evicted > 0
    pair.finish()


def test_waiting_commands_past_the_budget_are_logged_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ftp.MAX_WAITING_BYTES (the commands waiting in all sessions together, each charged COMMAND_OVERHEAD and
    its command's and argument's UTF-8 bytes) the oldest other sessions' commands are logged unanswered, alike;
    their connections read on in new sessions (without the user they had named)."""
    from collectors.protocols import ftp
    monkeypatch.setattr(ftp, "MAX_WAITING_BYTES", 6000)
    rng = random.Random(4)
    pair = Pair()
    for conn_id in range(30):
        pair.open(conn_id, Flow("tcp", f"198.18.1.{conn_id}", 40000 + conn_id, "198.18.0.2", 21, f"native-{conn_id}"))
    ts, evicted = 1e9, 0
    for step in range(900):
        conn_id = rng.randrange(30)
        ts += 0.01
        if rng.random() < 0.7:
            name = b"\xe9" * rng.randrange(0, 200)  # U+FFFD once decoded: three bytes each, on both sides
            lines = b"USER u%d%s\r\n" % (step, name) if rng.random() < 0.2 else b"STOR f%d%s\r\n" % (step, name)
            docs = pair.docs
            pair.feed(conn_id, True, lines + b"PASS secret\r\n" * rng.randrange(0, 2), ts)
            evicted += pair.docs - docs  # commands only log others' (fewer than MAX_PENDING wait in each)
        else:
            pair.feed(conn_id, False, b"226 done\r\n", ts)
    pair.finish()
    assert evicted > 20, evicted


def test_bad_feeds_are_refused() -> None:
    assert ENGINE is not None
    engine = ENGINE(None)
    engine.open(1, "192.0.2.1", 1, "192.0.2.2", 21, "native-1")
    with pytest.raises(TypeError):
        engine.feed(1, True, "text", 1.0)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        engine.feed(1, True, -1, 1.0)
    with pytest.raises(ValueError):
        engine.feed(1, True, b"", float("nan"))
    assert engine.feed(2, True, b"USER x\r\n", 1.0) == []  # a connection never opened: nothing read


def test_lines_of_digits_cost_time_in_proportion_to_their_length() -> None:
    """A 227 reply or PORT argument of digits only: the engine looks at most 4 (5 for EPSV) digits ahead at each
    position, as the reference's ``\\d{1,3}`` does. Counting the whole run each time cost 1.9 s per MiB (the
    reference: 0.03 s): a cheap way for a hostile server to stall an analyzer process."""
    import time

    pair = Pair()
    pair.open(1, Flow("tcp", "198.18.0.1", 40000, "198.18.0.2", 21, "native-1"))
    pair.feed(1, True, b"PASV\r\n", 1.0)
    lines = b"".join(b"227 " + b"7" * 8000 + b"\r\n" + b"229 (|||" + b"9" * 8000 + b"\r\n" for _ in range(64))
    started = time.process_time()
    pair.rs.feed(1, False, lines, 2.0)
    spent = time.process_time() - started
    assert spent < 0.25, f"{len(lines)} bytes of digits took {spent:.2f} s"


def test_the_line_bound_is_the_reference_s() -> None:
    source = (Path(__file__).parents[2] / "collectors" / "rust" / "src" / "ftp.rs").read_text()
    assert f"pub const MAX_LINE_BYTES: usize = {native_tcp.MAX_LINE_BYTES};" in source


# -- generated frames through TcpNative ----------------------------------------------------------------------------
CLIENT4, SERVER4 = b"\x0a\0\0\1", b"\x0a\0\0\2"


def tcp_frame(payload: bytes, seq: int, ack: int, from_client: bool, sport: int, dport: int, flags: int) -> bytes:
    ports = (sport, dport) if from_client else (dport, sport)
    hosts = (CLIENT4, SERVER4) if from_client else (SERVER4, CLIENT4)
    tcp = struct.pack("!HHIIBBHHH", *ports, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, *hosts) + tcp
    return b"\0\x11\x22\x33\x44\x55" * 2 + b"\x08\x00" + ip


def generated_frames(rng: random.Random) -> Packets:
    """Several control connections as frames: segments in order, now and then reordered, retransmitted or lost (a
    hole), FIN/RST, long pauses (idle connections swept), the same ports reused; decoded as NativeFrames does."""
    frames: list[tuple[bytes, float]] = []
    ts = 1_000_000.0 + rng.randrange(1000)
    conns = []
    for i in range(rng.randrange(1, 5)):
        c, s = session(rng)
        sport = rng.choice((40000 + i, 40000, 2121))
        conns.append({"data": [c, s], "seq": [rng.randrange(1 << 32), rng.randrange(1 << 32)], "sport": sport,
                      "dport": 21})
    while any(conn["data"][0] or conn["data"][1] for conn in conns):
        conn = rng.choice([c for c in conns if c["data"][0] or c["data"][1]])
        side = rng.choice([i for i in (0, 1) if conn["data"][i]])
        data = conn["data"][side]
        n = rng.choice((1, 3, 20, 100, 536, 1460, len(data)))
        seg = data[:n]
        conn["data"][side] = data[n:]
        seq, ack = conn["seq"][side], conn["seq"][1 - side]
        conn["seq"][side] = seq + len(seg)
        ts += rng.choice((0.0, 0.01, 1.0, 400.0)) if rng.random() < 0.97 else 1000.0
        r = rng.random()
        frame = (tcp_frame(seg, seq, ack, side == 0, conn["sport"], conn["dport"], 0x18), ts)
        if r < 0.03:
            continue  # lost: a hole
        if r < 0.06 and frames:
            frames.insert(len(frames) - 1, frame)  # reordered
        else:
            frames.append(frame)
        if r > 0.97:
            frames.append(frame)  # retransmitted
        if not conn["data"][0] and not conn["data"][1] and rng.random() < 0.5:
            fin = tcp_frame(b"", conn["seq"][0], conn["seq"][1], True, conn["sport"], conn["dport"],
                            rng.choice((0x11, 0x14)))
            frames.append((fin, ts))
    decoder = Decoder()
    out = []
    for frame, t in frames:
        packets = decoder.decode(1, frame, 0, len(frame), int(t * 1e9))
        out.append((packets[-1], t))
    return out


@pytest.mark.parametrize("seed", range(60))
def test_generated_frames_through_tcp_native(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_same_runs(generated_frames(random.Random(seed)), monkeypatch, f"seed {seed}")


def test_auth_hands_the_connection_back_from_that_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """The frame with AUTH and every later one go to tshark; the commands before it in that frame are logged."""
    segments = [(False, b"220 hi\r\n"), (True, b"FEAT\r\n"), (False, b"211 end\r\n"),
                (True, b"PWD\r\nAUTH TLS\r\nX\r\n"), (False, b"234 go\r\n"), (True, b"\x16\x03\x01\x00\x05hello")]
    seqs = [1000, 5000]
    decoder = Decoder()
    packets = []
    for i, (from_client, payload) in enumerate(segments):
        side = 0 if from_client else 1
        frame = tcp_frame(payload, seqs[side], seqs[1 - side], from_client, 40000, 21, 0x18)
        seqs[side] += len(payload)
        packets.append((decoder.decode(1, frame, 0, len(frame), (1000 + i) * 10**9)[-1], 1000.0 + i))
    run = assert_same_runs(packets, monkeypatch, "auth")
    assert run.taken == [True, True, True, False, False, False]
    assert [orjson.loads(d)["secops"]["ftp"]["command"] for d in run.docs] == ["FEAT", "PWD"]
