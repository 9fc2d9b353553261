"""SMB2 and DCE-RPC sessions written to the specifications ([MS-SMB2], [MS-SMB], DCE 1.1 RPC, [MS-NLMP]), for the
native SMB reader's tests: each builder returns the bytes one side sends, and :func:`session` lays them out as TCP
segments (tests/unit/test_tcp_native.py's ``tcp_frame``) that tshark and the native reader both read."""

from __future__ import annotations

import random
import struct
import uuid

from tests.unit.test_tcp_native import tcp_frame

NDR = uuid.UUID("8a885d04-1ceb-11c9-9fe8-08002b104860")
SVCCTL = (uuid.UUID("367abb81-9844-35f1-ad32-98f038001003"), 2)
SAMR = (uuid.UUID("12345778-1234-abcd-ef00-0123456789ac"), 1)
DRSUAPI = (uuid.UUID("e3514235-4b06-11d1-ab04-00c04fc2dcd2"), 4)
UNKNOWN = (uuid.UUID("01234567-89ab-cdef-0123-456789abcdef"), 1)
PIPE_TRANSCEIVE = 0x0011C017


# -- DCE-RPC connection-oriented PDUs ------------------------------------------------------------------------------

def co(ptype: int, body: bytes, call: int = 1, flags: int = 3, auth: bytes = b"") -> bytes:
    """A PDU: version 5.0, little-endian data representation, the frag length covering the body and trailer."""
    return struct.pack("<BBBB4sHHI", 5, 0, ptype, flags, b"\x10\0\0\0", 16 + len(body) + len(auth),
                       max(len(auth) - 8, 0), call) + body + auth


def context(ctx: int, iface: tuple[uuid.UUID, int], minor: int = 0) -> bytes:
    return struct.pack("<HBB", ctx, 1, 0) + iface[0].bytes_le + struct.pack("<HH", iface[1], minor) + \
        NDR.bytes_le + struct.pack("<I", 2)


def bind(*items: bytes, call: int = 1, alter: bool = False) -> bytes:
    return co(14 if alter else 11, struct.pack("<HHIB3x", 4280, 4280, 0, len(items)) + b"".join(items), call)


def bind_ack(n: int, call: int = 1) -> bytes:
    sec = b"\\PIPE\\svcctl\0"
    body = struct.pack("<HHIH", 4280, 4280, 0x1234, len(sec)) + sec
    body += b"\0" * (-(len(body) + 16) % 4)
    return co(12, body + struct.pack("<B3x", n) + (b"\0" * 4 + NDR.bytes_le + struct.pack("<I", 2)) * n, call)


def request(ctx: int, opnum: int, call: int, stub: bytes = b"\0" * 8, flags: int = 3) -> bytes:
    return co(0, struct.pack("<IHH", len(stub), ctx, opnum) + stub, call, flags)


def response(ctx: int, call: int, stub: bytes = b"\0" * 8) -> bytes:
    return co(2, struct.pack("<IHBB", len(stub), ctx, 0, 0) + stub, call)


# -- SMB2 ----------------------------------------------------------------------------------------------------------

def smb2(cmd: int, msg_id: int, body: bytes, *, response: bool = False, status: int = 0, tid: int = 1,
         session: int = 0x1000, next_command: int = 0, async_id: int | None = None) -> bytes:
    """One SMB2 message: the 64-byte header (sync, or async with ``async_id``), then the body."""
    flags = (1 if response else 0) | (2 if async_id is not None else 0)
    middle = struct.pack("<Q", async_id) if async_id is not None else struct.pack("<II", 0xFEFF, tid)
    header = b"\xfeSMB" + struct.pack("<HHIHHIIQ", 64, 1, status if response else 0, cmd, 1, flags, next_command,
                                      msg_id) + middle + struct.pack("<Q", session) + b"\0" * 16
    return header + body


def compound(*messages: bytes) -> bytes:
    """Related SMB2 messages in one transport message: each padded to 8 bytes, NextCommand pointing on."""
    out = b""
    for i, m in enumerate(messages):
        if i < len(messages) - 1:
            m += b"\0" * (-len(m) % 8)
            m = m[:20] + struct.pack("<I", len(m)) + m[24:]
        out += m
    return out


def nbss(message: bytes) -> bytes:
    return struct.pack(">I", len(message)) + message


def utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


def negotiate_request(msg_id: int = 0) -> bytes:
    return smb2(0, msg_id, struct.pack("<HHHHI16sQ", 36, 2, 1, 0, 0x7F, b"\x11" * 16, 0) + struct.pack("<HH", 0x202,
                                                                                                         0x210))


def negotiate_response(msg_id: int = 0) -> bytes:
    blob = spnego_init()
    return smb2(0, msg_id, struct.pack("<HHHH16sIIIIQQHHI", 65, 1, 0x210, 0, b"\x22" * 16, 7, 65536, 65536, 65536, 0,
                                       0, 128, len(blob), 0) + blob, response=True)


def smb1(cmd: int, mid: int, words: bytes, data: bytes, *, response: bool = False, tid: int = 0,
         status: int = 0) -> bytes:
    """One [MS-SMB] message: NT status codes and Unicode in Flags2, then the words and bytes."""
    return b"\xffSMB" + struct.pack("<BIBHH8sHHHHHBH", cmd, status, 0x98 if response else 0x18, 0xC853, 0, b"\0" * 8,
                                    0, tid, 0xFEFF, 0, mid, len(words) // 2, len(data)) + words + data


def smb1_negotiate(response: bool = False, dialects: tuple[bytes, ...] = (b"NT LM 0.12", b"SMB 2.002")) -> bytes:
    """SMB_COM_NEGOTIATE (0x72): the client's dialects, or the server's choice (an index)."""
    if response:
        return smb1(0x72, 0, struct.pack("<H", 0), b"", response=True)
    return smb1(0x72, 0, b"", b"".join(b"\x02" + d + b"\0" for d in dialects))


def smb1_tree_connect(mid: int, path: str) -> bytes:
    """SMB_COM_TREE_CONNECT_ANDX (0x75): no AndX, a one-byte password, the path in Unicode, any service."""
    return smb1(0x75, mid, struct.pack("<BBHHH", 0xFF, 0, 0, 0, 1), b"\0" + utf16(path) + b"\0\0" + b"?????\0")


def smb1_tree_connect_response(mid: int, tid: int) -> bytes:
    return smb1(0x75, mid, struct.pack("<BBHH", 0xFF, 0, 0, 1), b"IPC\0\0\0", response=True, tid=tid)


def ntlm_authenticate(user: str, domain: str, host: str, unicode: bool = True) -> bytes:
    """[MS-NLMP] AUTHENTICATE_MESSAGE with empty responses: domain, user and workstation at their offsets."""
    enc = (lambda s: s.encode("utf-16-le")) if unicode else (lambda s: s.encode("ascii"))
    names = [enc(domain), enc(user), enc(host)]
    at = 72
    fields = [struct.pack("<HHI", 0, 0, at), struct.pack("<HHI", 0, 0, at)]
    payload = b""
    for n in names:
        fields.append(struct.pack("<HHI", len(n), len(n), at + len(payload)))
        payload += n
    fields.append(struct.pack("<HHI", 0, 0, at + len(payload)))
    flags = 0x60088214 | (1 if unicode else 2)  # NEGOTIATE_UNICODE or NEGOTIATE_OEM
    return b"NTLMSSP\0" + struct.pack("<I", 3) + b"".join(fields) + struct.pack("<I", flags) + b"\0" * 8 + payload


def der(tag: int, content: bytes) -> bytes:
    n = len(content)
    size = bytes([n]) if n < 128 else bytes([0x80 | (n.bit_length() + 7) // 8]) + n.to_bytes((n.bit_length() + 7) // 8,
                                                                                            "big")
    return bytes([tag]) + size + content


SPNEGO_OID = der(0x06, bytes.fromhex("2b0601050502"))
NTLMSSP_OID = der(0x06, bytes.fromhex("2b06010401823702020a"))


def spnego_init(token: bytes = b"") -> bytes:
    """GSS-API InitialContextToken: SPNEGO's OID, NegTokenInit [0] { mechTypes [0] (NTLMSSP), mechToken [2] }."""
    mech_token = der(0xA2, der(0x04, token)) if token else b""
    return der(0x60, SPNEGO_OID + der(0xA0, der(0x30, der(0xA0, der(0x30, NTLMSSP_OID)) + mech_token)))


def spnego_response(token: bytes) -> bytes:
    """NegTokenResp [1] { responseToken [2] OCTET STRING } around an NTLMSSP message."""
    return der(0xA1, der(0x30, der(0xA2, der(0x04, token))))


NTLM_NEGOTIATE = b"NTLMSSP\0" + struct.pack("<II", 1, 0x60088215) + b"\0" * 16


def session_setup(msg_id: int, blob: bytes) -> bytes:
    return smb2(1, msg_id, struct.pack("<HBBIIHHQ", 25, 0, 1, 1, 0, 64 + 24, len(blob), 0) + blob, tid=0)


def session_setup_response(msg_id: int, status: int = 0) -> bytes:
    return smb2(1, msg_id, struct.pack("<HHHH", 9, 0, 72, 0), response=True, status=status, tid=0)


def tree_connect(msg_id: int, path: str, tid: int = 0) -> bytes:
    name = utf16(path)
    return smb2(3, msg_id, struct.pack("<HHHH", 9, 0, 64 + 8, len(name)) + name, tid=tid)


def tree_connect_response(msg_id: int, tid: int, share_type: int, status: int = 0) -> bytes:
    return smb2(3, msg_id, struct.pack("<HBBIII", 16, share_type, 0, 0, 0, 0x1F01FF), response=True, tid=tid,
                status=status)


def create(msg_id: int, name: str, tid: int) -> bytes:
    raw = utf16(name)
    body = struct.pack("<HBBIQQIIIIIHHII", 57, 0, 0, 2, 0, 0, 0x12019F, 0, 7, 1, 0, 64 + 56, len(raw), 0, 0)
    return smb2(5, msg_id, body + (raw or b"\0"), tid=tid)


def create_response(msg_id: int, fid: bytes, tid: int, status: int = 0) -> bytes:
    body = struct.pack("<HBBI", 89, 0, 0, 1) + b"\0" * 48 + struct.pack("<II", 0x80, 0) + fid + struct.pack("<II", 0, 0)
    return smb2(5, msg_id, body, response=True, tid=tid, status=status)


def write(msg_id: int, fid: bytes, data: bytes, tid: int) -> bytes:
    return smb2(9, msg_id, struct.pack("<HHIQ16sIIHHI", 49, 64 + 48, len(data), 0, fid, 0, 0, 0, 0, 0) + data, tid=tid)


def write_response(msg_id: int, count: int, tid: int) -> bytes:
    return smb2(9, msg_id, struct.pack("<HHIIHH", 17, 0, count, 0, 0, 0), response=True, tid=tid)


def read(msg_id: int, fid: bytes, tid: int) -> bytes:
    return smb2(8, msg_id, struct.pack("<HBBIQ16sIIIHHB", 49, 0, 0, 1024, 0, fid, 0, 0, 0, 0, 0, 0), tid=tid)


def read_response(msg_id: int, data: bytes, tid: int) -> bytes:
    return smb2(8, msg_id, struct.pack("<HBBII4x", 17, 64 + 16, 0, len(data), 0) + data, response=True, tid=tid)


def ioctl(msg_id: int, fid: bytes, data: bytes, tid: int, code: int = PIPE_TRANSCEIVE) -> bytes:
    body = struct.pack("<HHI16sIIIIIIII", 57, 0, code, fid, 64 + 56, len(data), 0, 64 + 56 + len(data), 0, 1024, 1, 0)
    return smb2(11, msg_id, body + data, tid=tid)


def rename(msg_id: int, fid: bytes, new_name: str, tid: int) -> bytes:
    info = struct.pack("<B7xQI", 0, 0, len(utf16(new_name))) + utf16(new_name)
    return smb2(17, msg_id, struct.pack("<HBBIHHI16s", 33, 1, 10, len(info), 64 + 32, 0, 0, fid) + info, tid=tid)


def simple(cmd: int, msg_id: int, tid: int, response: bool = False, status: int = 0) -> bytes:
    """A command whose body does not matter here (LOGOFF, TREE_DISCONNECT, CLOSE, ...)."""
    return smb2(cmd, msg_id, struct.pack("<HH", 4, 0), tid=tid, response=response, status=status)


def transform(payload_size: int = 64) -> bytes:
    """An SMB3 TRANSFORM_HEADER and an encrypted message: nothing anyone reads without the session's keys."""
    return b"\xfdSMB" + b"\x5a" * 16 + b"\x11" * 16 + struct.pack("<IHHQ", payload_size, 0, 1, 0x1000) + \
        bytes(range(payload_size))


FID, FID2 = b"\x01" * 16, b"\x02" * 16
C, S = True, False


def psexec(user: str = "pgustavo", unicode: bool = True, session_id: int = 0x1000) -> list[tuple[bool, bytes]]:
    """What a PsExec-style tool says over SMB2: the multi-protocol NEGOTIATE, NTLM in SPNEGO, IPC$ and svcctl
    (DCE-RPC in WRITE and IOCTL), a pending async answer, a disk share's CREATEs (the root, a file, a missing one),
    a rename, a compound chain, TREE_DISCONNECT and LOGOFF."""
    def m(message: bytes) -> bytes:
        return nbss(message.replace(struct.pack("<Q", 0x1000) + b"\0" * 16, struct.pack("<Q", session_id) + b"\0" * 16))
    return [
        (C, nbss(smb1_negotiate())),
        (S, m(negotiate_response(0))),
        (C, m(negotiate_request(1))),
        (S, m(negotiate_response(1))),
        (C, m(session_setup(2, spnego_init(NTLM_NEGOTIATE)))),
        (S, m(session_setup_response(2, 0xC0000016))),
        (C, m(session_setup(3, spnego_response(ntlm_authenticate(user, "theshire", "WORKSTATION5", unicode))))),
        (S, m(session_setup_response(3))),
        (C, m(tree_connect(4, "\\\\srv\\IPC$"))),
        (S, m(tree_connect_response(4, 5, 2))),
        (C, m(create(5, "svcctl", 5))),
        (S, m(create_response(5, FID, 5))),
        (C, m(write(6, FID, bind(context(0, SVCCTL)), 5))),
        (S, m(write_response(6, 72, 5))),
        (C, m(read(7, FID, 5))),
        (S, m(read_response(7, bind_ack(1), 5))),
        (C, m(write(8, FID, request(0, 15, 2), 5))),
        (S, m(write_response(8, 32, 5))),
        (C, m(ioctl(9, FID, request(0, 12, 3), 5))),
        (S, m(smb2(11, 9, b"\x09\0\0\0", response=True, status=0x103, async_id=77))),
        (S, m(smb2(11, 9, b"\x31\0" + b"\0" * 46, response=True, async_id=77))),
        (C, m(tree_connect(10, "\\\\srv\\C$"))),
        (S, m(tree_connect_response(10, 6, 1))),
        (C, m(create(11, "", 6))),
        (S, m(create_response(11, FID2, 6))),
        (C, m(create(12, "Windows\\Temp\\a.bat", 6))),
        (S, m(create_response(12, FID2, 6))),
        (C, m(rename(13, FID2, "Windows\\Temp\\b.bat", 6))),
        (S, m(simple(17, 13, 6, True))),
        (C, m(compound(create(14, "x.txt", 6), rename(15, b"\xff" * 16, "y.txt", 6), simple(6, 16, 6)))),
        (S, m(compound(create_response(14, FID2, 6), simple(17, 15, 6, True), simple(6, 16, 6, True)))),
        (C, m(create(17, "missing.txt", 6))),
        (S, m(create_response(17, FID2, 6, status=0xC0000034))),
        (C, m(simple(4, 18, 6))),
        (S, m(simple(4, 18, 6, True))),
        (C, m(simple(2, 19, 6))),
        (S, m(simple(2, 19, 6, True))),
    ]


def session(messages: list[tuple[bool, bytes]], sport: int = 50000, dport: int = 445, split: int = 0,
            seed: int = 0) -> list[bytes]:
    """The frames of one connection: each message a segment, or cut every ``split`` bytes (with a seed: pieces of 64
    to ``split`` bytes; tshark's NetBIOS and DCE-RPC dissectors lose their footing on segments shorter than their
    headers, which real stacks never send), each direction's sequence numbers counting on."""
    rng = random.Random(seed)
    seqs = {True: 1000, False: 90000}
    frames = [tcp_frame(b"", 999, True, sport, dport, flags=0x02),
              tcp_frame(b"", 89999, False, sport, dport, flags=0x12, ack=1000),
              tcp_frame(b"", 1000, True, sport, dport, flags=0x10, ack=90000)]
    for from_client, data in messages:
        pieces = [data]
        if split:
            pieces, rest = [], data
            while rest:
                cut = rng.randint(min(64, split), split) if seed else split
                pieces.append(rest[:cut])
                rest = rest[cut:]
        for piece in pieces:
            frames.append(tcp_frame(piece, seqs[from_client], from_client, sport, dport, ack=seqs[not from_client]))
            seqs[from_client] += len(piece)
    return frames
