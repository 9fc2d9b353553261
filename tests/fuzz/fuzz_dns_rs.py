"""The Rust DNS reader (``collectors._rs.DnsEngine``) against the Python reference, on the same datagrams.

Input: one byte choosing the port (and so the kind: dns, mdns, llmnr), the server (unicast, multicast, IPv6) and
whether the client's port is above or below the server's; one byte for the time between datagrams (so queries
expire on the sweeps); then up to four messages in the framing of ``seeds.pack_frames``, sent in turn by the client
and the server. Contract: every document the engine returns equals the reference's (``orjson.loads(bytes) ==
doc``, in order), after each call (sweeps, messages, ``finish``), and the counters (``WireStats``, ``cut_values``)
are equal. Coverage guides on the reference modules (the Rust side is not instrumented).
"""

from __future__ import annotations

import orjson

from collectors._rs import DnsEngine
from collectors.protocols import dns as dns_module
from collectors.protocols.dns import DnsAnalyzer
from collectors.protocols.dns_wire import PORT_KINDS, WireStats, parse
from collectors.protocols.documents import Flow
from tests.fuzz import fuzz_dns

PORTS = sorted(PORT_KINDS)
SERVERS = ("198.18.0.53", "224.0.0.251", "ff02::1:3", "2001:db8::53")
SWEEP_SECONDS = 1.0
COUNTERS = ("messages", "truncated", "too_short", "records_cut")
# The compiled reference lower-cases each character on its own (mypyc's str.lower: no final-sigma rule, U+0391
# U+03A3 -> U+03B1 U+03C3), as the engine does; interpreted, Python gives U+03B1 U+03C2. Under atheris the
# reference runs from its source, so inputs holding a capital sigma (UTF-8 CE A3) are left out there.
INTERPRETED = not str(dns_module.__file__).endswith(".so")
SIGMA = "\u03a3".encode()


def _same(py_docs: list[dict], rs_docs: list[bytes]) -> None:
    got = [orjson.loads(d) for d in rs_docs]
    assert got == py_docs, f"rust {got!r}\npython {py_docs!r}"


def TestOneInput(data: bytes) -> None:
    if len(data) < 2 or (INTERPRETED and SIGMA in data):
        return
    port = PORTS[data[0] % len(PORTS)]
    server = SERVERS[data[0] >> 4 & 3]
    client = "198.18.0.1" if ":" not in server else "fe80::1"
    client_port = 40000 if data[0] & 0x40 else 17
    step = (data[1] & 0x7F) * 0.37 + (1e-05 if data[1] & 0x80 else 0.0)
    stats = WireStats()
    analyzer = DnsAnalyzer(warn=lambda _text: None)
    engine = DnsEngine()
    cuts = 0
    next_sweep = None
    for i, payload in enumerate(fuzz_dns.unpack_frames(data[2:], limit=4)):
        ts = 1_700_000_000.0 + i * step
        if next_sweep is None or ts >= next_sweep:
            next_sweep = ts + SWEEP_SECONDS
            py_docs = list(analyzer.expire(ts))
            _same(py_docs, engine.expire(ts))
            cuts += sum(len(d.get("secops", {}).get("truncated", ())) for d in py_docs)
        if i % 2 == 0:
            src, sport, dst, dport = client, client_port, server, port
        else:
            src, sport, dst, dport = server, port, client, client_port
        msg = parse(payload, PORT_KINDS[port], stats)
        py_docs = []
        if msg is not None:
            a, b = f"{src}:{sport}", f"{dst}:{dport}"
            py_docs = list(analyzer.handle_message(msg, Flow("udp", src, sport, dst, dport,
                                                             f"{a}-{b}" if a < b else f"{b}-{a}"), ts))
        _same(py_docs, engine.message(payload, PORT_KINDS[port], src, sport, dst, dport, ts))
        cuts += sum(len(d.get("secops", {}).get("truncated", ())) for d in py_docs)
        for name in COUNTERS:
            assert getattr(engine, name) == getattr(stats, name), name
    py_docs = list(analyzer.finish())
    _same(py_docs, engine.finish())
    cuts += sum(len(d.get("secops", {}).get("truncated", ())) for d in py_docs)
    assert engine.cut_values == cuts


def seeds() -> list[bytes]:
    """fuzz_dns's pairs of real and made messages, each with a timing byte."""
    return [seed[:1] + bytes([timing]) + seed[1:] for seed in fuzz_dns.seeds() for timing in (0x01, 0xA3)]
