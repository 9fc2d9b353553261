"""CLI commands of the playbooks context (registered by secops.cli): list, validate, run, runs, show,
approve, deny, kill-switch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from secops.audit import current_actor
from secops.cli_support import console, es_client, fail, inert, inert_markup, settings, store
from secops.i18n import Message

if TYPE_CHECKING:
    from playbooks.runner import Runner
    from playbooks.store import PlaybookRunStore

pb_app = typer.Typer(help="Response playbooks: definitions, runs, approvals, kill switch.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this context's commands to the root app."""
    app.add_typer(pb_app, name="playbooks")


def _runner() -> Runner:
    """A runner that dispatches to the workers (Celery is imported lazily so `secops --help` stays fast)."""
    from playbooks.runner import Runner
    from playbooks.tasks import dispatch
    from secops.celery_app import app, configure

    configure(app, settings())
    return Runner(settings(), es_client(), dispatch)


def _runs() -> PlaybookRunStore:
    from playbooks.store import PlaybookRunStore

    return PlaybookRunStore(store())


@pb_app.command("list")
def list_() -> None:
    """The playbooks in the configured folders, with their triggers and steps."""
    from playbooks.model import load_all

    books, errors = load_all(settings(), strict=False)
    table = Table("name", "enabled", "trigger", "steps")
    for b in books.values():
        t = b.trigger
        trig = ", ".join(filter(None, [f"rules={','.join(t.rule_ids)}" if t.rule_ids else "",
                                       f"tags={','.join(t.tags)}" if t.tags else "", f"severity>={t.min_severity}"]))
        steps = " -> ".join(f"{s.name}({s.action}{', approval' if s.approval else ''})" for s in b.steps)
        table.add_row(inert(b.name), "yes" if b.enabled else "no", inert(trig), inert(steps))
    console.print(table)
    for err in errors:
        console.print(f"[red]invalid:[/] {inert_markup(err)}", highlight=False)


@pb_app.command("validate")
def validate(
    files: Annotated[list[Path] | None, typer.Argument(help="Files (default: all configured)")] = None,
) -> None:
    """Validate playbook files; exit status 2 if any is invalid."""
    from playbooks.model import DefinitionError, definition_files, load_file

    paths = files or definition_files(settings())
    bad = []
    for path in paths:
        try:
            book = load_file(path)
            console.print(f"[green]ok[/] {inert_markup(path)}: {inert_markup(book.name)} ({len(book.steps)} steps)",
                          highlight=False)
        except DefinitionError as exc:
            bad.append(str(exc))
            console.print(f"[red]invalid[/] {inert_markup(exc)}", highlight=False)
    if bad:
        fail(f"{len(bad)} of {len(paths)} playbook files invalid")


@pb_app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="Playbook name")],
    alert: Annotated[str, typer.Option("--alert", "-a", help="Alert id (secops-alert)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the full plan; change nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run a playbook on an alert through the workers, or show its plan with --dry-run."""
    from playbooks.runner import RefusedInput
    from playbooks.tasks import BrokerUnavailable, check_broker
    from secops.contracts.playbook import RunStatus
    from secops.ecs import iso

    r = _runner()
    try:
        book, ref = r.book(name), r.alert(alert)
    except LookupError as exc:
        fail(str(exc))
    if dry_run:
        try:
            plan = r.plan(book, ref)
        except RefusedInput as exc:
            fail(f"refused: {exc}")
        if as_json:
            console.print_json(json.dumps(plan, default=str))
            return
        table = Table("step", "action", "approval", "params", "plan")
        for p in plan:
            table.add_row(inert(p["step"]), inert(p["action"]), "yes" if p["approval"] else "",
                          inert(json.dumps(p["params"], ensure_ascii=False)), inert(plan_text(p["plan"])))
        console.print(table)
        console.print("dry-run: nothing was changed")
        return
    try:
        check_broker()
    except BrokerUnavailable as exc:
        fail(str(exc))
    run = r.start(book, ref, actor=current_actor(), nonce=iso())
    if run.status is RunStatus.REFUSED:
        fail(f"run {run.run_id} refused: {run.error}")
    console.print(f"run {run.run_id} started ({inert_markup(run.name)} on alert {inert_markup(alert)})",
                  highlight=False)


@pb_app.command("runs")
def runs(status: Annotated[str | None, typer.Option(help="Only runs with this status")] = None,
         limit: Annotated[int, typer.Option(min=1, max=1000)] = 50) -> None:
    """Recent playbook runs."""
    table = Table("run", "playbook", "status", "step", "alert", "started")
    for run in _runs().recent(limit, status):
        table.add_row(inert(run.run_id), inert(run.name), run.status + (" (dry-run)" if run.dry_run else ""),
                      inert(run.step), inert(run.alert_id), inert(run.created))
    console.print(table)


@pb_app.command("show")
def show(run_id: Annotated[str, typer.Argument(help="Run id")],
         as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A run's steps and its audit trail."""
    from playbooks.store import RunNotFound

    runs = _runs()
    try:
        run = runs.get(run_id)
    except RunNotFound as exc:
        fail(str(exc))
    trail = runs.run_audit(run_id)
    if as_json:
        console.print_json(json.dumps({"run": run.to_doc(), "audit": trail}, default=str))
        return
    console.print(f"run {inert_markup(run_id)}: {inert_markup(run.name)} on alert {inert_markup(run.alert_id)} - "
                  f"[bold]{run.status}[/]{' (dry-run)' if run.dry_run else ''} {inert_markup(run.error or '')}",
                  highlight=False)
    if run.approval:
        console.print(f"approval: {inert_markup(run.approval.to_doc())}", highlight=False)
    table = Table("#", "step", "action", "status", "attempts", "result / error")
    for i, s in enumerate(run.steps):
        table.add_row(str(i), inert(s.name), inert(s.action), s.status, str(s.attempts),
                      inert(s.error or s.result, limit=200))
    console.print(table)
    audit = Table("time", "who", "what", "outcome")
    for a in trail:
        x = a["secops"]["audit"]
        audit.add_row(inert(a["@timestamp"]), inert(x.get("actor")), inert(f"{x.get('action')} {x.get('object')}"),
                      inert(x.get("outcome")))
    console.print(audit)


def plan_text(plan: dict[str, Any]) -> str:
    """A step's plan for the terminal: its summary in English (stored as a message id and parameters), then the
    rest of the plan as JSON (the raw error text of a step that cannot be planned stays there for operators)."""
    summary = Message.from_doc(plan.get("summary"))
    rest = {k: v for k, v in plan.items() if k not in ("summary", "error_message")}
    details = json.dumps(rest, default=str, ensure_ascii=False) if rest else ""
    return f"{summary.english()}  {details}".strip() if summary else details


def _decide(run_id: str, approve: bool, reason: str) -> None:
    from playbooks.store import RunNotFound
    from playbooks.tasks import BrokerUnavailable, check_broker

    try:
        runner = _runner()
        if approve:
            check_broker()
        run = runner.decide(run_id, approve, current_actor(), reason)
    except (RunNotFound, ValueError, BrokerUnavailable) as exc:
        fail(str(exc))
    approval = run.approval
    console.print(f"run {inert_markup(run_id)}: step {inert_markup(approval.step) if approval else '?'} "
                  f"{approval.status if approval else '?'} by {inert_markup(current_actor())}", highlight=False)


@pb_app.command("approve")
def approve(run_id: Annotated[str, typer.Argument(help="Run id")],
            reason: Annotated[str, typer.Option(help="Why (recorded in the audit)")] = "") -> None:
    """Approve the step a run is waiting on; the run continues on the workers."""
    _decide(run_id, True, reason)


@pb_app.command("deny")
def deny(run_id: Annotated[str, typer.Argument(help="Run id")],
         reason: Annotated[str, typer.Option(help="Why (recorded in the audit)")] = "") -> None:
    """Deny the step a run is waiting on; the run ends and nothing more acts."""
    _decide(run_id, False, reason)


@pb_app.command("kill-switch")
def kill_switch(state: Annotated[str, typer.Argument(help="on | off | status")] = "status") -> None:
    """Stop (on) or allow (off) new playbook steps on every worker."""
    if state not in ("on", "off", "status"):
        fail("kill-switch takes on, off or status")
    runs = _runs()
    if state != "status":
        runs.set_kill_switch(state == "on", current_actor())
    stored = runs.kill_switch_stored()
    config = settings().playbooks.kill_switch
    console.print(f"kill switch: {'ON' if stored or config else 'off'} (stored: {'on' if stored else 'off'}, "
                  f"config playbooks.kill_switch: {'on' if config else 'off'})")
