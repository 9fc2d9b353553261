"""Second looks read only the connections they are for (collectors.protocols.reread)."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, fragment
from scapy.packet import Raw
from scapy.utils import wrpcap

from collectors import decode
from collectors.pcapio import read_capture
from collectors.protocols import extract_metadata
from collectors.protocols.documents import Flow
from collectors.protocols.reread import ConnectionFrames, _payload, connection_key, flow_key, stream_bytes
from tests.support import TESTDATA
from tests.support.frames import eth

CLIENT, SERVER = "198.18.0.1", "198.18.0.2"


def _segment(src: str, dst: str, sport: int, dport: int, flags: str, seq: int, ts: float, data: bytes = b""):
    pkt = eth() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=1)
    if data:
        pkt = pkt / Raw(data)
    pkt.time = ts
    return pkt


def _connection(sport: int, isn: int, start: float, request: bytes, response: bytes, dport: int = 12345) -> list:
    """One whole HTTP exchange: handshake, request, response, FIN both ways."""
    c = lambda flags, seq, dt, data=b"": _segment(CLIENT, SERVER, sport, dport, flags, seq, start + dt, data)  # noqa: E731
    s = lambda flags, seq, dt, data=b"": _segment(SERVER, CLIENT, dport, sport, flags, seq, start + dt, data)  # noqa: E731
    return [c("S", isn, 0.0), s("SA", 5000, 0.01), c("A", isn + 1, 0.02), c("PA", isn + 1, 0.03, request),
            s("PA", 5001, 0.04, response), c("FA", isn + 1 + len(request), 0.05),
            s("FA", 5001 + len(response), 0.06), c("A", isn + 2 + len(request), 0.07)]


def test_connections_reusing_endpoints_are_told_apart_by_time(tmp_path: Path):
    """A scanner with a fixed source port: the same endpoints carry two connections; each is asked for alone."""
    first = _connection(7790, 1000, 100.0, b"GET /first HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n")
    second = _connection(7790, 90000, 200.0, b"GET /second HTTP/1.1\r\n\r\n", b"HTTP/1.1 404 Not Found\r\n\r\n")
    other = _connection(40000, 7, 150.0, b"GET /other HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n")
    pcap = tmp_path / "reuse.pcap"
    wrpcap(str(pcap), first + other + second)
    frames = ConnectionFrames(pcap)
    flow = Flow("tcp", CLIENT, 7790, SERVER, 12345, "7")

    subset = frames.subset([(flow, 200.03)])
    assert subset is not None
    try:
        kept = [round(ts_ns / 1e9, 2) for ts_ns, *_ in read_capture(subset.path)]
        assert kept == [round(p.time, 2) for p in second]  # the second connection's frames and nothing else
        assert subset.remap(Flow("tcp", SERVER, 12345, CLIENT, 7790, "0"), 200.04).stream == "7"
        assert subset.remap(flow, 100.03) is None  # the first connection was not asked for
    finally:
        subset.close()
    assert not subset.path.exists()

    payloads = frames.tcp_payloads([(flow, 100.03)])
    assert stream_bytes(payloads["7"], (bytes([198, 18, 0, 1]), 7790), 1 << 20) == b"GET /first HTTP/1.1\r\n\r\n"


def test_payload_in_sequence_order_with_fragments_and_retransmissions(tmp_path: Path):
    """Out-of-order segments land in place, a retransmission counts once, an IP-fragmented segment is whole."""
    request = b"GET /split HTTP/1.1\r\nHost: a\r\n\r\n"
    head, tail = request[:10], request[10:]
    c = lambda flags, seq, ts, data=b"": _segment(CLIENT, SERVER, 41000, 12345, flags, seq, ts, data)  # noqa: E731
    late = c("PA", (4_294_967_290 + len(head)) & 0xFFFFFFFF, 1.0, tail)  # sequence numbers wrap inside it
    early = c("PA", 4_294_967_290, 1.1, head)
    pieces = fragment(late[IP], fragsize=16)
    packets = [eth() / piece for piece in pieces] + [early, early.copy()]
    for p in packets:
        p.time = 1.0
    pcap = tmp_path / "order.pcap"
    wrpcap(str(pcap), packets)
    frames = ConnectionFrames(pcap)
    segments = frames.tcp_payloads([(Flow("tcp", CLIENT, 41000, SERVER, 12345, "0"), 1.0)])["0"]
    assert stream_bytes(segments, (bytes([198, 18, 0, 1]), 41000), 1 << 20) == request


def test_a_subset_carries_the_fragments_of_its_connections_only(tmp_path: Path):
    """A datagram's earlier fragments go with the connection its last fragment completes; another connection's
    fragments and an unfinished datagram stay out (every second look used to carry every fragment of the run)."""
    def fragmented(sport: int, ts: float) -> list:
        seg = _segment(CLIENT, SERVER, sport, 12345, "PA", 1, ts, b"GET /f HTTP/1.1\r\n" + b"x" * 100)
        seg[IP].id = sport  # one datagram per connection
        pieces = [eth() / piece for piece in fragment(seg[IP], fragsize=32)]
        for i, p in enumerate(pieces):
            p.time = ts + i / 1000
        return pieces

    wanted, other = fragmented(45000, 10.0), fragmented(46000, 10.5)
    unfinished = fragmented(47000, 11.0)[:-1]
    interleaved = [p for pair in zip(wanted, other, strict=True) for p in pair]
    pcap = tmp_path / "frags.pcap"
    wrpcap(str(pcap), interleaved + unfinished)
    frames = ConnectionFrames(pcap)
    subset = frames.subset([(Flow("tcp", CLIENT, 45000, SERVER, 12345, "0"), 10.0)])
    assert subset is not None
    try:
        assert [round(ts_ns / 1e9, 3) for ts_ns, *_ in read_capture(subset.path)] == [round(p.time, 3) for p in wanted]
    finally:
        subset.close()


def test_http_second_look_reads_the_payload_of_its_connections_only(tmp_path: Path, monkeypatch):
    """A response whose request was lost goes to the second look, which reads that connection's payload only (not
    the whole capture) with the native reader."""
    import collectors.protocols.reread as reread

    noise = [_segment("198.18.1.1", "198.18.1.2", 50000 + i, 9999, "PA", 1, 50.0 + i, b"x" * 40) for i in range(200)]
    odd = _connection(43000, 1, 100.0, b"GET /lost HTTP/1.1\r\nHost: b\r\n\r\n",
                      b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    del odd[3]  # the request
    pcap = tmp_path / "lost.pcap"
    wrpcap(str(pcap), noise + odd)
    read: list[int] = []
    original = reread.read_places

    def counting(path, places):
        read.append(len(places))
        return original(path, places)

    monkeypatch.setattr(reread, "read_places", counting)
    docs = [d for d in extract_metadata(pcap) if d["event"]["dataset"] == "secops.http"]
    assert [d["http"]["response"]["status_code"] for d in docs] == [200]
    assert read == [len(odd)]  # one read, of the 7 frames of that connection, not the 207 of the capture


def test_the_capture_is_scanned_once_and_later_looks_read_their_frames_only(tmp_path: Path, monkeypatch):
    """After the index, a subset or payload read of one connection reads about that connection's bytes, not the
    whole capture again (it used to scan the capture once per look)."""
    import collectors.pcapio as pcapio

    noise = [_segment("198.18.1.1", "198.18.1.2", 50000 + i, 9999, "PA", 1, 50.0 + i, b"x" * 1000)
             for i in range(200)]
    wanted = _connection(44000, 1, 300.0, b"GET /w HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n")
    pcap = tmp_path / "big.pcap"
    wrpcap(str(pcap), noise[:100] + wanted + noise[100:])
    read, opened = [], pcapio._open

    def counting(path: Path):
        f = opened(path)
        raw = f.read
        f.read = lambda n=-1: read.append(len(data := raw(n))) or data
        return f

    monkeypatch.setattr(pcapio, "_open", counting)
    frames = ConnectionFrames(pcap)
    flow = Flow("tcp", CLIENT, 44000, SERVER, 12345, "3")
    frames.connection_of(flow, 300.0)
    assert sum(read) >= pcap.stat().st_size  # the index reads it all, once
    read.clear()
    subset = frames.subset([(flow, 300.0)])
    payloads = frames.tcp_payloads([(flow, 300.0)])
    assert sum(read) < 2 * 2000  # both looks together: the connection's 8 frames (a few hundred bytes) twice
    try:
        assert [round(ts_ns / 1e9, 2) for ts_ns, *_ in read_capture(subset.path)] == [round(p.time, 2) for p in wanted]
    finally:
        subset.close()
    assert stream_bytes(payloads["3"], (bytes([198, 18, 0, 2]), 12345), 1 << 20) == b"HTTP/1.1 200 OK\r\n\r\n"


@pytest.mark.parametrize("trace", ["ipv4/fragmented-4.pcap", "tunnels/gtp/gtp1_gn_normal_incl_fragmentation.pcap",
                                   "tunnels/vxlan-encapsulated-http.pcap", "tunnels/ayiya3.pcap", "http/get.pcap"])
def test_payloads_read_from_their_places_equal_a_whole_capture_decode(trace: str):
    """Fragments (whole at the last one, first copy wins), tunnels, retransmissions: each connection's payload,
    read back from its frames' places with only the fragment frames replayed, is what decoding every frame of the
    capture in order gives."""
    pcap = TESTDATA / "zeek" / "traces" / trace
    whole: dict = {}
    decoder = decode.Decoder()
    for ts_ns, linktype, buf, off, caplen, _ in read_capture(pcap):
        for p in decoder.decode(linktype, buf, off, caplen, ts_ns):
            if p[decode.PROTO] == decode.TCP and p[decode.CAPLEN] > 0:
                sender = (p[decode.SRC], p[decode.SPORT])
                key = connection_key(decode.TCP, sender, (p[decode.DST], p[decode.DPORT]))
                whole.setdefault(key, []).append((sender, p[decode.SEQ], _payload(p)))
    frames = ConnectionFrames(pcap)
    openings = frames.openings()
    payloads = frames.tcp_payloads((o.flow, o.start) for o in openings)
    assert len(openings) == len(whole) == len(payloads) > 0
    for o in openings:
        assert [(s.sender, s.seq, s.payload) for s in payloads[o.flow.stream]] == whole[flow_key(o.flow)]
