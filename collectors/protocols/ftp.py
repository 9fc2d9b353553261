"""FTP control channel: one record per command and its final reply, as Zeek's ftp.log.

The session's user name (from USER) is carried on every record; PASS arguments are never kept.
A PASS answered 530 is a failed login (``event.outcome: failure``), the signal brute-force
detections count. Data channels named by PASV/EPSV replies and PORT/EPRT commands (tshark parses their
address and port) are announced to the run's :class:`ExpectedConnections`, so their connections are logged
with service ``ftp-data`` as Zeek logs them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from collectors.protocols.base import Analyzer, Doc, Flow, RunContext, Warn, evict_oldest, flow_by_server_port
from collectors.protocols.tshark import Packet, to_int

PORTS = frozenset({21})
SECRET_COMMANDS = frozenset({"PASS", "ACCT"})

MAX_PENDING = 100  # commands waiting for their reply on one connection


@dataclass
class Command:
    flow: Flow
    ts: float
    command: str
    arg: str | None
    user: str | None
    reply_code: int | None = None
    reply_msg: str | None = None


@dataclass
class Session:
    user: str | None = None
    pending: deque[Command] = field(default_factory=deque)


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

    def handle(self, pkt: Packet) -> Iterable[Doc]:
        oriented = flow_by_server_port(pkt, self.server_ports)
        if oriented is None:
            return
        flow, from_client = oriented
        session = self.sessions.setdefault(flow.key(), Session())
        for stale in evict_oldest(self.sessions):  # connection floods: the oldest sessions' commands are logged
            for cmd in stale.pending:
                yield self.emit(cmd)
        self._announce_data_channel(pkt, flow, from_client)
        if from_client:
            args = pkt.values("ftp.request.arg")
            for i, cmd in enumerate(pkt.values("ftp.request.command")):
                command = cmd.upper()
                arg = args[i] if i < len(args) else None
                if command == "USER":
                    session.user = arg
                session.pending.append(Command(flow, pkt.ts, command, None if command in SECRET_COMMANDS else arg,
                                               session.user))
                if len(session.pending) > MAX_PENDING:  # pipelined commands never answered
                    yield self.emit(session.pending.popleft())
            return
        codes = [c for c in (to_int(v) for v in pkt.values("ftp.response.code")) if c is not None]
        if not codes or not session.pending:
            return
        code = codes[-1]
        if code < 200:  # preliminary reply (150 opening data connection): the command is still running
            return
        cmd = session.pending.popleft()
        msgs = pkt.values("ftp.response.arg")
        cmd.reply_code, cmd.reply_msg = code, (msgs[-1] if msgs else None)
        yield self.emit(cmd)

    def _announce_data_channel(self, pkt: Packet, flow: Flow, from_client: bool) -> None:
        """PASV/EPSV reply: the client connects to the named address (EPSV names none: the server's); PORT/EPRT
        command: the server connects to the client's (Zeek's ftp/main.zeek)."""
        expected = self.context.expected if self.context is not None else None
        if expected is None:
            return
        if from_client:
            host = pkt.last("ftp.active.cip") or pkt.last("ftp.eprt.ip") or pkt.last("ftp.eprt.ipv6")
            port = to_int(pkt.last("ftp.active.port") or pkt.last("ftp.eprt.port"))
            orig = flow.resp_h
        else:
            host = pkt.last("ftp.passive.ip") or pkt.last("ftp.epsv.ip") or pkt.last("ftp.epsv.ipv6") or flow.resp_h
            port = to_int(pkt.last("ftp.passive.port") or pkt.last("ftp.epsv.port"))
            orig = flow.orig_h
        if port is not None and host:
            expected.expect(orig, host, port, "ftp-data", pkt.ts)

    def emit(self, cmd: Command) -> Doc:
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

    def finish(self) -> Iterable[Doc]:
        rest = sorted((c for s in self.sessions.values() for c in s.pending), key=lambda c: c.ts)
        self.sessions.clear()
        for cmd in rest:
            yield self.emit(cmd)
        self.report_cuts()
