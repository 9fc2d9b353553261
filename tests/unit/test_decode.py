"""The hand decoder against frames built with scapy (an independent encoder) for every encapsulation."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.all import (
    GRE,
    ICMP,
    IP,
    LLC,
    SNAP,
    TCP,
    UDP,
    VXLAN,
    Dot1AD,
    Dot1Q,
    Ether,
    IPv6,
    IPv6ExtHdrHopByHop,
    PPPoE,
    fragment,
)
from scapy.contrib.gtp import GTP_U_Header
from scapy.contrib.mpls import MPLS
from scapy.layers.inet6 import ICMPv6EchoRequest
from scapy.layers.l2 import CookedLinux
from scapy.layers.ppp import PPP

from collectors.decode import (
    DPORT,
    DST,
    FLAGS,
    IPLEN,
    MAC,
    ONEWAY,
    PLEN,
    PROTO,
    SEQ,
    SPORT,
    SRC,
    TUNNEL,
    Decoder,
)
from tests.support.frames import eth

INNER = IP(src="198.18.0.1", dst="198.18.0.2") / TCP(sport=40000, dport=80, flags="PA", seq=1000) / (b"x" * 33)


def decode(frame, linktype: int = 1) -> list:
    raw = bytes(frame)
    return Decoder().decode(linktype, raw, 0, len(raw))


def addr(b: bytes) -> str:
    return str(ipaddress.ip_address(b))


def check_inner(p) -> None:
    assert (addr(p[SRC]), addr(p[DST]), p[PROTO], p[SPORT], p[DPORT]) == ("198.18.0.1", "198.18.0.2", 6, 40000, 80)
    assert p[IPLEN] == 20 + 20 + 33 and p[PLEN] == 33 and p[SEQ] == 1000 and p[FLAGS] == 0x18


@pytest.mark.parametrize("frame", [
    eth() / INNER,
    eth() / Dot1Q(vlan=5) / INNER,
    eth() / Dot1AD(vlan=7) / Dot1Q(vlan=5) / INNER,
    eth() / MPLS(label=16, s=0) / MPLS(label=17, s=1) / INNER,
    eth() / Dot1Q(vlan=3) / MPLS(label=16, s=1) / INNER,
    eth() / PPPoE(sessionid=1) / PPP(proto=0x0021) / INNER,
    eth() / Dot1AD(vlan=2) / Dot1Q(vlan=3) / PPPoE(sessionid=1) / PPP(proto=0x0021) / INNER,
    Ether(type=None) / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=0x0800) / INNER,
], ids=["ether", "vlan", "qinq", "mpls", "mpls-in-vlan", "pppoe", "pppoe-qinq", "llc-snap"])
def test_link_encapsulations(frame) -> None:
    pkts = decode(frame)
    assert len(pkts) == 1
    check_inner(pkts[0])
    assert pkts[0][TUNNEL] == ""


def test_linux_sll_raw_and_null() -> None:
    check_inner(decode(CookedLinux(proto=0x0800) / INNER, 113)[0])
    check_inner(decode(INNER, 101)[0])
    check_inner(decode(b"\x02\x00\x00\x00" + bytes(INNER), 0)[0])


@pytest.mark.parametrize(("outer", "tunnel"), [
    (IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5555, dport=4789) / VXLAN(vni=42) / eth() / INNER, None),
    (IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=9) / INNER, "gtpv1"),
    (IP(src="10.0.0.1", dst="10.0.0.2") / GRE(proto=0x0800) / INNER, "gre"),
    (IP(src="10.0.0.1", dst="10.0.0.2") / GRE(proto=0x6558) / eth() / INNER, None),
    (IP(src="10.0.0.1", dst="10.0.0.2") / INNER, "ip-in-ip"),
], ids=["vxlan", "gtp-u", "gre", "gre-ether", "ipip"])
def test_tunnels_yield_inner_flows(outer, tunnel) -> None:
    pkts = decode(eth() / outer)
    inner = pkts[-1]
    check_inner(inner)
    if tunnel:
        assert inner[TUNNEL] == tunnel
    if UDP in outer:  # UDP tunnels also count the outer flow (Zeek logs it with the tunnel service)
        assert len(pkts) == 2 and pkts[0][PROTO] == 17


def test_teredo() -> None:
    inner6 = IPv6(src="2001::1", dst="2001::2") / UDP(sport=1, dport=2) / b"hello"
    pkts = decode(eth() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=3544, dport=40000) / inner6)
    assert len(pkts) == 2
    assert addr(pkts[1][SRC]) == "2001::1" and pkts[1][TUNNEL] == "teredo"


def test_not_gtp_on_gtp_port_stays_udp() -> None:
    pkts = decode(eth() / IP() / UDP(sport=2152, dport=53) / (b"\x12\x34\x01\x00\x00\x01" + b"\0" * 20))
    assert len(pkts) == 1 and pkts[0][DPORT] == 53


def test_ipv4_fragments_reassembled_in_any_order() -> None:
    big = IP(src="198.18.0.1", dst="198.18.0.2", id=77) / UDP(sport=1000, dport=2000) / (b"A" * 3000)
    frags = fragment(big, fragsize=1000)
    assert len(frags) == 4
    dec = Decoder()
    out = []
    for fr in [frags[3], frags[0], frags[2], frags[1]]:
        raw = bytes(eth() / fr)
        out += dec.decode(1, raw, 0, len(raw))
    assert len(out) == 1
    p = out[0]
    assert p[PROTO] == 17 and p[SPORT] == 1000 and p[PLEN] == 3000 and p[IPLEN] == 20 + 8 + 3000


def test_ipv6_extension_headers_and_icmp6() -> None:
    p = decode(eth() / IPv6(src="fe80::1", dst="fe80::2") / IPv6ExtHdrHopByHop() / ICMPv6EchoRequest() / b"12")[0]
    assert p[PROTO] == 58 and (p[SPORT], p[DPORT]) == (128, 129) and not p[ONEWAY]
    assert p[IPLEN] == 40 + 8 + 8 + 2


def test_icmp_ports_follow_zeek() -> None:
    echo = decode(eth() / IP() / ICMP(type=8))[0]
    assert (echo[SPORT], echo[DPORT], echo[ONEWAY]) == (8, 0, False)
    unreach = decode(eth() / IP() / ICMP(type=3, code=3))[0]
    assert (unreach[SPORT], unreach[DPORT], unreach[ONEWAY]) == (3, 3, True)


def test_checksum_verification_flags_bad_packets() -> None:
    good = eth() / IP(src="198.18.0.1", dst="198.18.0.2") / TCP(sport=1, dport=2) / b"abc"
    raw = bytearray(bytes(good))
    dec = Decoder(verify_checksums=True)
    assert dec.decode(1, bytes(raw), 0, len(raw))[0][-1] is False
    raw[-1] ^= 0xFF
    assert dec.decode(1, bytes(raw), 0, len(raw))[0][-1] is True
    assert dec.bad_checksums == 1


def test_non_ip_is_not_an_error() -> None:
    dec = Decoder()
    raw = bytes(Ether(type=0x0806) / (b"\0" * 28))
    assert dec.decode(1, raw, 0, len(raw)) == []
    assert not dec.errors


def test_arp_bindings_are_remembered_once() -> None:
    from scapy.all import ARP

    dec = Decoder()
    for _ in range(3):
        raw = bytes(Ether(src="02:00:00:00:00:07") / ARP(op=2, hwsrc="02:00:00:00:00:07", psrc="198.18.0.7"))
        assert dec.decode(1, raw, 0, len(raw)) == []
    assert [(addr(ip), mac.hex(":")) for _, ip, mac in dec.arp_new] == [("198.18.0.7", "02:00:00:00:00:07")]


def test_ieee802_11_data_frames_behind_radiotap_and_bare() -> None:
    """Data and QoS-data frames carry LLC/SNAP to the inner packet; the source MAC follows the DS bits (4-address
    frames use the fourth); management frames and A-MSDU aggregates carry no flow (Zeek's IEEE802_11 analyzer)."""
    from scapy.layers.dot11 import Dot11, Dot11QoS, RadioTap

    snap = LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=0x0800) / INNER
    plain = Dot11(type=2, subtype=0, FCfield=0x01, addr1="02:00:00:00:00:0a", addr2="02:00:00:00:00:0b",
                  addr3="02:00:00:00:00:0c") / snap
    (p,) = decode(RadioTap() / plain, 127)
    check_inner(p)
    assert p[MAC] == bytes.fromhex("02000000000b")
    wds = Dot11(type=2, subtype=8, FCfield=0x03, addr1="02:00:00:00:00:0a", addr2="02:00:00:00:00:0b",
                addr3="02:00:00:00:00:0c", addr4="02:00:00:00:00:0d") / Dot11QoS() / snap
    (p,) = decode(wds, 105)
    check_inner(p)
    assert p[MAC] == bytes.fromhex("02000000000d")
    htc = bytes(Dot11(type=2, subtype=8, FCfield=0x81, addr2="02:00:00:00:00:0b") / Dot11QoS()) + b"\0" * 4
    check_inner(decode(htc + bytes(snap), 105)[0])  # order bit: a 4-byte HT control field after QoS control
    assert decode(Dot11(type=2, subtype=8) / Dot11QoS(A_MSDU_Present=1) / snap, 105) == []
    assert decode(Dot11(type=0, subtype=8) / snap, 105) == []


def test_pbb_ayiya_and_gre_in_udp() -> None:
    """802.1ah backbone frames (I-TAG then the customer frame, whose MAC counts), AYIYA forward messages and
    GRE in UDP port 4754 reach the inner packet."""
    customer = Ether(src="02:00:00:00:00:0e", dst="02:00:00:00:00:0f") / INNER
    pbb = bytes(Ether(type=0x88E7)) + b"\x00\x00\x00\x2a" + bytes(customer)
    (p,) = decode(pbb)
    check_inner(p)
    assert p[MAC] == bytes.fromhex("02000000000e")
    ayiya = bytes([0x41, 0x52, 0x11, 4]) + b"\0" * 4 + b"I" * 16 + b"S" * 20  # 16-byte id, 20-byte signature
    outer = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=40000, dport=5072) / (ayiya + bytes(INNER))
    pkts = decode(eth() / outer)
    assert len(pkts) == 2 and pkts[1][TUNNEL] == "ayiya"
    check_inner(pkts[1])
    not_forward = IP() / UDP(sport=40000, dport=5072) / (bytes([0x41, 0x52, 0x12, 4]) + b"\0" * 40 + bytes(INNER))
    assert len(decode(eth() / not_forward)) == 1
    gre = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=40000, dport=4754) / GRE(proto=0x0800) / INNER
    pkts = decode(eth() / gre)
    assert len(pkts) == 2 and pkts[1][TUNNEL] == "gre"
    check_inner(pkts[1])
