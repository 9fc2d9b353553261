"""Compliance exports (no Elasticsearch needed): rows, Chinese headers, manifests, formula injection."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from gmssl import func, sm3
from openpyxl import load_workbook

from inventory.export import COLUMNS, export_assets, headers
from secops.cells import cell as neutralise
from secops.config import InventorySettings

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HOSTILE = ["=HYPERLINK(\"http://x\",\"y\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "\t=1+1", "\r=1+1",
           "=cmd|'/c calc'!A1"]


def asset(i: int, owner: str | None = "Alice", **extra) -> dict:
    part = {"id": f"a{i:05d}", "zone": "ot" if i % 2 else "it", "owner": owner, "department": "Water",
            "location": "Plant 1", "criticality": "high", "sources": ["scan"],
            "first_seen": "2026-11-01T00:00:00.000000Z", "last_seen": "2026-11-23T00:00:00.000000Z",
            "last_scan": (NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "services": [{"port": 502, "transport": "tcp", "name": "modbus"},
                         {"port": 21, "transport": "tcp", "name": "ftp", "product": "vsftpd", "version": "3.0.3"}]}
    part.update(extra)
    return {"host": {"ip": [f"198.18.9.{i % 250 + 1}"], "mac": ["02:00:00:00:00:01"], "hostname": f"plc{i}",
                     "os": {"full": "Linux 5.x"}}, "secops": {"asset": part}, "tags": ["ics"]}


@pytest.mark.parametrize("value", HOSTILE)
def test_neutralise(value):
    assert neutralise(value).startswith("'")
    assert neutralise("198.18.0.1") == "198.18.0.1"


def hostile_assets() -> list[dict]:
    return [asset(i, owner=v, location=v, department=v) for i, v in enumerate(HOSTILE)] + [asset(99, owner=None)]


def verify_manifest(path):
    manifest = path.with_name(path.name + ".sha256")
    digest, name = manifest.read_text().split()
    assert name == path.name and digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert subprocess.run(["sha256sum", "-c", manifest.name], cwd=path.parent, capture_output=True).returncode == 0
    sm3_file = path.with_name(path.name + ".sm3")
    assert sm3_file.read_text().split()[0] == sm3.sm3_hash(func.bytes_to_list(path.read_bytes()))


def test_csv_export(tmp_path):
    res = export_assets(hostile_assets(), tmp_path / "a.csv", "csv", InventorySettings(), NOW)
    assert res.rows == len(HOSTILE) + 1
    with (tmp_path / "a.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == headers("en")
    col = {k: i for i, (k, _e) in enumerate(COLUMNS)}
    for row, value in zip(rows[1:], HOSTILE, strict=False):
        assert row[col["owner"]] == "'" + value
        assert row[col["location"]] == "'" + value
        assert not any(c and c[0] in "=+-@\t\r" for c in row)
    last = rows[-1]
    assert "no_owner" in last[col["findings"]]
    assert "forbidden_service:ftp:21/tcp" in last[col["findings"]]
    assert "502/tcp modbus" in last[col["services"]]
    verify_manifest(tmp_path / "a.csv")


def test_xlsx_export_chinese_headers(tmp_path):
    path = tmp_path / "a.xlsx"
    export_assets(hostile_assets(), path, "xlsx", InventorySettings(), NOW, lang="zh")
    ws = load_workbook(path).active
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0][0] == "资产编号" and "责任人" in rows[0] and "合规问题" in rows[0]
    owner = rows[0].index("责任人")
    for row, value in zip(rows[1:], HOSTILE, strict=False):
        assert row[owner] == "'" + value
    for row in ws.iter_rows():
        for cell in row:
            assert cell.data_type != "f"  # no formulas anywhere
    verify_manifest(path)


def test_json_export(tmp_path):
    path = tmp_path / "a.json"
    res = export_assets(hostile_assets(), path, "json", InventorySettings(), NOW, lang="zh", zone="ot")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert len(data["assets"]) == res.rows
    assert data["meta"]["columns"]["owner"] == "责任人"
    assert data["assets"][0]["owner"] == "'" + HOSTILE[0]
    assert data["assets"][0]["services"][0]["port"] == 502
    verify_manifest(path)


def test_scan_overdue_finding(tmp_path):
    old = asset(1, last_scan="2026-01-01T00:00:00.000000Z")
    never = asset(2)
    del never["secops"]["asset"]["last_scan"]
    path = tmp_path / "o.json"
    export_assets([old, never, asset(3)], path, "json", InventorySettings(scan_overdue_days=30), NOW)
    findings = [a["findings"] for a in json.loads(path.read_text())["assets"]]
    assert "scan_overdue" in findings[0] and "scan_overdue" in findings[1] and "scan_overdue" not in findings[2]


def test_bad_format_and_language(tmp_path):
    with pytest.raises(ValueError, match="format"):
        export_assets([], tmp_path / "x.pdf", "pdf", InventorySettings(), NOW)
    with pytest.raises(ValueError, match="language"):
        export_assets([], tmp_path / "x.csv", "csv", InventorySettings(), NOW, lang="fr")


# -- normalise first, then neutralise (issue 17 item 1) ------------------------------------------------------
# Values a spreadsheet turns into formulas only after normalisation: control characters that the XLSX writer
# drops (or Excel ignores), full-width and compatibility forms that NFKC maps to = + - @, blanks before them.
SNEAKY = ["\x01=HYPERLINK(\"http://198.18.0.1/x\",\"y\")", "\x00\x1b=1+1", "\x0b\x0c+cmd|' /C calc'!A0",
          "\uff1dHYPERLINK(\"http://198.18.0.1\")", "\uff0b1+1", "\uff0d2+3", "\uff20SUM(A1:A2)",
          "\ufe66cmd|'/c calc'!A1", " =1+1", "\u3000=1+1", "\u00a0@x", "\u202e=1+1", "\x7f\x85-1",
          "\u200b=1+1", "\ud800=1", "x" * 40_000]


def formula_like(value: object) -> bool:
    """Independent of secops.cells: drop C0/C1 controls (not tab/CR/LF), NFKC, skip blanks; formula start?"""
    if not isinstance(value, str):
        return False
    kept = "".join(ch for ch in value if unicodedata.category(ch) not in ("Cc", "Cf", "Cs") or ch in "\t\r\n")
    text = unicodedata.normalize("NFKC", kept).lstrip(" \t\r\n\u00a0")
    return text[:1] in ("=", "+", "-", "@")


def sneaky_assets() -> list[dict]:
    out = []
    for i, v in enumerate(SNEAKY):
        a = asset(i, owner=v, location=v, department=v)
        a["host"]["hostname"] = v  # a DHCP hostname chosen by whoever is on the network
        a["tags"] = [v, "ics"]
        out.append(a)
    return out


def test_every_format_is_inert_after_normalisation(tmp_path):
    for fmt in ("csv", "xlsx", "json"):
        export_assets(sneaky_assets(), tmp_path / f"s.{fmt}", fmt, InventorySettings(), NOW)
    wb = load_workbook(tmp_path / "s.xlsx")
    xlsx_cells = [c for row in wb.active.iter_rows() for c in row]
    assert not [c.coordinate for c in xlsx_cells if c.data_type == "f"]
    assert not [c.value for c in xlsx_cells if formula_like(c.value)]
    assert max(len(c.value or "") for c in xlsx_cells) <= 32_767  # what an Excel cell holds; the cut is marked
    assert any("…[cut: " in (c.value or "") for c in xlsx_cells)
    with (tmp_path / "s.csv").open(encoding="utf-8-sig", newline="") as fh:
        csv_rows = list(csv.reader(fh))
    assert len(csv_rows) == 1 + len(SNEAKY)
    assert not [c for row in csv_rows for c in row if formula_like(c)]
    data = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))

    def leaves(v):
        if isinstance(v, dict):
            return [x for y in v.values() for x in leaves(y)]
        if isinstance(v, list):
            return [x for y in v for x in leaves(y)]
        return [v]
    assert not [v for v in leaves(data["assets"]) if formula_like(v)]
    col = {k: i for i, (k, _e) in enumerate(COLUMNS)}
    # the value itself survives, normalised and marked as text
    assert csv_rows[1][col["owner"]] == "'=HYPERLINK(\"http://198.18.0.1/x\",\"y\")"
    assert csv_rows[4][col["hostname"]] == "'=HYPERLINK(\"http://198.18.0.1\")"
    assert csv_rows[12][col["owner"]] == "'=1+1"  # right-to-left override dropped
    assert data["assets"][5]["department"] == "'-2+3"


@pytest.mark.parametrize("value", SNEAKY[:-1])
def test_cell_normalises_then_neutralises(value):
    out = neutralise(value)
    assert out.startswith("'") or value == "\ud800=1"
    assert not formula_like(out)
    assert neutralise("Li Wei") == "Li Wei" and neutralise("水务 (一厂)") == "水务 (一厂)"


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_full_disk_export_is_one_error_and_leaves_nothing(fmt):
    """The same class as the full bulk spool: ENOSPC is a clear error, never a half-written export."""
    from inventory.export import ExportError
    from tests.support.outage import small_tmpfs

    with small_tmpfs("64k") as out:
        with pytest.raises(ExportError, match=r"export not written \(No space left on device\) after \d+ assets; "
                                              r"no partial file left"):
            export_assets((asset(i, location="x" * 200) for i in range(3000)), out / f"a.{fmt}", fmt,
                          InventorySettings(), NOW)
        assert list(out.iterdir()) == []
        res = export_assets([asset(1)], out / f"small.{fmt}", fmt, InventorySettings(), NOW)  # room for a small one
        assert res.rows == 1 and (out / f"small.{fmt}.sha256").is_file()
