"""DTLS and STUN datagrams of one UDP flow read natively (``collectors.protocols.dtls_wire``), then logged by
``TlsAnalyzer`` from the frames they make, as the analyzer processes read them.

Input: datagrams in the framing of ``seeds.pack_frames``, each one byte of direction (bit 0: from the flow's second
sender) and its payload. Contract: nothing raises; each direction puts together at most ``MAX_PENDING`` messages of
at most ``MAX_HANDSHAKE_BYTES`` each and remembers at most ``MAX_DONE``; every field value is text; the documents
serialise and hold no string longer than ``MAX_VALUE_CHARS``.
"""

from __future__ import annotations

from collectors.flowconst import UDP
from collectors.protocols.dtls_wire import MAX_DONE, MAX_PENDING, DtlsFlow
from collectors.protocols.tls import TlsAnalyzer
from collectors.protocols.tls_wire import MAX_HANDSHAKE_BYTES, Frame, TlsStats
from collectors.protocols.tshark import udp_packet
from tests.fuzz.fuzz_http_wire import assert_documents_fit
from tests.fuzz.seeds import pack_frames, payloads, unpack_frames

ENDS = (("198.18.0.20", 50000), ("198.18.0.1", 4433))
CAPTURES = ("tls/dtls1_0.pcap", "tls/webrtc-stun.pcap")


def TestOneInput(data: bytes) -> None:
    flow = DtlsFlow(TlsStats())
    analyzer = TlsAnalyzer(warn=lambda _text: None)
    docs = []
    for i, item in enumerate(unpack_frames(data)):
        if not item:
            continue
        second = bool(item[0] & 1)
        frame = Frame("dtls")
        stun_request = flow.feed(not second, item[1:], frame)
        for values in frame.fields.values():
            assert all(isinstance(v, str) for v in values)
        if frame or stun_request:
            src, dst = (ENDS[1], ENDS[0]) if second else ENDS
            docs += analyzer.handle(udp_packet(1_700_000_000.0 + i, src[0], dst[0], src[1], dst[1], "s", frame.fields,
                                               ["dtls"] if frame else ["stun"]))
    for side in flow.sides:
        assert len(side.pending) <= MAX_PENDING and len(side.done) <= MAX_DONE
        assert all(len(p.data) <= MAX_HANDSHAKE_BYTES for p in side.pending.values())
    docs += analyzer.finish()
    assert_documents_fit(docs)


def seeds() -> list[bytes]:
    """The shared DTLS 1.0 and WebRTC (STUN, then DTLS) flows, each datagram tagged by its sender."""
    out = []
    for name in CAPTURES:
        items, first = [], None
        for sport, _dport, payload in payloads([name], UDP, per_file=100):
            first = sport if first is None else first
            items.append(bytes((sport != first,)) + payload)
        if items:
            out.append(pack_frames(items))
    return out
