"""TCP stream transcripts: sequence order, retransmissions dropped, non-printable bytes escaped."""

from __future__ import annotations

import socket
import struct

from collectors.pcap_spool import ChunkWriter
from secops.console.transcript import escape, tcp_transcripts


def frame(src: str, sport: int, dst: str, dport: int, seq: int, payload: bytes, flags: int = 0x18) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, socket.inet_aton(src),
                     socket.inet_aton(dst))
    return b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00" + ip + tcp


def test_escape_keeps_text_and_escapes_the_rest():
    assert escape(b"GET / HTTP/1.1\r\nHost: x\r\n\tok") == "GET / HTTP/1.1\\r\nHost: x\\r\n\tok"
    assert escape(b"\x00\x1b[31m\xff\\<b>") == "\\x00\\x1b[31m\\xff\\\\<b>"


def test_streams_in_order_without_retransmissions(tmp_path):
    a, b = ("198.18.0.1", 40000), ("198.18.0.2", 21)
    path = tmp_path / "t.pcap"
    w = ChunkWriter(path)
    packets = [
        frame(*a, *b, 100, b"", 0x02),
        frame(*b, *a, 500, b"220 ready\r\n"),
        frame(*a, *b, 101, b"USER bob\r\n"),
        frame(*a, *b, 101, b"USER bob\r\n"),  # retransmission
        frame(*a, *b, 111, b"PASS \x00\x1b\r\n"),
        frame(*b, *a, 511, b"230 ok\r\n"),
    ]
    for i, f in enumerate(packets):
        w.write(1_700_000_000_000_000_000 + i * 1000, f)
    w.close()
    (stream,) = tcp_transcripts(path)
    assert stream.originator == "198.18.0.1:40000" and stream.responder == "198.18.0.2:21"
    assert [(s.from_originator, s.text) for s in stream.segments] == [
        (False, "220 ready\\r\n"), (True, "USER bob\\r\nPASS \\x00\\x1b\\r\n"), (False, "230 ok\\r\n")]
