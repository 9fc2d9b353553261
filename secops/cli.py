"""The ``secops`` command line: the composition root that wires every context's commands together."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from secops import __version__
from secops.cli_support import CliError, console, err_console, es_client, settings, state, writer
from secops.config import ConfigError, redacted
from secops.es import retention
from secops.es.client import StoreUnavailable, es_hosts, redis_url
from secops.es.templates import DATASETS, install_templates

if TYPE_CHECKING:
    from secops.devstack.stack import LocalStack

app = typer.Typer(
    name="secops",
    help="Self-hosted network-security monitoring and asset inventory: capture, detect, respond, audit.",
    epilog="This command line is in English. The Chinese (zh-CN) interface is the web console (`secops console`): "
           "each user picks English or 简体中文 there (a per-user preference; the browser's Accept-Language is the "
           "default). Compliance exports take --lang zh.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show and check the effective configuration.", no_args_is_help=True)
stack_app = typer.Typer(help="Local Elasticsearch + Redis for development, tests and the demo.", no_args_is_help=True)
es_app = typer.Typer(help="Elasticsearch: templates, indices, the durable spool.", no_args_is_help=True)
retention_app = typer.Typer(help="Delete event indices older than their retention budget.", no_args_is_help=True)
i18n_app = typer.Typer(help="Message catalogues (gettext, Babel): find untranslated messages, regenerate.",
                       no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(stack_app, name="stack")
app.add_typer(es_app, name="es")
app.add_typer(retention_app, name="retention")
app.add_typer(i18n_app, name="i18n")

CONTEXT_CLIS = ["collectors.cli", "inventory.cli", "detections.cli", "playbooks.cli",
                "secops.console.cli"]  # the console and its accounts


@app.callback()
def _root(
    config: Annotated[str | None, typer.Option("--config", "-c", envvar="SECOPS_CONFIG",
                                               help="YAML configuration file (default ./secops.yaml)")] = None,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        console.print(f"secops {__version__}")
        raise typer.Exit()
    state.config_path = config


# -- config ------------------------------------------------------------------------------------
@config_app.command("show")
def config_show(as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML")] = False) -> None:
    """Print the effective configuration (file + SECOPS_* environment), secrets redacted."""
    data = redacted(settings())
    data["elasticsearch"]["effective_hosts"] = es_hosts(settings())
    data["redis"]["effective_url"] = redis_url(settings())
    if as_json:
        console.print_json(json.dumps(data))
    else:
        console.print(yaml.safe_dump(data, sort_keys=False))


@config_app.command("check")
def config_check(
    connect: Annotated[bool, typer.Option(help="Also check that Elasticsearch answers")] = True,
) -> None:
    """Validate the configuration and, by default, that Elasticsearch is reachable."""
    settings()
    if connect:
        health = es_client().cluster.health()
        console.print(f"Elasticsearch {es_hosts(settings())[0]}: {health['status']}")
    console.print("[green]configuration valid[/]")


# -- stack (development tooling: secops.devstack is imported only inside these commands) --------
@contextmanager
def _local_stack() -> Iterator[LocalStack]:
    from secops.devstack.stack import LocalStack, StackError

    try:
        yield LocalStack(settings().paths.state_dir)
    except StackError as exc:
        raise CliError(str(exc)) from None


@stack_app.command("up")
def stack_up() -> None:
    """Start (or confirm) the local Elasticsearch node and redis-server; idempotent."""
    with _local_stack() as stack, \
            console.status("starting Elasticsearch and Redis (first run fetches Elasticsearch with mvn)..."):
        es, rd = stack.up()
    install_templates(es_client(), settings().elasticsearch.index_prefix)
    console.print(f"[green]up[/] elasticsearch {es.url} (pid {es.pid})  redis {rd.url} (pid {rd.pid})")


@stack_app.command("status")
def stack_status() -> None:
    """Say what runs where (the pid of Elasticsearch is its server JVM's)."""
    table = Table("service", "url", "state", "pid")
    with _local_stack() as stack:
        status = stack.status()
    for name, info in status.items():
        table.add_row(name, info["url"] or "-", "[green]running[/]" if info["running"] else "[red]stopped[/]",
                      str(info["pid"] or "-"))
    console.print(table)


@stack_app.command("down")
def stack_down() -> None:
    """Stop the local stack and wait until its processes have exited (data is kept for the next `stack up`)."""
    with _local_stack() as stack:
        stack.down()
    console.print("stopped")


# -- es ----------------------------------------------------------------------------------------
@es_app.command("templates")
def es_templates() -> None:
    """Install or update the index template of every dataset."""
    names = install_templates(es_client(), settings().elasticsearch.index_prefix)
    console.print(f"installed {len(names)} index templates")


@es_app.command("indices")
def es_indices() -> None:
    """Document counts per secops index."""
    prefix = settings().elasticsearch.index_prefix
    rows = es_client().cat.indices(index=f"{prefix}-*", format="json", h="index,docs.count,store.size", s="index")
    table = Table("index", "docs", "size")
    for r in rows:
        table.add_row(r["index"], r["docs.count"], r["store.size"])
    console.print(table)


@es_app.command("spool")
def es_spool(replay: Annotated[bool, typer.Option("--replay", help="Send the spooled documents now")] = False) -> None:
    """Show (and optionally replay) documents spooled while Elasticsearch was unreachable."""
    with writer(install=replay) as w:
        pending = w.spool.pending()
        console.print(f"spool {w.spool.dir}: {pending} pending files, "
                      f"{len(list(w.spool.corrupt_dir.glob('*')))} quarantined, "
                      f"{len(list(w.spool.dead_dir.glob('*')))} dead-letter files")
        if replay and pending:
            n = w.replay()
            console.print(f"replayed {n} documents; {w.spool.pending()} files still pending")


# -- retention ---------------------------------------------------------------------------------
@retention_app.command("apply")
def retention_apply(dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show the plan")] = False) -> None:
    """Delete daily indices older than retention.default_days / retention.datasets[<name>]."""
    s = settings()
    es = es_client()
    decisions = retention.apply(es, s.elasticsearch.index_prefix, s.retention, dry_run=dry_run)
    ilm = False if dry_run else retention.publish_ilm_policies(es, s.elasticsearch.index_prefix, s.retention)
    table = Table("index", "keep days", "action")
    for d in decisions:
        table.add_row(d.index, str(d.keep_days), "[red]delete[/]" if d.delete else "keep")
    console.print(table)
    deleted = sum(d.delete for d in decisions)
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {deleted} of {len(decisions)} daily indices; ILM policies {'published' if ilm else 'n/a'}")


# -- workers -----------------------------------------------------------------------------------
@app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Run a Celery worker (extra arguments go to `celery worker`)."""
    from secops.celery_app import app as celery

    celery.worker_main(["worker", "--loglevel=INFO", *ctx.args])


@app.command("beat", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def beat(ctx: typer.Context) -> None:
    """Run Celery beat: scheduled detections, scans, housekeeping, retention."""
    from secops.celery_app import app as celery

    schedule = Path(settings().paths.state_dir) / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    celery.start(["beat", "--loglevel=INFO", f"--schedule={schedule}", *ctx.args])


# -- i18n --------------------------------------------------------------------------------------
def i18n_gaps() -> list[str]:
    """Every message missing from a catalogue: the gettext catalogues and the rule pack's x_secops_i18n texts."""
    from detections.loader import BUILTIN_RULES, load_rules, missing_translations
    from secops import i18n

    gaps = [str(g) for g in i18n.check(i18n.CATALOGUES)]
    tags = [i18n.language_tag(lang) for lang in i18n.TRANSLATED]
    rules = load_rules([BUILTIN_RULES])
    gaps += [f"rules: {f.path}: {f.error}" for f in rules.errors]
    return gaps + [f"rules [{', '.join(tags)}] {line}" for line in missing_translations(rules, tags)]


@i18n_app.command("check")
def i18n_check() -> None:
    """List every message without a reviewed translation; exit 1 when there is one."""
    from secops import i18n

    gaps = i18n_gaps()
    for line in gaps:
        console.print(line, markup=False, highlight=False)
    names = ", ".join([c.name for c in i18n.CATALOGUES] + ["rules"])
    console.print(f"{len(gaps)} gap(s) in {names} for {', '.join(i18n.TRANSLATED)}", markup=False)
    raise typer.Exit(1 if gaps else 0)


@i18n_app.command("update")
def i18n_update() -> None:
    """Re-extract every catalogue's messages with Babel and merge them into the .po files (sorted)."""
    from secops import i18n

    for cat in i18n.CATALOGUES:
        for lang in i18n.TRANSLATED:
            console.print(f"{cat.name}: {cat.update(lang)}", markup=False)


@app.command("datasets")
def datasets() -> None:
    """List the document datasets and where they are stored."""
    table = Table("event.dataset", "index")
    prefix = settings().elasticsearch.index_prefix
    for name, ds in DATASETS.items():
        table.add_row(name, f"{prefix}-{ds.short}-YYYY.MM.DD" if ds.daily else f"{prefix}-{ds.short}")
    console.print(table)


@app.command("demo")
def demo() -> None:
    """Run the platform end to end on this machine (offline): stack, capture, scan, detect, respond, export."""
    from secops.devstack.demo import run_demo

    with _local_stack():
        failures = run_demo(settings(), console)
    raise typer.Exit(1 if failures else 0)


def _register_contexts() -> None:
    for module in CONTEXT_CLIS:
        importlib.import_module(module).register(app)
    _connect_scans_to_inventory()


def _connect_scans_to_inventory() -> None:
    """`secops scan` merges its results into the inventory: wired here, so neither context imports the other."""
    from collectors.scanning import cli as scan_cli
    from secops.contracts.scan import ScanResult

    def merge(result: ScanResult) -> dict[str, Any]:
        from inventory import service

        return service.merge_scan(es_client(), settings(), result)

    def preview(result: ScanResult) -> list[dict[str, Any]]:
        from inventory import service

        return service.assets_from_scan(settings(), result)

    scan_cli.connect_inventory(scan_cli.Inventory(merge=merge, preview=preview))


_register_contexts()


def main() -> None:
    try:
        app()
    except (ConfigError, CliError, StoreUnavailable) as exc:
        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
