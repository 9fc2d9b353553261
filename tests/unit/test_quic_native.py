"""Native QUIC Initial reading (collectors/protocols/quic_wire.py through native.py) against tshark, the differential
oracle.

RFC 9001 Appendix A's vectors decrypt to the published plaintext. Every shared capture holding QUIC long-header
packets goes through the ingest pipeline twice: with the deep path reading the QUIC flows itself
(``native.READ_QUIC``) and with tshark reading them; every document must be equal. The Chromium trace's record
matches Zeek's. Initials generated here by RFC 9001's procedure (a ClientHello split over packets and datagrams,
CRYPTO frames out of order, coalesced packets, QUIC v2, draft-29) are read the same by both. Hostile datagrams
raise nothing and leave bounded state.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from collectors.ingest import Pipeline
from collectors.protocols import native, quic_wire
from collectors.protocols.native import NativeFrames
from collectors.protocols.quic_wire import (
    MAX_CRYPTO_BUFFER,
    MAX_DATAGRAMS,
    V1,
    V2,
    Keys,
    QuicConnection,
    QuicStats,
    expand_label,
    initial_secrets,
    long_header,
    unprotect,
)
from collectors.protocols.tls_wire import Frame, TlsStats
from collectors.protocols.tshark import ek_key
from collectors.selection import interface_block
from tests.fuzz.seeds import payloads
from tests.support.frames import eth
from tests.unit.test_flowcore import CAPTURES, TESTDATA
from tests.unit.test_tcp_native import by_id

UDP = 17
CHROMIUM = TESTDATA / "zeek/traces/quic/chromium-115.0.5790.110-api-cirrus-com.pcap"
ZEEK = TESTDATA / "zeek/baselines/scripts.base.protocols.quic.chromium"

# RFC 9001 Appendix A
DCID = bytes.fromhex("8394c8f03e515708")
CLIENT_SECRET = bytes.fromhex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea")
SERVER_SECRET = bytes.fromhex("3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b")
CLIENT_PLAIN_HEADER = bytes.fromhex("c300000001088394c8f03e5157080000449e00000002")
CLIENT_PLAIN_PAYLOAD = bytes.fromhex(
    "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868"
    "04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578"
    "616d706c652e636f6dff01000100000a00080006001d00170018001000070005"
    "04616c706e000500050100000000003300260024001d00209370b2c9caa47fba"
    "baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400"
    "0d0010000e0403050306030203080408050806002d00020101001c0002400100"
    "3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000"
    "75300901100f088394c8f03e51570806048000ffff") + bytes(917)
CLIENT_PROTECTED = bytes.fromhex(
    "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11"
    "d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399"
    "1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c"
    "8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212"
    "30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5"
    "457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208"
    "4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec"
    "4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3"
    "485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db"
    "059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c"
    "7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8"
    "9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556"
    "be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74"
    "68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a"
    "c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00"
    "f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632"
    "291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964"
    "25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd"
    "14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff"
    "ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198"
    "e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd"
    "c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73"
    "203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f"
    "cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e"
    "fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade"
    "a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047"
    "90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2"
    "162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4"
    "40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0"
    "6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e"
    "8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0"
    "be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400"
    "54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab"
    "760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9"
    "f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4"
    "056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064"
    "7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241"
    "e221af44860018ab0856972e194cd934")
SERVER_PLAIN_HEADER = bytes.fromhex("c1000000010008f067a5502a4262b50040750001")
SERVER_PLAIN_PAYLOAD = bytes.fromhex(
    "02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf739"
    "88cfc79825df566dc5430b9a045a1200130100002e00330024001d00209d3c94"
    "0d89690b84d08a60993c144eca684d1081287c834d5311bcf32bb9da1a002b00"
    "020304")
SERVER_PROTECTED = bytes.fromhex(
    "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a"
    "5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3"
    "dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84"
    "022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4"
    "2158407dd074ee")


def fields(frame: Frame, name: str) -> list[str]:
    return frame.fields.get(ek_key(f"tls.{name}"), [])


def test_rfc9001_keys() -> None:
    """A.1: the Initial secrets of the example DCID, and each side's key, IV and header protection key."""
    assert initial_secrets(V1, DCID) == (CLIENT_SECRET, SERVER_SECRET)
    client, server = Keys(V1, CLIENT_SECRET), Keys(V1, SERVER_SECRET)
    assert (client.key.hex(), client.iv.hex()) == ("1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c")
    assert (server.key.hex(), server.iv.hex()) == ("cf3a5331653c364c88f0f379b6067e37", "0ac1493ca1905853b0bba03e")
    assert expand_label(CLIENT_SECRET, "quic hp", 16).hex() == "9f50449e04a0e810283a1e9933adedd2"
    assert expand_label(SERVER_SECRET, "quic hp", 16).hex() == "c206b8d9b9f0f37644430b490eeaa314"
    assert client.mask(bytes.fromhex("d1b1c98dd7689fb8ec11d242b123dc9b"))[:5].hex() == "437b9aec36"  # A.2's mask


def test_rfc9001_client_and_server_initials_decrypt() -> None:
    """A.2 and A.3: header protection off, the payload decrypted to the published plaintext."""
    client, server = initial_secrets(V1, DCID)
    head = long_header(CLIENT_PROTECTED, 0)
    assert head is not None and head.dcid == DCID and head.end == len(CLIENT_PROTECTED) == 1200
    assert unprotect(Keys(V1, client), CLIENT_PROTECTED, head, -1) == (2, CLIENT_PLAIN_PAYLOAD)
    head = long_header(SERVER_PROTECTED, 0)
    assert head is not None and head.scid == bytes.fromhex("f067a5502a4262b5")
    assert unprotect(Keys(V1, server), SERVER_PROTECTED, head, -1) == (1, SERVER_PLAIN_PAYLOAD)
    assert unprotect(Keys(V1, client), SERVER_PROTECTED, head, -1) is None  # the wrong direction's keys
    # the connection reads both, as tshark would: the ClientHello's SNI, the ServerHello's cipher and version
    conn = QuicConnection(V1, DCID, QuicStats(), TlsStats())
    frame = Frame()
    assert conn.feed(True, CLIENT_PROTECTED, frame) == 1
    assert fields(frame, "handshake.type") == ["1"]
    assert fields(frame, "handshake.extensions_server_name") == ["example.com"]
    assert fields(frame, "handshake.extensions_alpn_str") == ["alpn"]
    frame = Frame()
    assert conn.feed(False, SERVER_PROTECTED, frame) == 1
    assert fields(frame, "handshake.type") == ["2"]
    assert fields(frame, "handshake.extensions.supported_version") == [str(0x0304)]
    assert frame.fields[ek_key("_ws.col.secopsCipher")] == ["TLS_AES_128_GCM_SHA256"]


# -- the differential oracle -------------------------------------------------------------------------------------

def holds_quic(capture: Path) -> bool:
    """Whether some UDP payload of the capture is a QUIC long-header packet of a version read here."""
    for _sport, _dport, payload in payloads([str(capture)], UDP, per_file=10_000):
        if len(payload) >= 7 and payload[0] & 0xC0 == 0xC0 and quic_wire.supported(
                int.from_bytes(payload[1:5], "big")):
            return True
    return False


QUIC_CAPTURES = [c for c in CAPTURES if holds_quic(c)]


def docs_of(capture: Path, read_quic: bool, monkeypatch: pytest.MonkeyPatch,
            taken: list[int] | None = None) -> dict[str, dict]:
    monkeypatch.setattr(native, "READ_QUIC", read_quic)
    if taken is not None:
        original = NativeFrames.finish

        def finish(self: NativeFrames) -> list:
            taken.append(self.quic_frames)
            return original(self)

        monkeypatch.setattr(NativeFrames, "finish", finish)
    docs: list[dict] = []
    pipe = Pipeline(docs.append, on_warning=lambda _m: None)
    pipe.process_file(capture)
    pipe.finish()
    return by_id(docs)


def test_shared_quic_captures_are_in_the_set() -> None:
    """Fails (never skips) when the shared captures are missing."""
    assert CHROMIUM.is_file(), CHROMIUM
    names = {c.name for c in QUIC_CAPTURES}
    assert {CHROMIUM.name, "quic-interop-retry.pcap"} <= names


@pytest.mark.parametrize("capture", QUIC_CAPTURES, ids=lambda c: c.name)
def test_native_documents_equal_tshark(capture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every document of the pipeline is the same, QUIC read natively or by tshark; the native path took frames."""
    taken: list[int] = []
    mine = docs_of(capture, True, monkeypatch, taken)
    assert sum(taken) > 0
    theirs = docs_of(capture, False, monkeypatch)
    assert any(d["event"]["dataset"] == "secops.tls" for d in theirs.values())
    assert mine == theirs


def zeek_log(name: str) -> dict[str, str]:
    lines = (ZEEK / name).read_text().splitlines()
    names = next(line for line in lines if line.startswith("#fields")).split("\t")[1:]
    row = next(line for line in lines if not line.startswith("#")).split("\t")
    return dict(zip(names, row, strict=True))


def test_chromium_matches_zeek(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secops.tls record of the Chromium trace, read natively, has Zeek's ssl.log and quic.log values."""
    taken: list[int] = []
    docs = docs_of(CHROMIUM, True, monkeypatch, taken)
    assert taken == [6]  # the datagrams the deep path selected: every one read here, none by tshark
    (tls,) = [d for d in docs.values() if d["event"]["dataset"] == "secops.tls"]
    ssl, quic = zeek_log("ssl.log"), zeek_log("quic.log")
    assert tls["network"]["protocol"] == ["ssl", "quic"]
    assert (tls["source"]["ip"], str(tls["source"]["port"])) == (ssl["id.orig_h"], ssl["id.orig_p"])
    assert (tls["destination"]["ip"], str(tls["destination"]["port"])) == (ssl["id.resp_h"], ssl["id.resp_p"])
    assert tls["tls"]["client"]["server_name"] == ssl["server_name"] == quic["server_name"] == "api.cirrus-ci.com"
    assert "TLSv" + tls["tls"]["version"].replace(".", "") == ssl["version"] == "TLSv13"
    assert tls["tls"]["cipher"] == ssl["cipher"] == "TLS_AES_128_GCM_SHA256"
    assert tls["tls"]["curve"] == ssl["curve"] == "x25519"
    assert tls["secops"]["tls"]["client_alpn"][0] == quic["client_protocol"] == "h3"
    assert tls["tls"]["established"] is (ssl["established"] == "T") is False
    assert tls["tls"]["client"]["ja4"].startswith("q13")


# -- generated Initials ----------------------------------------------------------------------------------------

def varint(value: int) -> bytes:
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return struct.pack("!H", 0x4000 | value)
    if value < 0x40000000:
        return struct.pack("!I", 0x80000000 | value)
    return struct.pack("!Q", 0xC000000000000000 | value)


def ext(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def client_hello(sni: str, pad: int = 0) -> bytes:
    """A TLS 1.3 ClientHello as QUIC clients send it (``pad`` bytes of a padding extension make it span packets)."""
    name = sni.encode()
    exts = b"".join((
        ext(0, struct.pack("!HBH", len(name) + 3, 0, len(name)) + name),
        ext(10, bytes.fromhex("0006001d00170018")),
        ext(16, bytes.fromhex("0003026833")),
        ext(13, bytes.fromhex("0008040308040401") + b""),
        ext(51, bytes.fromhex("0024001d0020") + bytes(range(32))),
        ext(43, bytes.fromhex("020304")),
        ext(45, bytes.fromhex("0101")),
        ext(57, bytes.fromhex("0104800075300f0408a1b2c3")),
        *((ext(21, bytes(pad)),) if pad else ()),
    ))
    body = b"\x03\x03" + bytes(range(32)) + b"\x00" + bytes.fromhex("0006130113021303") + b"\x01\x00" + \
        struct.pack("!H", len(exts)) + exts
    return b"\x01" + len(body).to_bytes(3, "big") + body


def server_hello() -> bytes:
    exts = ext(51, bytes.fromhex("001d0020") + bytes(range(32))) + ext(43, bytes.fromhex("0304"))
    body = b"\x03\x03" + bytes(range(100, 132)) + b"\x00" + b"\x13\x01" + b"\x00" + struct.pack("!H", len(exts)) + exts
    return b"\x02" + len(body).to_bytes(3, "big") + body


def crypto(offset: int, data: bytes) -> bytes:
    return b"\x06" + varint(offset) + varint(len(data)) + data


def protect(version: int, client: bool, dcid: bytes, scid: bytes, pn: int, payload: bytes, key_dcid: bytes,
            pad_to: int = 0) -> bytes:
    """One Initial packet protected by RFC 9001 5 (RFC 9369's packet type and labels for v2)."""
    secret = initial_secrets(version, key_dcid)[0 if client else 1]
    prefix = "quicv2 " if version == V2 else "quic "
    key, iv = expand_label(secret, prefix + "key", 16), expand_label(secret, prefix + "iv", 12)
    hp = expand_label(secret, prefix + "hp", 16)
    pn_len = 2
    head_len = 1 + 4 + 1 + len(dcid) + 1 + len(scid) + 1 + 2 + pn_len
    if pad_to and head_len + len(payload) + 16 < pad_to:
        payload += bytes(pad_to - head_len - len(payload) - 16)
    kind = 1 if version == V2 else 0
    header = bytes((0xC0 | kind << 4 | (pn_len - 1),)) + version.to_bytes(4, "big") + bytes((len(dcid),)) + dcid + \
        bytes((len(scid),)) + scid + b"\x00" + struct.pack("!H", 0x4000 | (pn_len + len(payload) + 16)) + \
        pn.to_bytes(pn_len, "big")
    nonce = bytes(a ^ b for a, b in zip(iv, pn.to_bytes(12, "big"), strict=True))
    sealed = AESGCM(key).encrypt(nonce, payload, header)
    pn_offset = len(header) - pn_len
    sample = sealed[4 - pn_len:4 - pn_len + 16]
    mask = Cipher(algorithms.AES(hp), modes.ECB()).encryptor().update(sample)
    out = bytearray(header + sealed)
    out[0] ^= mask[0] & 0x0F
    for i in range(pn_len):
        out[pn_offset + i] ^= mask[1 + i]
    return bytes(out)


def write_capture(path: Path, datagrams: list[tuple[bool, bytes]], port: int = 443,
                  client_ports: tuple[int, ...] = (51000,)) -> Path:
    """The datagrams from a client on 198.18.0.1 to ``port`` on 198.18.0.2; with several ``client_ports``, the whole
    exchange once from each."""
    from scapy.all import IP, Raw, wrpcap
    from scapy.all import UDP as ScapyUDP

    frames = []
    for i, (client, data, cport) in enumerate((c, d, cport) for cport in client_ports for c, d in datagrams):
        ends = ("198.18.0.1", "198.18.0.2", cport, port) if client else ("198.18.0.2", "198.18.0.1", port, cport)
        pkt = eth() / IP(src=ends[0], dst=ends[1]) / ScapyUDP(sport=ends[2], dport=ends[3]) / Raw(data)
        pkt.time = 1_700_000_000 + i * 0.01
        frames.append(pkt)
    wrpcap(str(path), frames)
    return path


def handshake(version: int, split: bool, coalesce: bool, dcid: bytes = bytes.fromhex("0011223344556677"),
              sni: str = "quic.example.net") -> list[tuple[bool, bytes]]:
    scid, sscid = bytes.fromhex("a1a2a3a4"), bytes.fromhex("b1b2b3b4b5")
    hello = client_hello(sni, pad=1500 if split else 0)
    if split:  # Chromium's way: the ClientHello in pieces, out of order, over two datagrams
        cut1, cut2, cut3 = 300, 900, 1400
        first = crypto(cut2, hello[cut2:cut3]) + crypto(0, hello[:cut1]) + b"\x01"
        second = crypto(cut3, hello[cut3:]) + crypto(cut1, hello[cut1:cut2])
        client = [protect(version, True, dcid, scid, 0, first, dcid, 1200),
                  protect(version, True, dcid, scid, 1, second, dcid, 1200)]
    else:
        client = [protect(version, True, dcid, scid, 0, b"\x00" * 3 + crypto(0, hello), dcid, 1200)]
    ack = b"\x02\x00\x00\x00\x00"
    server = protect(version, False, scid, sscid, 0, ack + crypto(0, server_hello()), dcid)
    garbage = bytes([0xE0]) + version.to_bytes(4, "big") + bytes((len(scid),)) + scid + bytes((len(sscid),)) + \
        sscid + b"\x40\x20" + bytes(range(32))  # a Handshake packet: not decryptable, skipped
    out = [(True, c) for c in client]
    out += [(False, server + garbage)] if coalesce else [(False, server), (False, garbage)]
    out += [(True, b"\x40" + scid + bytes(40))]  # a 1-RTT packet
    return out


GENERATED = {
    "v1-whole": (V1, False, False), "v1-split-out-of-order": (V1, True, False), "v1-coalesced": (V1, False, True),
    "v1-split-coalesced": (V1, True, True), "v2-split-coalesced": (V2, True, True),
    "draft29": (0xFF00001D, False, True),
}


# every case on 443; one away from it (61000: the client's port is the lower one), as tshark's heuristic reads it
PORTS = [(case, 443) for case in GENERATED] + [("v1-split-coalesced", port) for port in (4433, 8443, 50443, 61000)]


@pytest.mark.parametrize(("case", "port"), PORTS)
def test_generated_initials_read_as_tshark_reads_them(case: str, port: int, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    capture = write_capture(tmp_path / f"{case}.pcap", handshake(*GENERATED[case]), port)
    taken: list[int] = []
    mine = docs_of(capture, True, monkeypatch, taken)
    theirs = docs_of(capture, False, monkeypatch)
    assert sum(taken) > 0
    assert mine == theirs
    (tls,) = [d for d in mine.values() if d["event"]["dataset"] == "secops.tls"]
    assert tls["destination"]["port"] == port and tls["tls"]["client"]["server_name"] == "quic.example.net"
    assert tls["tls"]["cipher"] == "TLS_AES_128_GCM_SHA256"


def test_one_connection_id_on_two_flows_is_two_connections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same handshake (the same connection IDs) from two client ports. tshark matches QUIC connections by
    connection ID across addresses and ports (connection migration) and logs one; Zeek keys connections by their
    endpoints and logs two, and so does this reader (a migrated connection's new path starts with a short-header
    packet, which stays tshark's). Captures built by replicating one trace, like the 1M-packet benchmark, show it:
    158 copies of the chromium trace give 158 secops.tls documents here and 2 from tshark."""
    capture = write_capture(tmp_path / "twice.pcap", handshake(V1, False, False), client_ports=(51000, 51001))
    mine = docs_of(capture, True, monkeypatch)
    theirs = docs_of(capture, False, monkeypatch)
    ports = sorted(d["source"]["port"] for d in mine.values() if d["event"]["dataset"] == "secops.tls")
    assert ports == [51000, 51001]
    assert [d["source"]["port"] for d in theirs.values() if d["event"]["dataset"] == "secops.tls"] == [51000]


def test_a_new_connection_on_the_same_ports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second connection reusing the client port (its own DCID, so its own keys) is read as tshark reads it."""
    datagrams = handshake(V1, False, False) + handshake(V1, True, True, bytes.fromhex("99887766554433221100"),
                                                         "second.example.net")
    capture = write_capture(tmp_path / "reuse.pcap", datagrams)
    mine = docs_of(capture, True, monkeypatch)
    theirs = docs_of(capture, False, monkeypatch)
    assert mine == theirs
    names = [d["tls"]["client"]["server_name"] for d in mine.values() if d["event"]["dataset"] == "secops.tls"]
    assert names == ["second.example.net"]  # one UDP flow: tshark's session takes the later ClientHello's fields


# -- hostile input -----------------------------------------------------------------------------------------------

def pending(conn: QuicConnection) -> int:
    return sum(s.buffered for s in conn.crypto) + sum(len(s.handshake) for s in conn.tls.sides)


def test_hostile_datagrams_raise_nothing_and_stay_bounded() -> None:
    rng = random.Random(9001)
    base = handshake(V1, True, True)
    stats = QuicStats()
    for _ in range(300):
        conn = QuicConnection(V1, bytes.fromhex("0011223344556677"), stats, TlsStats())
        for client, data in base:
            mutated = bytearray(data)
            action = rng.randrange(4)
            if action == 0 and mutated:
                mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
            elif action == 1:
                mutated = mutated[:rng.randrange(len(mutated) + 1)]
            elif action == 2:
                mutated = bytearray(rng.randbytes(rng.randrange(1, 1400)))
                mutated[0] |= 0xC0
                mutated[1:5] = b"\x00\x00\x00\x01"
            conn.feed(client, bytes(mutated), Frame())
            assert pending(conn) <= 2 * MAX_CRYPTO_BUFFER + 2 * 256 * 1024
    assert stats.undecryptable + stats.malformed > 0


def test_huge_offsets_and_many_packets_are_bounded() -> None:
    dcid, scid = bytes.fromhex("0011223344556677"), b"\x01"
    stats = QuicStats()
    conn = QuicConnection(V1, dcid, stats, TlsStats())
    for pn in range(MAX_DATAGRAMS + 20):
        payload = crypto(1000 + pn * 1100, bytes(1000)) + crypto((1 << 62) - 1 - pn, b"x") if pn % 2 else \
            crypto(pn * 1100, bytes(1000))
        conn.feed(True, protect(V1, True, dcid, scid, pn, payload, dcid, 1200), Frame())
        assert conn.crypto[0].buffered <= MAX_CRYPTO_BUFFER
    assert stats.skipped == 20 and stats.oversized > 0
    assert stats.datagrams == MAX_DATAGRAMS


def block(data: bytes, sport: int, dport: int) -> bytes:
    """One UDP datagram from 198.18.0.1 to 198.18.0.2 as a pcapng packet block of the selected-frame stream."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(data), 0, 0, 64, UDP, 0, bytes([198, 18, 0, 1]),
                     bytes([198, 18, 0, 2]))
    frame = b"\x00" * 12 + b"\x08\x00" + ip + struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    padded = frame + bytes(-len(frame) % 4)
    return struct.pack("<IIIIIII", 6, 32 + len(padded), 0, 0, 0, len(frame), len(frame)) + padded + \
        struct.pack("<I", 32 + len(padded))


def test_not_an_initial_goes_to_tshark() -> None:
    """A flow whose first datagram is no decryptable Initial stays tshark's, every datagram of it."""
    frames = NativeFrames("t", lambda _m: None, tcp=False)
    client = handshake(V1, False, False)
    assert quic_wire.client_initial(client[0][1]) is not None
    broken = bytearray(client[0][1])
    broken[-1] ^= 1
    assert quic_wire.client_initial(bytes(broken)) is not None  # parses, but its tag fails

    head = interface_block(1)
    kept, _docs = frames.split(head + block(bytes(broken), 51000, 443) + block(client[0][1], 51000, 443))
    assert frames.quic_frames == 0 and kept == head + block(bytes(broken), 51000, 443) + block(client[0][1], 51000,
                                                                                                443)
    kept, _docs = frames.split(block(client[0][1], 51001, 443))
    assert frames.quic_frames == 1 and kept == b""


def test_the_flow_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every UDP flow of the selection is remembered (read here, or tshark's) up to MAX_UDP_FLOWS, oldest first."""
    monkeypatch.setattr(native, "MAX_UDP_FLOWS", 8)
    frames = NativeFrames("t", lambda _m: None, tcp=False)
    initial = handshake(V1, False, False)[0][1]
    frames.split(interface_block(1) + b"".join(block(b"not quic", 40000 + i, 4000) for i in range(30)))
    assert len(frames.udp_flows) == 8
    kept, _docs = frames.split(block(initial, 51000, 443))  # a QUIC flow still opens, an old one goes
    assert kept == b"" and frames.quic_frames == 1 and len(frames.udp_flows) == 8


def test_udp_flows_left_to_tshark_stay_there_and_tunnels_are_still_opened() -> None:
    """A UDP flow whose first datagram opened no QUIC connection is tshark's for good: its later frames go to tshark
    undecoded (a QUIC Initial among them included, as before). A flow on a tunnel port is decoded frame by frame
    even so: a first datagram that is no VXLAN leaves the outer flow to tshark, and a later VXLAN datagram's inner
    DNS query is still read here."""
    from scapy.all import DNS, DNSQR, IP, VXLAN, Ether
    from scapy.all import UDP as ScapyUDP

    from collectors.selection import packet_block

    def udp(sport: int, dport: int, payload: object) -> bytes:
        return bytes(eth() / IP(src="198.18.0.1", dst="198.18.0.2") / ScapyUDP(sport=sport, dport=dport) / payload)

    initial = handshake(V1, False, False)[0][1]
    inner_dns = Ether(src="02:00:00:00:00:03", dst="02:00:00:00:00:04") / IP(src="198.18.1.1", dst="198.18.1.2") / \
        ScapyUDP(sport=33000, dport=53) / DNS(id=7, qd=DNSQR(qname="inner.example"))
    frames = [udp(40000, 50000, b"not quic at all"), udp(40000, 50000, initial), udp(40000, 50000, b"more"),
              udp(40001, 4789, b"no vxlan"), udp(40001, 4789, VXLAN(vni=5) / inner_dns)]

    def stream(first: list[bytes]) -> bytes:  # the frames one a nanosecond, from the first on
        return interface_block(1) + b"".join(packet_block(0, 1_700_000_000_000_000_000 + i, frame, len(frame))
                                             for i, frame in enumerate(first))

    reader = NativeFrames("t", lambda _m: None)
    to_tshark, docs = reader.split(stream(frames))
    assert reader.quic_frames == 0 and reader.frames == 1  # no QUIC read; the tunnelled DNS query read here
    assert to_tshark == stream(frames[:4])
    assert reader.taken_at.tolist() == [5]
    assert not docs  # the query waits for its answer
    assert [d for d in reader.finish() if b"inner.example" in orjson.dumps(d)]
