"""Native DNS (collectors/protocols/dns_wire.py, native.py) against tshark, the differential oracle.

Every shared capture with DNS, mDNS or LLMNR over UDP goes through the ingest pipeline, whose deep path now
reads those frames itself; its ``secops.dns`` documents must equal those of tshark over the whole file
(``extract_metadata``), or the difference is named here with its reason. The parser also meets hostile input:
random bytes, every truncation of real messages, compression loops.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.decode import BUF, CAPLEN, DPORT, L4OFF, PLEN, PROTO, SPORT, UDP, Decoder
from collectors.ingest import Pipeline
from collectors.pcapio import read_capture
from collectors.protocols import extract_metadata, stream
from collectors.protocols.dns import DnsAnalyzer, message_from_packet
from collectors.protocols.dns_wire import LOOPS, PORT_KINDS, TOO_LONG, WireStats, parse, read_name
from collectors.protocols.native import NativeFrames
from collectors.protocols.tshark import BASE_FIELDS, TsharkRun, build_command, run_tshark
from collectors.selection import interface_block, packet_block
from tests.unit.test_flowcore import CAPTURES

# Differences the test expects, by capture, with the reason (none today: every shared capture agrees).
KNOWN_DIFFERENCES: dict[str, str] = {}


def dns_payloads(capture: Path) -> list[tuple[int, bytes, str]]:
    """(frame number, UDP payload, kind) of every frame the native path reads, decoded as the pipeline does."""
    decoder, out = Decoder(), []
    for number, (ts, linktype, buf, off, caplen, _wire) in enumerate(read_capture(capture, lambda _m: None), 1):
        packets = decoder.decode(linktype, buf, off, caplen, ts)
        if not packets or packets[-1][PROTO] != UDP:
            continue
        p = packets[-1]
        kind = PORT_KINDS.get(min(p[SPORT], p[DPORT]))
        if kind is not None:
            out.append((number, p[BUF][p[L4OFF] + 8:p[L4OFF] + min(p[CAPLEN], 8 + p[PLEN])], kind))
    return out


DNS_CAPTURES = [c for c in CAPTURES if dns_payloads(c)]


def dns_docs(docs: list[dict]) -> list[dict]:
    return sorted((d for d in docs if d["event"]["dataset"] == "secops.dns"), key=lambda d: d["_id"])


def pipeline_docs(capture: Path, warnings: list[str] | None = None) -> list[dict]:
    docs: list[dict] = []
    pipe = Pipeline(docs.append, on_warning=(warnings if warnings is not None else []).append)
    pipe.process_file(capture)
    pipe.finish()
    return docs


def test_shared_captures_with_dns_are_found() -> None:
    names = {c.name for c in DNS_CAPTURES}
    assert len(DNS_CAPTURES) >= 20, names
    assert {"dns-tunnel-iodine.pcap", "ipv6-fragmented-dns.pcap", "mdns-no-assoc.pcap", "rrsig.pcap"} <= names


@pytest.mark.parametrize("capture", DNS_CAPTURES, ids=lambda c: c.name)
def test_native_documents_equal_tshark_whole_file(capture: Path) -> None:
    """The differential oracle: the pipeline (DNS read natively, not by tshark) against tshark over the file."""
    native = dns_docs(pipeline_docs(capture))
    whole = dns_docs(list(extract_metadata(capture)))
    if capture.name in KNOWN_DIFFERENCES:
        assert native != whole, f"{capture.name} no longer differs: {KNOWN_DIFFERENCES[capture.name]}"
    else:
        assert native == whole


def test_native_frames_do_not_reach_tshark(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the native path the DNS frames are not in tshark's input (same documents either way)."""
    capture = next(c for c in DNS_CAPTURES if c.name == "dns-tunnel-iodine.pcap")
    written: list[int] = []
    original = stream.TsharkStdinRun.feed

    def feed(self: stream.TsharkStdinRun, data: bytes) -> None:
        original(self, data)
        if self.native is not None:
            written.append(self.native.frames)

    monkeypatch.setattr(stream.TsharkStdinRun, "feed", feed)
    native = dns_docs(pipeline_docs(capture))
    assert written and written[-1] == len(dns_payloads(capture))
    monkeypatch.setattr(stream, "NATIVE", False)
    assert dns_docs(pipeline_docs(capture)) == native


def tshark_messages(capture: Path) -> dict[int, object]:
    fields = list(dict.fromkeys(BASE_FIELDS + DnsAnalyzer.FIELDS))
    cmd = build_command("tshark", capture, "(dns or mdns or llmnr) and udp and not icmp and not icmpv6", fields)
    return {pkt.number: message_from_packet(pkt) for pkt in run_tshark(cmd, TsharkRun(), lambda _m: None)}


def comparable(msg: object) -> object:
    """A message without its additional section, which no document field reads and which tshark's fields cannot
    always give back: tshark has no class/TTL for an OPT record (the ones it lists shift for the records after
    it), and it lists the types of an NSEC's bitmap among the record types, which the tshark path's
    ascending-order rule (``dns._record_types``) can mistake for the next record's type (radiotap.pcap, mDNS)."""
    import dataclasses

    if msg is None:
        return None
    return dataclasses.replace(msg, records=[r for r in msg.records if r.section < 2])  # type: ignore


def test_every_message_equals_tsharks_fields() -> None:
    """Message by message (header, flags, question, every record and its rendering) on every shared capture."""
    checked = 0
    for capture in DNS_CAPTURES:
        expected = tshark_messages(capture)
        for number, payload, kind in dns_payloads(capture):
            got = parse(payload, kind)
            if number in expected:
                assert comparable(got) == comparable(expected[number]), (capture.name, number)
                checked += 1
    assert checked >= 500


# -- hostile input ---------------------------------------------------------------------------------------------
def real_messages() -> list[tuple[bytes, str]]:
    out = []
    for capture in DNS_CAPTURES:
        out += [(payload, kind) for _, payload, kind in dns_payloads(capture)][:40]
    return out


def test_every_truncation_of_real_messages() -> None:
    """Each real message cut at every length: no exception, damage counted, and what precedes the cut kept."""
    stats = WireStats()
    cuts = 0
    for payload, kind in real_messages():
        whole = parse(payload, kind)
        for size in range(len(payload)):
            msg = parse(payload[:size], kind, stats)
            cuts += 1
            if msg is not None and whole is not None:
                assert msg.tid == whole.tid and len(msg.records) <= len(whole.records)
    assert cuts > 10_000 and stats.truncated + stats.too_short == cuts


def test_compression_loops_end_quickly() -> None:
    header = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
    assert read_name(header + b"\xc0\x0c", 12)[0] == LOOPS  # a pointer to itself
    two = header + b"\xc0\x0e\xc0\x0c"  # two pointers pointing at each other
    assert read_name(two, 12)[0] == LOOPS
    long_chain = header + b"\x01a" * 20_000 + b"\xc0\x0c"  # one label run entered again and again
    started = time.process_time()
    name, _ = read_name(long_chain, 12)
    assert name in (LOOPS, TOO_LONG) and time.process_time() - started < 0.5
    # every 2-byte pointer in a 64 KB message pointing at the next one, the last back at the first
    ring = bytearray(header)
    for pos in range(12, 65_000, 2):
        target = pos + 2 if pos + 2 < 65_000 else 12
        ring += bytes((0xC0 | target >> 8 & 0x3F, target & 0xFF))
    started = time.process_time()
    assert parse(bytes(ring)) is not None and time.process_time() - started < 0.5


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.sampled_from(["dns", "mdns", "llmnr"]))
def test_random_bytes_never_raise(data: bytes, kind: str) -> None:
    stats = WireStats()
    msg = parse(data, kind, stats)
    assert (msg is None) == (len(data) < 4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_messages_never_raise(data: st.DataObject) -> None:
    messages = real_messages_cached()
    payload, kind = data.draw(st.sampled_from(messages))
    edits = data.draw(st.lists(st.tuples(st.integers(0, max(len(payload) - 1, 0)), st.integers(0, 255)),
                               max_size=8))
    mutated = bytearray(payload)
    for pos, value in edits:
        if pos < len(mutated):
            mutated[pos] = value
    started = time.process_time()
    parse(bytes(mutated), kind)
    assert time.process_time() - started < 0.5


_CACHE: list[tuple[bytes, str]] = []


def real_messages_cached() -> list[tuple[bytes, str]]:
    if not _CACHE:
        _CACHE.extend(real_messages())
    return _CACHE


def test_hostile_frames_in_the_stream_are_counted_not_raised() -> None:
    """Damaged DNS datagrams among the selected frames: documents for what they hold, one warning with the count,
    and the other frames still go to tshark."""
    warnings: list[str] = []
    native = NativeFrames("hostile", warnings.append)

    def frame(payload: bytes, sport: int = 40000, dport: int = 53) -> bytes:
        udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, b"\x0a\0\0\1", b"\x0a\0\0\2")
        return b"\0\x11\x22\x33\x44\x55" * 2 + b"\x08\x00" + ip + udp

    good = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x01a\x00\x00\x01\x00\x01"
    frames = [frame(good), frame(good[:9]), frame(b"\x01"), frame(good[:12] + b"\xc0\x0c\x00\x01\x00\x01"),
              frame(good, 40000, 80)]
    stream_bytes = interface_block(1) + b"".join(packet_block(0, 10**18 + i, f, len(f)) for i, f in enumerate(frames))
    kept, docs = b"", []
    for i in range(0, len(stream_bytes), 7):  # cut anywhere, as a pipe delivers it
        part, more = native.split(stream_bytes[i:i + 7])
        kept += part
        docs += more
    docs += native.finish()
    assert native.frames == 4 and kept.startswith(interface_block(1)) and len(kept) == len(interface_block(1)) + len(
        packet_block(0, 0, frames[-1], len(frames[-1])))
    assert {d["dns"]["question"]["name"] for d in docs if "question" in d["dns"]} >= {"a", LOOPS.lower()}
    assert len(warnings) == 1 and "2 of 4 DNS datagram(s) truncated or malformed (1 without a header)" in warnings[0]


def test_open_queries_time_out_on_capture_time() -> None:
    """A query unanswered for longer than the UDP timeout is logged alone; a reply to a later query with the same
    id pairs with that one (rtt 0.01 s), however few other frames came between (the tshark path swept every 4096
    printed packets, so a replayed trace paired replies with queries minutes old)."""
    native = NativeFrames("timeout", lambda _m: None)

    def block(ts: float, payload: bytes, reply: bool) -> bytes:
        ports = (53, 40000) if reply else (40000, 53)
        hosts = (b"\x0a\0\0\2", b"\x0a\0\0\1") if reply else (b"\x0a\0\0\1", b"\x0a\0\0\2")
        udp = struct.pack("!HHHH", *ports, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, *hosts) + udp
        frame = b"\0\x11\x22\x33\x44\x55" * 2 + b"\x08\x00" + ip
        return packet_block(0, int(ts * 1e9), frame, len(frame))

    question = b"\x01a\x00\x00\x01\x00\x01"
    query = struct.pack("!HHHHHH", 9, 0x0100, 1, 0, 0, 0) + question
    answer = struct.pack("!HHHHHH", 9, 0x8180, 1, 1, 0, 0) + question + b"\xc0\x0c\x00\x01\x00\x01" + \
        struct.pack("!IH", 60, 4) + b"\x01\x02\x03\x04"
    data = interface_block(1) + block(1000.0, query, False) + block(1070.0, query, False) + \
        block(1070.01, answer, True)
    _, docs = native.split(data)
    docs += native.finish()
    got = sorted((d["dns"]["type"], d["@timestamp"], d["secops"]["dns"].get("rtt")) for d in docs)
    assert got == [("answer", "1970-01-01T00:17:50.000000Z", 0.01), ("query", "1970-01-01T00:16:40.000000Z", None)]


def write_pcap(path: Path, payloads: list[tuple[bytes, bool]]) -> None:
    """A classic pcap of UDP datagrams between 10.0.0.1:40000 (queries) and 10.0.0.2:53 (replies)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, (payload, reply) in enumerate(payloads):
        ports = (53, 40000) if reply else (40000, 53)
        hosts = (b"\x0a\0\0\2", b"\x0a\0\0\1") if reply else (b"\x0a\0\0\1", b"\x0a\0\0\2")
        udp = struct.pack("!HHHH", *ports, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, *hosts) + udp
        frame = b"\0\x11\x22\x33\x44\x55" * 2 + b"\x08\x00" + ip
        out.append(struct.pack("<IIII", 1000 + i, 0, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def test_named_difference_srv_owner_names(tmp_path: Path) -> None:
    """Named difference: tshark gives the owner name of an SRV record as dns.srv.service/proto/name instead of
    dns.resp.name, so the tshark path pairs every later record with the wrong name and loses the last one. The
    native path reads the records from the message: both answers, each with its own name."""
    question = b"\x01a\x00\x00\x21\x00\x01"
    srv = b"\x04_sip\x04_udp\xc0\x0c" + struct.pack("!HHIH", 33, 1, 60, 9) + b"\x00\x01\x00\x02\x00\x03\x01t\x00"
    a = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + b"\x01\x02\x03\x04"
    query = struct.pack("!HHHHHH", 5, 0x0100, 1, 0, 0, 0) + question
    reply = struct.pack("!HHHHHH", 5, 0x8180, 1, 2, 0, 0) + question + srv + a
    capture = tmp_path / "srv.pcap"
    write_pcap(capture, [(query, False), (reply, True)])
    (native,) = dns_docs(pipeline_docs(capture))
    (whole,) = dns_docs(list(extract_metadata(capture)))
    assert [(x["type"], x["name"], x["data"]) for x in native["dns"]["answers"]] == [
        ("SRV", "_sip._udp.a", "t"), ("A", "a", "1.2.3.4")]
    assert [(x["type"], x["name"], x["data"]) for x in whole["dns"]["answers"]] == [("SRV", "a", "t")]
