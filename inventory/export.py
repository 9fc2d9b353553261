"""Compliance exports of the inventory (CSV, XLSX, JSON) with digests and formula-injection protection.

Every cell goes through ``secops.cells``: normalised first (control characters dropped, NFKC), then a
value a spreadsheet could read as a formula gets a leading apostrophe, so it arrives as inert text.
Beside each export a ``.sha256`` manifest (``sha256sum -c`` format) and, where OpenSSL offers
it, an ``.sm3`` manifest (GB/T 32905) are written.
"""

from __future__ import annotations

import contextlib
import csv
import gettext
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zipfile import ZIP_DEFLATED, ZipFile

import orjson
from openpyxl import Workbook
from openpyxl.writer.excel import ExcelWriter

from inventory.findings import compute as compute_findings
from secops.cells import cell, cell_tree
from secops.config import InventorySettings
from secops.ecs import get, iso
from secops.i18n import EXPORT, N_, Message, translations

FORMATS = ("csv", "xlsx", "json")
# key, English header. The Chinese headers are in the export catalogue (inventory/locale/zh_CN/.../export.po), worded
# as GB/T 22239-2019 (MLPS 2.0) words them, with the clause noted as a translator comment.
COLUMNS: list[tuple[str, str]] = [
    ("asset_id", N_("Asset ID")),
    ("ip", N_("IP addresses")),
    ("mac", N_("MAC addresses")),
    ("hostname", N_("Hostname")),
    ("vendor", N_("Vendor")),
    ("os", N_("Operating system")),
    ("zone", N_("Network zone")),
    ("owner", N_("Owner")),
    ("department", N_("Department")),
    ("location", N_("Location")),
    ("criticality", N_("Criticality")),
    ("services", N_("Open services")),
    ("first_seen", N_("First seen")),
    ("last_seen", N_("Last seen")),
    ("last_scan", N_("Last scan")),
    ("findings", N_("Findings")),
    ("tags", N_("Tags")),
    ("sources", N_("Sources")),
]
SHEET = N_("Asset inventory")
FINDINGS = {"no_owner": N_("no owner assigned"), "scan_overdue": N_("scan overdue"),
            "forbidden_service": N_("forbidden service %(service)s on %(port)s")}
LANGS = {"en": "en", "zh": "zh_CN"}  # --lang value -> catalogue language


def _tr(lang: str) -> gettext.NullTranslations:
    if lang not in LANGS:
        raise ValueError(f"language must be en or zh, not {lang!r}")
    return translations(EXPORT, LANGS[lang])


def headers(lang: str) -> list[str]:
    tr = _tr(lang)
    return [tr.gettext(en) for _k, en in COLUMNS]


def finding_text(code: str, lang: str) -> str:
    """A finding code (``no_owner``, ``forbidden_service:telnet:23/tcp``) in words; English keeps the code, which
    scripts and earlier exports use."""
    if lang == "en":
        return code
    kind, _, rest = code.partition(":")
    if kind not in FINDINGS:
        return code
    service, _, port = rest.partition(":")
    return Message(FINDINGS[kind], {"service": service, "port": port} if rest else {}).render(_tr(lang))


def _join(values: Any) -> str:
    if values is None:
        return ""
    if isinstance(values, list):
        return "; ".join(str(v) for v in values if v not in (None, ""))
    return str(values)


def service_text(svc: dict[str, Any]) -> str:
    words = [f"{svc.get('port')}/{svc.get('transport', 'tcp')}", svc.get("name"), svc.get("product"),
             svc.get("version")]
    return " ".join(str(w) for w in words if w)


def record(asset: dict[str, Any], cfg: InventorySettings, now: datetime) -> dict[str, Any]:
    """One asset as export values (findings computed now, so 'scan overdue' is current)."""
    part = get(asset, "secops.asset") or {}
    host = asset.get("host") or {}
    return {
        "asset_id": part.get("id"), "ip": host.get("ip") or [], "mac": host.get("mac") or [],
        "hostname": host.get("hostname"), "vendor": part.get("vendor"), "os": (host.get("os") or {}).get("full"),
        "zone": part.get("zone"), "owner": part.get("owner"), "department": part.get("department"),
        "location": part.get("location"), "criticality": part.get("criticality"),
        "services": part.get("services") or [], "first_seen": part.get("first_seen"),
        "last_seen": part.get("last_seen"), "last_scan": part.get("last_scan"),
        "findings": compute_findings(asset, cfg, now), "tags": asset.get("tags") or [],
        "sources": part.get("sources") or [],
    }


def cells(rec: dict[str, Any], lang: str = "en") -> list[str]:
    """Flat, neutralised text cells in column order."""
    out = []
    for key, _en in COLUMNS:
        value = rec[key]
        if key == "services":
            text = "; ".join(service_text(s) for s in value)
        elif key == "findings":
            text = _join([finding_text(f, lang) for f in value])
        else:
            text = _join(value)
        out.append(cell(text))
    return out


class ExportError(Exception):
    """The export could not be written; nothing of it is left on disk."""


@dataclass
class ExportResult:
    path: Path
    rows: int
    sha256: str
    sm3: str | None
    manifests: list[Path]


def _write_csv(path: Path, head: list[str], rows: Iterable[list[str]]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as fh:  # BOM: Excel opens Chinese headers correctly
        w = csv.writer(fh, quoting=csv.QUOTE_ALL)
        w.writerow(head)
        w.writerows(rows)


def _write_xlsx(path: Path, head: list[str], rows: Iterable[list[str]], sheet: str = "assets") -> None:
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet)
    ws.append(head)
    for row in rows:
        ws.append(row)
    archive = ZipFile(path, "w", ZIP_DEFLATED, allowZip64=True)
    try:
        ExcelWriter(wb, archive).save()
    except BaseException:
        # Close it here (a full disk fails again, quietly): else the archive retries at garbage collection.
        with contextlib.suppress(OSError, ValueError):
            archive.close()
        raise


def _write_json(path: Path, head: list[str], records: Iterable[dict[str, Any]], meta: dict[str, Any]) -> None:
    with path.open("wb") as fh:
        fh.write(b'{"meta":' + orjson.dumps({**meta, "columns": dict(zip([c[0] for c in COLUMNS], head,
                                                                          strict=True))}) + b',"assets":[')
        for i, rec in enumerate(records):
            fh.write((b"," if i else b"") + b"\n" + orjson.dumps(cell_tree(rec)))
        fh.write(b"\n]}\n")


def digest_file(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sm3_available() -> bool:
    try:
        hashlib.new("sm3")
    except ValueError:
        return False
    return True


def write_manifests(path: Path) -> tuple[str, str | None, list[Path]]:
    sha = digest_file(path, "sha256")
    manifests = [path.with_name(path.name + ".sha256")]
    manifests[0].write_text(f"{sha}  {path.name}\n", encoding="utf-8")
    sm3 = None
    if sm3_available():
        sm3 = digest_file(path, "sm3")
        manifests.append(path.with_name(path.name + ".sm3"))
        manifests[1].write_text(f"{sm3}  {path.name}\n", encoding="utf-8")
    return sha, sm3, manifests


def export_assets(assets: Iterable[dict[str, Any]], path: Path, fmt: str, cfg: InventorySettings, now: datetime,
                  *, lang: str = "en", zone: str | None = None,
                  on_row: Callable[[], None] | None = None) -> ExportResult:
    """Write every asset to ``path`` in ``fmt`` and the manifests beside it."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    head = headers(lang)
    count = 0

    def records() -> Iterator[dict[str, Any]]:
        nonlocal count
        for asset in assets:
            count += 1
            if on_row:
                on_row()
            yield record(asset, cfg, now)

    tmp = path.with_name(path.name + ".partial")
    written: list[Path] = [tmp]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "json":
            _write_json(tmp, head, records(), {"generated_at": iso(now), "zone": zone, "lang": lang})
        elif fmt == "csv":
            _write_csv(tmp, head, (cells(r, lang) for r in records()))
        else:
            sheet = "assets" if lang == "en" else _tr(lang).gettext(SHEET)
            _write_xlsx(tmp, head, (cells(r, lang) for r in records()), sheet)
        tmp.replace(path)
        written.append(path)
        written += [path.with_name(path.name + ext) for ext in (".sha256", ".sm3")]
        sha, sm3, manifests = write_manifests(path)
    except OSError as exc:
        # A full disk or a failing one: no export without its manifests, and no partial file left behind.
        for leftover in written:
            leftover.unlink(missing_ok=True)
        raise ExportError(f"{path}: export not written ({exc.strerror or exc}) after {count} assets; "
                          f"no partial file left") from None
    return ExportResult(path, count, sha, sm3, manifests)
