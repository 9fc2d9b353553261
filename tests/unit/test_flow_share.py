"""The sensor's flow-hash shares, compiled and run by the real libpcap (the compiler dumpcap uses): every
packet lands in exactly one share, both directions and every fragment of a flow in the same one."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from collectors.decode import DPORT, DST, PROTO, SPORT, SRC, Decoder
from collectors.flow_share import share_filter
from collectors.pcapio import read_capture
from tests.support import TESTDATA

ZEEK = TESTDATA / "zeek" / "traces"
TRACES = [ZEEK / name for name in ("ipv6-fragmented-dns.pcap", "mpls-in-vlan.pcap", "tcp-http-with-padding.pcap",
                                   "dns53.pcap", "modbus/modbus-and-non-modbus-p502.pcap", "pppoe.pcap")] + \
    sorted(ZEEK.glob("tunnels/*.pcap")) + sorted(ZEEK.glob("http/*.pcap")) + sorted(ZEEK.glob("tls/*.pcap"))


class BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


class PktHdr(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("usec", ctypes.c_long), ("caplen", ctypes.c_uint32),
                ("len", ctypes.c_uint32)]


class Libpcap:
    def __init__(self) -> None:
        name = ctypes.util.find_library("pcap")
        if not name:
            pytest.fail("libpcap is not installed (dumpcap/tshark bring it; .ci/setup installs them)")
        self.lib = ctypes.CDLL(name)
        self.lib.pcap_open_dead.restype = ctypes.c_void_p
        self.lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(BpfProgram), ctypes.c_char_p,
                                          ctypes.c_int, ctypes.c_uint32]
        self.lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        self.lib.pcap_geterr.restype = ctypes.c_char_p
        self.lib.pcap_offline_filter.argtypes = [ctypes.POINTER(BpfProgram), ctypes.POINTER(PktHdr), ctypes.c_char_p]

    def matcher(self, linktype: int, expression: str):
        handle = self.lib.pcap_open_dead(linktype, 262144)
        prog = BpfProgram()
        if self.lib.pcap_compile(handle, ctypes.byref(prog), expression.encode(), 1, 0xFFFFFFFF) != 0:
            raise AssertionError(self.lib.pcap_geterr(handle).decode())

        def match(frame: bytes) -> bool:
            hdr = PktHdr(0, 0, len(frame), len(frame))
            return bool(self.lib.pcap_offline_filter(ctypes.byref(prog), ctypes.byref(hdr), frame))
        return match


def packets(paths: list[Path]):
    for path in paths:
        for _ts, linktype, buf, off, caplen, _ in read_capture(path):
            yield path, linktype, bytes(buf[off:off + caplen])


@pytest.mark.parametrize("shares", [2, 3, 4])
def test_shares_partition_traffic_and_keep_flows_whole(shares: int) -> None:
    pcap = Libpcap()
    filters: dict[int, list] = {}
    per_share: Counter[int] = Counter()
    flow_share: dict[frozenset, set[int]] = defaultdict(set)
    dec = Decoder()
    total = 0
    for path, linktype, frame in packets(TRACES):
        if linktype not in filters:
            dlt = {101: 12}.get(linktype, linktype)  # LINKTYPE_RAW is DLT_RAW to libpcap
            filters[linktype] = [pcap.matcher(dlt, share_filter(i, shares, vlan=dlt == 1)) for i in range(shares)]
        hits = [i for i, match in enumerate(filters[linktype]) if match(frame)]
        assert len(hits) == 1, f"a packet matched shares {hits}"
        per_share[hits[0]] += 1
        total += 1
        for p in dec.decode(linktype, frame, 0, len(frame), 0):
            if p[PROTO] in (6, 17):
                flow_share[path, p[PROTO], frozenset(((p[SRC], p[SPORT]), (p[DST], p[DPORT])))].add(hits[0])
    assert total > 1500
    split = {k: v for k, v in flow_share.items() if len(v) > 1}
    assert not split, f"{len(split)} flows were split across shares: {list(split)[:3]}"


def test_shares_are_balanced_over_many_hosts() -> None:
    pcap = Libpcap()
    matchers = [pcap.matcher(1, share_filter(i, 2)) for i in range(2)]
    seen = Counter()
    for i in range(400):
        src, dst = bytes([198, 19, i // 256, i % 256]), bytes([198, 19, 250, 1 + i % 200])
        ip = bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]) + src + dst + bytes(8)
        frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip
        back = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip[:12] + dst + src + bytes(8)
        hit = [m(frame) for m in matchers]
        assert hit.count(True) == 1 and [m(back) for m in matchers] == hit
        seen[hit.index(True)] += 1
    assert min(seen.values()) >= 120, seen


def test_user_filter_narrows_every_share() -> None:
    assert share_filter(0, 1, "tcp") == "tcp"
    assert share_filter(0, 1) == ""
    assert share_filter(1, 2, "port 80").startswith("(port 80) and (not (")
    with pytest.raises(ValueError):
        share_filter(2, 2)
