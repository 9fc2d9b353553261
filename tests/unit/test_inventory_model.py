"""Inventory pure logic: identity, zones, findings, CMDB CSV parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from inventory.findings import compute
from inventory.model import asset_id
from inventory.owners import OwnersError, read_rows, validate_row
from inventory.zones import zone_for
from secops.config import InventorySettings

ZONES = {"ot": ["198.18.0.0/16"], "plc": ["198.18.5.0/24"]}


def test_identity_prefers_mac_and_is_zone_scoped_otherwise():
    assert asset_id("02:00:00:00:00:01", "198.18.5.1", "plc") == asset_id("02:00:00:00:00:01", "198.18.5.9", "ot")
    assert asset_id(None, "10.0.0.1", "a") != asset_id(None, "10.0.0.1", "b")


def test_zones_most_specific_wins():
    assert zone_for("198.18.5.7", ZONES) == "plc"
    assert zone_for("198.18.6.7", ZONES) == "ot"
    assert zone_for("203.0.113.1", ZONES, "default") == "default"
    assert zone_for("not-an-ip", ZONES) == "default"


def test_findings():
    cfg = InventorySettings(forbidden_services=["telnet", "ftp", "smbv1", "rsh"])
    now = datetime(2026, 11, 23, tzinfo=UTC)
    a = {"secops": {"asset": {"services": [{"port": 23, "name": "telnet"}, {"port": 514, "name": "shell"},
                                           {"port": 445, "name": "microsoft-ds", "flags": ["smbv1"]},
                                           {"port": 80, "name": "http"}],
                              "last_scan": "2026-11-22T00:00:00Z", "owner": "bob"}}}
    f = compute(a, cfg, now)
    assert f == ["forbidden_service:telnet:23/tcp", "forbidden_service:rsh:514/tcp",
                 "forbidden_service:smbv1:445/tcp"]


def test_owners_csv_headers_zh_and_validation(tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("IP地址,MAC地址,责任人,部门,重要程度\n198.18.5.1,02-00-00-00-00-0A,张三,水务,高\n"
                 "not-ip,,x,,low\n,,,,\n", encoding="utf-8")
    rows = read_rows(p)
    assert [line for line, _ in rows] == [2, 3]
    ok = validate_row(rows[0][1])
    assert ok == {"ip": "198.18.5.1", "mac": "02:00:00:00:00:0a", "owner": "张三", "department": "水务",
                  "criticality": "high"}
    with pytest.raises(ValueError):
        validate_row(rows[1][1])
    with pytest.raises(ValueError, match="criticality"):
        validate_row({"ip": "198.18.5.1", "criticality": "extreme"})


def test_owners_csv_unusable(tmp_path):
    p = tmp_path / "o.csv"
    p.write_text("name,colour\nx,y\n")
    with pytest.raises(OwnersError, match="at least one of ip, mac, hostname"):
        read_rows(p)
    p.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(OwnersError, match="cannot read"):
        read_rows(p)
