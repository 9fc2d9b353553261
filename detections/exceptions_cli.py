"""`secops rules exceptions list|add|edit|remove`: rule exceptions from a shell; every change is audited."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape as inert
from rich.table import Table

from secops.audit import current_actor, write_audit
from secops.cli_support import console, es_client, fail, settings

exceptions_app = typer.Typer(help="Rule exceptions (tuning): list, add, edit, remove.", no_args_is_help=True)


def _store():  # type: ignore[no-untyped-def]
    from detections.exceptions import ExceptionStore

    return ExceptionStore(es_client(), settings().elasticsearch.index_prefix)


def _audit(action: str, exception_id: str, **details: Any) -> None:
    write_audit(es_client(check=False), settings().elasticsearch.index_prefix, action, exception_id, "success",
                actor=current_actor(), details={"via": "cli", **details})


def _view(e) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {"id": e.id, "rule_id": e.rule_id, "conditions": [c.as_doc() for c in e.conditions],
            "expires": e.expires, "comment": e.comment, "author": e.author}


def _guard(fn, *args: Any, **kw: Any) -> Any:  # type: ignore[no-untyped-def]
    from detections.exceptions import ExceptionError

    try:
        return fn(*args, **kw)
    except (ExceptionError, LookupError) as exc:
        fail(str(exc).strip("'\""))


@exceptions_app.command("list")
def list_(rule: Annotated[str | None, typer.Option(help="only this rule id")] = None,
          as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every exception (or one rule's), newest first."""
    rows = [_view(e) for e in _store().list(rule)]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("id", "rule", "conditions", "expires", "author", "comment")
    for r in rows:
        conds = "; ".join(f"{c['field']} {c['op']} {c['value']}" for c in r["conditions"])
        table.add_row(r["id"], inert(r["rule_id"]), inert(conds), r["expires"] or "never", inert(r["author"]),
                      inert(r["comment"]))
    console.print(table)


@exceptions_app.command("add")
def add(rule: Annotated[str, typer.Argument(help="rule id")],
        when: Annotated[list[str], typer.Option("--when", help="FIELD=VALUE, FIELD~=SUFFIX or FIELD@CIDR")],
        comment: Annotated[str, typer.Option(help="why it is safe")],
        expires: Annotated[str | None, typer.Option(help="30d, 12h, 90m or an ISO time")] = None,
        close_matching: Annotated[bool, typer.Option("--close-matching", help="close open alerts it covers")] = False,
        ) -> None:
    """Add an exception; prints its id (and the alerts it closed)."""
    from detections.alerts import AlertStore
    from detections.exceptions import conditions_from

    pairs = []
    for w in when:
        for sep, op in (("~=", "suffix"), ("@", "cidr"), ("=", "is")):
            if sep in w:
                f, _, v = w.partition(sep)
                pairs.append((f.strip(), op, v.strip()))
                break
        else:
            fail(f"--when {w!r}: use FIELD=VALUE, FIELD~=SUFFIX or FIELD@CIDR")
    store = _store()
    exc = _guard(store.add, rule, _guard(conditions_from, pairs), current_actor(), comment, expires)
    closed = []
    if close_matching:
        alerts = AlertStore(store.es, store.prefix, notifier=None)
        for alert_id in store.covered_alerts(exc):
            alerts.set_status(alert_id, "closed", current_actor())
            closed.append(alert_id)
    _audit("exception.create", exc.id, exception=_view(exc), closed_alerts=closed)
    console.print(exc.id, highlight=False)
    if closed:
        console.print(f"closed {len(closed)} alerts: {', '.join(closed)}", highlight=False)


@exceptions_app.command("edit")
def edit(exception_id: str, expires: Annotated[str | None, typer.Option(help="new expiry ('never' removes it)")] = None,
         comment: Annotated[str | None, typer.Option()] = None) -> None:
    """Change an exception's expiry or comment."""
    exp = "" if expires is None else (None if expires == "never" else expires)
    before, after = _guard(_store().edit, exception_id, comment=comment, expires=exp)
    _audit("exception.edit", exception_id, before=_view(before), after=_view(after))


@exceptions_app.command("remove")
def remove(exception_id: str) -> None:
    """Delete an exception: the rule alerts on those values again from its next run."""
    exc = _guard(_store().remove, exception_id)
    _audit("exception.remove", exception_id, exception=_view(exc))
