"""Worst-case inputs for the Rust protocol engines: what a hostile host can send to make an analyzer process spend
time out of proportion to the bytes ("a few hundred kilobytes must not blind the sensor").

Each test feeds one such input straight to an engine (``collectors._rs``, no Python face around it, so that the
engine's own work dominates) and bounds the CPU it takes (``time.process_time()``) generously: several times what
the linear reading costs here, yet well under what the super-linear reading it guards against cost (both measured
on the 2-core development machine, in each docstring). The documents are compared with the Python references
elsewhere (``tests/unit/test_*_rs.py``, ``tests/fuzz/fuzz_*_rs.py``); only time is looked at here.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import pytest

from collectors.protocols import dnp3_native, ftp_native, http_native, s7comm_native, tls_native
from collectors.protocols.dnp3_wire import crc_dnp
from collectors.protocols.s7comm_wire import S7commReader

if None in (http_native.ENGINE, ftp_native.ENGINE, tls_native.ENGINE, dnp3_native.ENGINE, s7comm_native.ENGINE):
    pytest.skip("collectors._rs is not built", allow_module_level=True)

from collectors._rs import DnsEngine  # after the skip: the extension may be missing

CLIENT, SERVER = ("198.18.0.1", 40000), ("198.18.0.2", 80)


def cpu(work: Callable[[], object]) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


def byte_by_byte(feed: Callable[[bytes], object], data: bytes) -> Callable[[], None]:
    pieces = [data[i:i + 1] for i in range(len(data))]

    def work() -> None:
        for piece in pieces:
            feed(piece)
    return work


# -- lines fed a byte at a time (HTTP, FTP) -------------------------------------------------------------------------
def test_http_long_lines_fed_a_byte_at_a_time() -> None:
    """256 KiB of request and status lines of 16 KB (just under MAX_LINE_BYTES), one byte per feed. The open line
    was joined to each feed and scanned again: 0.95 s (the reference, through its face: 0.4 s); grown in place:
    0.05 s, most of it the calls."""
    assert http_native.ENGINE is not None
    engine = http_native.ENGINE(None)
    engine.open(1, *CLIENT, *SERVER, "native-1")
    requests = (b"GET /" + b"a" * 16000 + b" HTTP/1.1\r\n\r\n") * 8
    replies = (b"HTTP/1.1 200 " + b"x" * 16000 + b"\r\nContent-Length: 0\r\n\r\n") * 8
    docs: list[object] = []
    spent = cpu(byte_by_byte(lambda b: docs.extend(engine.feed(1, True, b, 1.0)), requests))
    spent += cpu(byte_by_byte(lambda b: docs.extend(engine.feed(1, False, b, 1.0)), replies))
    assert len(docs + engine.finish()) == 8
    assert spent < 0.5, f"{len(requests) + len(replies)} bytes fed a byte at a time took {spent:.2f} s"


def test_ftp_long_lines_fed_a_byte_at_a_time() -> None:
    """256 KiB of command lines of 8 KB (just under MAX_LINE_BYTES), one byte per feed. Rejoined and rescanned at
    each feed: 0.7 s (the reference, through its face: 0.16 s); grown in place: 0.05 s."""
    assert ftp_native.ENGINE is not None
    engine = ftp_native.ENGINE(None)
    engine.open(1, *CLIENT, "198.18.0.2", 21, "native-1")
    lines = (b"STOR " + b"a" * 8100 + b"\r\n") * 32
    spent = cpu(byte_by_byte(lambda b: engine.feed(1, True, b, 1.0), lines))
    assert spent < 0.35, f"{len(lines)} bytes fed a byte at a time took {spent:.2f} s"


# -- TLS records in tiny chunks ---------------------------------------------------------------------------------------
def test_tls_largest_records_in_one_byte_chunks() -> None:
    """256 KiB of the largest records (2^14 + 2048 bytes) from the server, each TCP segment's chunks one byte long.
    The incomplete record was copied whole at every chunk: 0.08 s; kept in place: 0.007 s."""
    assert tls_native.ENGINE is not None
    engine = tls_native.ENGINE(lambda *_a: None, lambda *_a: None)
    engine.open(1, *CLIENT, "198.18.0.2", 443)
    size = 2 ** 14 + 2048
    records = (struct.pack("!BHH", 23, 0x0303, size) + b"x" * size) * 14
    segments = [[records[i:i + 1] for i in range(start, min(start + 1460, len(records)))]
                for start in range(0, len(records), 1460)]

    def work() -> None:
        for chunks in segments:
            engine.feed(1, False, chunks, 1.0)
    spent = cpu(work)
    assert engine.unknown_records == 0 and engine.oversized == 0
    assert spent < 0.04, f"{len(records)} bytes in one-byte chunks took {spent:.3f} s"


# -- DNS names ---------------------------------------------------------------------------------------------------------
def test_dns_names_through_255_pointers() -> None:
    """Datagrams of ~5,500 names (questions, owners, CNAME targets), each through a chain of 255 compression
    pointers (the most a name may follow). The targets followed were a list looked through at every pointer:
    40 ms a datagram (the reference: 80 ms); a bitmap past 8 targets: 7 ms (16 datagrams: 0.67 s, now 0.12 s)."""
    chain = b"".join(struct.pack("!H", 0xC000 | (12 + 2 * (i + 1))) for i in range(254)) + b"\x01a\x00"
    spent = dns_datagrams(names_after(chain, 1500), 16)
    assert spent < 0.35, f"16 datagrams of pointer chains took {spent:.2f} s"


def test_dns_names_into_one_long_name() -> None:
    """Datagrams of ~6,500 names pointing at one name of 4,095 labels (the reference walks up to MAX_LABEL_STEPS
    labels for every name): 26 million label steps a datagram, 60 ms (the reference: 0.8 s); past its first pointer and
    MAX_NAME_CHARS a name goes over a run of labels at once: 6 ms (8 datagrams: 0.47 s, now 0.05 s)."""
    spent = dns_datagrams(names_after(b"\x01a" * 4095 + b"\0", 2500), 8)
    assert spent < 0.25, f"8 datagrams of names into one long name took {spent:.2f} s"


def names_after(first: bytes, cnames: int) -> bytes:
    """A reply (cut at 64 KiB) whose first question is ``first`` and whose 4,000 more questions and ``cnames``
    CNAME answers all name it through a pointer."""
    name = struct.pack("!H", 0xC000 | 12)
    questions = (name + b"\x00\x01\x00\x01") * 4000
    answers = (name + struct.pack("!HHIH", 5, 1, 60, 2) + name) * cnames
    return (struct.pack("!HHHHHH", 1, 0x8180, 4001, cnames, 0, 0) + first + b"\x00\x01\x00\x01" + questions
            + answers)[:65535]


def dns_datagrams(msg: bytes, count: int) -> float:
    """CPU seconds of ``count`` copies of a DNS reply through one engine (each its own query id's flow)."""
    engine = DnsEngine()

    def work() -> None:
        for i in range(count):
            engine.message(msg, "dns", "198.18.0.53", 53, "198.18.0.1", 40000 + i, 1.0)
    spent = cpu(work)
    assert engine.messages == count
    return spent


# -- DNP3 and S7comm: no defect found; their worst inputs kept linear -------------------------------------------------
def dnp3_link(user: bytes) -> bytes:
    head = bytearray(b"\x05\x64" + bytes([5 + len(user), 0xC4]) + b"\x01\x00\x02\x00")
    head += crc_dnp(bytes(head), 0, 8).to_bytes(2, "little")
    for i in range(0, len(user), 16):
        block = user[i:i + 16]
        head += block + crc_dnp(block, 0, len(block)).to_bytes(2, "little")
    return bytes(head)


def test_dnp3_segmented_messages_and_hunting() -> None:
    """256 KiB of 128-segment transport messages (first segment last), then 256 KiB of ``05 64`` starts with bad
    CRCs after a hole (hunted for a frame at every byte pair), in one-byte chunks: 0.05 s here."""
    assert dnp3_native.ENGINE is not None
    engine = dnp3_native.ENGINE()
    engine.open(1, *CLIENT, "198.18.0.2", 20000, "native-1")
    frames = [dnp3_link(bytes([(0x40 if i == 0 else 0) | (0x80 if i == 127 else 0) | i & 0x3F])
                        + (b"\xc1\x01" if i == 0 else b"") + b"x" * 100) for i in range(128)]
    message = b"".join(frames[1:] + frames[:1])
    stream = message * (256 * 1024 // len(message))
    garbage = b"\x05\x64" * (128 * 1024)

    def work() -> None:
        for start in range(0, len(stream), 1460):
            engine.feed(1, True, [stream[start:start + 1460]], 1.0)
        engine.feed(1, True, [5], 1.0)
        for start in range(0, len(garbage), 1460):
            part = garbage[start:start + 1460]
            engine.feed(1, True, [part[i:i + 1] for i in range(len(part))], 1.0)
    spent = cpu(work)
    assert spent < 0.3, f"{len(stream) + len(garbage)} bytes took {spent:.2f} s"


EMPTY_TPKTS = b"\x03\x00\x00" * (87 * 1024)  # each TPKT of length 3 hands COTP the rest of the segment, as tshark does


def test_s7comm_reference_reads_empty_tpkts_in_place() -> None:
    """The Python reference (the fallback without the Rust build) on 256 KiB of TPKTs of length 3 in one feed: it
    copied the segment's rest for each of them (0.28 s; 4.6 s for the 1 MiB a flow direction hands the analyzers)."""
    reader = S7commReader()
    spent = cpu(lambda: reader.feed(False, EMPTY_TPKTS))
    assert reader.stats.tpkts == len(EMPTY_TPKTS) // 3 - 1  # the last one waits for its length's second byte
    assert spent < 0.05, f"{len(EMPTY_TPKTS)} bytes took {spent:.2f} s"


def test_s7comm_fragments_and_empty_tpkts() -> None:
    """256 KiB of one-byte COTP fragments never ended, then 256 KiB of TPKTs of length 3 in one feed (each hands
    COTP the rest of the segment, as tshark does): 2 ms here."""
    assert s7comm_native.ENGINE is not None
    engine = s7comm_native.ENGINE()
    engine.open(1, *CLIENT, "198.18.0.2", 102)
    fragments = (b"\x03\x00\x00\x08\x02\xf0\x00\x80") * (32 * 1024)

    def work() -> None:
        for start in range(0, len(fragments), 1460):
            engine.feed(1, True, [fragments[start:start + 1460]], 1.0, start)
        engine.feed(1, False, [EMPTY_TPKTS], 2.0, 1)
    spent = cpu(work)
    assert spent < 0.1, f"{len(fragments) + len(EMPTY_TPKTS)} bytes took {spent:.2f} s"
