"""FTP control channel: one record per command and its final reply, as Zeek's ftp.log.

The session's user name (from USER) is carried on every record; PASS arguments are never kept. At most
``MAX_PENDING`` commands wait per session and ``MAX_WAITING_BYTES`` of them in all sessions together (sessions
never expire: past it the oldest other sessions' commands are logged unanswered).
A PASS answered 530 is a failed login (``event.outcome: failure``), the signal brute-force
detections count. Data channels named by PASV/EPSV replies and PORT/EPRT commands are announced to the run's
:class:`ExpectedConnections`, so their connections are logged with service ``ftp-data`` as Zeek logs them.

Two readers feed one state machine (``command``, ``reply``, ``announce``): tshark's packets (``handle``: its FTP
dissector parses the first line of each segment, and the data-channel addresses) and the lines of a reassembled
control connection read natively (``line``, from ``collectors.protocols.native``; the addresses parsed here by
RFC 959 and RFC 2428). A native reader follows Zeek's line semantics: every line is a command or a reply, a
multi-line reply (``230-`` ... ``230 ``) answers once, with its first line's text.
"""

from __future__ import annotations

import ipaddress
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from collectors.protocols.base import (
    Analyzer,
    RunContext,
    Warn,
    evict_oldest,
    flow_by_server_port,
    pop_oldest_other,
)
from collectors.protocols.documents import Flow, Written
from collectors.protocols.tshark import Packet, to_int

PORTS = frozenset({21})
SECRET_COMMANDS = frozenset({"PASS", "ACCT"})

MAX_PENDING = 100  # commands waiting for their reply on one connection
# what the commands waiting for their reply hold in all sessions together (sessions outlive their connections and do
# not expire: 100,000 sessions of 100 commands held 2 GB for 60 MB read, or 240 GB with long arguments): each is
# charged COMMAND_OVERHEAD and its command's and argument's UTF-8 bytes; past it the oldest other sessions are
# dropped, their commands logged unanswered (as past MAX_OPEN_RECORDS sessions). The Rust engine reads both here.
MAX_WAITING_BYTES = 32 << 20
COMMAND_OVERHEAD = 256

# RFC 959 4.1.2 host-port: h1,h2,h3,h4,p1,p2 (found anywhere in the text, as servers wrap it differently)
HOST_PORT = re.compile(rb"(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3}),\s*(\d{1,3})")
# RFC 2428 3: (<d><d><d>port<d>) with a delimiter in the range 33-126 that is no digit, hex letter, '.' or ':'
EPSV_PORT = re.compile(rb"\(([!-~])\1\1(\d{1,5})\1\)")
RFC2428_NOT_DELIMITER = frozenset(b"0123456789abcdefABCDEF.:")


@dataclass(init=False)
class Command:
    flow: Flow
    ts: float
    command: str
    arg: str | None
    user: str | None
    reply_code: int | None = None
    reply_msg: str | None = None
    weight: int = field(default=0, compare=False)  # what it is charged against MAX_WAITING_BYTES

    def __init__(self, flow: Flow, ts: float, command: str, arg: str | None, user: str | None,
                 reply_code: int | None = None, reply_msg: str | None = None) -> None:
        self.flow = flow
        self.ts = ts
        self.command = command
        self.arg = arg
        self.user = user
        self.reply_code = reply_code
        self.reply_msg = reply_msg
        self.weight = COMMAND_OVERHEAD + utf8_len(command) + (utf8_len(arg) if arg is not None else 0)


@dataclass(init=False)
class Session:
    user: str | None = None
    pending: deque[Command] = field(default_factory=deque)
    multiline: bytes | None = None  # native reader: the code that ends the multi-line reply being read
    held: int = field(default=0, compare=False)  # the weights of its pending commands

    def __init__(self, user: str | None = None, pending: deque[Command] | None = None,
                 multiline: bytes | None = None) -> None:
        self.user = user
        self.pending = deque() if pending is None else pending
        self.multiline = multiline
        self.held = sum(cmd.weight for cmd in self.pending)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def host_port(text: bytes) -> tuple[str, int] | None:
    """The address and port of a PORT argument or a 227 reply (RFC 959), or None."""
    found = HOST_PORT.search(text)
    if found is None:
        return None
    numbers = [int(n) for n in found.groups()]
    if max(numbers) > 255:
        return None
    return ".".join(map(str, numbers[:4])), numbers[4] << 8 | numbers[5]


def eprt(arg: bytes) -> tuple[str, int] | None:
    """The address and port of an EPRT argument ``<d>af<d>address<d>port<d>`` (RFC 2428 2), or None."""
    if len(arg) < 4 or not 33 <= arg[0] <= 126 or arg[0] in RFC2428_NOT_DELIMITER:
        return None
    parts = arg.rstrip(b" ").split(arg[:1])
    if len(parts) != 5 or parts[0] or parts[4] or parts[1] not in (b"1", b"2") or not parts[3].isdigit():
        return None
    try:
        address = ipaddress.ip_address(parts[2].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    port = int(parts[3])
    if address.version != (4 if parts[1] == b"1" else 6) or not 0 < port < 65536:
        return None
    return str(address), port


def epsv_port(text: bytes) -> int | None:
    """The port of a 229 reply ``(|||port|)`` (RFC 2428 3), or None."""
    found = EPSV_PORT.search(text)
    if found is None or found.group(1)[0] in RFC2428_NOT_DELIMITER:
        return None
    port = int(found.group(2))
    return port if 0 < port < 65536 else None


def _text(raw: bytes) -> str | None:
    return raw.decode("utf-8", "replace") or None


class FtpAnalyzer(Analyzer):
    DATASET = "secops.ftp"
    SERVICE = "ftp"
    PORTS = PORTS
    LAYERS = frozenset({"ftp"})
    FILTER = "ftp.request or ftp.response"
    FIELDS = ("ftp.request.command", "ftp.request.arg", "ftp.response.code", "ftp.response.arg", "ftp.passive.ip",
              "ftp.passive.port", "ftp.epsv.ip", "ftp.epsv.ipv6", "ftp.epsv.port", "ftp.active.cip",
              "ftp.active.port", "ftp.eprt.ip", "ftp.eprt.ipv6", "ftp.eprt.port")

    def __init__(self, warn: Warn, context: RunContext | None = None) -> None:
        super().__init__(warn, context)
        self.sessions: dict[tuple[str, str], Session] = {}
        self._evicted: list[Written] = []
        self.held = 0  # the sessions' ``held`` together

    # -- the state machine both readers share ------------------------------------------------------------
    def session(self, flow: Flow) -> Session:
        """The connection's session (connection floods: the oldest sessions' commands are logged)."""
        session = self.sessions.get(flow.key())
        if session is None:
            session = self.sessions[flow.key()] = Session()
            for stale in evict_oldest(self.sessions):
                self.held -= stale.held
                self._evicted += [self.emit(cmd) for cmd in stale.pending]
        return session

    def command(self, session: Session, flow: Flow, ts: float, command: str, arg: str | None) -> Iterable[Written]:
        """A client command: it waits for its reply."""
        yield from self._take_evicted()
        command = command.upper()
        if command == "USER":
            session.user = arg
        cmd = Command(flow, ts, command, None if command in SECRET_COMMANDS else arg, session.user)
        session.pending.append(cmd)
        session.held += cmd.weight
        self.held += cmd.weight
        if len(session.pending) > MAX_PENDING:  # pipelined commands never answered
            yield self.emit(self._answered(session))
        while self.held > MAX_WAITING_BYTES:  # a flood over many sessions: the oldest others' commands are logged
            stale = pop_oldest_other(self.sessions, session)
            if stale is None:
                break
            self.held -= stale.held
            for old in stale.pending:
                yield self.emit(old)

    def _answered(self, session: Session) -> Command:
        """The session's oldest waiting command, no longer waiting."""
        cmd = session.pending.popleft()
        session.held -= cmd.weight
        self.held -= cmd.weight
        return cmd

    def reply(self, session: Session, code: int, msg: str | None) -> Iterable[Written]:
        """A server reply: a final one (>= 200) answers the oldest waiting command."""
        yield from self._take_evicted()
        if code < 200 or not session.pending:  # preliminary reply (150 opening data connection): still running
            return
        cmd = self._answered(session)
        cmd.reply_code, cmd.reply_msg = code, msg
        yield self.emit(cmd)

    def announce(self, orig_h: str, host: str | None, port: int | None, ts: float) -> None:
        """A data channel named on the control connection: ``orig_h`` will connect to ``host``:``port``."""
        expected = self.context.expected if self.context is not None else None
        if expected is not None and port is not None and host:
            expected.expect(orig_h, host, port, "ftp-data", ts)

    def _take_evicted(self) -> list[Written]:
        out, self._evicted = self._evicted, []
        return out

    # -- tshark's packets --------------------------------------------------------------------------------
    def handle(self, pkt: Packet) -> Iterable[Written]:
        oriented = flow_by_server_port(pkt, self.server_ports)
        if oriented is None:
            return
        flow, from_client = oriented
        session = self.session(flow)
        self._announce_data_channel(pkt, flow, from_client)
        if from_client:
            args = pkt.values("ftp.request.arg")
            for i, cmd in enumerate(pkt.values("ftp.request.command")):
                yield from self.command(session, flow, pkt.ts, cmd, args[i] if i < len(args) else None)
            return
        yield from self._take_evicted()
        codes = [c for c in (to_int(v) for v in pkt.values("ftp.response.code")) if c is not None]
        if codes:
            msgs = pkt.values("ftp.response.arg")
            yield from self.reply(session, codes[-1], msgs[-1] if msgs else None)

    def _announce_data_channel(self, pkt: Packet, flow: Flow, from_client: bool) -> None:
        """PASV/EPSV reply: the client connects to the named address (EPSV names none: the server's); PORT/EPRT
        command: the server connects to the client's (Zeek's ftp/main.zeek)."""
        if from_client:
            host = pkt.last("ftp.active.cip") or pkt.last("ftp.eprt.ip") or pkt.last("ftp.eprt.ipv6")
            port = to_int(pkt.last("ftp.active.port") or pkt.last("ftp.eprt.port"))
            self.announce(flow.resp_h, host, port, pkt.ts)
        else:
            host = pkt.last("ftp.passive.ip") or pkt.last("ftp.epsv.ip") or pkt.last("ftp.epsv.ipv6") or flow.resp_h
            port = to_int(pkt.last("ftp.passive.port") or pkt.last("ftp.epsv.port"))
            self.announce(flow.orig_h, host, port, pkt.ts)

    # -- lines read natively -----------------------------------------------------------------------------
    def line(self, flow: Flow, from_client: bool, ts: float, line: bytes) -> Iterable[Written]:
        """One line of a control connection (without its line end), read from the reassembled stream."""
        session = self.session(flow)
        if from_client:
            word, _, rest = line.partition(b" ")  # RFC 959: one space, the argument may hold more
            if not word:
                return
            command = word.decode("utf-8", "replace").upper()
            if command == "PORT":
                host, port = host_port(rest) or (None, None)
                self.announce(flow.resp_h, host, port, ts)
            elif command == "EPRT":
                host, port = eprt(rest) or (None, None)
                self.announce(flow.resp_h, host, port, ts)
            yield from self.command(session, flow, ts, command, _text(rest))
            return
        if session.multiline is not None:  # inside a multi-line reply: only its last line ends it
            if line[:3] == session.multiline and line[3:4] != b"-":
                session.multiline = None
            return
        if len(line) < 3 or not line[:3].isdigit():
            return
        code = int(line[:3])
        if line[3:4] == b"-":
            session.multiline = line[:3]
        text = line[4:]
        if code == 227:
            host, port = host_port(text) or (None, None)
            self.announce(flow.orig_h, host, port, ts)
        elif code == 229:
            self.announce(flow.orig_h, flow.resp_h, epsv_port(text), ts)
        yield from self.reply(session, code, _text(text))

    # -- records ---------------------------------------------------------------------------------------
    def emit(self, cmd: Command) -> Written:
        login = cmd.command == "PASS"
        outcome = None
        if login and cmd.reply_code is not None:
            outcome = "success" if cmd.reply_code == 230 else "failure" if cmd.reply_code == 530 else None
        fields = {
            "secops.ftp.command": cmd.command,
            "secops.ftp.arg": cmd.arg,
            "secops.ftp.reply_code": cmd.reply_code,
            "secops.ftp.reply_msg": cmd.reply_msg,
            "user.name": cmd.user,
            "event.action": "ftp-login" if login else f"ftp-{cmd.command.lower()}",
            "event.category": ["network", "authentication"] if login else None,
            "event.outcome": outcome,
        }
        return self.document(cmd.flow, cmd.ts, ("ftp", cmd.command), fields, self.SERVICE)

    def finish(self) -> Iterable[Written]:
        yield from self._take_evicted()
        rest = sorted((c for s in self.sessions.values() for c in s.pending), key=lambda c: c.ts)
        self.sessions.clear()
        self.held = 0
        for cmd in rest:
            yield self.emit(cmd)
        self.report_cuts()
