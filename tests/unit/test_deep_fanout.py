"""The deep path split across analyzer processes by host pair (``collectors.protocols.deep_fanout``): which child
reads a frame, and that the children together give the documents one process gives."""

from __future__ import annotations

import collections
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.gtp import GTP_U_Header
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q
from scapy.layers.vxlan import VXLAN

from collectors.flowpath import open_flow_path
from collectors.protocols import deep_fanout, deep_process
from collectors.protocols.deep_fanout import HostPairRouter
from collectors.protocols.detect import SERVICES, probe
from collectors.selection import packet_block
from tests.support.frames import eth
from tests.unit.test_deep_process import CAPTURES, ingest
from tests.unit.test_flowcore import CAPTURES as CAPTURES_ALL
from tests.unit.test_flowcore import SEEDS, _pcap, mutate

ETH = 1


def blocks(frames: list[bytes]) -> bytes:
    return b"".join(packet_block(0, i * 1000, f, len(f)) for i, f in enumerate(frames))


def shares_of(frames: list[bytes], shares: int = 2, linktype: int = ETH) -> list[int]:
    """The child each frame goes to, fed one frame at a time to one router (its decoder keeps fragment state)."""
    router = HostPairRouter(shares)
    out = []
    for frame in frames:
        parts = router.split(blocks([frame]), (linktype,))
        (target,) = [i for i, (_, n) in enumerate(parts) if n]
        out.append(target)
    return out


def tcp(a: str, b: str, sport: int = 40000, dport: int = 80, *, v6: bool = False) -> bytes:
    ip = IPv6(src=a, dst=b) if v6 else IP(src=a, dst=b)
    return bytes(eth() / ip / TCP(sport=sport, dport=dport) / b"x")


def test_both_directions_every_port_and_vlan_tags_of_a_pair_go_to_one_child() -> None:
    a, b = "198.18.0.1", "198.18.0.2"
    frames = [tcp(a, b), tcp(b, a, 80, 40000), tcp(a, b, 1234, 445),
              bytes(eth() / Dot1Q(vlan=7) / Dot1Q(vlan=9) / IP(src=b, dst=a) / UDP(sport=53, dport=5353) / b"q")]
    assert len(set(shares_of(frames))) == 1


def test_pairs_spread_over_the_children() -> None:
    frames = [tcp(f"198.18.{i // 250}.{i % 250 + 1}", "198.19.0.1") for i in range(400)]
    counts = collections.Counter(shares_of(frames, shares=2))
    assert min(counts.values()) > 150, counts
    v6 = [tcp(f"2001:db8::{i:x}", "2001:db8:1::1", v6=True) for i in range(1, 201)]
    assert min(collections.Counter(shares_of(v6)).values()) > 70


def test_a_tunnel_goes_by_the_flow_inside_it() -> None:
    """A VXLAN packet goes where the inner pair's plain frames go (the analyzers see the inner flow), whatever the
    outer pair."""
    inner = IP(src="198.18.5.5", dst="198.18.6.6") / TCP(sport=40000, dport=80) / b"x"
    plain = bytes(eth() / inner)
    for outer in range(1, 30):
        tunneled = bytes(eth() / IP(src=f"198.19.1.{outer}", dst="198.19.2.1") / UDP(sport=50000, dport=4789)
                         / VXLAN(vni=1) / eth() / inner)
        assert shares_of([plain]) == shares_of([tunneled])


def test_every_fragment_of_a_datagram_meets_in_one_child() -> None:
    """Fragments go by their own pair (the first one and the later ones alike), so one child's decoder puts the
    datagram together."""
    for i in range(1, 30):
        datagram = IP(src=f"198.18.9.{i}", dst="198.18.10.1") / UDP(sport=4789 if i % 2 else 5000, dport=4789) / (
            b"v" * 8 + bytes(eth() / IP(src="198.19.0.1", dst=f"198.19.0.{i + 1}") / TCP() / (b"p" * 3000)))
        pieces = [bytes(eth() / f) for f in fragment(datagram, fragsize=1000)]
        assert len(pieces) > 2 and len(set(shares_of(pieces))) == 1


def test_a_tunnelled_flow_whose_datagrams_fragment_stays_in_one_child() -> None:
    """A tunnelled flow's small packets and its large, fragmented ones go to one child, whatever the outer pair, the
    number of children or the order of the fragments: the first fragment goes by the flow inside it (read as if the
    datagram were whole), the others with it. (They went by the outer pair: a GTP-U download's responses and its
    requests met in different children.)"""
    inner = IP(src="198.18.5.5", dst="198.18.6.6")
    for outer in range(1, 16):
        def tunnelled(payload: object, out: int = outer) -> IP:
            return IP(src=f"198.19.1.{out}", dst="198.19.2.1", id=out * 7) / UDP(sport=2152, dport=2152) / GTP_U_Header(
                teid=7) / payload

        small = bytes(eth() / tunnelled(inner / TCP(sport=40000, dport=80) / b"GET / HTTP/1.1\r\n\r\n"))
        large = [bytes(eth() / f) for f in fragment(tunnelled(inner / TCP(sport=80, dport=40000) / (b"b" * 2800)),
                                                    fragsize=1200)]
        assert len(large) == 3
        for shares in (2, 3, 5):
            in_order = shares_of([small, *large], shares=shares)
            assert len(set(in_order)) == 1, (outer, shares, in_order)
            assert len(set(shares_of(large[::-1], shares=shares))) == 1  # out of order: the datagram still meets


def test_dhcp_and_unread_link_types_go_to_the_first_child() -> None:
    """DHCP moves between addresses (0.0.0.0 to broadcast, then the lease): its exchange stays together."""
    for i in range(1, 20):
        discover = bytes(eth() / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) / b"d")
        ack = bytes(eth() / IP(src=f"198.18.0.{i}", dst=f"198.18.1.{i}") / UDP(sport=67, dport=68) / b"a")
        assert shares_of([discover, ack]) == [0, 0]
    assert shares_of([b"\x01" * 60], linktype=147) == [0]  # a user link type: not read here, one place


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=120), max_size=20), st.integers(1, 4))
def test_split_keeps_every_block_once_in_order(frames: list[bytes], shares: int) -> None:
    """Random bytes as frames: nothing raises, every block lands in exactly one child, each child's blocks in
    capture order."""
    data = blocks(frames)
    parts = HostPairRouter(shares).split(data, (ETH,))
    assert sum(n for _, n in parts) == len(frames)
    assert sorted(b for part, _ in parts for b in _blocks(part)) == sorted(_blocks(data))
    for part, _ in parts:
        times = [struct.unpack_from("<II", b, 12) for b in _blocks(part)]
        assert times == sorted(times)


def _blocks(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        length = struct.unpack_from("<I", data, pos + 4)[0]
        out.append(data[pos:pos + length])
        pos += length
    return out


def test_children_together_give_the_documents_of_one_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Shared captures between several pairs of hosts through two children and through one: the same documents,
    both children had frames to read, and the main process did not walk the selection (the core routed it)."""
    merged = tmp_path / "several-pairs.pcapng"
    subprocess.run(["mergecap", "-w", str(merged), *map(str, CAPTURES)], check=True)
    paths = [merged]
    started: list[str] = []
    start = deep_process.ProcessRun.__init__

    def counted(self, name: str, *args) -> None:
        started.append(name)
        start(self, name, *args)

    monkeypatch.setattr(deep_process.ProcessRun, "__init__", counted)
    splits: list[int] = []
    split = HostPairRouter.split
    monkeypatch.setattr(HostPairRouter, "split", lambda self, *a: splits.append(1) or split(self, *a))
    two, _ = ingest(paths, own_process=True)
    children = len(started)
    assert not splits  # the native core routed the selection as it selected it
    monkeypatch.setattr(deep_fanout, "DEEP_PROCESSES", 1)
    one, _ = ingest(paths, own_process=True)
    assert sorted(two, key=lambda d: d["_id"]) == sorted(one, key=lambda d: d["_id"])
    assert len({d["event"]["dataset"] for d in two}) >= 4
    assert children == 2


def native_selection(paths: list[Path], shares: int, routed: bool) -> tuple[list[tuple[bytes, int]], tuple[int, ...]]:
    """The native core's selection of ``paths``, per share: split by ``HostPairRouter.split`` after each block
    (``routed`` False: the reference), or routed by the core as it selects (the share callback being a router of
    its own, as in the pipeline). Frame counts summed, blocks joined per share."""
    fp = open_flow_path(lambda _r: None, engine="native", probe=probe, services=SERVICES, collect=True, max_flows=50)
    router = HostPairRouter(shares)
    if routed:
        fp.route(shares, router.share)
    parts: list[list[bytes]] = [[] for _ in range(shares)]
    counts = [0] * shares

    def take() -> None:
        taken = fp.take_shares() if routed else router.split(fp.take_selected(), fp.linktypes())
        for i, (part, n) in enumerate(taken):
            parts[i].append(part)
            counts[i] += n

    for path in paths:
        fp.process_file(path, lambda _m: None, None, take)
    fp.finish()
    take()
    return [(b"".join(p), n) for p, n in zip(parts, counts, strict=True)], fp.linktypes()


def assert_routed_like_split(paths: list[Path], shares: int = 2) -> list[tuple[bytes, int]]:
    reference, links = native_selection(paths, shares, routed=False)
    routed, routed_links = native_selection(paths, shares, routed=True)
    assert routed_links == links
    assert [n for _, n in routed] == [n for _, n in reference]
    assert routed == reference
    return routed


def test_the_core_routes_every_shared_capture_as_the_router_splits_it() -> None:
    """Every shared capture (tunnels, fragments, VLANs, IPv6, DHCP, other link types), then all of them in one
    core with a 50-flow table: the core's shares are byte for byte the router's split of its one stream."""
    spread = collections.Counter()
    for capture in CAPTURES_ALL:
        for i, (_, n) in enumerate(assert_routed_like_split([capture])):
            spread[i] += n
    assert len(spread) == 2 and min(spread.values()) > sum(spread.values()) / 4, spread  # both shares do work
    routed = assert_routed_like_split(CAPTURES_ALL, shares=3)
    assert all(n > 100 for _, n in routed)


def test_one_share_is_the_selection_stream() -> None:
    """Routing to one share (the default) gives the stream ``take_selected`` gives, with its frame count."""
    capture = CAPTURES_ALL[len(CAPTURES_ALL) // 2]
    [(one, n)], _ = native_selection([capture], 1, routed=True)
    fp = open_flow_path(lambda _r: None, engine="native", probe=probe, services=SERVICES, collect=True, max_flows=50)
    fp.process_file(capture, lambda _m: None, None)
    fp.finish()
    assert one == fp.take_selected() and n == fp.selected


def test_routing_refuses_bad_shares_and_answers() -> None:
    fp = open_flow_path(lambda _r: None, engine="native", probe=probe, services=SERVICES, collect=True)
    for shares, share in ((0, None), (2, None), (2, "not callable")):
        with pytest.raises(ValueError):
            fp.route(shares, share)  # type: ignore[arg-type]
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(28)  # not read by the core: the callback decides
    fp.route(2, lambda *_a: 2)
    with pytest.raises(ValueError):
        fp.core.feed(ETH, arp, 0, len(arp), len(arp), 0)
    with pytest.raises(RuntimeError):
        fp.take_selected()
    fp.route(2, lambda *_a: 1)
    fp.core.feed(ETH, arp, 0, len(arp), len(arp), 1)
    with pytest.raises(ValueError):  # frames still to take
        fp.route(1)
    assert [n for _, n in fp.take_shares()] == [0, 1]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.binary(min_size=0, max_size=120),
                          st.tuples(st.integers(0, len(SEEDS) - 1), st.integers(0, 1500), st.integers(0, 255),
                                    st.integers(-1, 1))), min_size=1, max_size=40),
       st.integers(2, 4), st.sampled_from([1, 101, 113, 0]))
def test_the_core_routes_random_frames_as_the_router_splits_them(tmp_path_factory: pytest.TempPathFactory,
                                                                  frames: list, shares: int, linktype: int) -> None:
    """Random bytes and real frames (tunnels, fragments, VLANs) with a byte changed, under several link types: the
    core's shares equal the router's split."""
    raw = [f if isinstance(f, bytes) else bytes(mutate(SEEDS[f[0]], f[1], f[2], f[3])) for f in frames]
    path = tmp_path_factory.mktemp("route") / "f.pcap"
    path.write_bytes(_pcap(raw, linktype))
    assert_routed_like_split([path], shares)
