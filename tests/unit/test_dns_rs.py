"""Differential test of the Rust DNS reader (``collectors._rs.DnsEngine``) against the Python reference
(``dns_wire.parse`` + ``DnsAnalyzer`` + ``make_doc``): the same calls on both, every document equal (all keys and
values, ``_id`` and ``secops.truncated`` included), in order, and the counters equal.

Inputs: every DNS/mDNS/LLMNR datagram of every capture under the shared test data (driven as ``native.py`` drives
the analyzer: a sweep each ``SWEEP_SECONDS`` of capture time, ``finish`` at the end), then generated hostile and edge
messages (random bytes, every cut of real messages, pointer loops, long and binary names, cut TXT strings, every
record type, UPDATE, mDNS/LLMNR, multicast, IPv6, odd timestamps, values past MAX_KEYWORD_CHARS, expiry, the
orientation memo's clearing).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from collectors.conn import ip_str
from collectors.decode import BUF, CAPLEN, DPORT, DST, L4OFF, PLEN, PROTO, SPORT, SRC, Decoder
from collectors.flowconst import UDP
from collectors.pcapio import CaptureError, read_capture
from collectors.protocols import dns as dns_module
from collectors.protocols.dns import DnsAnalyzer
from collectors.protocols.dns_wire import PORT_KINDS, Runs, WireStats, parse, read_name
from collectors.protocols.documents import Flow
from tests.support import TESTDATA

rs = pytest.importorskip("collectors._rs")

SWEEP_SECONDS = 1.0  # native.py's
COUNTERS = ("messages", "truncated", "too_short", "records_cut")
CAPTURES = sorted(p for p in TESTDATA.rglob("*") if p.is_file() and (".pcap" in p.name or p.suffix == ".cap"))


class Pair:
    """The Python reference and the Rust engine, fed the same calls; every call's documents compared."""

    def __init__(self) -> None:
        self.stats = WireStats()
        self.warnings: list[str] = []
        self.py = DnsAnalyzer(self.warnings.append)
        self.rs = rs.DnsEngine()
        self.docs = 0
        self.cuts = 0  # values the Python documents cut (len(secops.truncated) summed)
        self.calls = 0

    def _check(self, py_docs: list[dict], rs_docs: list[bytes], what: str) -> list[dict]:
        self.calls += 1
        got = [orjson.loads(d) for d in rs_docs]
        assert len(got) == len(py_docs), f"{what}: {len(got)} Rust documents, {len(py_docs)} Python"
        for i, (r, p) in enumerate(zip(got, py_docs)):
            assert r == p, f"{what}: document {i} differs\nrust:   {r}\npython: {p}"
        for doc in py_docs:
            self.cuts += len(doc.get("secops", {}).get("truncated", ()))
        self.docs += len(py_docs)
        assert self.rs.cut_values == self.cuts, what
        for name in COUNTERS:
            assert getattr(self.rs, name) == getattr(self.stats, name), f"{what}: counter {name}"
        return py_docs

    def message(self, payload: bytes, kind: str, src: str, sport: int, dst: str, dport: int, ts: float) -> list[dict]:
        msg = parse(payload, kind, self.stats)
        py_docs: list[dict] = []
        if msg is not None:
            a, b = f"{src}:{sport}", f"{dst}:{dport}"
            sender = Flow("udp", src, sport, dst, dport, f"{a}-{b}" if a < b else f"{b}-{a}")
            py_docs = list(self.py.handle_message(msg, sender, ts))
        rs_docs = self.rs.message(payload, kind, src, sport, dst, dport, ts)
        return self._check(py_docs, rs_docs, f"message {payload.hex()} {kind} {src}:{sport}->{dst}:{dport} @{ts!r}")

    def expire(self, now: float) -> list[dict]:
        return self._check(list(self.py.expire(now)), self.rs.expire(now), f"expire({now!r})")

    def finish(self) -> list[dict]:
        cut = self.py.cut_values  # finish() warns about it and sets it back to 0; the engine leaves that to its caller
        docs = self._check(list(self.py.finish()), self.rs.finish(), "finish")
        assert self.rs.cut_values == cut + sum(len(d.get("secops", {}).get("truncated", ())) for d in docs)
        assert bool(self.warnings) == bool(self.rs.cut_values)
        return docs


# ---------------------------------------------------------------------------------------------------- captures


def datagrams(path: Path) -> Iterator[tuple[bytes, str, str, int, str, int, float]]:
    """The UDP datagrams native.py reads as DNS, as it reads them (decoder, lower port, payload, capture time)."""
    decoder = Decoder()
    try:
        for ts_ns, linktype, buf, off, caplen, _wire in read_capture(path):
            packets = decoder.decode(linktype, buf, off, caplen, ts_ns)
            if not packets or packets[-1][PROTO] != UDP:
                continue
            p = packets[-1]
            sport, dport = p[SPORT], p[DPORT]
            kind = PORT_KINDS.get(sport if sport < dport else dport)
            if kind is None:
                continue
            l4 = p[L4OFF]
            payload = bytes(p[BUF][l4 + 8:l4 + min(p[CAPLEN], 8 + p[PLEN])])
            yield payload, kind, ip_str(p[SRC]), sport, ip_str(p[DST]), dport, ts_ns / 1_000_000_000
    except CaptureError:
        return


def run_capture(path: Path) -> Pair:
    pair = Pair()
    next_sweep = None
    for payload, kind, src, sport, dst, dport, ts in datagrams(path):
        if next_sweep is None or ts >= next_sweep:
            next_sweep = ts + SWEEP_SECONDS
            pair.expire(ts)
        pair.message(payload, kind, src, sport, dst, dport, ts)
    pair.finish()
    return pair


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(TESTDATA)))
def test_shared_captures(path: Path) -> None:
    run_capture(path)


def test_shared_captures_hold_dns() -> None:
    """The captures above do reach the engine (515 datagrams in the set of November 2026)."""
    assert sum(1 for path in CAPTURES for _ in datagrams(path)) >= 500


# ---------------------------------------------------------------------------------------------------- messages


def header(tid: int, flags: int, qd: int, an: int, ns: int, ar: int) -> bytes:
    return struct.pack("!HHHHHH", tid, flags, qd, an, ns, ar)


def name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(x)]) + x for x in labels) + b"\0"


def question(qname: bytes, qtype: int = 1, qclass: int = 1) -> bytes:
    return qname + struct.pack("!HH", qtype, qclass)


def rr(owner: bytes, rtype: int, rdata: bytes, rclass: int = 1, ttl: int = 300, rdlen: int | None = None) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata) if rdlen is None else rdlen) + rdata


def message(tid: int, flags: int, questions: list[bytes], answers: list[bytes] = (), auth: list[bytes] = (),
            additional: list[bytes] = ()) -> bytes:
    return header(tid, flags, len(questions), len(answers), len(auth), len(additional)) + b"".join(
        [*questions, *answers, *auth, *additional])


EXAMPLE = name(b"www", b"Example", b"com")
CLIENT, SERVER = ("198.18.0.1", 40000), ("198.18.0.53", 53)


def exchange(pair: Pair, query: bytes, reply: bytes, kind: str = "dns", client=CLIENT, server=SERVER,
             ts: float = 1_700_000_000.0, rtt: float = 0.015) -> None:
    pair.message(query, kind, *client, *server, ts)
    pair.message(reply, kind, *server, *client, ts + rtt)


def rdata_samples() -> dict[int, list[bytes]]:
    """Well-formed and damaged data of the types the reader decodes."""
    ptr = b"\xc0\x0c"
    return {
        1: [bytes([192, 0, 2, 1]), b"\x01\x02"],
        28: [bytes(16), bytes(15) + b"\x01", bytes(12) + b"\x01\x02\x03\x04", bytes(10) + b"\xff\xff\x01\x02\x03\x04",
             bytes(14) + b"\x00\x02", b"\x20\x01\x0d\xb8" + bytes(8) + b"\x00\x01\x00\x00", b"\x20\x01" * 8,
             bytes(8) + b"\x00\x01" + bytes(6)],
        2: [name(b"NS1", b"Example", b"com"), ptr, b"\x03ab"],
        5: [name(b"Alias"), ptr + b"junk"],
        12: [name(b"1", b"2", b"in-addr", b"arpa")],
        6: [name(b"ns") + name(b"hostmaster") + bytes(20)],
        15: [b"\x00\x0a" + name(b"MX"), b"\x00"],
        33: [b"\x00\x01\x00\x02\x01\xbb" + name(b"target"), b"\x00\x01\x00\x02\x01\xbb", b"\x00\x01"],
        38: [b"\x00" + bytes(16), b"\x40" + bytes(8) + name(b"prefix"), b"\x81", b"\x80" + name(b"p"), b"\x40\x01"],
        46: [b"\x00\x01\x08\x02" + bytes(14) + name(b"Signer"), b"\x00\x01\x08\x02" + bytes(14) + b"\x00",
             b"\x00\x01" + bytes(10), b"\x00"],
        48: [b"\x01\x01\x03\x08" + bytes(8), b"\x01\x01"],
        43: [b"\x00\x01\x08\x02" + bytes(32), b"\x00"],
        44: [b"\x01\x02" + bytes(range(20)), b"\x01\x02", b"\x01"],
        29: [bytes(16), b"\x00\x12\x16\x13" + bytes(12), b"\x01" + bytes(15), b"\x00\x01"],
        47: [name(b"Next", b"example") + b"\x00\x06\x40\x01\x00\x00\x00\x03", ptr],
        16: [b"\x05hello\x05world", b"", b"\x00", b"\x05hel\x00o", b"\x03\x80\xff\x7f", b"\x0ahello", b"\x03abc\x01",
             b"\x02\t\n"],
        99: [b"\x0bv=spf1 -all"],
        41: [b"\x00\x0a\x00\x02\x00\x00"],
        50: [bytes(5)], 51: [bytes(5)], 65534: [bytes(5)],
    }


def test_every_record_type() -> None:
    """Every type 0..300 (and the named ones above) with random data, as answers, authority, additional and UPDATE
    records, in queries and replies."""
    rng = random.Random(1)
    samples = rdata_samples()
    pair = Pair()
    types = [*range(301), 32768, 32769, 65534, 65535]
    for i, rtype in enumerate(types):
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        for j, data in enumerate([*samples.get(rtype, []), noise]):
            tid = (i * 16 + j) & 0xFFFF
            records = [rr(b"\xc0\x0c", rtype, data, rclass=rng.choice((1, 3, 254, 255, 0x8001)))]
            q = message(tid, 0x0100, [question(EXAMPLE, rtype)])
            for kind in ("dns", "mdns", "llmnr"):
                a = message(tid, 0x8580, [question(EXAMPLE, rtype)], records, records, records)
                exchange(pair, q, a, kind, ts=1_700_000_000.0 + i)
            upd = message(tid, 0x2800, [question(EXAMPLE, 6)], records, [*records, rr(EXAMPLE, 255, b"", rclass=255)])
            exchange(pair, upd, upd[:2] + b"\xa8\x00" + upd[4:], ts=1_700_000_000.0 + i)
    pair.finish()


def test_update_messages() -> None:
    pair = Pair()
    zone = question(name(b"Example", b"com"), 6)
    host = name(b"Host", b"example", b"com")
    pre = [rr(host, 255, b"", rclass=255, ttl=0), rr(host, 1, b"", rclass=255, ttl=0), rr(host, 255, b"", rclass=254),
           rr(host, 28, b"", rclass=254), rr(host, 1, bytes([192, 0, 2, 7])), rr(host, 16, b"\x03a b  ")]
    upd = [rr(host, 255, b"", rclass=255), rr(host, 1, b"", rclass=255), rr(host, 1, bytes([192, 0, 2, 8]), rclass=254),
           rr(host, 1, bytes([192, 0, 2, 9])), rr(host, 41, b""), rr(host, 99, b"\x02\x1f ")]
    for tid, (p, u) in enumerate([(pre, upd), ([], upd), (pre, []), ([], [])]):
        q = message(tid, 0x2800, [zone], p, u, [rr(b"\0", 250, b"sig")])
        exchange(pair, q, header(tid, 0xA805, 1, 0, 0, 0) + zone, ts=1_700_000_100.0 + tid)
        exchange(pair, q, q[:2] + b"\xa8\x00" + q[4:], ts=1_700_000_200.0 + tid)  # reply with the sections
        pair.message(q, "dns", *SERVER, *CLIENT, 1_700_000_300.0 + tid)  # reply first (no query)
    # an UPDATE query answered by a plain reply, and a query without question answered by an UPDATE
    exchange(pair, message(77, 0x2800, [], pre), message(77, 0x8180, [question(EXAMPLE)]), ts=5.0)
    exchange(pair, message(78, 0x0100, []), message(78, 0xA800, [zone], pre), ts=6.0)
    pair.finish()


def hostile_names() -> list[bytes]:
    rng = random.Random(2)
    return [
        b"\0",
        name(*[b"a" * 63] * 4),  # 255 characters: too long
        name(*[b"a" * 63] * 3, b"b" * 61),  # 253: fits
        name(*[b"a" * 63] * 3, b"b" * 62),  # 254
        name(*[b"x"] * 127),  # 253
        name(*[b"x"] * 128),
        name(b"\x00\x01\x07\x08\t\n\x0b\x0c\x0d\x1b\x7f", b"ok"),
        name(b"caf\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\xc3", b"\xe2\x82", b"\x80\xbf", b"\xfe\xff"),
        name(b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80"),
        name(b"\xe2\x82\xacx", b"\xc3\xa9\xc3"),
        name("ΣΑΣ".encode(), "İSTANBUL".encode(), "ǅ".encode(), "ẞ".encode()),
        name(b"UPPER", b"MiXeD", b"a.b"),
        name(*[bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))) for _ in range(5)]),
        name(b"a" * 63, b"b" * 63),
        name(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbb", b"qz", b"xy", b"example", b"com"),
        name(*[b"\x01"] * 70),
        b"\x40abc\x00",  # extended label type
        b"\x80abc\x00",
        b"\x05ab",  # cut label
        b"\x03abc",  # no terminator
    ]


def pointer_names(start: int) -> list[bytes]:
    """Compressed names that loop (to themselves, to each other, in many steps) or point out of the message."""
    return [
        struct.pack("!H", 0xC000 | start),  # points at itself
        struct.pack("!H", 0xC000 | (start + 4)),  # two bytes past its own end
        b"\x01a" + struct.pack("!H", 0xC000 | start),  # label then back to itself
        struct.pack("!H", 0xC000 | 0x3FFF),  # out of the message
        struct.pack("!H", 0xC000 | 12),  # the question's name
        b"\xc0",  # cut pointer
    ]


def test_hostile_names() -> None:
    pair = Pair()
    for tid, owner in enumerate(hostile_names()):
        for kind in ("dns", "mdns"):
            q = header(tid, 0x0100, 1, 0, 0, 0) + question(owner, 16)
            body = header(tid, 0x8180, 1, 3, 0, 0) + question(owner, 16)
            a = (body + rr(owner, 5, owner) + rr(b"\xc0\x0c", 15, b"\x00\x01" + owner)
                 + rr(owner, 1, b"\x01\x02\x03\x04"))
            exchange(pair, q, a, kind, ts=float(tid))
            exchange(pair, a, a, kind, ts=float(tid) + 0.5)
    # pointer loops, in the question and in records
    for tid, ptr in enumerate(pointer_names(12)):
        q = header(tid, 0x0100, 1, 0, 0, 0) + ptr + b"\x00\x01\x00\x01"
        exchange(pair, q, q[:2] + b"\x81\x80" + q[4:], ts=100.0 + tid)
    for tid, ptr in enumerate(pointer_names(12 + len(EXAMPLE) + 4)):
        a = (header(tid, 0x8180, 1, 2, 0, 0) + question(EXAMPLE) + rr(ptr, 1, b"\x01\x02\x03\x04")
             + rr(b"\xc0\x0c", 5, ptr))
        pair.message(a, "dns", *SERVER, *CLIENT, 200.0 + tid)
    # a chain of 300 pointers, each to the one before (more than MAX_POINTERS), and a name walked > MAX_LABEL_STEPS
    chain = bytearray(header(1, 0x8180, 1, 1, 0, 0) + question(EXAMPLE))
    first = len(chain)
    chain += b"\x01a\x00"
    for i in range(300):
        chain += b"\x01b" + struct.pack("!H", 0xC000 | (first + (i - 1) * 4 + 3 if i else first))
    last = len(chain) - 4
    chain += rr(struct.pack("!H", 0xC000 | last), 12, struct.pack("!H", 0xC000 | (last - 40)))
    pair.message(bytes(chain), "dns", *SERVER, *CLIENT, 300.0)
    many = header(2, 0x8180, 0, 1, 0, 0) + name(*[b"z"] * 4200) + struct.pack("!HHIH", 1, 1, 0, 4) + b"\x01\x02\x03\x04"
    pair.message(many, "dns", *SERVER, *CLIENT, 301.0)
    pair.finish()


RUNS = (1, 5, 126, 127, 128, 129, 300, 1000, 4094, 4095, 4096, 4097)


def label_region(rng: random.Random, at: int) -> tuple[bytes, list[int], list[int]]:
    """Runs of labels (of one character, or of random lengths) at offset ``at`` of a message, around the bounds a
    name meets (MAX_NAME_CHARS, MAX_LABEL_STEPS), each ended by a zero, a pointer (into the region, to itself, out of
    the message), a label type that is no label, or nothing (the next run goes on from it); the offsets of every
    label and of every run's start."""
    region = bytearray()
    labels: list[int] = []
    starts: list[int] = []
    ends = (b"\0", b"ptr", b"self", b"\xff\xff", b"\x40", b"\x80", b"")
    for _ in range(rng.randrange(1, 5)):
        if at + len(region) + 2 * max(RUNS) + 16 > 0x3FFF:  # every label within a pointer's reach
            break
        starts.append(at + len(region))
        ones = rng.random() < 0.7
        count = rng.choice(RUNS) if ones else rng.randrange(1, 40)
        for _ in range(count):
            labels.append(at + len(region))
            size = 1 if ones else rng.randrange(1, 64)
            region += bytes([size]) + bytes(rng.randrange(0x21, 0x7F) for _ in range(size))
        end = rng.choice(ends)
        if end == b"ptr":
            end = struct.pack("!H", 0xC000 | rng.choice(labels))
        elif end == b"self":
            end = struct.pack("!H", 0xC000 | (at + len(region)))
        region += end
    if rng.random() < 0.2:
        region += b"\x05ab"  # a label past the message's end
    return bytes(region), labels, starts


def test_names_through_long_runs_of_labels() -> None:
    """Names that point into long runs of labels (past MAX_NAME_CHARS, to MAX_LABEL_STEPS and one more), after a few
    labels of their own or none. Both go over a run at once past a name's first pointer and MAX_NAME_CHARS (``Runs``):
    the reference's names are also checked against its walk label by label (``read_name`` without runs)."""
    def read(data: bytes, pos: int, runs: Runs | None) -> tuple[str, int] | str:
        try:
            return read_name(data, pos, runs)
        except Exception as exc:  # the message ends inside the name (_End)
            return type(exc).__name__

    pair = Pair()
    rng = random.Random(45)
    for tid in range(90):
        names: list[tuple[bytes, str, int]] = []  # (own labels, what to point at, which)
        for _ in range(14):
            own = rng.choice((0, 0, 1, 2, 3, 127, 128))
            labels = b"".join(b"\x01" + bytes([rng.randrange(0x61, 0x7B)]) for _ in range(own))
            if rng.random() < 0.3:
                labels = b"\x3f" + b"m" * 63 + labels
            names.append((labels, rng.choice(("label", "label", "start", "byte")), rng.randrange(1 << 30)))
        head = 12 + sum(len(own) + 2 for own, _, _ in names) + 4 * 6 + 10 * 4
        region, labels, starts = label_region(rng, head)
        spots = {"label": labels, "start": starts, "byte": list(range(head, head + len(region)))}
        written = [own + struct.pack("!H", 0xC000 | spots[kind][which % len(spots[kind])])
                   for own, kind, which in names]
        questions = [question(n) for n in written[:6]]
        answers = [rr(written[6 + 2 * i], 5, written[7 + 2 * i]) for i in range(4)]
        payload = message(tid, 0x8180, questions, answers) + region
        assert len(payload) - len(region) == head and head + len(region) < 0x3FFF
        pair.message(payload, "dns", *SERVER, *CLIENT, 400.0 + tid)
        offsets = [12 + sum(len(n) + 4 for n in written[:i]) for i in range(6)]
        at = offsets[-1] + len(written[5]) + 4
        for i in range(4):
            offsets += [at, at + len(written[6 + 2 * i]) + 10]
            at += len(answers[i])
        runs = Runs()
        for pos in offsets + [rng.randrange(head, len(payload)) for _ in range(10)]:
            assert read(payload, pos, runs) == read(payload, pos, None), (tid, pos)
    pair.finish()
    assert pair.docs >= 90


def test_every_character_lower_cased() -> None:
    """Names holding every character of the Basic Multilingual Plane and some beyond, as UTF-8 labels: lower-cased
    as Python 3.11 does (Unicode 14: the engine's own tables only where the versions agree), sigma in context."""
    chars = [chr(c) for c in [*range(0x80, 0xD800), *range(0xE000, 0x10000), *range(0x10400, 0x10500),
                              *range(0x10C80, 0x10D90), *range(0x16E40, 0x16EA0), *range(0x1E900, 0x1E960)]]
    names = [name(*["".join(chars[i + j:i + j + 15]).encode() for j in range(0, 60, 15)])
             for i in range(0, len(chars), 60)]
    sigma, alpha = "\u03a3", "\u0391"  # capital sigma and alpha
    names += [name(x.encode()) for x in (sigma + alpha + sigma, alpha + sigma, sigma, f"{alpha}{sigma}-{sigma}",
                                         alpha + sigma + "\u0301", alpha + sigma + "\u0301" + alpha, sigma * 3,
                                         f"a{sigma}b", "A" + sigma)]
    pair = Pair()
    for tid, owner in enumerate(names):
        a = header(tid, 0x8180, 1, 1, 0, 0) + question(owner, 1) + rr(owner, 5, owner)
        pair.message(a, "dns", *SERVER, *CLIENT, float(tid))
    assert pair.docs == len(names)


def test_txt_and_long_values() -> None:
    """TXT/SPF strings cut inside the record or past its length, and answers past MAX_KEYWORD_CHARS (the
    documents list them in secops.truncated)."""
    pair = Pair()
    big = b"".join(bytes([255]) + bytes([0x41 + i % 26]) * 255 for i in range(20))
    wide = b"".join(b"\xff" + b"\xe9" * 255 for _ in range(20))  # U+FFFD each: code points, not bytes
    quoted = b"".join(b"\xff" + b'"\\\x01\x1f' * 63 + b"abc" for _ in range(20))
    cases = [
        [rr(b"\xc0\x0c", 16, big)],
        [rr(b"\xc0\x0c", 16, wide)],
        [rr(b"\xc0\x0c", 99, quoted)],
        [rr(b"\xc0\x0c", 16, big[:2000]), rr(b"\xc0\x0c", 16, big[:2200])],  # long only together? no: each <4096
        [rr(b"\xc0\x0c", 16, big[:4000] + b"\x10", rdlen=4001)],  # the data holds a string cut short
        [rr(b"\xc0\x0c", 16, b"\x05hello\x05world", rdlen=8)],  # length ends inside a string: read on, past it
        [rr(b"\xc0\x0c", 16, b"\x05hello" + b"\x01x" * 5000, rdlen=7)],  # > MAX_RECORDS strings
        [rr(b"\xc0\x0c", 16, b"\x05hello\x05wor")],
        [rr(b"\xc0\x0c", 16, big[:4099])],
        [rr(b"\xc0\x0c", 16, big[:4352])],
    ]
    for tid, answers in enumerate(cases):
        q = message(tid, 0x0100, [question(EXAMPLE, 16)])
        a = message(tid, 0x8180, [question(EXAMPLE, 16)], answers)
        exchange(pair, q, a, ts=1_700_000_000.0 + tid)
        exchange(pair, q, a[:-3], ts=1_700_000_000.5 + tid)
        for cut in range(12, len(a), 97):
            pair.message(a[:cut], "dns", *SERVER, *CLIENT, 1_700_000_001.0 + tid)
    pair.finish()
    assert pair.cuts >= 6


def test_random_bytes() -> None:
    rng = random.Random(3)
    pair = Pair()
    kinds = ("dns", "mdns", "llmnr")
    for i in range(6000):
        size = rng.choice((0, 1, 3, 4, 5, 11, 12, 13, 20, 40, 100, 300, 1500))
        payload = bytes(rng.randrange(256) for _ in range(size))
        if i % 3 == 0 and size >= 12:  # plausible counts, so the records are read
            payload = payload[:4] + struct.pack("!HHHH", rng.randrange(3), rng.randrange(5), rng.randrange(3),
                                                rng.randrange(3)) + payload[12:]
        src, dst = (CLIENT, SERVER) if i % 2 else (SERVER, CLIENT)
        pair.message(payload, kinds[i % 3], *src, *dst, 1_700_000_000.0 + i / 7)
        if i % 500 == 0:
            pair.expire(1_700_000_000.0 + i / 7 + 61)
    pair.finish()


def real_payloads(limit: int = 400) -> list[tuple[bytes, str]]:
    out: list[tuple[bytes, str]] = []
    seen: set[bytes] = set()
    for path in CAPTURES:
        for payload, kind, *_ in datagrams(path):
            if payload not in seen:
                seen.add(payload)
                out.append((payload, kind))
            if len(out) >= limit:
                return out
    return out


def test_real_messages_cut_and_mutated() -> None:
    """Each of the first distinct real messages cut at every length, and with random bytes changed."""
    rng = random.Random(4)
    pair = Pair()
    ts = 1_000.0
    for payload, kind in real_payloads():
        for cut in range(len(payload) + 1):
            ts += 0.001
            pair.message(payload[:cut], kind, *SERVER, *CLIENT, ts)
        for _ in range(20):
            mutated = bytearray(payload)
            for _ in range(rng.randint(1, 4)):
                if mutated:
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            ts += 0.01
            src, dst = (CLIENT, SERVER) if rng.random() < 0.5 else (SERVER, CLIENT)
            pair.message(bytes(mutated), kind, *src, *dst, ts)
        pair.expire(ts)
    pair.finish()


def test_multicast_ipv6_and_ports() -> None:
    pair = Pair()
    senders = [
        ("fe80::1", 5353, "ff02::fb", 5353, "mdns"), ("192.168.1.5", 5353, "224.0.0.251", 5353, "mdns"),
        ("fe80::2", 50000, "ff02::1:3", 5355, "llmnr"), ("10.0.0.7", 50001, "224.0.0.252", 5355, "llmnr"),
        ("2001:db8::1", 40000, "2001:db8::53", 53, "dns"), ("::ffff:1.2.3.4", 40000, "::1", 53, "dns"),
        ("10.0.0.7", 53, "10.0.0.9", 137, "dns"), ("10.0.0.9", 53, "10.0.0.9", 53, "dns"),
        ("10.0.0.1", 53, "255.255.255.255", 53, "dns"), ("10.0.0.1", 5353, "239.255.255.250", 5353, "mdns"),
    ]
    for tid, (src, sport, dst, dport, kind) in enumerate(senders):
        for flags in (0x0100, 0x0000, 0x8400, 0x8780, 0x8583, 0x0700):
            for qtype in (1, 33, 255, 12):
                q = message(tid, flags, [question(EXAMPLE, qtype, 0x8001)],
                            [rr(b"\xc0\x0c", 1, b"\x0a\0\0\x01", 0x8001)])
                a = message(tid, flags | 0x8000, [question(EXAMPLE, qtype, 0x8001)],
                            [rr(b"\xc0\x0c", 28, b"\xfe\x80" + bytes(13) + b"\x01", 0x8001)])
                exchange(pair, q, a, kind, (src, sport), (dst, dport), ts=float(tid))
                pair.message(a, kind, dst, dport, src, sport, float(tid) + 2)  # multicast receiver answering
    pair.finish()


def test_timestamps_and_pairing() -> None:
    """Integral, tiny and tie timestamps in ids and rtt; FIFO per (connection, id); replies without a query."""
    pair = Pair()
    q = message(9, 0x0100, [question(EXAMPLE)])
    a = message(9, 0x8180, [question(EXAMPLE)], [rr(b"\xc0\x0c", 1, b"\x01\x02\x03\x04")])
    stamps = [0.0, 1e-05, 1e-06, 5e-07, 1.5e-06, 0.5, 0.9999995, 0.0078125, 1.0, 59.999999, 1234.5, 253402300799.0,
              -1.5, -1e-07, -86400.25, -62135596800.0,
              1700000000.0, 1700000000.0078125, 1700000000.0000005, 1700000000.9999996, 1700000000.123456789]
    for i, ts in enumerate(stamps):
        for rtt in (0.0, 1e-05, 0.0000005, 0.0078125, 0.1234565, 3.0, -0.25):
            exchange(pair, q, a, client=(CLIENT[0], 1000 + i), ts=ts, rtt=rtt)
    for i in range(3):  # three queries of one id, answered in turn, plus one answer too many
        pair.message(q, "dns", *CLIENT, *SERVER, 10.0 + i)
    for i in range(4):
        pair.message(a, "dns", *SERVER, *CLIENT, 20.0 + i)
    # a query with the server's port higher than the client's: the orientation memo keeps who asked first
    pair.message(q, "dns", "10.1.1.1", 53, "10.1.1.2", 60000, 30.0)
    pair.message(a, "dns", "10.1.1.2", 60000, "10.1.1.1", 53, 30.5)
    pair.message(a, "dns", "10.1.1.1", 53, "10.1.1.2", 60000, 31.0)
    pair.message(q, "dns", "10.1.1.2", 60000, "10.1.1.1", 53, 31.5)
    pair.finish()


def test_reply_times_whose_shortest_text_is_a_tie() -> None:
    """A reply's time goes into the document id as Python's repr: where two shortest texts are equally near the
    exact value (1700017589.61328125: "...6132812" or "...6132813"), Python takes the even digit. The benchmark
    capture had one; the engine took the other until it used Ryu."""
    pair = Pair()
    q = message(9, 0x0100, [question(EXAMPLE)])
    a = message(9, 0x8180, [question(EXAMPLE)], [rr(b"\xc0\x0c", 1, b"\x01\x02\x03\x04")])
    rng = random.Random(20261130)
    stamps = [1700017589.61328125, *(rng.randrange(1 << 31) + rng.randrange(1 << 20) / (1 << 20) for _ in range(3000)),
              *(rng.uniform(0, 1e-3) for _ in range(500)), *(rng.uniform(0, 2.5e11) for _ in range(500))]
    for i, ts in enumerate(stamps):
        exchange(pair, q, a, client=(CLIENT[0], 1000 + i % 50_000), ts=ts, rtt=0.25)
    pair.finish()


def test_expiry_order() -> None:
    """Open queries expire in the order Python's dict and stable sort give: keys re-added go last, equal times
    keep that order; queues expire by their newest query."""
    rng = random.Random(5)
    pair = Pair()
    ts = 0.0
    for step in range(3000):
        ts += rng.choice((0.0, 0.0, 0.5, 3.0, 20.0))
        tid = rng.randrange(6)
        client = (f"10.0.{rng.randrange(2)}.{rng.randrange(3)}", 1000 + rng.randrange(3))
        q = message(tid, 0x0100, [question(name(b"h%d" % step, b"example", b"com"))])
        back = ts - rng.choice((0.0, 0.0, 30.0, 70.0))  # clocks going back too
        if rng.random() < 0.6:
            pair.message(q, "dns", *client, *SERVER, back)
        else:
            pair.message(q[:2] + b"\x81\x80" + q[4:], "dns", *SERVER, *client, back)
        if rng.random() < 0.05:
            pair.expire(ts + rng.choice((0.0, 60.0, 61.0, 200.0)))
    pair.expire(ts + 30)
    pair.finish()


def test_open_queries_past_the_bound_are_logged_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_OPEN_QUERIES (the queries waiting in all connections together) the oldest connection's queries
    are logged unanswered, in both (the engine takes the bound when made); replies, expiry and the end after it."""
    monkeypatch.setattr(dns_module, "MAX_OPEN_QUERIES", 40)
    rng = random.Random(9)
    pair = Pair()
    ts, evicted = 0.0, 0
    for step in range(3000):
        ts += rng.choice((0.0, 0.5, 3.0))
        tid = rng.randrange(4)
        client = (f"10.0.{rng.randrange(4)}.{rng.randrange(8)}", 1000 + rng.randrange(3))
        q = message(tid, 0x0100, [question(name(b"h%d" % step, b"example", b"com"))])
        if rng.random() < 0.7:
            evicted += len(pair.message(q, "dns", *client, *SERVER, ts))
        else:
            pair.message(q[:2] + b"\x81\x80" + q[4:], "dns", *SERVER, *client, ts)
        if rng.random() < 0.01:
            pair.expire(ts)
    pair.finish()
    assert evicted > 100, evicted


def test_flow_memo_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    """More than MAX_FLOWS connections: the orientation memo is cleared by the next sweep, in both."""
    pair = Pair()
    n = dns_module.MAX_FLOWS + 10
    q = message(1, 0x0100, [question(EXAMPLE)])
    a = message(1, 0x8180, [question(EXAMPLE)], [rr(b"\xc0\x0c", 1, b"\x01\x02\x03\x04")])
    for i in range(n):
        pair.message(q, "dns", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 53, "10.255.255.1", 40000, 1.0)
    assert pair.rs.flows == n == len(pair.py.flows)
    pair.expire(2.0)
    assert pair.rs.flows == 0 == len(pair.py.flows)
    for i in range(0, n, 997):  # the replies now orient from scratch (the server's side as originator)
        pair.message(a, "dns", "10.255.255.1", 40000, f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 53, 3.0)
    pair.expire(100.0)
    pair.finish()


def test_time_out_of_range() -> None:
    """A time past year 9999 fails in both (ValueError), at the document that needs it."""
    q = message(4, 0x0100, [question(EXAMPLE)])
    for ts in (253402300800.0, 1.5e16):
        pair = Pair()
        with pytest.raises(ValueError):
            sender = Flow("udp", "10.0.0.1", 5353, "224.0.0.251", 5353, "s")
            next(iter(pair.py.handle_message(parse(q, "mdns", pair.stats), sender, ts)))
        with pytest.raises(ValueError):
            pair.rs.message(q, "mdns", "10.0.0.1", 5353, "224.0.0.251", 5353, ts)


def test_payload_types() -> None:
    """A memoryview or bytearray payload reads as its bytes (native.py slices the decoder's buffer)."""
    engine = rs.DnsEngine()
    q = message(3, 0x0100, [question(EXAMPLE)])
    engine.message(memoryview(b"xx" + q)[2:], "dns", *CLIENT, *SERVER, 1.0)
    engine.message(bytearray(q), "dns", *CLIENT, *SERVER, 1.0)
    assert len(engine.finish()) == 2 and engine.messages == 2
