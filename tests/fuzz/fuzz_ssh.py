"""SSH identification lines and cleartext key exchange (``collectors.protocols.ssh``), from TCP segments.

Input: segments in the framing of ``seeds.pack_frames``, each one byte of direction (bit 0: from the server),
a 32-bit sequence number and its payload. They are put in order per direction (``reread.directions``, as the
analyzer does), read (``read_side``) and logged (``SshAnalyzer.emit``). Contract: nothing raises, every limit of
the module holds (lines, packets, packet size, names per list, characters per value), the host key fingerprint
is 16 colon-separated hex bytes, and the document serialises.
"""

from __future__ import annotations

import struct

import orjson

from collectors.protocols.documents import MAX_VALUE_CHARS, Flow
from collectors.protocols.reread import Segment, directions, endpoint
from collectors.protocols.ssh import MAX_BYTES, MAX_NAMES, MAX_PACKET, MAX_PACKETS, NAME_LISTS, SshAnalyzer, read_side
from tests.fuzz.seeds import pack_frames, unpack_frames

FLOW = Flow("tcp", "198.18.0.1", 40000, "198.18.0.2", 22, "s")
ENDS = (endpoint(FLOW.orig_h, FLOW.orig_p), endpoint(FLOW.resp_h, FLOW.resp_p))


def TestOneInput(data: bytes) -> None:
    segments = [Segment(ENDS[f[0] & 1], int.from_bytes(f[1:5], "big"), 1.0, f[5:])
                for f in unpack_frames(data) if len(f) >= 5]
    streams = directions(segments, FLOW, MAX_BYTES)
    sides = []
    for stream, sent in zip(streams, ENDS, strict=True):
        largest = max((len(s.payload) for s in segments if s.sender == sent), default=0)
        assert len(stream) < MAX_BYTES + largest
        side = read_side(stream)
        assert side.banner is None or (side.banner.startswith("SSH-") and len(side.banner) <= MAX_VALUE_CHARS)
        assert len(side.messages) <= MAX_PACKETS and all(len(m) <= MAX_PACKET for m in side.messages)
        assert not side.algorithms or set(side.algorithms) == set(NAME_LISTS)
        for names in side.algorithms.values():
            assert len(names) <= MAX_NAMES and all(0 < len(n) <= MAX_VALUE_CHARS for n in names)
        sides.append(side)
    doc = SshAnalyzer(warn=lambda _text: None).emit(FLOW, 1_700_000_000.0, *sides)
    orjson.dumps(doc)
    key = doc.get("secops", {}).get("ssh", {}).get("host_key")
    assert key is None or (len(key) == 47 and all(len(b) == 2 for b in key.split(":")))


def _string(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


def _packet(payload: bytes) -> bytes:
    padding = 8 - (len(payload) + 5) % 8 + 4
    return struct.pack("!IB", len(payload) + padding + 1, padding) + payload + bytes(padding)


def _kexinit(*lists: str) -> bytes:
    return bytes([20]) + bytes(16) + b"".join(_string(n.encode()) for n in lists) + b"\x00" + bytes(4)


def _segments(parts: list[tuple[int, bytes]]) -> bytes:
    seq = [1000, 9000]
    out = []
    for side, payload in parts:
        out.append(bytes([side]) + seq[side].to_bytes(4, "big") + payload)
        seq[side] += len(payload)
    return pack_frames(out)


def seeds() -> list[bytes]:
    """Handshakes built to RFC 4253: banners, KEXINITs, a DH and a group-exchange reply, NEWKEYS."""
    client = _kexinit("curve25519-sha256,diffie-hellman-group-exchange-sha256", "ssh-ed25519,rsa-sha2-512",
                      "aes128-ctr,chacha20-poly1305@openssh.com", "aes128-ctr", "hmac-sha2-256", "hmac-sha2-256",
                      "none", "none", "", "")
    server = _kexinit("diffie-hellman-group-exchange-sha256,curve25519-sha256", "rsa-sha2-512,ssh-ed25519",
                      "aes128-ctr", "chacha20-poly1305@openssh.com,aes128-ctr", "hmac-sha2-256", "hmac-sha1",
                      "none,zlib", "none", "", "")
    blob = _string(b"ssh-ed25519") + _string(bytes(range(32)))
    out = []
    for reply in (31, 33):
        out.append(_segments([
            (0, b"SSH-2.0-OpenSSH_9.2\r\n"), (1, b"a line first\r\nSSH-2.0-dropbear_2022.83\r\n"),
            (0, _packet(client)), (1, _packet(server)),
            (1, _packet(bytes([reply]) + _string(blob) + _string(bytes(32)) + _string(bytes(8)))),
            (1, _packet(bytes([21])) + b"\xff" * 24), (0, _packet(bytes([21])))]))
    out.append(_segments([(0, b"SSH-1.5-old\n"), (1, b"SSH-1.99-both\r\n" + _packet(server))]))
    return out
