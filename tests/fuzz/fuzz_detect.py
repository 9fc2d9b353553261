"""Protocol detection on any port (``collectors.protocols.detect``), TCP and UDP, both directions.

Input: one byte choosing the transport (bit 0) and the direction (bit 1), two bytes of extra wire length (the
engines hand a probe at most ``PROBE_BYTES`` of a longer payload), then the payload. Contract: no match function
raises on any bytes (``probe`` would hide it), ``probe`` answers the first matching row of ``PROBES`` for that
transport and side, and a row's ``first`` (the dispatch table's first-byte filter) never hides a match.
"""

from __future__ import annotations

from collectors.protocols.detect import NOTHING, PROBE_BYTES, PROBES, SERVICE_INDEX, TCP, UDP, probe
from tests.fuzz.seeds import TRACES, payloads


def TestOneInput(data: bytes) -> None:
    if len(data) < 3:
        return
    proto = UDP if data[0] & 1 else TCP
    from_orig = not data[0] & 2
    payload = data[3:3 + PROBE_BYTES]
    length = len(payload) + int.from_bytes(data[1:3], "big")
    expected = NOTHING
    for p in PROBES:
        matched = bool(p.match(payload, length)) if payload else False
        if matched and p.first is not None:
            assert payload[0] in p.first, f"{p.service}: a match starting {payload[0]:#04x} is filtered out"
        if matched and expected == NOTHING and proto in p.transports and \
                p.side in ("any", "orig" if from_orig else "resp"):
            expected = (SERVICE_INDEX[p.service], p.select)
    assert probe(proto, from_orig, payload, length) == expected


def seeds() -> list[bytes]:
    """The first payload bytes of TCP and UDP packets of the shared captures, with both directions' headers."""
    names = [str(p.relative_to(TRACES)) for p in sorted(TRACES.rglob("*.pcap*"))]
    out: dict[bytes, None] = {}
    for proto in (TCP, UDP):
        for sport, dport, payload in payloads(names, proto, per_file=20):
            head = bytes([(proto == UDP) | (sport < dport) << 1]) + b"\x00\x00" + payload[:PROBE_BYTES]
            out.setdefault(head)
    return list(out)[:300]
