"""SMB2 and DCE-RPC read from a connection's reassembled bytes, as tshark 4.0 prints them for ``SmbAnalyzer``.

:class:`SmbReader` gives, for each TCP frame, the fields tshark prints for it (``smb2.cmd``, ``smb2.msg_id``,
``smb2.tree``, ``smb2.filename``, ``smb2.nt_status``, ``ntlmssp.auth.*``, ``dcerpc.*`` and the interface's
``<interface>.opnum`` with its name: one value per message the frame completes, in order), or nothing for a frame
tshark's display filter (``SmbAnalyzer.FILTER``) would not print. ``SmbAnalyzer`` makes the same documents from
either reader. What is read ([MS-SMB2], [MS-SMB], DCE 1.1 RPC, [MS-NLMP]):

- **Framing.** SMB over TCP (445, and 139 when the connection's first payload is a session message: one opened by a
  session request stays tshark's): 4-byte NetBIOS session headers, the length 24 bits on 445 as tshark reads it
  there, 17 on 139 (RFC 1002). DCE-RPC over TCP (135 and the dynamic
  endpoints): PDUs by their frag length. A message is reported in the frame holding its last byte.
- **SMB2 messages**, compound chains included (``NextCommand``): command, message id, status (responses), the tree
  (share) and file names. A tree is named in a message's header once its TREE_CONNECT was answered: tshark keeps
  SMB2 sessions in one table for the whole capture (``SmbSessions``, shared by a run's connections), so the response
  itself and async messages (no tree id) carry no name. File names: CREATE requests (an empty one too) and renames
  (SET_INFO FileRenameInformation).
- **NTLMSSP** AUTHENTICATE messages in SESSION_SETUP requests (in SPNEGO or bare): user, domain, workstation;
  an empty one is ``NULL`` as tshark prints it.
- **DCE-RPC** PDUs from the client, over TCP or in WRITE and IOCTL (pipe transceive) requests on a pipe share (the
  TREE_CONNECT response said so), PDUs split across writes put together per file id. Binds and alter-contexts
  name each presentation context's interface (UUID and major version, ``dcerpc_names``); a request's interface and
  operation name are printed on its last fragment only, as tshark dissects the stub once the call is whole.
- **SMB1** only as far as the multi-protocol NEGOTIATE that opens SMB2 sessions. Any other SMB1 message, or an SMB2
  compressed message, sets ``switched`` at the frame the message starts in: tshark reads the connection on from there
  (``native_tcp``'s hand-back).

Memory: at most ``MAX_HELD_BYTES`` of unfinished messages and PDUs over a run's readers (``SmbSessions``); the
reader that crosses it drops what it held, counted in ``damaged``. ``release`` gives a connection's bytes back.
The server's DCE-RPC PDUs are not read (the analyzer logs requests); SMB messages longer than ``MAX_KEPT_BYTES``
are read from their first bytes and the rest skipped (file data). A hole, or bytes that are not a NetBIOS session
header where one should start, stop a direction until a segment starts with one again (counted in ``damaged``).
"""

from __future__ import annotations

import struct
import uuid

from collectors.protocols.base import evict_oldest
from collectors.protocols.dcerpc_names import INTERFACES, OPERATIONS
from collectors.protocols.documents import MAX_VALUE_CHARS
from collectors.protocols.smb import LOGGED_SMB2

MAX_KEPT_BYTES = 64 << 10  # of one SMB message: headers and small bodies (longer ones carry file data)
MAX_PIPE_BYTES = 64 << 10  # a DCE-RPC PDU put together from pipe writes (longer: dropped, counted)
MAX_TREES = 16_384  # trees remembered over all sessions of a run (the oldest go first)
MAX_PENDING = 1024  # presentation contexts bound, per connection
MAX_TREE_REQUESTS = 64  # TREE_CONNECT requests waiting for their answer, per connection
# a tree's path is kept to the length a document holds (documents.MAX_VALUE_CHARS, and one more so it is cut the same)
MAX_PATH_CHARS = MAX_VALUE_CHARS + 1
MAX_PIPES = 16  # pipes with a DCE-RPC PDU under way, per connection (the oldest go first)
# what all SMB readers of a run hold of messages and PDUs not yet whole; past it, the reader that crossed it drops
# what it held (counted in ``damaged``), as the TCP table's budget makes the direction that crosses it skip its holes
MAX_HELD_BYTES = 32 << 20
NBSS_MESSAGE, NBSS_KEEPALIVE = 0x00, 0x85
NBSS_TYPES = frozenset({0x00, 0x81, 0x82, 0x83, 0x84, 0x85})
SMB1, SMB2, SMB2_TRANSFORM, SMB2_COMPRESSED = b"\xffSMB", b"\xfeSMB", b"\xfdSMB", b"\xfcSMB"
NEGOTIATE, SESSION_SETUP, TREE_CONNECT, CREATE, READ, WRITE, IOCTL, SET_INFO = 0, 1, 3, 5, 8, 9, 11, 17
SMB1_NEGOTIATE = 0x72
PIPE_SHARE = 2  # TREE_CONNECT response ShareType
PIPE_TRANSCEIVE = 0x0011C017
FILE_INFO, FILE_RENAME_INFORMATION = 1, 10
DCE_REQUEST, DCE_BIND, DCE_ALTER = 0, 11, 14
LAST_FRAG = 0x02
_u8, _u16 = struct.Struct("<B").unpack_from, struct.Struct("<H").unpack_from
_u32, _u64 = struct.Struct("<I").unpack_from, struct.Struct("<Q").unpack_from

Layers = list[str]


class SmbSessions:
    """SMB2 trees by (session id, tree id), over all connections of a run, as tshark keeps them; what the run's
    readers hold (``MAX_HELD_BYTES``)."""

    __slots__ = ("held", "limit", "trees")

    def __init__(self, limit: int = MAX_HELD_BYTES) -> None:
        self.trees: dict[tuple[int, int], tuple[str, int]] = {}  # -> (name, share type)
        self.held = 0
        self.limit = limit

    def add(self, key: tuple[int, int], name: str, share_type: int) -> None:
        self.trees.pop(key, None)
        self.trees[key] = (name, share_type)
        evict_oldest(self.trees, MAX_TREES)


class _Side:
    """One direction's framing state."""

    __slots__ = ("buf", "head", "lost", "skip", "want")

    def __init__(self) -> None:
        self.head = b""  # a NetBIOS header (or DCE-RPC PDU header) not yet whole
        self.buf = bytearray()  # the message's kept bytes
        self.want = -1  # message bytes still to come (-1: at a header)
        self.skip = 0  # of those, the ones past MAX_KEPT_BYTES (not kept)
        self.lost = False  # after a hole or garbage: waiting for a segment that starts with a header


class SmbReader:
    """One SMB (or DCE-RPC over TCP) connection, both directions; ``feed`` a frame's chunks, then ``take`` its
    fields and ``layers``."""

    def __init__(self, sessions: SmbSessions, cifs: bool = True) -> None:
        """``cifs``: SMB directly over TCP (port 445: 24-bit NetBIOS lengths); otherwise NetBIOS (139)."""
        self.sessions = sessions
        self.cifs = cifs
        self.sides = (_Side(), _Side())  # from the client, from the server
        self.rpc_over_tcp: bool | None = None  # decided by the connection's first byte (5: DCE-RPC)
        self.switched = False  # tshark reads on from the frame that set it
        self.damaged = 0
        self.tree_requests: dict[int, str] = {}  # TREE_CONNECT message id -> path
        self.binds: dict[tuple[bytes, int], str | None] = {}  # (file id or b"", context id) -> interface
        self.pipes: dict[bytes, bytearray] = {}  # file id -> a DCE-RPC PDU under way in its writes
        self.held = 0  # of ``sessions.held``: the bytes its sides and pipes hold
        self.frame_layers: Layers = []
        self._clear()

    def _clear(self) -> None:
        self.f: dict[str, list[str]] = {}
        self.layers: Layers = []  # the layers of the messages since the last ``take``
        self.logged = False

    def _add(self, key: str, value: str) -> None:
        self.f.setdefault(key, []).append(value)

    def _layer(self, name: str) -> None:
        if name not in self.layers:
            self.layers.append(name)

    # -- framing -------------------------------------------------------------------------------------------------
    def feed(self, from_client: bool, chunk: bytes | int) -> None:
        """Reassembled bytes of one direction in sequence order (an int: a hole of that many bytes)."""
        side = self.sides[0 if from_client else 1]
        if isinstance(chunk, int):
            self._lose(side)
        elif chunk and not self.switched:
            self._read(side, chunk, from_client)
        self._count_held(side)

    def _read(self, side: _Side, chunk: bytes, from_client: bool) -> None:
        if self.rpc_over_tcp is None:
            self.rpc_over_tcp = chunk[0] == 5
        if side.lost:
            if not self._starts_message(chunk):
                return
            side.lost = False
        if self.rpc_over_tcp:
            if from_client:
                self._rpc_stream(side, chunk)
        else:
            self._nbss(side, chunk, from_client)

    def _count_held(self, side: _Side) -> None:
        """What this reader holds, into the run's count; past the run's budget, what the direction just fed and
        the pipes held is dropped (counted)."""
        self._recount()
        if self.sessions.held > self.sessions.limit:
            self._lose(side)
            self.pipes.clear()
            self._recount()

    def _recount(self) -> None:
        held = sum(len(s.buf) + len(s.head) for s in self.sides) + sum(len(w) for w in self.pipes.values())
        self.sessions.held += held - self.held
        self.held = held

    def release(self) -> None:
        """The connection is gone (or over the budget): what it held leaves the run's count."""
        self.sessions.held -= self.held
        self.held = 0

    def _lose(self, side: _Side) -> None:
        if not side.lost:
            self.damaged += 1
        side.head, side.buf, side.want, side.skip, side.lost = b"", bytearray(), -1, 0, True

    def _starts_message(self, data: bytes) -> bool:
        if self.rpc_over_tcp:
            return len(data) >= 16 and data[0] == 5 and data[1] in (0, 1)
        if data[:4] == b"\x85\0\0\0":  # a keep-alive
            return True
        return len(data) >= 8 and data[0] == NBSS_MESSAGE and data[4:8] in (SMB1, SMB2, SMB2_TRANSFORM, SMB2_COMPRESSED)

    def _nbss(self, side: _Side, data: bytes, from_client: bool) -> None:
        at, size = 0, len(data)
        while at < size and not side.lost and not self.switched:
            if side.want < 0:
                need = 4 - len(side.head)
                side.head += data[at:at + need]
                at += need
                if len(side.head) < 4:
                    return
                kind, b1, b2, b3 = side.head
                side.head = b""
                if kind not in NBSS_TYPES:
                    self._lose(side)
                    return
                length = (b1 << 16 if self.cifs else (b1 & 1) << 16) | b2 << 8 | b3
                if kind != NBSS_MESSAGE:
                    side.skip, side.want = length, length  # session request/response, keep-alive: not SMB
                else:
                    side.want, side.skip = length, max(length - MAX_KEPT_BYTES, 0)
                    side.buf = bytearray()
                if side.want == 0:
                    side.want = -1
                continue
            take = min(side.want, size - at)
            keep = side.want - side.skip  # the message's bytes still to keep (the rest is skipped)
            if keep > 0:
                before = len(side.buf)
                side.buf += data[at:at + min(take, keep)]
                if before < 5 <= len(side.buf) and self._leaves(side.buf):
                    self.switched = True  # tshark reads on from this frame, where the message starts
                    return
            at += take
            side.want -= take
            if side.want == 0:
                side.want, side.skip = -1, 0
                if side.buf:
                    message, side.buf = bytes(side.buf), bytearray()
                    self._message(message, from_client)

    # -- SMB -----------------------------------------------------------------------------------------------------
    @staticmethod
    def _leaves(head: bytearray) -> bool:
        """Whether a message that starts so is one tshark reads from here on: SMB1 past the NEGOTIATE, compressed
        SMB2 (tshark decompresses it)."""
        return (head[:4] == SMB1 and head[4] != SMB1_NEGOTIATE) or head[:4] == SMB2_COMPRESSED

    def _message(self, msg: bytes, from_client: bool) -> None:
        magic = msg[:4]
        self._layer("nbss")
        if magic == SMB2:
            self._layer("smb2")
            self._smb2(msg, from_client)
        elif magic == SMB1:
            self._layer("smb")
            self._smb1(msg)  # the multi-protocol NEGOTIATE in SMB1 (0x72 is logged)
        elif magic == SMB2_COMPRESSED:
            self.switched = True  # tshark decompresses them
        elif magic == SMB2_TRANSFORM:
            self._layer("smb2")  # encrypted: nothing tshark can read either

    def _smb1(self, msg: bytes) -> None:
        if len(msg) < 32 or msg[4] != SMB1_NEGOTIATE:
            self.switched = True
            return
        self._add("smb_cmd", f"0x{msg[4]:02x}")
        self._add("smb_mid", str(_u16(msg, 30)[0]))
        if _u16(msg, 10)[0] & 0x4000:  # Flags2: NT status codes
            self._add("smb_nt_status", f"0x{_u32(msg, 5)[0]:08x}")
        self.logged = True

    def _smb2(self, msg: bytes, from_client: bool) -> None:
        off, size = 0, len(msg)
        while size - off >= 64 and msg[off:off + 4] == SMB2:
            status, cmd = _u32(msg, off + 8)[0], _u16(msg, off + 12)[0]
            flags, next_command, msg_id = _u32(msg, off + 16)[0], _u32(msg, off + 20)[0], _u64(msg, off + 24)[0]
            response = flags & 1
            session = _u64(msg, off + 40)[0]
            tid = None if flags & 2 else _u32(msg, off + 36)[0]
            end = off + next_command if next_command else size
            if end > size or end <= off:
                end = size
            self._add("smb2_cmd", str(cmd))
            self._add("smb2_msg_id", str(msg_id))
            if cmd in LOGGED_SMB2:
                self.logged = True
            tree = self.sessions.trees.get((session, tid)) if tid is not None else None
            if tree is not None:
                self._add("smb2_tree", tree[0])
            if response:
                self._add("smb2_nt_status", f"0x{status:08x}")
            body = off + 64
            try:
                if response:
                    self._smb2_response(msg, off, body, end, cmd, status, session, tid, msg_id)
                else:
                    self._smb2_request(msg, off, body, end, cmd, msg_id, tree, from_client)
            except struct.error:
                self.damaged += 1  # a body shorter than its fixed part: tshark marks it malformed
            if not next_command or end >= size:
                return
            off = end

    def _smb2_request(self, msg: bytes, off: int, body: int, end: int, cmd: int, msg_id: int,
                      tree: tuple[str, int] | None, from_client: bool) -> None:
        if cmd == TREE_CONNECT:
            path = _utf16(msg, off + _u16(msg, body + 4)[0], _u16(msg, body + 6)[0], end)
            if path is not None:
                self._add("smb2_tree", path)
                self.tree_requests[msg_id] = path[:MAX_PATH_CHARS]
                evict_oldest(self.tree_requests, MAX_TREE_REQUESTS)
        elif cmd == CREATE:
            name = _utf16(msg, off + _u16(msg, body + 44)[0], _u16(msg, body + 46)[0], end)
            if name is not None:  # an empty one too (the share's root), as tshark prints it
                self._add("smb2_filename", name)
        elif cmd == SET_INFO:
            if _u8(msg, body + 2)[0] == FILE_INFO and _u8(msg, body + 3)[0] == FILE_RENAME_INFORMATION:
                info = off + _u16(msg, body + 8)[0]
                name = _utf16(msg, info + 20, _u32(msg, info + 16)[0], end)
                if name is not None:
                    self._add("smb2_filename", name)
        elif cmd == SESSION_SETUP:
            blob = off + _u16(msg, body + 12)[0]
            self._ntlmssp(msg[blob:min(blob + _u16(msg, body + 14)[0], end)])
        elif from_client and tree is not None and tree[1] == PIPE_SHARE and cmd in (WRITE, IOCTL):
            if cmd == WRITE:
                data_at, length, fid = off + _u16(msg, body + 2)[0], _u32(msg, body + 4)[0], msg[body + 16:body + 32]
            elif _u32(msg, body + 4)[0] == PIPE_TRANSCEIVE:
                fid, data_at, length = msg[body + 8:body + 24], off + _u32(msg, body + 24)[0], _u32(msg, body + 28)[0]
            else:
                return
            self._pipe(fid, msg[data_at:min(data_at + length, end)])

    def _smb2_response(self, msg: bytes, off: int, body: int, end: int, cmd: int, status: int, session: int,
                       tid: int | None, msg_id: int) -> None:
        if cmd == TREE_CONNECT:
            path = self.tree_requests.pop(msg_id, None)
            if path is not None and status == 0 and tid is not None:
                self.sessions.add((session, tid), path, _u8(msg, body + 2)[0])  # a short body: no tree

    def _ntlmssp(self, blob: bytes) -> None:
        """An AUTHENTICATE_MESSAGE's domain, user and workstation (security buffers from the signature)."""
        at = blob.find(b"NTLMSSP\0")
        if at < 0 or len(blob) < at + 64 or _u32(blob, at + 8)[0] != 3:
            return
        token = blob[at:]
        unicode = _u32(token, 60)[0] & 1
        names = []
        for field in (28, 36, 44):  # DomainName, UserName, Workstation
            length, offset = _u16(token, field)[0], _u32(token, field + 4)[0]
            raw = token[offset:offset + length] if offset + length <= len(token) else b""
            text = raw.decode("utf-16-le" if unicode else "latin-1", "replace") if raw else ""
            names.append(text or "NULL")
        self._add("ntlmssp_auth_username", names[1])
        self._add("ntlmssp_auth_domain", names[0])
        self._add("ntlmssp_auth_hostname", names[2])

    # -- DCE-RPC -------------------------------------------------------------------------------------------------
    def _pipe(self, fid: bytes, data: bytes) -> None:
        """Data written to a pipe: DCE-RPC PDUs, one put together over several writes."""
        waiting = self.pipes.get(fid)
        if waiting is None:
            if len(data) < 16 or data[0] != 5:
                return  # not DCE-RPC (tshark's heuristic refuses it)
            waiting = bytearray()
        waiting += data
        at = 0
        while len(waiting) - at >= 16:
            length = _frag_length(waiting, at)
            if waiting[at] != 5 or length < 16:
                del waiting[:]
                at = 0
                self.damaged += 1
                break
            if len(waiting) - at < length:
                break
            self._pdu(bytes(waiting[at:at + length]), fid)
            at += length
        del waiting[:at]  # in place: a PDU written a few bytes a write costs what it adds
        self.pipes.pop(fid, None)
        if waiting and len(waiting) <= MAX_PIPE_BYTES:
            self.pipes[fid] = waiting
            evict_oldest(self.pipes, MAX_PIPES)
        elif waiting:
            self.damaged += 1

    def _rpc_stream(self, side: _Side, data: bytes) -> None:
        """The client's DCE-RPC PDUs over TCP, by their frag length (``buf`` holds one under way, added to in place:
        a PDU sent a byte a segment costs what it adds)."""
        buf = side.buf
        buf += data
        at = 0
        while len(buf) - at >= 16:
            length = _frag_length(buf, at)
            if buf[at] != 5 or length < 16:
                self._lose(side)
                return
            if len(buf) - at < length:
                break
            self._pdu(bytes(buf[at:at + length]), b"")
            at += length
        del buf[:at]
        if len(buf) > MAX_PIPE_BYTES:
            self._lose(side)

    def _pdu(self, pdu: bytes, fid: bytes) -> None:
        ptype, flags = pdu[2], pdu[3]
        little = pdu[4] & 0x10
        order = "<" if little else ">"
        self._layer("dcerpc")
        self._add("dcerpc_pkt_type", str(ptype))
        self._add("dcerpc_cn_call_id", str(struct.unpack_from(order + "I", pdu, 12)[0]))
        self._add("dcerpc_cn_flags_last_frag", "1" if flags & LAST_FRAG else "0")
        if ptype in (DCE_BIND, DCE_ALTER):
            self._bind(pdu, fid, order)
        elif ptype == DCE_REQUEST and len(pdu) >= 24:
            self.logged = True
            ctx, opnum = struct.unpack_from(order + "HH", pdu, 20)
            self._add("dcerpc_opnum", str(opnum))
            iface = self.binds.get((fid, ctx))
            if iface is not None and flags & LAST_FRAG:
                self._add(f"{iface}_opnum", str(opnum))
                self._add("_names", OPERATIONS[iface].get(opnum, str(opnum)))

    def _bind(self, pdu: bytes, fid: bytes, order: str) -> None:
        """Each presentation context of a bind or alter-context: its interface, if tshark names it."""
        if len(pdu) < 29:
            return
        count, at = pdu[24], 28
        for _ in range(count):
            if at + 24 > len(pdu):  # the context's id, interface and version (its transfer syntaxes may be cut)
                return
            ctx, transfers = struct.unpack_from(order + "HB", pdu, at)
            raw = pdu[at + 4:at + 20]
            syntax = raw if order == "<" else uuid.UUID(bytes=raw).bytes_le
            major = struct.unpack_from(order + "H", pdu, at + 20)[0]
            self.binds[(fid, ctx)] = INTERFACES.get((syntax, major))
            evict_oldest(self.binds, MAX_PENDING)
            at += 24 + 20 * transfers

    # -- per frame -----------------------------------------------------------------------------------------------
    def take(self) -> dict[str, list[str]]:
        """The fields of the messages completed since the last call, keyed as tshark's EK output keys them; nothing
        if tshark's display filter would not print the frame (no logged command, no DCE-RPC request)."""
        fields, logged = self.f, self.logged
        names = fields.pop("_names", None)
        if names:
            fields["_ws_col_secopsRpcOp"] = [",".join(names)]
        self.frame_layers = self.layers  # the frame's layers above TCP, as tshark names them
        self._clear()
        return fields if logged and not self.switched else {}

    def layers_taken(self) -> Layers:
        """The layers above TCP of the frame ``take`` gave the fields of, as tshark names them."""
        return self.frame_layers


def _frag_length(buf: bytes | bytearray, at: int) -> int:
    return int.from_bytes(buf[at + 8:at + 10], "little" if buf[at + 4] & 0x10 else "big")


def _utf16(msg: bytes, start: int, length: int, end: int) -> str | None:
    """A UTF-16LE string inside the message (None: outside it)."""
    if start + length > end or start < 0:
        return None
    return msg[start:start + length].decode("utf-16-le", "replace")
