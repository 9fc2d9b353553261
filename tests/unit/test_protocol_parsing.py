"""Pure logic of the protocol modules: fingerprints, field alignment, names, orientation."""

from __future__ import annotations

import base64

from collectors.protocols import tshark_command
from collectors.protocols.base import flow_by_server_port
from collectors.protocols.dns import _answers, _records, label_stats, qtype_name
from collectors.protocols.documents import flow_of
from collectors.protocols.http import basic_user, body_length
from collectors.protocols.ja4 import is_grease, ja4
from collectors.protocols.modbus import function_name
from collectors.protocols.ssh import protocol_version
from collectors.protocols.tls import signature_algorithms
from collectors.protocols.tshark import Packet, ek_key


def packet(protocols: str, **fields: list[str]) -> Packet:
    layers = {ek_key(k.replace("__", ".")): v for k, v in fields.items()}
    return Packet(layers, protocols.split(":"))


def hexes(text: str) -> list[int]:
    return [int(x, 16) for x in text.split(",")]


def test_ja4_matches_a_published_chrome_fingerprint():
    # ja4 / ja4_ro pair published by a TLS fingerprinting service for Chrome 143 (GREASE added back in)
    ciphers = hexes("1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035")
    exts = hexes("002d,0033,0010,fe0d,0017,44cd,0000,000b,000a,002b,ff01,0023,0012,0005,000d,001b")
    sigs = hexes("0403,0804,0401,0503,0805,0501,0806,0601")
    got = ja4(quic=False, legacy_version=0x0303, supported_versions=[0x3A3A, 0x0304, 0x0303],
              ciphers=[0x5A5A, *ciphers], extensions=[0xEAEA, *exts], signature_algorithms=sigs, alpn_first="h2")
    assert got == "t13d1516h2_8daaf6152771_d8a2da3f94cd"


def test_ja4_without_sni_alpn_or_extensions():
    got = ja4(quic=True, legacy_version=0x0303, supported_versions=[], ciphers=[0x1301], extensions=[],
              signature_algorithms=[], alpn_first=None)
    assert got.startswith("q12i010000_") and got.endswith("_000000000000")
    assert is_grease(0x0A0A) and is_grease(0xFAFA) and not is_grease(0x0A0B)


def test_signature_algorithms_only_from_extension_13():
    pkt = packet("eth:ip:tcp:tls", tls__handshake__extension__type=["0", "13", "50"],
                 tls__handshake__sig_hash_alg_len=["4", "2"],
                 tls__handshake__sig_hash_alg=["0x0403", "0x0804", "0x0601"])
    assert signature_algorithms(pkt) == [0x0403, 0x0804]


def test_dns_answers_align_per_type_and_skip_authority():
    pkt = packet(
        "eth:ip:udp:dns", dns__count__answers=["3"], dns__resp__type=["5", "1", "16", "2"],
        dns__resp__ttl=["60", "30", "10", "900"], dns__resp__name=["a.example", "b.example", "b.example", "example"],
        dns__resp__len=["11", "4", "12", "10"], dns__cname=["b.example"], dns__a=["192.0.2.7"],
        dns__txt=["hello", "world"], dns__txt__length=["5", "5"], dns__ns=["ns.example"])
    got = [(a["type"], a.get("data"), a["ttl"]) for a in _answers(_records(pkt))]
    assert got == [("CNAME", "b.example", 60), ("A", "192.0.2.7", 30), ("TXT", "TXT 5 hello TXT 5 world", 10)]


def test_dns_names_and_label_statistics():
    assert qtype_name(10) == "NULL" and qtype_name(255) == "*" and qtype_name(65000) == "query-65000"
    longest, entropy = label_stats("aGVsbG8gd29ybGQgdGhpcyBpcyBhIHR1bm5lbA.t.pirate.sea")
    assert longest == 38 and entropy > 4
    assert label_stats("www.example.com") == (7, 0.0)


def test_basic_auth_keeps_user_drops_password():
    header = "Basic " + base64.b64encode(b"admin:s3cret:with:colons").decode()
    assert basic_user(header) == ("Basic", "admin")
    assert basic_user("Bearer abc.def") == ("Bearer", None)
    assert "s3cret" not in repr(basic_user(header))
    assert basic_user(None) == (None, None)


def test_http_body_length_counts_bytes():
    assert body_length(packet("eth:ip:tcp:http", http__file_data=["h\u00e9llo"])) == 6  # UTF-8 bytes
    assert body_length(packet("eth:ip:tcp:http", http__file_data=["\ufffd\ufffdab"])) == 4  # invalid bytes: 1 each
    assert body_length(packet("eth:ip:tcp:http")) == 0


def test_modbus_names_follow_zeek():
    assert function_name(3) == "READ_HOLDING_REGISTERS"
    assert function_name(0x83) == "READ_HOLDING_REGISTERS_EXCEPTION"
    assert function_name(156) == "unknown-156"


def test_ssh_protocol_version():
    assert protocol_version("SSH-2.0-OpenSSH_9.2p1") == 2
    assert protocol_version("SSH-1.99-Cisco-1.25") == 2
    assert protocol_version("SSH-1.5-old") == 1
    assert protocol_version("garbage") is None


def test_flow_orientation_innermost_layer_and_server_ports():
    tunnel = packet("eth:ip:udp:gtp:ip:tcp:http", ip__src=["10.0.0.1", "192.0.2.1"], ip__dst=["10.0.0.2", "192.0.2.9"],
                    udp__srcport=["2152"], udp__dstport=["2152"], tcp__srcport=["80"], tcp__dstport=["40000"],
                    tcp__stream=["7"])
    f = flow_of(tunnel, sender_is_orig=False)
    assert (f.transport, f.orig_h, f.orig_p, f.resp_h, f.resp_p, f.stream) == ("tcp", "192.0.2.9", 40000,
                                                                              "192.0.2.1", 80, "7")
    flow, from_client = flow_by_server_port(tunnel, frozenset({80}))
    assert not from_client and flow.resp_p == 80
    quoted = packet("eth:ip:icmp:ip:udp:dns", ip__src=["1.1.1.1"], ip__dst=["2.2.2.2"])
    assert flow_of(quoted, True) is None
    assert f.community_id.startswith("1:")


def test_tshark_command_is_a_fixed_argument_list(tmp_path):
    odd = tmp_path / "-r; rm -rf x.pcap"
    cmd = tshark_command(odd, "/usr/bin/tshark")
    assert cmd[0] == "/usr/bin/tshark" and cmd[cmd.index("-r") + 1] == str(odd)
    assert cmd.count("-Y") == 1 and cmd.count("-T") == 1  # one process, one combined filter for every module
    display_filter = cmd[cmd.index("-Y") + 1]
    for part in ("dns", "http.request", "tls", "dhcp", "smb2", "ftp.request", "modbus",
                 "dnp3.al.func", "s7comm", "iec60870_104"):
        assert part in display_filter
    assert "ssh" not in display_filter and "()" not in display_filter  # SSH is read without tshark


def test_dns_unanswered_queries_expire_after_the_udp_timeout():
    from collectors.protocols.dns import QUERY_TIMEOUT, DnsAnalyzer

    dns = DnsAnalyzer(lambda _m: None)
    query = packet("eth:ip:udp:dns", frame__time_epoch=["100.0"], ip__src=["192.0.2.1"], ip__dst=["192.0.2.53"],
                   udp__srcport=["5353"], udp__dstport=["53"], udp__stream=["0"], dns__id=["7"],
                   dns__flags__response=["0"], dns__qry__name=["a.example"], dns__qry__type=["1"])
    assert list(dns.handle(query)) == []
    assert list(dns.expire(100.0 + QUERY_TIMEOUT - 1)) == []
    [doc] = dns.expire(100.0 + QUERY_TIMEOUT + 1)
    assert doc["dns"]["type"] == "query" and doc["dns"]["question"]["name"] == "a.example"
    assert "response_code" not in doc["dns"] and list(dns.finish()) == []


def test_request_lines_read_as_zeek_reads_them():
    from collectors.protocols.http import parse_request_line
    assert parse_request_line("GET", "/", "HTTP/1.1") == ("/", "1.1")
    assert parse_request_line("OPTIONS", "HTTP/1.1", None) == ("", "1.1")  # empty URI
    assert parse_request_line("GET", "/HTTP/1.1", None) == ("/HTTP/1.1", "0.9")  # no version: HTTP/0.9
    assert parse_request_line("CONNECT", "host:25", "/ HTTP/1.0") == ("host:25 /", "1.0")
    assert parse_request_line("OPTIONS", None, None) is None  # a method alone is no request


def test_native_http_parsing_of_09_and_lower_case_status_lines():
    from collectors.protocols.documents import Flow
    from collectors.protocols.http import parse_exchanges
    flow = Flow("tcp", "192.0.2.1", 40000, "192.0.2.2", 80, "0")
    [ex] = parse_exchanges(flow, 1.0, b"GET /zeek.html\r\n", b"<html>hi</html>\n")
    assert (ex.method, ex.uri, ex.version, ex.status, ex.resp_len) == ("GET", "/zeek.html", "0.9", 0, 16)
    [ex] = parse_exchanges(flow, 1.0, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                           b"http/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
    assert (ex.host, ex.status, ex.reason, ex.resp_len) == ("a", 200, "OK", 3)


def test_dns_record_types_skip_nsec_bitmaps_and_render_dnssec():
    from collectors.protocols.dns import _record_types
    # SOA, RRSIG, NSEC (bitmap 1, 46, 47), RRSIG, OPT: five records, eight type entries
    assert _record_types([6, 46, 47, 1, 46, 47, 46, 41], 5) == [6, 46, 47, 46, 41]
    pkt = packet("eth:ip:udp:dns", dns__count__answers=["3"], dns__resp__type=["48", "46", "43"],
                 dns__resp__name=["Example.COM"] * 3, dns__resp__ttl=["5", "5", "5"], dns__resp__len=["9", "9", "9"],
                 dns__dnskey__algorithm=["8"], dns__rrsig__type_covered=["48"],
                 dns__rrsig__signers_name=["Example.COM"], dns__ds__algorithm=["8"], dns__ds__digest_type=["2"])
    assert [a["data"] for a in _answers(_records(pkt))] == ["DNSKEY 8", "RRSIG 48 example.com", "DS 8 2"]


def test_dns_update_and_netbios_rendering():
    from collectors.protocols.dns import Record, netbios_name, update_entries
    records = [Record(0, "h.example", 5, 254, 0, 0, None), Record(1, "h.example", 1, 255, 0, 0, None),
               Record(1, "h.example", 1, 1, 60, 4, "192.0.2.9")]
    assert [e["data"] for e in update_entries(records)] == [
        "pre: NoRRSet CNAME h.example", "del: RRSet A", "add: A h.example 192.0.2.9"]
    assert netbios_name("WORKGROUP<1d>") == "WORKGROUP" and netbios_name("FILESRV        <20>") == "FILESRV"


def test_tls_version_names_follow_zeek():
    from collectors.protocols.tls import version_of
    assert version_of(0x0303) == ("tls", "1.2") and version_of(0xFEFF) == ("dtls", "DTLSv10")
    assert version_of(0x7F17) == ("tls", "TLSv13-draft23") and version_of(0x7E01) == (None, "unknown-32257")


def test_every_logged_value_is_cut_and_listed():
    from collectors.protocols.base import evict_oldest
    from collectors.protocols.documents import MAX_VALUE_CHARS, Flow, make_doc
    flow = Flow("udp", "192.0.2.1", 5353, "192.0.2.53", 53, "0")
    long_txt = "TXT 9999 " + "x" * 20_000
    doc = make_doc("secops.dns", flow, 1.0, ("dns",), {"dns.question.name": "a.example",
                   "dns.answers": [{"type": "TXT", "data": long_txt}]}, "dns")
    assert len(doc["dns"]["answers"][0]["data"]) == MAX_VALUE_CHARS
    assert [c["field"] for c in doc["secops"]["truncated"]] == ["dns.answers"]
    assert doc["dns"]["question"]["name"] == "a.example"
    pending = {i: i for i in range(5)}
    assert evict_oldest(pending, 3) == [0, 1] and list(pending) == [2, 3, 4]
