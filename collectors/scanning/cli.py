"""`secops scan`: scope-checked nmap scans, nmap XML import, scan policies."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.table import Table
from typer.core import TyperGroup

from collectors.scanning import policy as policies
from collectors.scanning import state
from collectors.scanning.nmap_xml import NmapXmlError, Report, parse_file
from collectors.scanning.profiles import PROFILES, ProfileError, check_ports
from collectors.scanning.runner import ScanError, plan_scan, run_chunked
from collectors.scanning.targets import TargetError
from secops.cli_support import console, err_console, es_client, fail, inert, inert_markup, progress, settings
from secops.contracts.scan import ScanResult, ScanSource
from secops.ecs import utcnow
from secops.es.bulk import dumps


class _ScanGroup(TyperGroup):
    """`secops scan TARGET...` runs a scan; `secops scan import|policies ...` are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


scan_app = typer.Typer(
    cls=_ScanGroup, no_args_is_help=True,
    help="Scope-checked nmap scans, nmap XML import, scan policies.\n\n"
         "Scan: [bold]secops scan TARGET... [--profile discovery|standard|deep] [--ports 22,80] [--no-store][/]\n\n"
         "Targets are addresses, CIDR networks or hostnames inside scanning.scopes and outside scanning.exclusions; "
         "anything else is refused before nmap starts (the default configuration scans nothing).")


@dataclass(frozen=True)
class Inventory:
    """How the scan commands reach the inventory. The composition root (secops.cli) connects it:
    this context never imports the inventory's code."""

    merge: Callable[[ScanResult], dict[str, Any]]  # merge into the stored inventory; returns the merge summary
    preview: Callable[[ScanResult], list[dict[str, Any]]]  # the asset documents a result describes


_inventory: Inventory | None = None


def connect_inventory(inventory: Inventory) -> None:
    global _inventory
    _inventory = inventory


def inventory() -> Inventory:
    if _inventory is None:
        fail("scan results cannot reach the inventory: no inventory is connected (run through `secops`)")
    return _inventory


def _summary(report: Report, title: str) -> None:
    """The live hosts of a scan or an imported file; every value from the scanned hosts (names, service and OS
    guesses) is shown as inert text: a banner cannot inject markup or terminal escapes."""
    table = Table("address", "mac", "hostname", "open ports", "os", title=inert(title))
    for h in report.live_hosts:
        ports = ", ".join(f"{p.port}/{p.transport} {(p.service.name if p.service else '') or ''}".strip()
                          for p in h.open_ports)
        table.add_row(inert(", ".join(h.addresses)), inert(h.mac), inert(", ".join(h.hostnames)), inert(ports),
                      inert(h.os_matches[0].name if h.os_matches else None))
    console.print(table)
    console.print(f"{len(report.live_hosts)} hosts up, {len(report.down_hosts)} down")


@scan_app.command("run", hidden=True)
def scan_run(
    targets: Annotated[list[str], typer.Argument(help="Addresses, CIDR networks or hostnames (inside the scope)")],
    profile: Annotated[str, typer.Option("--profile", "-p", help=f"One of: {', '.join(PROFILES)}")] = "standard",
    ports: Annotated[str | None, typer.Option("--ports", help="Port list instead of the profile's top ports")] = None,
    scope: Annotated[list[str] | None, typer.Option("--scope", help="Limit to these named scopes")] = None,
    store: Annotated[bool, typer.Option("--store/--no-store", help="Merge the result into the inventory")] = True,
) -> None:
    """Scan targets with nmap after checking them against scanning.scopes and scanning.exclusions."""
    s = settings()
    try:
        if ports:
            check_ports(ports)
        plan = plan_scan(targets, profile, s.scanning, ports=ports, scope_names=scope)
    except (TargetError, ProfileError) as exc:
        fail(str(exc))
    chunks = plan.chunks(s.scanning.chunk_size)
    with progress() as bar:
        task = bar.add_task(f"nmap {profile} ({len(chunks)} chunks)", total=len(chunks))
        try:
            report = run_chunked(plan, s.scanning.chunk_size, s.scanning.max_parallel_chunks,
                                 nmap_path=s.scanning.nmap_path, on_chunk=lambda _r: bar.advance(task))
        except ScanError as exc:
            fail(str(exc))
    _summary(report, f"nmap {profile}: {' '.join(plan.host_args)}")
    if store:
        result = inventory().merge(ScanResult(report, ScanSource.SCAN, "cli"))
        console.print(f"inventory: {result['assets_created']} new, {result['assets_updated']} updated assets; "
                      f"changes {result['changes'] or 'none'}")


@scan_app.command("import")
def scan_import(
    files: Annotated[list[Path], typer.Argument(help="nmap -oX files")],
    output: Annotated[str, typer.Option("--output", "-o", help="es (merge into the inventory) or ndjson (stdout)")]
    = "es",
) -> None:
    """Import existing nmap XML results: one secops.asset per live host; down hosts are only counted."""
    if output not in ("es", "ndjson"):
        fail(f"--output must be es or ndjson, not {output!r}")
    failed, up, down, assets = [], 0, 0, 0
    with progress() as bar:
        task = bar.add_task("importing nmap XML", total=len(files))
        for f in files:
            try:
                report = parse_file(f)
            except NmapXmlError as exc:
                err_console.print(f"[red]error:[/] {inert_markup(exc)}", highlight=False)
                failed.append(str(f))
                bar.advance(task)
                continue
            up, down = up + len(report.live_hosts), down + len(report.down_hosts)
            result = ScanResult(report, ScanSource.IMPORT, f"import {f.name}")
            if output == "ndjson":
                for doc in inventory().preview(result):
                    sys.stdout.write(dumps(doc).decode() + "\n")
                    assets += 1
            else:
                summary = inventory().merge(result)
                assets += summary["assets_created"] + summary["assets_updated"]
            bar.advance(task)
    err_console.print(f"{len(files) - len(failed)} files imported: {up} hosts up ({assets} assets written), "
                      f"{down} hosts down (counted, not stored)", soft_wrap=True)
    if failed:
        fail(f"{len(failed)} file(s) refused: {', '.join(failed)}")


@scan_app.command("policies")
def scan_policies() -> None:
    """List the configured scan policies, when they last ran and whether they are due now."""
    s = settings()
    if not s.scanning.policies:
        console.print("no scan policies configured (scanning.policies): nothing is scanned on schedule")
        return
    try:
        es = es_client()
    except Exception:
        es = None
    now = utcnow()
    table = Table("policy", "scope", "profile", "ports", "every", "windows", "last run", "due")
    for p in s.scanning.policies:
        last = state.last_run(es, s.elasticsearch.index_prefix, p.name) if es else None
        try:
            due = "yes" if policies.is_due(p, last, now) else "no"
        except policies.PolicyError as exc:
            due = f"[red]{exc}[/]"
        table.add_row(p.name, f"{p.scope} ({', '.join(s.scanning.scopes.get(p.scope, [])) or 'undefined'})",
                      p.profile, p.ports or "profile", f"{p.every_minutes} min",
                      "; ".join(p.maintenance_windows) or "always", last.isoformat() if last else "never", due)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the scan commands to the root app."""
    app.add_typer(scan_app, name="scan")
