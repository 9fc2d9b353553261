"""SMB1/SMB2 and DCE-RPC: commands, shares, named pipes and RPC operations (Zeek smb_*/dce_rpc logs).

SMB requests that matter for lateral movement (negotiate, session setup with the NTLM user,
tree connect, create/open of files and pipes, delete/rename, set info) become one record each,
completed by the response status. Every DCE-RPC request, over an SMB named pipe or plain TCP,
becomes a record with its interface (endpoint) and operation name, e.g. svcctl CreateServiceW.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from collectors.protocols.base import Analyzer, RunContext, Warn, evict_oldest, flow_by_server_port
from collectors.protocols.documents import Flow, Written
from collectors.protocols.tshark import Packet, to_int

SMB2_COMMANDS = {0: "NEGOTIATE", 1: "SESSION_SETUP", 2: "LOGOFF", 3: "TREE_CONNECT", 4: "TREE_DISCONNECT",
                 5: "CREATE", 6: "CLOSE", 7: "FLUSH", 8: "READ", 9: "WRITE", 10: "LOCK", 11: "IOCTL", 12: "CANCEL",
                 13: "ECHO", 14: "QUERY_DIRECTORY", 15: "CHANGE_NOTIFY", 16: "QUERY_INFO", 17: "SET_INFO",
                 18: "OPLOCK_BREAK"}
SMB1_COMMANDS = {0x72: "NEGOTIATE", 0x73: "SESSION_SETUP_ANDX", 0x74: "LOGOFF_ANDX", 0x75: "TREE_CONNECT_ANDX",
                 0x71: "TREE_DISCONNECT", 0xA2: "NT_CREATE_ANDX", 0x2D: "OPEN_ANDX", 0x06: "DELETE", 0x07: "RENAME",
                 0x25: "TRANSACTION", 0x32: "TRANSACTION2", 0xA0: "NT_TRANSACT", 0x04: "CLOSE"}
LOGGED_SMB2 = frozenset({0, 1, 2, 3, 4, 5, 17})
LOGGED_SMB1 = frozenset({0x72, 0x73, 0x74, 0x75, 0x71, 0xA2, 0x2D, 0x06, 0x07})
NT_STATUS = {0x00000000: "STATUS_SUCCESS", 0xC0000016: "STATUS_MORE_PROCESSING_REQUIRED",
             0xC000006D: "STATUS_LOGON_FAILURE", 0xC0000022: "STATUS_ACCESS_DENIED",
             0xC0000034: "STATUS_OBJECT_NAME_NOT_FOUND", 0xC00000CC: "STATUS_BAD_NETWORK_NAME",
             0xC0000035: "STATUS_OBJECT_NAME_COLLISION", 0xC0000064: "STATUS_NO_SUCH_USER",
             0xC000006A: "STATUS_WRONG_PASSWORD", 0xC0000072: "STATUS_ACCOUNT_DISABLED",
             0xC0000043: "STATUS_SHARING_VIOLATION", 0xC00000BB: "STATUS_NOT_SUPPORTED"}
# DCE-RPC interfaces whose operation numbers tshark names; Zeek's endpoint name where it differs
INTERFACES = ("svcctl", "atsvc", "taskschedulerservice", "samr", "lsarpc", "srvsvc", "winreg", "drsuapi", "netlogon",
              "epm", "wkssvc", "spoolss", "iremotewinspool", "efs", "eventlog", "dssetup", "initshutdown",
              "isystemactivator", "remact", "oxid", "mgmt", "dnsserver", "netdfs", "fsrvp", "witness", "frsrpc")
ENDPOINT_NAMES = {"epm": "epmapper", "taskschedulerservice": "ITaskSchedulerService",
                  "isystemactivator": "ISystemActivator", "remact": "IRemoteSCMActivator", "oxid": "IOXIDResolver"}
OP_COLUMN = "secopsRpcOp"
PORTS = frozenset({445, 139, 135})


@dataclass
class SmbCommand:
    flow: Flow
    ts: float
    version: int
    command: str
    fields: dict[str, Any]


def status_name(code: int | None) -> str | None:
    return None if code is None else NT_STATUS.get(code, f"0x{code:08x}")


class SmbAnalyzer(Analyzer):
    DATASET = "secops.smb"
    SERVICE = "smb"
    PORTS = PORTS
    LAYERS = frozenset({"smb", "smb2", "dcerpc"})
    # only the commands logged (requests and their responses) and DCE-RPC requests: tshark printed every SMB2
    # READ, WRITE, CLOSE and IOCTL too, 42% of the SMB lines on the 1M-packet benchmark, each parsed for nothing
    FILTER = (f"smb.cmd in {{{','.join(map(str, sorted(LOGGED_SMB1)))}}} or "
              f"smb2.cmd in {{{','.join(map(str, sorted(LOGGED_SMB2)))}}} or dcerpc.pkt_type == 0")
    FIELDS = (
        "smb2.cmd", "smb2.flags.response", "smb2.msg_id", "smb2.tree", "smb2.filename", "smb2.nt_status",
        "smb.cmd", "smb.flags.response", "smb.mid", "smb.path", "smb.file", "smb.nt_status",
        "ntlmssp.auth.username", "ntlmssp.auth.domain", "ntlmssp.auth.hostname",
        "dcerpc.pkt_type", "dcerpc.opnum", "dcerpc.cn_call_id", "dcerpc.cn_flags.last_frag",
        *(f"{i}.opnum" for i in INTERFACES),
        f"_ws.col.{OP_COLUMN}",
    )
    COLUMNS = ((OP_COLUMN, "%Cus:" + "||".join(f"{i}.opnum" for i in INTERFACES) + ":0:R"),)

    def __init__(self, warn: Warn, context: RunContext | None = None) -> None:
        super().__init__(warn, context)
        self.pending: dict[tuple[tuple[str, str], int, str], SmbCommand] = {}
        self.pipes: dict[tuple[str, str], str] = {}  # last named pipe opened per connection

    def handle(self, pkt: Packet) -> Iterable[Written]:
        oriented = flow_by_server_port(pkt, self.server_ports)
        if oriented is None:
            return
        flow, from_client = oriented
        if pkt.has("smb2"):
            yield from self._smb(pkt, flow, from_client, 2)
        elif pkt.has("smb"):
            yield from self._smb(pkt, flow, from_client, 1)
        if pkt.has("dcerpc") and from_client:
            yield from self._dcerpc(pkt, flow)

    def _smb(self, pkt: Packet, flow: Flow, from_client: bool, version: int) -> Iterable[Written]:
        p = "smb2" if version == 2 else "smb"
        cmd = pkt.int(f"{p}.cmd")
        mid = pkt.int(f"{p}.msg_id" if version == 2 else "smb.mid")
        if cmd is None or mid is None:
            return
        key = (flow.key(), mid, f"{version}:{cmd}")
        if not from_client:
            rec = self.pending.pop(key, None)
            if rec is not None:
                status = pkt.int(f"{p}.nt_status")
                if status == 0xC0000016 and rec.command.startswith("SESSION_SETUP"):
                    self.pending[key] = rec  # NTLM challenge round: wait for the final answer
                    return
                rec.fields["secops.smb.status"] = status_name(status)
                rec.fields["event.outcome"] = "success" if status == 0 else "failure" if status else None
                yield self.emit(rec)
            return
        if cmd not in (LOGGED_SMB2 if version == 2 else LOGGED_SMB1):
            return
        names = SMB2_COMMANDS if version == 2 else SMB1_COMMANDS
        tree = pkt.first("smb2.tree") if version == 2 else pkt.first("smb.path")
        filename = pkt.first("smb2.filename") if version == 2 else pkt.first("smb.file")
        fields: dict[str, Any] = {
            "secops.smb.version": version,
            "secops.smb.share": tree,
            "secops.smb.filename": filename,
            "user.name": pkt.first("ntlmssp.auth.username"),
            "user.domain": pkt.first("ntlmssp.auth.domain"),
            "source.domain": pkt.first("ntlmssp.auth.hostname"),
        }
        if filename and tree and tree.upper().endswith("IPC$"):
            pipe = filename.lstrip("\\")
            fields["secops.smb.pipe"] = pipe
            self.pipes[flow.key()] = pipe
        existing = self.pending.get(key)
        if existing is not None and existing.command.startswith("SESSION_SETUP"):
            existing.fields.update({k: v for k, v in fields.items() if v})
            return
        self.pending[key] = SmbCommand(flow, pkt.ts, version, names.get(cmd, f"0x{cmd:02x}"), fields)
        for stale in evict_oldest(self.pending):  # never-answered command floods are logged unanswered
            yield self.emit(stale)
        evict_oldest(self.pipes)

    def _dcerpc(self, pkt: Packet, flow: Flow) -> Iterable[Written]:
        """Each whole request of the frame: tshark lists every PDU's type and last-fragment flag, the requests'
        operation numbers, and the names of those whose stub it dissected (last fragments of a bound interface)."""
        types = pkt.values("dcerpc.pkt_type")
        opnums = pkt.values("dcerpc.opnum")
        column = pkt.first(f"_ws.col.{OP_COLUMN}") or ""
        op_names = column.split(",") if column else []
        iface = next((i for i in INTERFACES if pkt.values(f"{i}.opnum")), None)
        over_smb = pkt.has("smb2") or pkt.has("smb")
        last_frags = pkt.values("dcerpc.cn_flags.last_frag")
        requests = [i for i, ptype in enumerate(types) if to_int(ptype) == 0]
        whole = [i for i in requests if i >= len(last_frags) or last_frags[i] not in ("0", "False", "false")]
        names = dict(zip(whole, op_names, strict=True)) if len(op_names) == len(whole) else {}
        for i, opnum_text in zip(requests, opnums, strict=False):
            if i not in whole:
                continue  # a fragment of a larger request: the reassembled last fragment carries it
            opnum = to_int(opnum_text)
            name = names.get(i)
            if name is None or name.isdigit() or name.startswith("Unknown"):
                name = f"opnum-{opnum}"
            fields = {
                "secops.dcerpc.endpoint": ENDPOINT_NAMES.get(iface, iface) if iface else None,
                "secops.dcerpc.operation": name,
                "secops.dcerpc.opnum": opnum,
                "secops.smb.pipe": self.pipes.get(flow.key()) if over_smb else None,
                "event.action": name,
            }
            protocol = ["smb", "dce_rpc"] if over_smb else "dce_rpc"
            yield self.document(flow, pkt.ts, ("dce_rpc", pkt.place, i), fields, protocol)

    def emit(self, rec: SmbCommand) -> Written:
        rec.fields["secops.smb.command"] = rec.command
        rec.fields["event.action"] = f"smb-{rec.command.lower()}"
        return self.document(rec.flow, rec.ts, ("smb", rec.version, rec.command, rec.fields.get(
            "secops.smb.filename")), rec.fields, self.SERVICE)

    def finish(self) -> Iterable[Written]:
        rest = sorted(self.pending.values(), key=lambda r: r.ts)
        self.pending.clear()
        for rec in rest:
            yield self.emit(rec)
        self.report_cuts()
