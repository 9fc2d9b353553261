"""Inventory against a real Elasticsearch node: nmap XML import, change history, passive observations,
staleness, tagging, CMDB import and compliance exports through the real CLI."""

from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from elasticsearch import NotFoundError
from openpyxl import load_workbook

from collectors.scanning.nmap_xml import parse_file
from detections.compiler import compile_rules
from detections.engine import run_rule
from detections.loader import BUILTIN_RULES, load_rules
from inventory import service
from inventory.export import COLUMNS, headers
from inventory.learning import CHECKPOINT_PREFIX
from secops.contracts.scan import ScanResult, ScanSource
from secops.ecs import doc_id, iso, utcnow
from secops.es.bulk import BulkWriter
from secops.es.store import Store

pytestmark = pytest.mark.integration
NMAP = "nmap-xml/libnmap"


def payload(testdata, name: str) -> dict:
    return ScanResult(parse_file(testdata / NMAP / name), ScanSource.IMPORT, name).to_payload()


def assets(es, prefix="secops"):
    es.indices.refresh(index=f"{prefix}-asset")
    return [h["_source"] for h in es.search(index=f"{prefix}-asset", size=1000)["hits"]["hits"]]


def changes(es, kind=None):
    es.indices.refresh(index="secops-asset_change-*")
    q = {"term": {"secops.asset_change.change": kind}} if kind else {"match_all": {}}
    return [h["_source"] for h in es.search(index="secops-asset_change-*", query=q, size=1000)["hits"]["hits"]]


def cli(config_file, *args, check=True):
    env = dict(os.environ, SECOPS_CONFIG=str(config_file), SECOPS_ACTOR="auditor-7", COLUMNS="250")
    res = subprocess.run([sys.executable, "-c", "from secops.cli import main; main()", *args], capture_output=True,
                         text=True, env=env, timeout=120)
    if check:
        assert res.returncode == 0, res.stderr + res.stdout
    return res


def test_scan_import_on_a_fresh_prefix_installs_the_templates_first(es, config_file, testdata):
    """Issue 17.13: the asset indices were created with dynamic mappings, breaking two asset-change rules."""
    prefix = "fresh_prefix_17"
    drop_templates(es, prefix)
    es.indices.delete(index=f"{prefix}-*", allow_no_indices=True, expand_wildcards="all")
    env = dict(os.environ, SECOPS_CONFIG=str(config_file), SECOPS_ELASTICSEARCH__INDEX_PREFIX=prefix)
    try:
        res = subprocess.run([sys.executable, "-m", "secops", "scan", "import",
                              str(testdata / NMAP / "1_os_banner_scripts.xml")], capture_output=True, text=True,
                             env=env, timeout=120)
        assert res.returncode == 0, res.stderr
        mapping = es.indices.get_mapping(index=f"{prefix}-asset")[f"{prefix}-asset"]["mappings"]
        assert mapping["properties"]["host"]["properties"]["ip"]["type"] == "ip"
        change_index = next(iter(es.indices.get(index=f"{prefix}-asset_change-*")))
        change = es.indices.get_mapping(index=change_index)[change_index]["mappings"]
        assert change["properties"]["secops"]["properties"]["asset_change"]["properties"]["change"]["type"] \
            == "keyword"
    finally:
        es.indices.delete(index=f"{prefix}-*", allow_no_indices=True, expand_wildcards="all")
        drop_templates(es, prefix)


def drop_templates(es, prefix):
    with contextlib.suppress(NotFoundError):
        es.indices.delete_index_template(name=f"{prefix}-*")


def test_scan_import_cli_writes_one_asset_per_live_host(es, config_file, testdata):
    files = [testdata / NMAP / f for f in ("full_sudo6.xml", "1_os_banner_scripts.xml")]
    res = cli(config_file, "scan", "import", *map(str, files))
    assert "252 hosts down (counted, not stored)" in res.stderr
    docs = assets(es)
    assert len(docs) == 4 + 1  # full_sudo6: 4 up of 256; 1_os_banner_scripts: 1 up
    ips = sorted(ip for d in docs for ip in d["host"]["ip"])
    assert "127.0.0.1" in ips
    loop = next(d for d in docs if d["host"]["ip"] == ["127.0.0.1"])
    assert {s["port"] for s in loop["secops"]["asset"]["services"]} and loop["secops"]["asset"]["sources"] == ["import"]
    assert all(d["event"]["dataset"] == "secops.asset" and d["secops"]["asset"]["last_scan"] for d in docs)
    assert len(changes(es, "new_asset")) == 5
    # importing again changes nothing: same ids, no new changes
    cli(config_file, "scan", "import", *map(str, files))
    assert len(assets(es)) == 5 and len(changes(es, "new_asset")) == 5


def test_scan_import_refuses_hostile_and_truncated_files_but_keeps_good_ones(es, config_file, testdata, tmp_path):
    bad = tmp_path / "laughs.xml"
    bad.write_text('<?xml version="1.0"?><!DOCTYPE n [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><nmaprun>&b;</nmaprun>')
    cut = tmp_path / "cut.xml"
    cut.write_bytes((testdata / NMAP / "2_hosts.xml").read_bytes()[:1500])
    res = cli(config_file, "scan", "import", str(bad), str(cut), str(testdata / NMAP / "1_hosts.xml"), check=False)
    assert res.returncode == 2
    assert "refused hostile XML" in res.stderr and "truncated or corrupt" in res.stderr
    assert len(assets(es)) == 1


def test_scan_import_ndjson_needs_no_store(testdata, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("elasticsearch: {hosts: ['http://127.0.0.1:9']}\n")
    res = cli(cfg, "scan", "import", "--output", "ndjson", str(testdata / NMAP / "os_scan6.xml"))
    docs = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(docs) == 3 and all(d["event"]["dataset"] == "secops.asset" for d in docs)


def test_change_history_from_real_diff_files(es, settings, testdata):
    service.merge_scan(es, settings, payload(testdata, "1_hosts.xml"))
    service.merge_scan(es, settings, payload(testdata, "1_hosts_diff.xml"))
    closed = changes(es, "port_closed")
    assert len(closed) == 1 and closed[0]["secops"]["asset_change"]["port"]
    # 2_hosts -> 2_hosts_achange: one port less open on one host
    service.merge_scan(es, settings, payload(testdata, "2_hosts.xml"))
    service.merge_scan(es, settings, payload(testdata, "2_hosts_achange.xml"))
    assert len(changes(es, "port_closed")) >= 2


def test_mac_change_on_same_ip(es, settings, testdata):
    service.merge_scan(es, settings, payload(testdata, "1_host_ping.xml"))
    service.merge_scan(es, settings, payload(testdata, "diff_1_host_ping_mac_changed.xml"))
    moved = changes(es, "mac_ip_changed")
    assert len(moved) == 1
    docs = assets(es)
    assert len(docs) == 2  # another device (new MAC) took the address over
    assert sum(1 for d in docs if d["host"]["ip"]) == 1


def test_service_os_and_port_changes(es, settings, testdata):
    p1 = payload(testdata, "dionaea_scan.xml")
    service.merge_scan(es, settings, p1)
    p2 = copy.deepcopy(p1)
    p2["end"] += 3600
    host = p2["hosts"][0]
    versioned = next(p for p in host["ports"] if p["service"] and p["service"]["version"])
    versioned["service"]["version"] = "99.9-patched"
    host["os_matches"][0]["name"] = "Totally Different OS 1.0"
    host["os_matches"][0]["accuracy"] = 100
    gone = host["ports"].pop(0)
    host["ports"].append({"port": 6502, "transport": "tcp", "state": "open", "service": {"name": "unknown"},
                          "scripts": []})
    p2["scanned_ports"] = {"tcp": "1-65535"}
    res = service.merge_scan(es, settings, p2)
    assert res["changes"] == {"service_changed": 1, "os_changed": 1, "port_closed": 1, "port_opened": 1}
    sc = changes(es, "service_changed")[0]["secops"]["asset_change"]
    assert sc["new"].endswith("99.9-patched") and sc["port"] == versioned["port"]
    assert changes(es, "port_closed")[0]["secops"]["asset_change"]["port"] == gone["port"]
    doc = assets(es)[0]
    assert doc["host"]["os"]["full"] == "Totally Different OS 1.0"
    assert gone["port"] not in {s["port"] for s in doc["secops"]["asset"]["services"]}


def write_observations(es, settings, docs):
    with BulkWriter(es, settings.paths.spool(), settings.bulk, prefix="secops") as w:
        for i, d in enumerate(docs):
            w.add({"_id": f"obs{i}", "event": {"dataset": "secops.observation", "kind": "event"},
                   "observer": {"name": "sensor-1"}, **d})
    es.indices.refresh(index="secops-observation-*")


def test_passive_observations_merge_and_checkpoint(es, settings):
    t0 = utcnow() - timedelta(minutes=10)
    mac = "02:42:ac:11:00:02"
    write_observations(es, settings, [
        {"@timestamp": iso(t0), "host": {"ip": "198.18.40.5", "mac": mac},
         "secops": {"observation": {"kind": "address"}}},
        {"@timestamp": iso(t0 + timedelta(seconds=5)), "host": {"ip": "198.18.40.5", "mac": mac},
         "secops": {"observation": {"kind": "service", "port": 502, "transport": "tcp", "service": "modbus"}}},
        {"@timestamp": iso(t0 + timedelta(seconds=9)), "host": {"ip": "198.18.40.5", "mac": mac, "hostname": "plc-7"},
         "secops": {"observation": {"kind": "dhcp"}, "dhcp": {"vendor_class": "Siemens"}}},
    ])
    r = service.merge_observations(es, settings, None)
    assert r["assets_created"] == 1 and r["changes"] == {"new_asset": 1}
    doc = assets(es)[0]
    assert doc["host"]["hostname"] == "plc-7" and doc["secops"]["asset"]["sources"] == ["passive"]
    assert doc["secops"]["asset"]["services"][0]["name"] == "modbus"
    # nothing new since the checkpoint
    assert service.merge_observations(es, settings, None)["hosts_seen"] == 0
    # same MAC shows up at a new address: same asset, mac_ip_changed
    write_observations(es, settings, [{"@timestamp": iso(t0 + timedelta(minutes=5)),
                                       "host": {"ip": "198.18.40.77", "mac": mac},
                                       "secops": {"observation": {"kind": "address"}}}])
    r = service.merge_observations(es, settings, None)
    assert r["changes"] == {"mac_ip_changed": 1}
    docs = assets(es)
    assert len(docs) == 1 and docs[0]["host"]["ip"] == ["198.18.40.77"]
    # an old capture imported now: observed a year ago, arrived after the checkpoint -> still merged
    write_observations(es, settings, [{"@timestamp": iso(t0 - timedelta(days=365)),
                                       "host": {"ip": "198.18.40.99", "mac": "02:42:ac:11:00:99"},
                                       "secops": {"observation": {"kind": "address"}}}])
    assert service.merge_observations(es, settings, None)["changes"] == {"new_asset": 1}


def test_scan_and_passive_merge_into_one_asset(es, settings, testdata):
    service.merge_scan(es, settings, payload(testdata, "1_host_ping.xml"))
    scanned = assets(es)[0]
    write_observations(es, settings, [{"@timestamp": iso(), "host": {"ip": scanned["host"]["ip"][0],
                                                                     "mac": scanned["host"]["mac"][0]},
                                       "secops": {"observation": {"kind": "address"}}}])
    service.merge_observations(es, settings, None)
    docs = assets(es)
    assert len(docs) == 1 and set(docs[0]["secops"]["asset"]["sources"]) == {"import", "passive"}


def test_mark_stale_once_and_tagging(es, settings, testdata):
    service.merge_scan(es, settings, payload(testdata, "os_scan6.xml"))  # scanned in 2014: long gone
    r = service.mark_stale(es, settings)
    assert r["gone"] == 3 and len(changes(es, "asset_gone")) == 3
    assert service.mark_stale(es, settings)["gone"] == 0
    ip = assets(es)[0]["host"]["ip"][0]
    aid = service.tag_asset(es, settings, ip, ["quarantine", "=evil"], "playbook:contain")
    assert aid and "quarantine" in next(d for d in assets(es) if d["secops"]["asset"]["id"] == aid)["tags"]
    assert service.tag_asset(es, settings, "198.18.99.99", ["x"], "analyst") is None
    es.indices.refresh(index="secops-audit-*")
    audits = es.search(index="secops-audit-*", query={"term": {"secops.audit.action": "inventory.tag_asset"}})
    assert audits["hits"]["total"]["value"] == 2


def test_owners_import_and_exports_via_cli(es, config_file, settings, testdata, tmp_path):
    cli(config_file, "scan", "import", str(testdata / NMAP / "full_sudo6.xml"))
    docs = assets(es)
    first, second = docs[0], docs[1]
    owners = tmp_path / "owners.csv"
    with owners.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["ip", "mac", "owner", "department", "location", "criticality"])
        w.writerow([first["host"]["ip"][0], "", '=HYPERLINK("http://evil","x")', "Water", "@Plant", "high"])
        w.writerow(["", second["host"]["mac"][0], "Li Wei", "-Ops", "Pump house", "critical"])
        w.writerow(["198.18.250.250", "", "nobody", "", "", "low"])
        w.writerow(["bad-ip", "", "x", "", "", "low"])
    res = cli(config_file, "assets", "import", str(owners))
    assert "4 rows: 2 matched, 2 assets updated, 1 unmatched, 1 refused" in res.stdout
    out = tmp_path / "exp"
    for fmt in ("csv", "xlsx", "json"):
        cli(config_file, "assets", "export", "--format", fmt, "--lang", "zh", "--output", str(out / f"a.{fmt}"))
    wb = load_workbook(out / "a.xlsx").active
    rows = list(wb.iter_rows(values_only=True))
    assert rows[0][0] == "资产编号" and len(rows) == 1 + 4
    keys = [key for key, _en in COLUMNS]  # the zh headers come from the export catalogue (GB/T 22239 terms)
    assert list(rows[0]) == headers("zh")
    owner_col, dept_col = keys.index("owner"), keys.index("department")
    owners_seen = {r[owner_col] for r in rows[1:]}
    assert "'=HYPERLINK(\"http://evil\",\"x\")" in owners_seen and "Li Wei" in owners_seen
    assert "'-Ops" in {r[dept_col] for r in rows[1:]}
    assert all(c.data_type != "f" for row in wb.iter_rows() for c in row)
    with (out / "a.csv").open(encoding="utf-8-sig") as fh:
        csv_rows = list(csv.reader(fh))
    assert len(csv_rows) == 5 and csv_rows[0][7] == "责任人"
    data = json.loads((out / "a.json").read_text())
    assert len(data["assets"]) == 4
    for fmt in ("csv", "xlsx", "json"):
        digest, name = (out / f"a.{fmt}.sha256").read_text().split()
        assert digest == hashlib.sha256((out / f"a.{fmt}").read_bytes()).hexdigest() and name == f"a.{fmt}"
    es.indices.refresh(index="secops-audit-*")
    audit = es.search(index="secops-audit-*", query={"term": {"secops.audit.action": "inventory.export"}}, size=10)
    hits = [h["_source"] for h in audit["hits"]["hits"]]
    assert len(hits) == 3 and {h["user"]["name"] for h in hits} == {"auditor-7"}
    assert any(json.loads(h["secops"]["audit"]["details"])["format"] == "xlsx" for h in hits)
    # zone filter
    res = cli(config_file, "assets", "export", "--format", "json", "--zone", "nope", "--output", str(out / "z.json"))
    assert json.loads((out / "z.json").read_text())["assets"] == []
    res = cli(config_file, "assets", "show", first["host"]["ip"][0])
    assert first["secops"]["asset"]["id"] in res.stdout


def test_hostile_cmdb_values_reach_no_export_as_formulas(es, config_file, testdata, tmp_path):
    """Issue 17 item 1: owners planted through the CMDB import, with control characters and full-width forms."""
    import unicodedata

    def formula_like(value):
        if not isinstance(value, str):
            return False
        kept = "".join(ch for ch in value if unicodedata.category(ch) not in ("Cc", "Cf", "Cs") or ch in "\t\r\n")
        return unicodedata.normalize("NFKC", kept).lstrip(" \t\r\n\u00a0")[:1] in ("=", "+", "-", "@")

    cli(config_file, "scan", "import", str(testdata / NMAP / "full_sudo6.xml"))
    docs = assets(es)
    hostile = ['\x01=HYPERLINK("http://198.18.0.9/x","y")', "\uff1dcmd|'/c calc'!A1", "\u3000\uff0b1+1",
               "\uff20SUM(A1)"]
    owners = tmp_path / "owners.csv"
    with owners.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["ip", "owner", "department", "location"])
        for doc, value in zip(docs, hostile, strict=False):
            w.writerow([doc["host"]["ip"][0], value, value + "\x0bdept", "\uff0d" + value])
    res = cli(config_file, "assets", "import", str(owners))
    assert f"{len(docs)} rows: {len(docs)} matched" in res.stdout, res.stdout
    out = tmp_path / "exp"
    for fmt in ("csv", "xlsx", "json"):
        cli(config_file, "assets", "export", "--format", fmt, "--output", str(out / f"a.{fmt}"))
    wb = load_workbook(out / "a.xlsx").active
    cells = [c for row in wb.iter_rows() for c in row]
    assert not [c.coordinate for c in cells if c.data_type == "f"]
    assert not [c.value for c in cells if formula_like(c.value)]
    owner_col = [c.value for c in next(wb.iter_rows())].index("Owner")
    assert "'=HYPERLINK(\"http://198.18.0.9/x\",\"y\")" in {r[owner_col] for r in wb.iter_rows(values_only=True)}
    with (out / "a.csv").open(encoding="utf-8-sig", newline="") as fh:
        csv_rows = list(csv.reader(fh))
    assert len(csv_rows) == 1 + len(docs)  # the \x0b inside a field split no row on import or export
    assert not [c for row in csv_rows for c in row if formula_like(c)]
    data = json.loads((out / "a.json").read_text())
    assert not [v for a in data["assets"] for v in a.values() if formula_like(v)]
    assert {a["department"] for a in data["assets"]} >= {"'=cmd|'/c calc'!A1dept"}


def test_hostile_values_print_as_inert_text_in_the_terminal(es, config_file, testdata, tmp_path):
    """A hostname from the network or a CMDB value cannot crash `assets list` (a stray Rich closing tag), plant a
    terminal hyperlink, or send escape sequences (clear screen, window title) to the analyst's terminal."""
    cli(config_file, "scan", "import", str(testdata / NMAP / "full_sudo6.xml"))
    docs = assets(es)
    hostile = ["[/]", "[link=http://198.18.0.9/x]click[/link]", "ok\x1b[2J\x1b]0;pwned\x07"]
    for doc, name in zip(docs, hostile, strict=False):
        es.update(index="secops-asset", id=doc["secops"]["asset"]["id"], doc={"host": {"hostname": name}},
                  refresh=True)
    res = cli(config_file, "assets", "list", check=False)
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout
    assert "[/]" in res.stdout and "[link=http://198.18.0.9/x]click[/link]" in res.stdout
    assert "ok[2J]0;pwned" in res.stdout
    owners = tmp_path / "owners.csv"
    owners.write_text(f"ip,criticality\n{docs[0]['host']['ip'][0]},[/]\n", encoding="utf-8")
    res = cli(config_file, "assets", "import", str(owners), check=False)
    assert res.returncode == 0, res.stderr
    assert "refused line 2: criticality '[/]' is not one of" in res.stdout


def new_asset_alerts(es, settings, since):
    rule = next(r for r in compile_rules(load_rules([BUILTIN_RULES])) if r.title == "New Asset On The Network")
    es.indices.refresh(index="secops-asset_change-*")
    return run_rule(es, settings.elasticsearch.index_prefix, rule, iso(since), iso(utcnow() + timedelta(minutes=1)))


def test_first_merge_of_a_zone_learns_its_assets_without_new_asset_alerts(es, settings, testdata):
    """Issue 12: a new zone's first merge records its assets (and their new_asset changes), raises no alert;
    a host that appears after the learning period raises one."""
    start = utcnow() - timedelta(minutes=1)
    r = service.merge_scan(es, settings, payload(testdata, "full_sudo6.xml"))
    assert r["assets_created"] == 4 and r["learned"] == 4 and r["changes"]["new_asset"] == 4
    assert len(changes(es, "new_asset")) == 4 and all(c["secops"]["asset_change"]["learning"]
                                                      for c in changes(es, "new_asset"))
    assert new_asset_alerts(es, settings, start) == []
    es.indices.refresh(index="secops-audit-*")
    audit = [h["_source"]["secops"]["audit"] for h in es.search(
        index="secops-audit-*", query={"term": {"secops.audit.action": "inventory.zone_learned"}})["hits"]["hits"]]
    assert [(a["object"], json.loads(a["details"])["assets"]) for a in audit] == [("default", 4)]
    # within the learning period (default 24 h) a newly seen host is still learned
    write_observations(es, settings, [{"@timestamp": iso(), "host": {"ip": "198.18.40.5", "mac": "02:42:ac:11:00:05"},
                                       "secops": {"observation": {"kind": "address"}}}])
    assert service.merge_observations(es, settings, None, now=utcnow() + timedelta(hours=2))["learned"] == 1
    # after it, a new host is a New Asset alert, and one only
    write_observations(es, settings, [{"@timestamp": iso(), "host": {"ip": "198.18.40.6", "mac": "02:42:ac:11:00:06"},
                                       "secops": {"observation": {"kind": "address"}}}])
    r = service.merge_observations(es, settings, None, now=utcnow() + timedelta(hours=25))
    assert r["learned"] == 0 and r["changes"] == {"new_asset": 1}
    alerts = new_asset_alerts(es, settings, start)
    aid = next(a for a in assets(es) if "198.18.40.6" in a["host"]["ip"])["secops"]["asset"]["id"]
    assert [a.group for a in alerts] == [{"secops.asset_change.asset_id": aid}]


def test_a_zone_inventoried_before_learning_existed_is_not_relearned(es, settings, testdata):
    """No learning checkpoint but assets in the zone: the zone is known, a new host alerts at once."""
    settings.inventory.learning_hours = 0
    service.merge_scan(es, settings, payload(testdata, "1_host_ping.xml"))  # the zone's first merge: learned
    state = Store.from_settings(es, settings).state_index
    es.delete(index=state, id=doc_id("state", CHECKPOINT_PREFIX + "default"), refresh=True)
    write_observations(es, settings, [{"@timestamp": iso(), "host": {"ip": "198.18.40.7", "mac": "02:42:ac:11:00:07"},
                                       "secops": {"observation": {"kind": "address"}}}])
    r = service.merge_observations(es, settings, None)
    assert r["learned"] == 0 and r["changes"] == {"new_asset": 1}, r
    assert len(new_asset_alerts(es, settings, utcnow() - timedelta(minutes=5))) == 1
