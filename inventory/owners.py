"""`secops assets import owners.csv`: ownership from a CMDB export, matched to assets by MAC, IP or hostname.

Accepted headers (case-insensitive, English or Chinese): ip, mac, hostname (at least one to match on),
owner, department, location, criticality (low|medium|high|critical). Values are stored normalised (control
characters dropped, NFKC; exports also neutralise formulas); rows with problems are reported by line number
and change nothing.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inventory.store import AssetStore
from secops.cells import clean
from secops.ecs import iso

HEADER_ALIASES = {
    "ip": "ip", "address": "ip", "ip address": "ip", "ip地址": "ip", "地址": "ip",
    "mac": "mac", "mac address": "mac", "mac地址": "mac",
    "hostname": "hostname", "host": "hostname", "主机名": "hostname",
    "owner": "owner", "责任人": "owner", "负责人": "owner",
    "department": "department", "部门": "department",
    "location": "location", "位置": "location", "物理位置": "location",
    "criticality": "criticality", "重要程度": "criticality", "等级": "criticality",
}
FIELDS = ("owner", "department", "location", "criticality")
CRITICALITY = {"low": "low", "medium": "medium", "high": "high", "critical": "critical",
               "低": "low", "中": "medium", "高": "high", "关键": "critical"}
MAC_RE = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$")
MAX_VALUE = 256


class OwnersError(ValueError):
    """The CSV cannot be used at all (unreadable, no usable header)."""


@dataclass
class OwnersResult:
    rows: int = 0
    matched_rows: int = 0
    assets_updated: int = 0
    unmatched: list[int] = field(default_factory=list)  # line numbers
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "matched_rows": self.matched_rows, "assets_updated": self.assets_updated,
                "unmatched_lines": self.unmatched, "errors": self.errors}


def _criticality(value: str) -> str:
    mapped = CRITICALITY.get(value.strip().lower())
    if mapped:
        return mapped
    raise ValueError(f"criticality {value!r} is not one of low, medium, high, critical")


def read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, normalised row) pairs; OwnersError when the file or its header is unusable.

    Rows are split by the csv module alone (newline="" keeps quoted line breaks inside their field, and
    characters such as \\x0b, \\x1c or U+2028 stay data: ``str.splitlines`` would cut rows at them).
    Every value is normalised (control characters dropped, NFKC); the line number is where the row ends.
    """
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise OwnersError(f"{path}: cannot read as UTF-8 CSV ({exc})") from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next(reader, None)
        if header is None:
            raise OwnersError(f"{path}: empty file")
        keys = [HEADER_ALIASES.get(clean(h).strip().lower()) for h in header]
        if not {"ip", "mac", "hostname"} & set(keys):
            raise OwnersError(f"{path}: header needs at least one of ip, mac, hostname; got {', '.join(header)}")
        if not set(FIELDS) & set(keys):
            raise OwnersError(f"{path}: header has none of {', '.join(FIELDS)}")
        rows = []
        for values in reader:
            cleaned = [clean(v).strip() for v in values]
            if any(cleaned):
                rows.append((reader.line_num, {k: v for k, v in zip(keys, cleaned, strict=False) if k}))
    except csv.Error as exc:
        raise OwnersError(f"{path} line {reader.line_num}: not readable as CSV ({exc}); nothing imported") from None
    return rows


def validate_row(row: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    if row.get("ip"):
        out["ip"] = str(ipaddress.ip_address(row["ip"]))
    if row.get("mac"):
        mac = row["mac"].lower().replace("-", ":")
        if not MAC_RE.match(mac):
            raise ValueError(f"mac {row['mac']!r} is not a MAC address")
        out["mac"] = mac
    if row.get("hostname"):
        out["hostname"] = row["hostname"]
    if not out:
        raise ValueError("no ip, mac or hostname to match on")
    for f in FIELDS:
        value = row.get(f)
        if value:
            if len(value) > MAX_VALUE:
                raise ValueError(f"{f} longer than {MAX_VALUE} characters")
            out[f] = _criticality(value) if f == "criticality" else value
    return out


def apply_owners(store: AssetStore, path: Path) -> OwnersResult:
    """Match each row to assets and set their ownership fields (written immediately, refresh at the end)."""
    result = OwnersResult()
    updated: set[str] = set()
    for line, raw in read_rows(path):
        result.rows += 1
        try:
            row = validate_row(raw)
        except ValueError as exc:
            result.errors.append(f"line {line}: {exc}")
            continue
        assets: dict[str, dict[str, Any]] = {}
        for field_name, key in (("host.mac", "mac"), ("host.ip", "ip"), ("host.hostname", "hostname")):
            if row.get(key):
                for a in store.find_by(field_name, row[key]):
                    assets.setdefault(a["secops"]["asset"]["id"], a)
        if not assets:
            result.unmatched.append(line)
            continue
        result.matched_rows += 1
        for aid, asset in assets.items():
            part = asset["secops"]["asset"]
            for f in FIELDS:
                if row.get(f):
                    part[f] = row[f]
            part["sources"] = list(dict.fromkeys([*part.get("sources", []), "cmdb"]))
            part["findings"] = [x for x in part.get("findings", []) if not (x == "no_owner" and part.get("owner"))]
            asset["event"] = {**asset.get("event", {}), "ingested": iso()}
            store.es.index(index=store.index, id=aid, document=asset)
            updated.add(aid)
    result.assets_updated = len(updated)
    store.refresh()
    return result
