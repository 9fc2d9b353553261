"""`secops cases list|show|create|add|comment|close|export|attach-pcap`: the console's case work from a shell.
Every change writes an audit document (actor: the operating-system user)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from secops.audit import current_actor, write_audit
from secops.cli_support import console, es_client, fail, settings

cases_app = typer.Typer(help="Cases: list, show, create, add alerts, comment, close, export, attach-pcap.",
                        no_args_is_help=True)


def _parts():  # type: ignore[no-untyped-def]
    from secops.console.alerts import AlertQueue
    from secops.console.cases import case_store

    es, s = es_client(), settings()
    return case_store(s, es), AlertQueue(es, s.elasticsearch.index_prefix)


def _audit(action: str, case_id: str, **details: Any) -> None:
    write_audit(es_client(check=False), settings().elasticsearch.index_prefix, action, case_id, "success",
                actor=current_actor(), details={"via": "cli", **details})


def _run(fn, *args: Any, **kw: Any) -> Any:  # type: ignore[no-untyped-def]
    from detections.cases import CaseError

    try:
        return fn(*args, **kw)
    except (CaseError, LookupError) as exc:
        fail(str(exc).strip("'\""))


@cases_app.command("list")
def list_(status: Annotated[str | None, typer.Option(help="open|in_progress|closed")] = None,
          as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Cases, most recently changed first."""
    store, _q = _parts()
    rows = store.list(status=status)
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("id", "title", "status", "severity", "assignee", "alerts", "updated")
    for r in rows:
        c = r["secops"]["case"]
        table.add_row(r["_id"], escape(c["title"]), c["status"], c["severity"], escape(c.get("assignee") or "-"),
                      str(len(c.get("alert_ids") or [])), c["updated"])
    console.print(table)


@cases_app.command("show")
def show(case_id: str) -> None:
    """One case as JSON: fields, alerts, observables, comments, attachments, history."""
    store, _q = _parts()
    console.print_json(json.dumps(_run(store.get, case_id)))


@cases_app.command("create")
def create(title: str, severity: Annotated[str, typer.Option(help="low|medium|high|critical")] = "medium",
           tag: Annotated[list[str] | None, typer.Option("--tag")] = None,
           assignee: Annotated[str | None, typer.Option()] = None) -> None:
    """A new, empty case; prints its id."""
    store, _q = _parts()
    case = _run(store.create, title, current_actor(), severity=severity, tags=tag or [], assignee=assignee)
    _audit("case.create", case["_id"], title=title[:300], severity=severity)
    console.print(case["_id"], highlight=False)


@cases_app.command("add")
def add(alert_ids: Annotated[list[str], typer.Argument(help="alert ids")],
        case: Annotated[str | None, typer.Option("--case", help="an existing case (default: a new one)")] = None,
        title: Annotated[str | None, typer.Option(help="title of the new case")] = None) -> None:
    """Escalate alerts into a case (their observables join it); prints the case id."""
    from secops.console.cases import escalate

    store, queue = _parts()
    doc = _run(escalate, store, queue, current_actor(), alert_ids, case, title)
    _audit("case.escalate", doc["_id"], alerts=alert_ids[:1000], new_case=not case)
    console.print(doc["_id"], highlight=False)


@cases_app.command("comment")
def comment(case_id: str, text: Annotated[str, typer.Argument(help="markdown")]) -> None:
    """Add a markdown comment."""
    store, _q = _parts()
    _run(store.comment, case_id, current_actor(), text)
    _audit("case.comment", case_id, length=len(text))


@cases_app.command("close")
def close(case_id: str) -> None:
    """Close a case."""
    store, _q = _parts()
    _run(store.update, case_id, current_actor(), status="closed")
    _audit("case.update", case_id, changes={"status": {"new": "closed"}})


@cases_app.command("attach-pcap")
def attach_pcap_cmd(case_id: str) -> None:
    """Attach the packets of the case's connections from the capture spool (SHA-256 recorded)."""
    import tempfile

    from secops.console.cases import attach_pcap

    store, queue = _parts()
    workdir = Path(tempfile.mkdtemp(prefix="secops-case-"))
    try:
        res = _run(attach_pcap, store, queue, settings(), case_id, current_actor(), workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _audit("case.attach_pcap", case_id, attachment=res.attachment["id"], sha256=res.attachment["sha256"],
           packets=res.packets)
    console.print(f"{res.attachment['name']} {res.packets} packets sha256={res.attachment['sha256']}",
                  highlight=False)


@cases_app.command("export")
def export(case_id: str, out: Annotated[Path, typer.Option("--out", "-o", help="folder for the zip")] = Path(".")) \
        -> None:
    """Write the case as a zip (case.json, attachments, SHA-256 and SM3 manifests); prints its path and hash."""
    import tempfile

    from secops.console.cases import export_case

    store, _q = _parts()
    workdir = Path(tempfile.mkdtemp(prefix="secops-case-"))
    try:
        res = _run(export_case, store, case_id, workdir)
        out.mkdir(parents=True, exist_ok=True)
        target = out / res.path.name
        shutil.move(str(res.path), target)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _audit("case.export", case_id, sha256=res.sha256, files=res.files)
    console.print(f"{target} sha256={res.sha256}", highlight=False)
