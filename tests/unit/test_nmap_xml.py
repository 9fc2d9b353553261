"""The nmap XML parser against real nmap outputs (INDEX.tsv counts) and hostile/truncated XML."""

from __future__ import annotations

import csv

import pytest

from collectors.scanning.nmap_xml import NmapXmlError, parse_bytes, parse_file
from tests.support import TESTDATA

NMAP_DIR = TESTDATA / "nmap-xml"
ROWS = list(csv.DictReader((NMAP_DIR / "INDEX.tsv").open(encoding="utf-8"), delimiter="\t"))
COUNTS = ["runstats_up", "runstats_down", "runstats_total", "host_elems", "host_elems_up", "host_elems_down",
          "hosts_with_osmatch", "port_elems", "ports_open", "ports_with_product_or_version", "script_results",
          "ipv6_addrs"]


def test_index_lists_every_file():
    files = sorted(str(p.relative_to(NMAP_DIR)) for p in NMAP_DIR.rglob("*.xml"))
    assert sorted(r["file"] for r in ROWS) == files
    assert len(ROWS) >= 24


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_counts_match_index(row):
    report = parse_file(NMAP_DIR / row["file"])
    counts = report.counts()
    expected = {k: row[k] for k in COUNTS}
    got = {k: "" if counts[k] is None else str(counts[k]) for k in COUNTS}
    assert got == expected
    assert report.scanner_version == row["nmap_version"]
    assert report.args == row["args"]


def test_details_of_a_version_scan():
    report = parse_file(NMAP_DIR / "libnmap/dionaea_scan.xml")
    host = report.live_hosts[0]
    versions = {p.port: (p.service.product, p.service.version) for p in host.open_ports if p.has_version}
    assert versions  # products and versions are carried through
    assert host.os_matches and host.os_matches[0].classes
    assert all(p.transport in ("tcp", "udp") for p in host.ports)


def test_old_nmap5_osclass_outside_osmatch():
    report = parse_file(NMAP_DIR / "libnmap/os_scan5.xml")
    with_os = [h for h in report.hosts if h.os_matches]
    assert with_os and all(h.os_matches[0].classes for h in with_os)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE nmaprun [
 <!ENTITY a "aaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
]>
<nmaprun scanner="nmap" args="&c;"><runstats><hosts up="0" down="0" total="0"/></runstats></nmaprun>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE nmaprun [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<nmaprun scanner="nmap" args="&xxe;"></nmaprun>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE nmaprun [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd"> %remote;]>
<nmaprun scanner="nmap"></nmaprun>"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL_ENTITY, PARAMETER_ENTITY],
                         ids=["billion-laughs", "external-entity", "parameter-entity"])
def test_hostile_xml_refused(data):
    with pytest.raises(NmapXmlError, match="refused hostile XML"):
        parse_bytes(data, "hostile.xml")


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_truncated_real_file_refused(cut):
    data = (NMAP_DIR / "libnmap/full_sudo6.xml").read_bytes()
    with pytest.raises(NmapXmlError, match="not well-formed XML, truncated or corrupt"):
        parse_bytes(data[: int(len(data) * cut)], "cut.xml")


@pytest.mark.parametrize("data,message", [
    (b"", "empty file"),
    (b"   \n", "empty file"),
    (b"<html><body>hello</body></html>", "root element is <html>"),
    (b"\x00\xff\xfe garbage", "not well-formed"),
])
def test_non_nmap_input_refused(data, message):
    with pytest.raises(NmapXmlError, match=message):
        parse_bytes(data, "bad.xml")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(NmapXmlError, match="cannot read"):
        parse_file(tmp_path / "nope.xml")
