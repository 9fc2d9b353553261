"""`secops assets`: list, show, import ownership from a CMDB CSV, compliance exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from inventory.export import FORMATS, ExportError, export_assets
from inventory.owners import OwnersError, apply_owners
from inventory.store import AssetStore
from secops.audit import current_actor, write_audit
from secops.cli_support import console, es_client, fail, inert, inert_markup, progress, settings
from secops.ecs import get, utcnow

assets_app = typer.Typer(help="The asset inventory: list, show, ownership import, compliance exports.",
                         no_args_is_help=True)


def _store() -> AssetStore:
    return AssetStore(es_client(), settings().elasticsearch.index_prefix)


@assets_app.command("list")
def assets_list(
    zone: Annotated[str | None, typer.Option("--zone", help="Only this network zone")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many rows")] = 200,
) -> None:
    """Assets with addresses, owner, open ports and findings."""
    table = Table("asset", "ip", "mac", "hostname", "zone", "owner", "ports", "last seen", "findings")
    n = 0
    for a in _store().iter_all(zone):
        if n >= limit:
            break
        n += 1
        part = get(a, "secops.asset") or {}
        ports = ", ".join(f"{s['port']}/{s.get('transport', 'tcp')}" for s in part.get("services") or [])
        table.add_row(*(inert(v) for v in (
            part.get("id", "")[:12], ", ".join(get(a, "host.ip") or []), ", ".join(get(a, "host.mac") or []),
            get(a, "host.hostname"), part.get("zone"), part.get("owner"), ports, part.get("last_seen"),
            ", ".join(part.get("findings") or []))))
    console.print(table)
    console.print(f"{n} assets shown")


@assets_app.command("show")
def assets_show(key: Annotated[str, typer.Argument(help="Asset id, IP address, MAC or hostname")]) -> None:
    """One asset as JSON."""
    asset = _store().lookup(key)
    if asset is None:
        fail(f"no asset matches {key!r}")
    console.print_json(json.dumps(asset))


@assets_app.command("import")
def assets_import(csv_file: Annotated[Path, typer.Argument(help="CMDB export: ip/mac/hostname + owner, "
                                                            "department, location, criticality")]) -> None:
    """Fill owner/department/location/criticality from a CMDB CSV (matched by MAC, IP or hostname)."""
    s = settings()
    es = es_client()
    try:
        result = apply_owners(AssetStore(es, s.elasticsearch.index_prefix), csv_file)
    except OwnersError as exc:
        fail(str(exc))
    write_audit(es, s.elasticsearch.index_prefix, "inventory.import_owners", str(csv_file),
                "success" if not result.errors else "partial", details=result.as_dict())
    console.print(f"{result.rows} rows: {result.matched_rows} matched, {result.assets_updated} assets updated, "
                  f"{len(result.unmatched)} unmatched, {len(result.errors)} refused", soft_wrap=True)
    for err in result.errors[:20]:
        console.print(f"[yellow]refused[/] {inert_markup(err)}", highlight=False, soft_wrap=True)


@assets_app.command("export")
def assets_export(
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, xlsx or json")] = "xlsx",
    zone: Annotated[str | None, typer.Option("--zone", help="Only this network zone")] = None,
    lang: Annotated[str, typer.Option("--lang", help="Column headers: en or zh (MLPS 2.0)")] = "en",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write")] = None,
) -> None:
    """Compliance export: every asset with owner, services, last scan, findings; manifests + audit record."""
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if lang not in ("en", "zh"):
        fail(f"--lang must be en or zh, not {lang!r}")
    s = settings()
    es = es_client()
    store = AssetStore(es, s.elasticsearch.index_prefix)
    now = utcnow()
    path = output or Path(f"assets-{zone or 'all'}-{now.strftime('%Y%m%dT%H%M%SZ')}.{fmt}")
    total = store.count(zone)
    with progress() as bar:
        task = bar.add_task(f"exporting {fmt}", total=total)
        try:
            result = export_assets(store.iter_all(zone), path, fmt, s.inventory, now, lang=lang, zone=zone,
                                   on_row=lambda: bar.advance(task))
        except ExportError as exc:
            fail(str(exc))
    write_audit(es, s.elasticsearch.index_prefix, "inventory.export", str(path.resolve()), "success",
                details={"format": fmt, "zone": zone, "lang": lang, "rows": result.rows, "sha256": result.sha256,
                         "sm3": result.sm3, "actor": current_actor()})
    console.print(f"wrote {result.rows} assets to {path} (sha256 {result.sha256}); manifests: "
                  f"{', '.join(m.name for m in result.manifests)}", soft_wrap=True)


@assets_app.command("merge")
def assets_merge(
    since: Annotated[str | None, typer.Option("--since", help="ISO arrival time; default: the checkpoint")] = None,
) -> None:
    """Merge passive observations from the sensors into the inventory (beat does this every minute)."""
    from inventory import service

    result = service.merge_observations(es_client(), settings(), since)
    console.print(f"merged observations: {result}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this context's commands to the root app."""
    app.add_typer(assets_app, name="assets")
