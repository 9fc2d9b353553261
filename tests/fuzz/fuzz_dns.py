"""DNS, mDNS and LLMNR messages from their bytes (``dns_wire.parse``) and their rendering (``DnsAnalyzer``).

Input: one byte choosing the port (and so the kind: dns, mdns, llmnr) and the sender's address (unicast or
multicast), then two messages in the framing of ``seeds.pack_frames``: the first sent by the client, the second
by the server, so queries and replies pair up. Contract: ``parse`` never raises, returns None exactly for a
payload without a header, reads at most one record per 11 bytes; the analyzer turns what it returns into
documents that orjson serialises, with every string cut at ``MAX_VALUE_CHARS``.
"""

from __future__ import annotations

import itertools
import struct

import orjson

from collectors.protocols.dns import DnsAnalyzer
from collectors.protocols.dns_wire import MAX_RECORDS, PORT_KINDS, WireStats, parse
from collectors.protocols.documents import MAX_VALUE_CHARS, Flow
from tests.fuzz.seeds import pack_frames, payloads, unpack_frames

PORTS = sorted(PORT_KINDS)
SERVERS = ("198.18.0.53", "224.0.0.251", "ff02::1:3", "198.18.0.255")
HEADER, MIN_RECORD = 12, 11  # a record is at least a root name and its 10 fixed bytes


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def TestOneInput(data: bytes) -> None:
    if len(data) < 1:
        return
    port = PORTS[data[0] % len(PORTS)]
    server = SERVERS[data[0] >> 4 & 3]
    client = "198.18.0.1" if ":" not in server else "fe80::1"
    stats = WireStats()
    analyzer = DnsAnalyzer(warn=lambda _text: None)
    docs = []
    for i, payload in enumerate(unpack_frames(data[1:], limit=2)):
        msg = parse(payload, PORT_KINDS[port], stats)
        if len(payload) < 4:
            assert msg is None
            continue
        assert msg is not None
        assert len(msg.records) <= min(MAX_RECORDS, max(0, len(payload) - HEADER) // MIN_RECORD)
        assert 0 <= msg.tid <= 0xFFFF and msg.opcode is not None and 0 <= msg.opcode <= 15
        if i == 0:
            sender = Flow("udp", client, 40000, server, port, "s")
        else:
            sender = Flow("udp", server, port, client, 40000, "s")
        docs += analyzer.handle_message(msg, sender, 1_700_000_000.0 + i)
    docs += analyzer.finish()
    assert stats.truncated + stats.too_short <= 2 and stats.messages <= 2
    for doc in docs:
        orjson.dumps(doc)
        assert all(len(s) <= MAX_VALUE_CHARS for s in _strings(doc))


def seeds() -> list[bytes]:
    """Pairs of consecutive DNS/mDNS/LLMNR datagrams of the shared captures, and a few made here."""
    names = ("dns53.pcap", "dns-txt-multiple.pcap", "dns-zero-RRs.pcap", "ipv6-fragmented-dns.pcap",
             *(f"dns/{n}" for n in ("dns-corrupt.pcap", "mdns-no-assoc.pcap", "dns_notify2.pcap", "sshfp-trunc.pcap",
                                    "loc-29-trunc.pcap", "dynamic-update.pcap", "tkey.pcap")),
             *(f"dnssec/{n}" for n in ("dnskey.pcap", "dnskey2.pcap", "nsec.pcap", "nsec3.pcap", "rrsig.pcap",
                                       "ds.pcap")))
    found = [(min(s, d), p) for s, d, p in payloads(names, 17, frozenset(PORT_KINDS))]
    out = []
    for (port, first), (_, second) in itertools.pairwise(found):
        out.append(bytes([PORTS.index(port) if port in PORTS else 0]) + pack_frames([first, second]))
    query = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00\x00\x01\x00\x01"
    answer = (struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 1, 0, 0) + query[12:]
              + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\xc6\x12\x00\x01")
    out += [bytes([k]) + pack_frames([query, answer]) for k in range(3)]
    return out
