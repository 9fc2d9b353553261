"""CLI commands of the detections context (registered by secops.cli): rules, detect, alerts, kibana."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from secops.cli_support import console, err_console, es_client, fail, inert, inert_markup, settings, state

rules_app = typer.Typer(help="Sigma rules: check, convert, field report, test against a capture.", no_args_is_help=True)
detect_app = typer.Typer(help="Run detections (scheduler pass).", no_args_is_help=True)
alerts_app = typer.Typer(help="Alert triage: list, show, ack, close, assign, note.", no_args_is_help=True)
kibana_app = typer.Typer(help="Kibana saved objects: validate, build, import, export.", no_args_is_help=True)

PathsArg = Annotated[list[Path] | None, typer.Argument(help="Rule files/folders (default: built-in + configured)")]
OFFLINE_VALIDATORS_SKIP = ("attacktag", "cartag", "cvetag", "d3_fendtag", "filename_length", "duplicate_filename")


def _pack(paths: list[Path] | None, analytics: bool = False):
    from detections.pack import build_pack

    return build_pack(settings(), rule_dirs=paths or None, with_analytics=analytics)


def _actor() -> str:
    from secops.audit import current_actor

    return current_actor()


# -- rules -------------------------------------------------------------------------------------------
@rules_app.command("check")
def rules_check(paths: PathsArg = None) -> None:
    """Load, validate (pySigma validators that need no network) and compile rules; one line per problem."""
    from sigma.validation import SigmaValidator
    from sigma.validators.core import validators

    pack = _pack(paths)
    for where, error in pack.errors():
        err_console.print(f"[red]ERROR[/] {where}: {error}", highlight=False, soft_wrap=True)
    validator = SigmaValidator([v for k, v in validators.items() if k not in OFFLINE_VALIDATORS_SKIP])
    issues = validator.validate_rules(pack.ruleset.rules)
    for issue in issues:
        names = ", ".join(r.title for r in issue.rules)
        console.print(f"[yellow]{issue.severity.name}[/] {type(issue).__name__}: {names}", highlight=False)
    ok = sum(1 for r in pack.rules if not r.error)
    console.print(f"{ok} rules compiled, {len(pack.errors())} errors, {len(issues)} validator findings")
    if pack.errors():
        raise typer.Exit(1)


@rules_app.command("fingerprints")
def rules_fingerprints(files: Annotated[list[Path] | None, typer.Argument(
        help="Fingerprint lists to check on top of the shipped and configured ones")] = None) -> None:
    """The C2 TLS fingerprints (JA3/JA4) detection matches: shipped list, configured files, then FILES."""
    from detections.fingerprints import load_fingerprints

    listed = load_fingerprints([*settings().detections.fingerprint_files, *(files or [])])
    table = Table("fingerprint", "name", "severity", "note")
    for entry in sorted(listed.entries.values(), key=lambda e: (e.name, e.value)):
        table.add_row(entry.value, entry.name, entry.severity, entry.note)
    console.print(table)
    for problem in listed.errors:
        err_console.print(f"[red]ERROR[/] {problem}", highlight=False, soft_wrap=True)
    console.print(f"{len(listed)} fingerprints, {len(listed.errors)} problems")
    if listed.errors:
        raise typer.Exit(1)


@rules_app.command("convert")
def rules_convert(paths: PathsArg = None,
                  rule: Annotated[str | None, typer.Option(help="Only this rule id/name")] = None) -> None:
    """Print each rule's Elasticsearch Lucene query (correlations: their members' queries and condition)."""
    pack = _pack(paths)
    for r in pack.rules:
        if rule and rule not in (r.id, r.title):
            continue
        if r.error:
            err_console.print(f"[red]ERROR[/] {r.id} {r.title}: {r.error}", highlight=False)
            continue
        console.print(f"# {r.id} {r.title} [{r.dataset}]", highlight=False, markup=False)
        if r.correlation:
            c = r.correlation
            console.print(f"#   {c.type} by {','.join(c.group_by)} within {c.timespan}s {c.op} {c.threshold:g}"
                          f"{' of ' + c.count_field if c.count_field else ''}", markup=False, highlight=False)
            for m in c.members:
                console.print(f"#   member {m.id}: {m.query}", markup=False, highlight=False)
        else:
            console.print(r.query, markup=False, highlight=False)


@rules_app.command("report")
def rules_report(paths: PathsArg = None,
                 live: Annotated[bool, typer.Option(help="Also count matching documents on the node")] = False,
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Which rules find their fields in this project's documents."""
    from collections import Counter

    from detections.report import field_report

    pack = _pack(paths)
    prefix = settings().elasticsearch.index_prefix
    report = field_report(pack.rules, es_client() if live else None, prefix)
    if as_json:
        for r in report:
            sys.stdout.write(orjson.dumps({"id": r.rule.id, "title": r.rule.title, "dataset": r.rule.dataset,
                                           "status": r.status, "fields": r.rule.fields, "missing": r.missing,
                                           "hits": r.hits}).decode() + "\n")
        return
    table = Table("rule", "dataset", "status", "missing fields", "hits")
    for r in report:
        table.add_row(r.rule.title[:60], r.rule.dataset, r.status, ", ".join(r.missing)[:60],
                      "-" if r.hits is None else str(r.hits))
    console.print(table)
    console.print(dict(Counter(r.status for r in report)))


@rules_app.command("test")
def rules_test(rule: Annotated[str | None, typer.Argument(help="Rule id or title (built-in/configured rules)")] = None,
               pcap: Annotated[Path | None, typer.Argument(help="Capture to ingest and evaluate")] = None,
               run_all: Annotated[bool, typer.Option("--all", help="Run every rule's regression tests (info.yml)")]
               = False,
               testdata: Annotated[Path | None, typer.Option(help="Root of the captures the info.yml files name "
                                                             "(default: $SECOPS_TESTDATA or ../shared/testdata)")]
               = None) -> None:
    """Ingest PCAP, run one rule over exactly that ingest, print the matches (no alerts); or, with --all, run
    every rule's regression tests (each capture in a fresh index prefix) and compare with their info.yml."""
    if run_all:
        _rules_test_all(testdata)
        return
    if rule is None or pcap is None:
        fail("give a RULE and a PCAP, or --all")
    from detections.deadline import DeadlineClient
    from detections.engine import run_rule
    from secops.ecs import iso, utcnow

    if not pcap.is_file():
        fail(f"no such capture: {pcap}")
    pack = _pack(None, analytics=True)
    target = next((r for r in pack.rules if rule in (r.id, r.title)), None)
    if target is None:
        fail(f"no rule {rule!r}")
    if target.error:
        fail(f"rule {rule!r} does not compile: {target.error}")
    es = es_client()
    prefix = settings().elasticsearch.index_prefix
    start = iso(utcnow())
    ingest_capture(pcap, prefix)
    es.indices.refresh(index=f"{prefix}-*", ignore_unavailable=True)
    matches = run_rule(DeadlineClient(es, 300, f"secops-rules-test:{target.id}"), prefix, target, start,
                       iso(utcnow()))
    for m in matches:
        console.print(f"MATCH {m.group} count={m.count} {m.first_time}..{m.last_time} {m.reason}", markup=False,
                      highlight=False)
    console.print(f"{len(matches)} match(es) for {target.title}")
    if not matches:
        raise typer.Exit(1)


def _rules_test_all(testdata: Path | None) -> None:
    from detections.regression import collect, default_testdata, run_cases

    pack = _pack(None, analytics=True)
    root = testdata or default_testdata()
    files, problems = collect(pack.rules, root)
    for p in problems:
        err_console.print(f"[red]ERROR[/] {p}", highlight=False, soft_wrap=True)
    cases = [c for f in files for c in f.cases]
    es = es_client()

    def ingest(capture: Path, prefix: str) -> None:
        ingest_capture(capture, prefix)
        es.indices.refresh(index=f"{prefix}-*", ignore_unavailable=True)

    results = run_cases(es, pack.rules, cases, ingest, base_prefix=f"{settings().elasticsearch.index_prefix}_rt")
    titles = {r.id: r.title for r in pack.rules}
    table = Table("rule", "capture", "expected", "got", "result")
    for r in results:
        where = r.case.capture.relative_to(root) if r.case.capture.is_relative_to(root) else r.case.capture
        table.add_row(titles[r.case.rule_id][:45], str(where)[-60:], str(r.case.match_count), str(len(r.matches)),
                      "ok" if r.ok else "; ".join(r.problems)[:80])
    console.print(table)
    failed = sum(1 for r in results if not r.ok)
    console.print(f"{len(results)} regression tests over {len({c.capture for c in cases})} captures: "
                  f"{len(results) - failed} passed, {failed} failed, {len(problems)} problems")
    if failed or problems:
        raise typer.Exit(1)


def ingest_capture(pcap: Path, prefix: str | None = None) -> None:
    """Run the collectors' `secops ingest --output es -- PCAP` (their CLI, a separate process), optionally into
    another index prefix. The path is absolute and after ``--``: a file named ``--x.pcap`` is never an option."""
    env = dict(os.environ)
    if state.config_path:
        env["SECOPS_CONFIG"] = str(state.config_path)
    if prefix:
        env["SECOPS_ELASTICSEARCH__INDEX_PREFIX"] = prefix
    cmd = [sys.executable, "-c", "from secops.cli import main; main()", "ingest", "--output", "es", "--",
           str(pcap.absolute())]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        fail(f"secops ingest failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")


# -- detect ------------------------------------------------------------------------------------------
@detect_app.command("run")
def detect_run(rule: Annotated[list[str] | None, typer.Option(help="Only these rule ids")] = None,
               reset: Annotated[bool, typer.Option(help="Forget checkpoints first (re-evaluate all)")] = False,
               due_only: Annotated[bool, typer.Option(help="Only rules whose interval elapsed")] = False) -> None:
    """One pass of every rule over everything not yet evaluated (checkpoints in secops-state)."""
    from detections.scheduler import Scheduler

    pack = _pack(None, analytics=True)
    for where, error in pack.errors():
        err_console.print(f"[red]rule error[/] {where}: {error}", highlight=False)
    sched = Scheduler(es_client(), settings(), pack.runnable)
    if reset:
        sched.reset()
    runs = sched.run(only_due=due_only, rule_ids=rule or None)
    table = Table("rule", "windows", "matches", "new", "updated", "seconds", "error")
    by_id = {r.id: r for r in pack.rules}
    for run in runs:
        if run.matches or run.error:
            table.add_row(by_id[run.rule_id].title[:50], str(run.windows), str(run.matches), str(run.created),
                          str(run.updated), f"{run.seconds:.2f}", run.error or "")
    console.print(table)
    console.print(f"{len(runs)} rules run, {sum(r.created for r in runs)} new alerts, "
                  f"{sum(r.updated for r in runs)} updated, {sum(1 for r in runs if r.error)} failed")


# -- alerts ------------------------------------------------------------------------------------------
def _store():
    from detections.alerts import AlertStore

    s = settings()
    return AlertStore(es_client(), s.elasticsearch.index_prefix, s.detections.suppression_seconds, s.kibana.url)


def _get_or_fail(store, alert_id: str) -> dict:
    from elasticsearch import NotFoundError

    try:
        return store.get(alert_id)
    except NotFoundError:
        fail(f"no alert {alert_id!r}")


@alerts_app.command("list")
def alerts_list(status: Annotated[str | None, typer.Option(help="open|acknowledged|closed")] = None,
                severity: Annotated[str | None, typer.Option(help="low|medium|high|critical")] = None,
                rule: Annotated[str | None, typer.Option(help="rule id")] = None,
                limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
                fmt: Annotated[str, typer.Option("--format", help="table|json")] = "table") -> None:
    """List alerts, newest first (`--format json`: one alert document per line)."""
    alerts = _store().list(status=status, severity=severity, rule=rule, size=limit)
    if fmt == "json":
        for a in alerts:
            sys.stdout.write(orjson.dumps(a).decode() + "\n")
        return
    table = Table("id", "severity", "status", "rule", "source", "destination", "count", "last")
    for a in alerts:
        sa = a["secops"]["alert"]
        rule = a.get("rule") or {}
        table.add_row(inert(a["_id"]), inert(rule.get("severity")), inert(sa.get("status")),
                      inert(rule.get("name"), limit=40), inert((a.get("source") or {}).get("ip")),
                      inert((a.get("destination") or {}).get("ip")), inert(sa.get("count")), inert(sa.get("last_time")))
    console.print(table)


@alerts_app.command("show")
def alerts_show(alert_id: str) -> None:
    """Print one alert as JSON."""
    console.print_json(orjson.dumps(_get_or_fail(_store(), alert_id)).decode())


def _triage(alert_id: str, action) -> None:
    store = _store()
    _get_or_fail(store, alert_id)
    a = action(store)
    sa = a["secops"]["alert"]
    console.print(f"{inert_markup(alert_id)}: status={inert_markup(sa.get('status'))} "
                  f"assignee={inert_markup(sa.get('assignee'))}", highlight=False)


@alerts_app.command("ack")
def alerts_ack(alert_id: str) -> None:
    """Acknowledge an alert."""
    _triage(alert_id, lambda s: s.set_status(alert_id, "acknowledged", _actor()))


@alerts_app.command("close")
def alerts_close(alert_id: str) -> None:
    """Close an alert."""
    _triage(alert_id, lambda s: s.set_status(alert_id, "closed", _actor()))


@alerts_app.command("reopen")
def alerts_reopen(alert_id: str) -> None:
    """Re-open an alert (playbooks are told again)."""
    _triage(alert_id, lambda s: s.set_status(alert_id, "open", _actor()))


@alerts_app.command("assign")
def alerts_assign(alert_id: str, assignee: str) -> None:
    """Assign an alert to an analyst."""
    _triage(alert_id, lambda s: s.assign(alert_id, assignee, _actor()))


@alerts_app.command("note")
def alerts_note(alert_id: str, text: str) -> None:
    """Add a note to an alert."""
    _triage(alert_id, lambda s: s.note(alert_id, text, _actor()))


# -- kibana ------------------------------------------------------------------------------------------
LangOption = Annotated[str, typer.Option("--lang", help="Object set: en (English) or zh (Simplified Chinese); "
                                                       "the two sets have their own ids and can share a space")]


def _kibana_lang(lang: str) -> str:
    from detections.kibana import LANGUAGES

    if lang not in LANGUAGES:
        fail(f"--lang must be {' or '.join(LANGUAGES)}, not {lang!r}")
    return lang


@kibana_app.command("validate")
def kibana_validate(path: Annotated[Path | None, typer.Argument()] = None, lang: LangOption = "en") -> None:
    """Structural checks of the saved-objects NDJSON (ids, references, index patterns)."""
    from detections.kibana import load_ndjson, ndjson_path, validate

    path = path or ndjson_path(_kibana_lang(lang))
    problems = validate(load_ndjson(path), settings().elasticsearch.index_prefix)
    for p in problems:
        err_console.print(f"[red]{p}[/]", highlight=False)
    if problems:
        raise typer.Exit(1)
    console.print(f"{path}: valid")


@kibana_app.command("build")
def kibana_build(path: Annotated[Path, typer.Argument()], lang: LangOption = "en") -> None:
    """Write the saved objects secops ships (for this index prefix, in --lang) as NDJSON."""
    from detections.kibana import build_objects, dump_ndjson

    path.write_text(dump_ndjson(build_objects(settings().elasticsearch.index_prefix, _kibana_lang(lang))),
                    encoding="utf-8")
    console.print(f"wrote {path}")


@kibana_app.command("export")
def kibana_export(path: Annotated[Path, typer.Argument()], lang: LangOption = "en") -> None:
    """Write the secops saved objects of the --lang set as the Kibana holds them (keeps an operator's edits)."""
    from detections.kibana import dump_ndjson
    from detections.kibana_api import KibanaError, export_objects

    try:
        objects, details = export_objects(settings(), lang=_kibana_lang(lang))
    except KibanaError as exc:
        fail(str(exc))
    path.write_text(dump_ndjson(objects), encoding="utf-8")
    missing = details.get("missingReferences") or []
    console.print(f"wrote {path}: {len(objects)} objects" + (f", {len(missing)} missing in Kibana" if missing else ""))


@kibana_app.command("import")
def kibana_import(overwrite: Annotated[bool, typer.Option(help="Replace existing objects")] = True,
                  security: Annotated[bool, typer.Option(help="Add the secops indices to the Security app's "
                                                             "securitySolution:defaultIndex")] = True,
                  lang: LangOption = "en") -> None:
    """Import the saved objects (--lang set) into Kibana (kibana.url), report each, point the Security app at secops."""
    from detections.kibana_api import KibanaError, add_security_indices, import_objects

    try:
        outcomes = import_objects(settings(), overwrite=overwrite, lang=_kibana_lang(lang))
    except KibanaError as exc:
        fail(str(exc))
    table = Table("type", "id", "title", "Kibana answered")
    for o in outcomes:
        colour = "red" if o.outcome in ("error", "not reported") else "green"
        table.add_row(o.type, o.id, o.title, f"[{colour}]{o.outcome}[/] {o.detail}".rstrip())
    console.print(table)
    bad = [o for o in outcomes if o.outcome in ("error", "not reported")]
    console.print(f"{len(outcomes) - len(bad)} of {len(outcomes)} saved objects imported")
    if security:
        try:
            before, after = add_security_indices(settings())
        except KibanaError as exc:
            fail(str(exc))
        added = [p for p in after if p not in before]
        console.print(f"securitySolution:defaultIndex: {', '.join(after)}"
                      + (f" (added {', '.join(added)})" if added else " (unchanged)"))
    if bad:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this context's commands to the root app."""
    from detections.exceptions_cli import exceptions_app

    rules_app.add_typer(exceptions_app, name="exceptions")
    app.add_typer(rules_app, name="rules")
    app.add_typer(detect_app, name="detect")
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(kibana_app, name="kibana")
