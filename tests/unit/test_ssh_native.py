"""The native SSH reading (collectors.protocols.ssh): RFC 4253 packets built here, and hostile bytes."""

from __future__ import annotations

import hashlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.protocols.ssh import first_common, hassh, host_key, per_direction, read_side


def _string(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


def _packet(payload: bytes) -> bytes:
    padding = 8 - (len(payload) + 5) % 8 + 4
    return struct.pack("!IB", len(payload) + padding + 1, padding) + payload + bytes(padding)


def _kexinit(kex: str, host: str, enc: str, mac: str, cmp: str = "none") -> bytes:
    lists = (kex, host, enc, enc, mac, mac, cmp, cmp, "", "")
    return bytes([20]) + bytes(16) + b"".join(_string(n.encode()) for n in lists) + b"\x00" + bytes(4)


def test_negotiation_host_key_and_hassh_follow_rfc_4253_and_zeek():
    blob = _string(b"ssh-ed25519") + _string(bytes(32))
    client = read_side(b"SSH-2.0-OpenSSH_9.2\r\n" + _packet(_kexinit(
        "curve25519-sha256,diffie-hellman-group14-sha256", "ssh-ed25519,rsa-sha2-512",
        "chacha20-poly1305@openssh.com,aes128-ctr", "hmac-sha2-256")))
    server = read_side(b"debug line before the banner\r\nSSH-2.0-dropbear_2022.83\r\n" + _packet(_kexinit(
        "diffie-hellman-group14-sha256,curve25519-sha256", "rsa-sha2-512,ssh-ed25519", "aes128-ctr",
        "hmac-sha2-256")) + _packet(bytes([31]) + _string(blob) + _string(bytes(32)) + _string(bytes(8)))
        + _packet(bytes([21])) + b"\xff" * 40)  # after NEWKEYS: encrypted, not read
    assert (client.banner, server.banner) == ("SSH-2.0-OpenSSH_9.2", "SSH-2.0-dropbear_2022.83")
    assert first_common(client.algorithms["kex"], server.algorithms["kex"]) == "curve25519-sha256"
    assert first_common(client.algorithms["host_key"], server.algorithms["host_key"]) == "ssh-ed25519"
    assert per_direction(client, server, "enc_c2s", "enc_s2c") == "aes128-ctr"
    assert first_common(["a"], ["b"]) == "Algorithm negotiation failed"
    digest = hashlib.md5(blob).hexdigest()
    assert host_key(server, "curve25519-sha256") == (":".join(digest[i:i + 2] for i in range(0, 32, 2)),
                                                     "ssh-ed25519")
    text = "curve25519-sha256,diffie-hellman-group14-sha256;chacha20-poly1305@openssh.com,aes128-ctr;hmac-sha2-256;none"
    assert hassh(client, "c2s") == hashlib.md5(text.encode()).hexdigest()
    assert len(server.messages) == 3


def test_truncated_and_oversized_packets_end_the_reading_without_error():
    whole = b"SSH-2.0-x\r\n" + _packet(_kexinit("k", "h", "e", "m"))
    for cut in range(len(whole)):
        side = read_side(whole[:cut])
        assert side.algorithms in ({}, read_side(whole).algorithms)
    huge = b"SSH-2.0-x\r\n" + struct.pack("!IB", 2**31, 4) + bytes(64)
    assert read_side(huge).messages == []
    assert read_side(b"SSH-1.5-old\r\n" + bytes(100)).banner == "SSH-1.5-old"
    assert read_side(b"\r\n" * 100 + b"SSH-2.0-late\r\n").banner is None  # past MAX_LINES lines


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.binary(max_size=600))
def test_random_bytes_never_raise(head: bytes, tail: bytes):
    side = read_side(b"SSH-2.0-fuzz\r\n" + head + tail)
    other = read_side(head)
    per_direction(side, other, "enc_c2s", "enc_s2c")
    hassh(side, "c2s")
    host_key(side, "diffie-hellman-group-exchange-sha256")
    host_key(other, None)
