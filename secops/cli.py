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
from rich.table import Table

from secops import __version__
from secops.cli_support import CliError, console, err_console, es_client, inert_markup, settings, state, writer
from secops.redaction import install_log_redaction, redact_text, redacted
from secops.runtime import exit_now, tune_process

if TYPE_CHECKING:
    from secops.devstack.stack import LocalStack
    from secops.es.spool import Spool, SpoolSummary

# The Elasticsearch client and each context's modules are imported by the commands that use them, and a command
# line loads only the context that registers its command (``main``): `secops ingest --output ndjson` starts in
# 0.3 s instead of 0.85 s, a quarter of a 1M-packet ingest's wall time.
root = typer.Typer(
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
root.add_typer(config_app, name="config")
root.add_typer(stack_app, name="stack")
root.add_typer(es_app, name="es")
root.add_typer(retention_app, name="retention")
root.add_typer(i18n_app, name="i18n")

# the module of each context that registers commands (``register(app)``), with the top-level commands it adds
# (tests/unit/test_cli_lazy.py checks these against what registration adds)
CONTEXT_COMMANDS: dict[str, tuple[str, ...]] = {
    "collectors.capture_cli": ("ingest", "sensor", "pcap"),
    "collectors.scanning.cli": ("scan",),
    "inventory.cli": ("assets",),
    "detections.cli": ("rules", "detect", "alerts", "kibana"),
    "playbooks.cli": ("playbooks",),
    "secops.console.cli": ("console", "users", "cases"),  # the console and its accounts
}
CONTEXT_CLIS = list(CONTEXT_COMMANDS)


@root.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    config: Annotated[str | None, typer.Option("--config", "-c", envvar="SECOPS_CONFIG",
                                               help="YAML configuration file (default ./secops.yaml)")] = None,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        console.print(f"secops {__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        console.print(ctx.get_help())
        raise typer.Exit(2)
    state.config_path = config


# -- config ------------------------------------------------------------------------------------
@config_app.command("show")
def config_show(as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML")] = False) -> None:
    """Print the effective configuration (file + SECOPS_* environment), secrets redacted."""
    from secops.es.client import es_hosts, redis_url

    data = redacted(settings())
    data["elasticsearch"]["effective_hosts"] = [redact_text(h) for h in es_hosts(settings())]
    data["redis"]["effective_url"] = redact_text(redis_url(settings()))
    if as_json:
        console.print_json(json.dumps(data))
    else:
        console.print(yaml.safe_dump(data, sort_keys=False))


@config_app.command("check")
def config_check(
    connect: Annotated[bool, typer.Option(help="Also check that Elasticsearch answers")] = True,
) -> None:
    """Validate the configuration and, by default, that Elasticsearch is reachable."""
    from secops.es.client import es_hosts

    settings()
    if connect:
        health = es_client().cluster.health()
        console.print(f"Elasticsearch {redact_text(es_hosts(settings())[0])}: {health['status']}")
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
def stack_up(
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=9, help="Elasticsearch nodes (>1: a cluster)")] = 1,
) -> None:
    """Start (or confirm) the local Elasticsearch node or cluster and redis-server; idempotent."""
    from secops.es.templates import install_templates

    with _local_stack() as stack, \
            console.status("starting Elasticsearch and Redis (first run fetches Elasticsearch with mvn)..."):
        es, rd = stack.up(nodes)
    s = settings()
    install_templates(es_client(), s.elasticsearch.index_prefix, s.elasticsearch.replicas)
    urls = " ".join(es.urls) if hasattr(es, "urls") else es.url
    console.print(f"[green]up[/] elasticsearch {urls}  redis {rd.url} (pid {rd.pid})")


@stack_app.command("status")
def stack_status() -> None:
    """Say what runs where: each Elasticsearch node with its roles (* = elected master), cluster health."""
    table = Table("service", "url", "state", "pid", "roles")
    with _local_stack() as stack:
        status = stack.status()
    es = status["elasticsearch"]
    rows = [(n["name"], n["url"], n["running"], n["pid"], (n["roles"] or "-") + (" *" if n["master"] else ""))
            for n in es.get("nodes", [])] or [("elasticsearch", es["url"], es["running"], es["pid"], "-")]
    rows.append(("redis", status["redis"]["url"], status["redis"]["running"], status["redis"]["pid"], "-"))
    for name, url, running, pid, roles in rows:
        table.add_row(name, url or "-", "[green]running[/]" if running else "[red]stopped[/]", str(pid or "-"), roles)
    console.print(table)
    console.print(f"cluster health: {es.get('health') or 'unreachable'}")


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
    from secops.es.templates import install_templates

    names = install_templates(es_client(), settings().elasticsearch.index_prefix, settings().elasticsearch.replicas)
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
    """List documents spooled while Elasticsearch was unreachable (changes nothing); --replay sends them."""
    from secops.es.spool import Spool

    spool = Spool(settings().paths.spool())
    _print_spool(spool.summary(), spool)
    for sub in sorted(d for d in spool.dir.glob("*") if d.is_dir() and d not in (spool.corrupt_dir, spool.dead_dir)):
        if (own := Spool(sub)).pending():  # a sensor worker's own spool: that worker replays it when it runs
            _print_spool(own.summary(), own)
    if replay:
        if removed := spool.remove_stale_partials():
            console.print(f"removed {removed} partial files left by writers that died mid-write")
        if spool.pending():
            with writer() as w:
                n = w.replay()
            console.print(f"replayed {n} documents; {w.spool.pending()} files still pending")


def _print_spool(sm: SpoolSummary, spool: Spool) -> None:
    console.print(f"spool {spool.dir}: {sm.pending_files} pending files ({sm.pending_documents} documents, "
                  f"{sm.pending_bytes} bytes), {sm.partial_files} partial (incomplete writes, not replayable), "
                  f"{sm.quarantined_files} quarantined, {sm.dead_letter_files} dead-letter files "
                  f"({sm.dead_letter_documents} documents)"
                  + (f", {sm.unreadable_files} unreadable" if sm.unreadable_files else ""), soft_wrap=True,
                  highlight=False)


# -- retention ---------------------------------------------------------------------------------
@retention_app.command("apply")
def retention_apply(dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show the plan")] = False) -> None:
    """Delete daily indices older than retention.default_days / retention.datasets[<name>]."""
    from secops.es import retention

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
@root.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Run a Celery worker (extra arguments go to `celery worker`)."""
    from secops.celery_app import app as celery

    celery.worker_main(["worker", "--loglevel=INFO", *ctx.args])


@root.command("beat", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def beat(ctx: typer.Context) -> None:
    """Run Celery beat: scheduled detections, scans, housekeeping, retention.

    Only one beat schedules at a time: others wait on the beat lease and take over when it is free."""
    import logging

    from secops.beat import BeatLeadership
    from secops.celery_app import app as celery
    from secops.es.store import Store

    s = settings()
    schedule = Path(s.paths.state_dir) / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s: %(levelname)s/%(name)s] %(message)s")
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)  # not one line per lease renewal
    with BeatLeadership(Store.from_settings(es_client(), s), s.beat.lease_seconds):
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


@root.command("datasets")
def datasets() -> None:
    """List the document datasets and where they are stored."""
    from secops.es.templates import DATASETS

    table = Table("event.dataset", "index")
    prefix = settings().elasticsearch.index_prefix
    for name, ds in DATASETS.items():
        table.add_row(name, f"{prefix}-{ds.short}-YYYY.MM.DD" if ds.daily else f"{prefix}-{ds.short}")
    console.print(table)


@root.command("demo")
def demo() -> None:
    """Run the platform end to end on this machine (offline): stack, capture, scan, detect, respond, export."""
    from secops.devstack.demo import run_demo

    with _local_stack():
        failures = run_demo(settings(), console)
    raise typer.Exit(1 if failures else 0)


def _register_contexts(command: str | None = None) -> None:
    """Register the context that adds ``command``; every context when ``command`` is None or unknown (help,
    a typo: the error lists every command)."""
    wanted = [m for m, names in CONTEXT_COMMANDS.items() if command in names] or CONTEXT_CLIS
    for module in wanted:
        importlib.import_module(module).register(root)
    if "collectors.scanning.cli" in wanted:
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


def _command_name(args: list[str]) -> str | None:
    """The top-level command a command line names (the first word after the root's options)."""
    words = iter(args)
    for word in words:
        if word in ("--config", "-c"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _expected_errors() -> tuple[type[Exception], ...]:
    """The failures printed as one line: the configuration's and the store's are among them once a command has
    loaded them (none can be raised before)."""
    errors: list[type[Exception]] = [CliError]
    for module, name in (("secops.config", "ConfigError"), ("secops.es.client", "StoreUnavailable"),
                         ("secops.es.bulk", "DeliveryFailed")):
        if module in sys.modules:
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


_registered = False


def _register_once(command: str | None = None) -> None:
    global _registered
    if not _registered:
        _register_contexts(command)
        _registered = True


def __getattr__(name: str) -> typer.Typer:
    """``secops.cli.app``: the root with every context's commands (for tests and documentation tools)."""
    if name == "app":
        _register_once()
        return root
    raise AttributeError(name)


# commands that end a traffic-reading process whose output is all written when they return: they leave without the
# interpreter's teardown (``runtime.exit_now``: 0.2 s of a 1M-packet ingest)
FAST_EXIT = frozenset({"ingest"})


def _prestart_analyzers(command: str | None, args: list[str]) -> None:
    """``secops ingest`` of a capture large enough for analyzer processes: they start now, with tshark, on the core
    this one leaves idle while it reads the command line and the configuration (``deep_spares``). A word that names
    no such file starts nothing; spares nobody takes end unused."""
    if command == "ingest" and "--no-deep" not in args:
        from collectors import deep_spares

        deep_spares.prestart(word for word in args[args.index(command) + 1:] if not word.startswith("-"))


def main() -> None:
    install_log_redaction()
    command = _command_name(sys.argv[1:])
    _prestart_analyzers(command, sys.argv[1:])
    _register_once(command)
    tune_process()
    try:
        root()
    except _expected_errors() as exc:
        err_console.print(f"[red]error:[/] {inert_markup(redact_text(str(exc)))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except SystemExit as done:
        if command in FAST_EXIT and (done.code is None or isinstance(done.code, int)):
            exit_now(done.code or 0)
        raise
