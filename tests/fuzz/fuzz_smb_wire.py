"""SMB2 and DCE-RPC read natively (``collectors.protocols.smb_wire``), then logged by ``SmbAnalyzer`` from the fields
it gives, frame by frame through ``base.reader_documents`` as ``native_tcp`` pairs them.

Input: one byte of options (bit 0: NetBIOS over 139, 17-bit lengths, instead of SMB over TCP; bits 1-2: the
server's port, 445, 139, 135 or a dynamic DCE-RPC endpoint; bit 3: the stream read once more as a second connection
sharing the first one's ``SmbSessions``), then frames in the framing of ``seeds.pack_frames``: one byte of flags
(bit 0: from the server, bit 1: a hole of 1 + the next 16-bit number of bytes before the data, bits 2-4: the data
cut into that many more chunks), then the bytes. A connection is read until the reader hands it back to tshark
(``switched``). Contract: nothing raises; a frame's fields are lists of strings the analyzer asks tshark for, one
command and message id per SMB2 message, one type, call id and last-fragment flag per DCE-RPC PDU, the three NTLM
names together, one operation name per named operation, and none once switched; what the reader holds stays within
its bounds (``MAX_KEPT_BYTES`` of a message, ``MAX_PIPE_BYTES`` of a PDU under way, ``MAX_PENDING`` tree requests,
binds and pipes, ``MAX_TREES`` trees); the documents serialise and hold no string longer than ``MAX_VALUE_CHARS``.
"""

from __future__ import annotations

from collectors.protocols.base import reader_documents
from collectors.protocols.documents import Flow
from collectors.protocols.smb import INTERFACES, SmbAnalyzer
from collectors.protocols.smb_wire import (
    MAX_KEPT_BYTES,
    MAX_PENDING,
    MAX_PIPE_BYTES,
    MAX_TREES,
    SmbReader,
    SmbSessions,
)
from collectors.protocols.tshark import ek_key
from tests.fuzz.fuzz_http_wire import assert_documents_fit
from tests.fuzz.seeds import pack_frames, unpack_frames

PORTS = (445, 139, 135, 49674)
FIELDS = frozenset(ek_key(f) for f in SmbAnalyzer.FIELDS)
OPNUMS = tuple(f"{i}_opnum" for i in INTERFACES)
LAYERS = frozenset({"nbss", "smb", "smb2", "dcerpc"})
Frame = tuple[bool, list[bytes | int]]  # from the client; the chunks


def parse(data: bytes) -> list[Frame]:
    out: list[Frame] = []
    for f in unpack_frames(data, limit=160):
        if not f:
            continue
        flags, chunks, body = f[0], [], f[1:]
        if flags & 2:
            chunks.append(1 + int.from_bytes(body[:2], "big"))
            body = body[2:]
        n = 1 + (flags >> 2 & 7)
        step = -(-len(body) // n) or 1
        chunks += [body[i:i + step] for i in range(0, len(body), step)]
        out.append((not flags & 1, chunks))
    return out


class Checked:
    """The reader as ``reader_documents`` drives it, its fields and state checked at each ``take``."""

    def __init__(self, reader: SmbReader) -> None:
        self.reader = reader

    def feed(self, from_client: bool, chunk: bytes | int) -> None:
        self.reader.feed(from_client, chunk)

    def take(self) -> dict[str, list[str]]:
        fields = self.reader.take()
        check_fields(fields)
        if self.reader.switched:
            assert not fields
        assert set(self.reader.layers_taken()) <= LAYERS
        check_bounds(self.reader)
        return fields


def check_fields(fields: dict[str, list[str]]) -> None:
    assert set(fields) <= FIELDS, set(fields) - FIELDS
    assert all(isinstance(v, list) and v and all(isinstance(x, str) for x in v) for v in fields.values())
    assert len(fields.get("smb2_cmd", ())) == len(fields.get("smb2_msg_id", ()))
    assert len(fields.get("smb2_nt_status", ())) <= len(fields.get("smb2_cmd", ()))
    assert len(fields.get("smb_cmd", ())) == len(fields.get("smb_mid", ())) >= len(fields.get("smb_nt_status", ()))
    types = fields.get("dcerpc_pkt_type", [])
    assert len(types) == len(fields.get("dcerpc_cn_call_id", ())) == len(fields.get("dcerpc_cn_flags_last_frag", ()))
    assert len(fields.get("dcerpc_opnum", ())) <= types.count("0")
    names = [k for k in ("ntlmssp_auth_username", "ntlmssp_auth_domain", "ntlmssp_auth_hostname") if k in fields]
    assert len({len(fields[k]) for k in names}) <= 1 and len(names) in (0, 3)
    named = sum(len(fields.get(k, ())) for k in OPNUMS)
    column = fields.get("_ws_col_secopsRpcOp")
    assert len(column[0].split(",")) == named if column else named == 0
    assert column is None or len(column) == 1


def check_bounds(reader: SmbReader) -> None:
    for side in reader.sides:
        assert len(side.buf) <= MAX_KEPT_BYTES
        assert len(side.head) <= (MAX_PIPE_BYTES if reader.rpc_over_tcp else 3)
    assert len(reader.pipes) <= MAX_PENDING and all(len(p) <= MAX_PIPE_BYTES for p in reader.pipes.values())
    assert len(reader.binds) <= MAX_PENDING and len(reader.tree_requests) <= MAX_PENDING
    assert len(reader.sessions.trees) <= MAX_TREES


def read_connection(frames: list[Frame], sessions: SmbSessions, options: int, n: int) -> list:
    reader = SmbReader(sessions, cifs=not options & 1)
    checked = Checked(reader)
    analyzer = SmbAnalyzer(lambda _text: None)
    flow = Flow("tcp", "198.18.0.1", 50000 + n, "198.18.0.2", PORTS[options >> 1 & 3], f"fuzz-{n}")
    docs: list = []
    for i, (from_client, chunks) in enumerate(frames):
        found = reader_documents(analyzer, checked, flow, from_client, chunks, 1000.0 + i, i, reader.layers_taken)
        if reader.switched:  # tshark reads on from this frame
            assert not found
            break
        docs += found
    return docs + list(analyzer.finish())


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    options, frames = data[0], parse(data[1:])
    sessions = SmbSessions()
    docs = []
    for n in range(2 if options & 8 else 1):
        docs += read_connection(frames, sessions, options, n)
    assert_documents_fit(docs)


def _framed(options: int, messages: list[tuple[bool, bytes]], halves: bool = False, hole: int = -1) -> bytes:
    parts = []
    for i, (from_client, data) in enumerate(messages):
        side = 0 if from_client else 1
        if i == hole:
            parts.append(bytes([side | 2]) + b"\x00\x40" + data[64:])
        elif halves:
            parts += [bytes([side]) + data[:len(data) // 2], bytes([side | 4]) + data[len(data) // 2:]]
        else:
            parts.append(bytes([side]) + data)
    return bytes([options]) + pack_frames(parts)


def seeds() -> list[bytes]:
    """Sessions written to the specifications (tests/unit/smb_sessions.py, test_smb_native.py): PsExec over SMB2
    (NTLM in Unicode, OEM and anonymous; IPC$ and svcctl in WRITE and IOCTL; a disk share's CREATEs, a rename, a
    compound chain), on 445 and over NetBIOS on 139, twice on one session table; each message a frame, in halves,
    and with a hole; DCE-RPC over TCP (fragments, alter-context, big-endian); an SMB1 server; SMB3 encryption."""
    from tests.unit import smb_sessions as s
    from tests.unit.test_smb_native import rpc_over_tcp, smb1_server

    psexec = s.psexec()
    rpc = [(c, m) for c, m in rpc_over_tcp()]
    return [
        _framed(0, psexec),
        _framed(0, psexec, halves=True),
        _framed(8, s.psexec("", session_id=0x2000)),
        _framed(0, s.psexec("bob", unicode=False, session_id=0x3000), hole=12),
        _framed(3, s.psexec("nb", session_id=0x5000)),
        _framed(4, rpc),
        _framed(6, rpc, halves=True),
        _framed(4, rpc, hole=4),
        _framed(0, smb1_server()),
        _framed(0, [(s.C, s.nbss(s.negotiate_request(0))), (s.S, s.nbss(s.negotiate_response(0))),
                    (s.C, s.nbss(s.transform())), (s.S, s.nbss(s.transform(200))),
                    (s.C, s.nbss(s.negotiate_request(1)) + s.nbss(s.tree_connect(2, "\\\\srv\\D$"))),
                    (s.S, s.nbss(s.negotiate_response(1)) + s.nbss(s.tree_connect_response(2, 9, 1)))]),
    ]
