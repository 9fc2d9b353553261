"""Community ID v1 against the spec's per-packet vectors, the communityid package, and Zeek's conn baselines."""

from __future__ import annotations

import base64
import ipaddress
import json
import re

import communityid
import pytest

from collectors.community_id import community_id
from collectors.conn import conn_doc
from collectors.decode import DPORT, DST, ONEWAY, PROTO, SPORT, SRC, Decoder
from collectors.flowpath import open_flow_path
from collectors.pcapio import read_capture
from tests.support import TESTDATA

SPEC = TESTDATA / "community-id-spec"
ZEEK = TESTDATA / "zeek"


def _spec_packets():
    dec = Decoder()
    out = []
    for ts, lt, buf, off, cap, _ in read_capture(SPEC / "pcaps" / "combined.pcap.gz"):
        for p in dec.decode(lt, buf, off, cap, ts):
            out.append(p)
    return out


@pytest.mark.parametrize(("baseline", "seed", "b64"), [("baseline_deflt.json", 0, True),
                                                       ("baseline_seed1.json", 1, True),
                                                       ("baseline_nob64.json", 0, False)])
def test_every_spec_packet(baseline: str, seed: int, b64: bool) -> None:
    """The baselines list each distinct (tuple, direction) once; every packet must hash to its entry."""
    want = json.loads((SPEC / "baseline" / baseline).read_text())
    table = {(w["proto"], w["saddr"], w["daddr"], w["sport"], w["dport"]): w["communityid"] for w in want}
    covered = set()
    pkts = _spec_packets()
    assert len(pkts) > len(want)
    for p in pkts:
        src, dst = str(ipaddress.ip_address(p[SRC])), str(ipaddress.ip_address(p[DST]))
        ports = (p[SPORT], p[DPORT]) if p[PROTO] in (1, 6, 17, 58, 132) else (None, None)
        key = (p[PROTO], src, dst, *ports)
        assert key in table, key
        got = community_id(p[PROTO], p[SRC], p[DST], p[SPORT], p[DPORT], one_way=p[ONEWAY], seed=seed)
        if not b64:
            got = "1:" + base64.b64decode(got[2:]).hex()
        assert got == table[key], key
        covered.add(key)
    assert covered == set(table)


def test_matches_reference_package() -> None:
    for p in _spec_packets():
        proto = p[PROTO]
        src, dst = str(ipaddress.ip_address(p[SRC])), str(ipaddress.ip_address(p[DST]))
        if proto in (6, 17, 132):
            tpl = communityid.FlowTuple(proto, src, dst, p[SPORT], p[DPORT])
        elif proto in (1, 58):
            # the package maps (type, code) itself; our SPORT is the type, DPORT the counterpart or the code
            continue
        else:
            tpl = communityid.FlowTuple.make_ip(src, dst, proto)
        assert communityid.CommunityID().calc(tpl) == community_id(proto, p[SRC], p[DST], p[SPORT], p[DPORT])


@pytest.mark.parametrize("engine", ["native", "python"])
@pytest.mark.parametrize("name", ["icmp", "icmp6", "ipv6", "tcp", "udp", "sctp"])
def test_conn_documents_match_zeek(name: str, engine: str) -> None:
    """Zeek's per-connection community_id_v1 for its communityid traces (the C core hashes its own)."""
    out = (ZEEK / "baselines" / "bifs.community_id.run-pcaps" / f"{name}.pcap.out").read_text()
    want = {}
    for line in out.splitlines():
        m = re.match(r"\[orig_h=(\S+), orig_p=(\d+)/\w+, resp_h=(\S+), resp_p=(\d+)/\w+, proto=(\d+).*\], (\S+)", line)
        if m:
            want[(m[1], int(m[2]), m[3], int(m[4]))] = m[6]
    docs: list[dict] = []
    flows = open_flow_path(lambda f: docs.append(conn_doc(f)), engine=engine)
    flows.process_file(ZEEK / "traces" / "communityid" / f"{name}.pcap", on_warning=pytest.fail, on_packets=None)
    flows.finish()
    got = {(d["source"]["ip"], d["source"]["port"], d["destination"]["ip"], d["destination"]["port"]):
           d["network"]["community_id"] for d in docs}
    assert want
    assert got == want
