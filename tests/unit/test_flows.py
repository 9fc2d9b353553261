"""Flow table semantics against Zeek's own small TCP traces and baselines, plus synthetic edge cases, on both
engines (the C core and the Python reference)."""

from __future__ import annotations

import pytest

from collectors.conn import conn_doc
from collectors.flowpath import FlowPath, open_flow_path
from tests.support import TESTDATA

TRACES = TESTDATA / "zeek" / "traces"
NS = 1_000_000_000


@pytest.fixture(params=["native", "python"])
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


def run(engine: str, path, verify_checksums: bool = False) -> tuple[list[dict], FlowPath]:
    docs: list[dict] = []
    flows = open_flow_path(lambda f: docs.append(conn_doc(f)), engine=engine, verify_checksums=verify_checksums)
    flows.process_file(path, on_warning=pytest.fail, on_packets=None)
    flows.finish()
    return docs, flows


def summary(d: dict) -> tuple:
    c = d["secops"]["conn"]
    return c["history"], c["state"]


@pytest.mark.parametrize(("trace", "history", "state"), [
    ("single-rst.pcap", "R", "OTH"),
    ("syn-then-rst.pcap", "SR", "RSTOS0"),
    ("syn-then-ack-then-rst.pcap", "SaR", "RSTOS0"),
    ("syn-then-stuff-then-rst.pcap", "SaFR", "OTH"),
])
def test_rst_behaviour_matches_zeek(engine: str, trace: str, history: str, state: str) -> None:
    docs, _ = run(engine, TRACES / "tcp" / trace)
    assert [summary(d) for d in docs] == [(history, state)]


@pytest.mark.parametrize(("trace", "rows"), [
    ("one-sided-2745.pcap", [("247.180.123.139", 2745, "245.181.165.133", 1433, "^haf", 0, 0, 3, 140),
                             ("91.189.148.149", 2745, "245.181.165.131", 281, "^haf", 0, 0, 3, 140)]),
    ("ctu-64702-888.pcap", [("192.168.1.108", 64702, "185.33.86.224", 888, "^hAfdtFr", 8, 320, 8, 370)]),
])
def test_conn_size_flip_matches_zeek(engine: str, trace: str, rows: list[tuple]) -> None:
    docs, _ = run(engine, TRACES / "tcp" / trace)
    got = {(d["source"]["ip"], d["source"]["port"], d["destination"]["ip"], d["destination"]["port"],
            d["secops"]["conn"]["history"], d["source"]["packets"], d["source"]["bytes"],
            d["destination"]["packets"], d["destination"]["bytes"]) for d in docs}
    assert got == set(rows)


def test_bad_checksums_counted_like_zeek(engine: str) -> None:
    docs, _ = run(engine, TRACES / "tcp" / "syn-bad.pcap", verify_checksums=True)
    assert [(d["source"]["packets"], d["destination"]["packets"], *summary(d)) for d in docs] == [(0, 0, "C", "OTH")]
    docs, _ = run(engine, TRACES / "dns" / "dns-corrupt.pcap", verify_checksums=True)
    assert [(d["source"]["packets"], d["destination"]["packets"], *summary(d)) for d in docs] == [
        (0, 0, "Cc", "OTH")]


def test_complete_http_connection(engine: str) -> None:
    docs, _ = run(engine, TRACES / "http" / "get.pcap")
    (d,) = docs
    assert summary(d) == ("ShADadFf", "SF")
    assert (d["secops"]["conn"]["orig_bytes"], d["secops"]["conn"]["resp_bytes"]) == (136, 5007)
    assert (d["source"]["packets"], d["source"]["bytes"], d["destination"]["packets"], d["destination"]["bytes"]) == (
        7, 512, 7, 5379)
    assert abs(d["event"]["duration"] / 1e9 - 0.211484) < 1e-6
    assert d["network"]["community_id"] and d["_id"] == run(engine, TRACES / "http" / "get.pcap")[0][0]["_id"]


# -- synthetic packets (tuples as the decoder produces them) -------------------------------------------------
A, B = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])


def tcp(src, dst, sport, dport, flags, seq, ack, length=0):
    return (src, dst, 6, sport, dport, 40 + length, flags, seq, ack, length, False, 0, b"", "", length, None, False)


def udp(src, dst, sport, dport, length):
    return (src, dst, 17, sport, dport, 28 + length, 0, 0, 0, length, False, 0, b"", "", 8 + length, None, False)


def feed(engine: str, packets, max_flows=500_000):
    docs: list[dict] = []
    flows = open_flow_path(lambda f: docs.append(conn_doc(f)), engine=engine, max_flows=max_flows)
    for ts, p in packets:
        flows.add_decoded([p], ts)
    flows.finish()
    return docs, flows


def test_syn_only_and_reject(engine: str) -> None:
    docs, _ = feed(engine, [(0, tcp(A, B, 1234, 22, 0x02, 100, 0))])
    assert summary(docs[0]) == ("S", "S0")
    docs, _ = feed(engine, [(0, tcp(A, B, 1234, 22, 0x02, 100, 0)), (1000, tcp(B, A, 22, 1234, 0x14, 0, 101))])
    assert summary(docs[0]) == ("Sr", "REJ")


def test_syn_ack_first_flips(engine: str) -> None:
    docs, _ = feed(engine, [(0, tcp(B, A, 80, 5555, 0x12, 900, 101)), (10, tcp(A, B, 5555, 80, 0x10, 101, 901))])
    d = docs[0]
    assert d["source"]["ip"] == "198.18.0.1" and d["destination"]["port"] == 80
    assert d["secops"]["conn"]["history"].startswith("^h")


def test_retransmissions_scale_history(engine: str) -> None:
    pkts = [(0, tcp(A, B, 1, 80, 0x02, 0, 0)), (1, tcp(B, A, 80, 1, 0x12, 0, 1)), (2, tcp(A, B, 1, 80, 0x10, 1, 1))]
    pkts += [(3 + i, tcp(A, B, 1, 80, 0x18, 1, 1, 10)) for i in range(12)]  # one segment, 11 retransmits
    docs, _ = feed(engine, pkts)
    assert docs[0]["secops"]["conn"]["history"] == "ShADTT"  # letters at 1 and 10 repeats
    assert docs[0]["secops"]["conn"]["orig_bytes"] == 10


def test_udp_inactivity_splits_and_states(engine: str) -> None:
    docs, _ = feed(engine, [(0, udp(A, B, 5000, 53, 30)), (NS, udp(B, A, 53, 5000, 80)),
                    (120 * NS, udp(A, B, 5000, 53, 30))])
    assert [summary(d) for d in docs] == [("Dd", "SF"), ("D", "S0")]
    assert docs[0]["secops"]["conn"]["orig_bytes"] == 30 and docs[0]["secops"]["conn"]["resp_bytes"] == 80


def test_udp_reply_from_server_port_first_flips(engine: str) -> None:
    docs, _ = feed(engine, [(0, udp(B, A, 53, 5000, 80))])
    assert docs[0]["source"]["port"] == 5000 and summary(docs[0]) == ("^d", "SHR")


def test_bounded_table_evicts_and_counts(engine: str) -> None:
    pkts = [(i, udp(A, B, 10000 + i, 53, 10)) for i in range(5000)]
    docs, flows = feed(engine, pkts, max_flows=1000)
    assert flows.evicted == 4000
    assert len(docs) == 5000 and flows.open_flows == 0


def test_syn_on_closed_connection_starts_new_one(engine: str) -> None:
    pkts = [(0, tcp(A, B, 1, 80, 0x02, 0, 0)), (1, tcp(B, A, 80, 1, 0x12, 0, 1)), (2, tcp(A, B, 1, 80, 0x11, 1, 1)),
            (3, tcp(B, A, 80, 1, 0x11, 1, 2)), (4, tcp(A, B, 1, 80, 0x10, 2, 2)),
            (5, tcp(A, B, 1, 80, 0x02, 5000, 0))]
    docs, _ = feed(engine, pkts)
    assert [summary(d) for d in docs] == [("ShFfA", "SF"), ("S", "S0")]


def test_sequence_wraparound_sizes(engine: str) -> None:
    isn = 0xFFFFFF00
    pkts = [(0, tcp(A, B, 1, 80, 0x02, isn, 0)), (1, tcp(B, A, 80, 1, 0x12, 7, isn + 1))]
    seq = isn + 1
    for i in range(4):
        pkts.append((2 + i, tcp(A, B, 1, 80, 0x18, seq & 0xFFFFFFFF, 8, 100)))
        seq += 100
    pkts.append((9, tcp(B, A, 80, 1, 0x10, 8, seq & 0xFFFFFFFF)))
    docs, _ = feed(engine, pkts)
    assert docs[0]["secops"]["conn"]["orig_bytes"] == 400


# -- whole traces against Zeek's conn.log baselines, one per class of semantics fixed for parity ------------------
BASELINES = TESTDATA / "zeek" / "baselines"


def zeek_conn_rows(path) -> set[tuple]:
    """(orig, resp, proto, packets and IP bytes per side, state) of every row of a Zeek conn.log."""
    fields, rows = None, set()
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif fields and line and not line.startswith("#"):
            r = dict(zip(fields, line.split("\t")))
            rows.add((r["id.orig_h"], int(r["id.orig_p"]), r["id.resp_h"], int(r["id.resp_p"]), r["proto"],
                      int(r["orig_pkts"]), int(r["orig_ip_bytes"]), int(r["resp_pkts"]), int(r["resp_ip_bytes"]),
                      r["conn_state"]))
    return rows


def our_conn_rows(docs: list[dict]) -> set[tuple]:
    proto = {"ipv6-icmp": "icmp", "unknown_transport": "unknown_transport"}
    return {(d["source"]["ip"], d["source"]["port"], d["destination"]["ip"], d["destination"]["port"],
             proto.get(d["network"]["transport"], d["network"]["transport"]), d["source"]["packets"],
             d["source"]["bytes"], d["destination"]["packets"], d["destination"]["bytes"], d["secops"]["conn"]["state"])
            for d in docs}


@pytest.mark.parametrize(("trace", "baseline", "verify"), [
    ("tunnels/ayiya3.pcap", "core.tunnels.ayiya", True),  # AYIYA inner flows, flip by the AYIYA server port
    ("tunnels/gre-over-udp-4754.pcap", "core.tunnels.gre-over-udp", True),  # GRE-in-UDP (RFC 8086)
    ("pbb.pcap", "core.pbb", True),  # 802.1ah provider backbone bridging, port-less OSPF/VRRP flows
    ("radiotap.pcap", "core.radiotap", False),  # radiotap + 802.11 QoS data + LLC/SNAP
    ("dhcp/dhcp.pcap", "scripts.base.protocols.dhcp.dhcp-all-msg-types", True),  # 67 flips, broadcast does not
    ("pop3/pop3.pcap", "scripts.base.protocols.pop3.basic", True),  # a SYN after a REJ starts a new connection
], ids=["ayiya", "gre-in-udp", "pbb", "radiotap", "dhcp-flip-broadcast", "reuse-after-reject"])
def test_trace_conn_rows_equal_zeek(engine: str, trace: str, baseline: str, verify: bool) -> None:
    docs, _ = run(engine, TRACES / trace, verify_checksums=verify)
    assert our_conn_rows(docs) == zeek_conn_rows(BASELINES / baseline / "conn.log")


def test_syn_ack_first_then_rst_or_bad_packet_does_not_flip(engine: str) -> None:
    """A stealth scan's SYN-ACK answered by a RST keeps its roles; so does one whose next packet is damaged."""
    docs, _ = feed(engine, [(0, tcp(B, A, 5555, 6000, 0x12, 900, 101)), (10, tcp(A, B, 6000, 5555, 0x04, 101, 0))])
    assert (docs[0]["source"]["port"], summary(docs[0])) == (5555, ("Hr", "REJ"))
    bad = (*tcp(A, B, 6000, 5555, 0x10, 101, 901)[:-1], True)
    docs, _ = feed(engine, [(0, tcp(B, A, 5555, 6000, 0x12, 900, 101)), (10, bad),
                            (20, tcp(B, A, 5555, 6000, 0x10, 901, 101))])
    assert docs[0]["source"]["port"] == 5555 and docs[0]["secops"]["conn"]["history"].startswith("Hc")


def test_no_flip_towards_broadcast(engine: str) -> None:
    bcast = bytes([255, 255, 255, 255])
    docs, _ = feed(engine, [(0, udp(B, bcast, 67, 68, 300))])
    assert (docs[0]["source"]["ip"], docs[0]["source"]["port"], summary(docs[0])) == ("198.18.0.2", 67, ("D", "S0"))


def test_new_isn_on_an_open_connection_starts_a_new_one(engine: str) -> None:
    """Zeek 8.2+ IsReuse: a SYN with another initial sequence number is a new connection even before a close;
    a retransmitted SYN (same ISN) is not, and any SYN after a RST is."""
    docs, _ = feed(engine, [(0, tcp(A, B, 1, 80, 0x02, 100, 0)), (1, tcp(A, B, 1, 80, 0x02, 100, 0)),
                            (2, tcp(A, B, 1, 80, 0x02, 7000, 0))])
    assert [summary(d) for d in docs] == [("S", "S0"), ("S", "S0")]
    assert docs[0]["source"]["packets"] == 2
    docs, _ = feed(engine, [(0, tcp(A, B, 1, 80, 0x02, 100, 0)), (1, tcp(B, A, 80, 1, 0x14, 0, 101)),
                            (2, tcp(A, B, 1, 80, 0x02, 100, 0))])
    assert [summary(d) for d in docs] == [("Sr", "REJ"), ("S", "S0")]
