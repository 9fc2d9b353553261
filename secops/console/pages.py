"""The console's HTML pages (server-rendered; forms post back and redirect)."""

from __future__ import annotations

import shutil
from functools import cache
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.background import BackgroundTask

from secops.console import ops
from secops.console.alerts import GROUP_FIELDS, SEVERITIES, AlertFilter, QueryError
from secops.console.roles import Perm
from secops.console.transcript import tcp_transcripts
from secops.console.users import LANGUAGES, available_timezones
from secops.console.web import Ctx, render, require
from secops.ecs import flatten, utcnow

router = APIRouter(include_in_schema=False)
Opt = Annotated[str | None, Query(max_length=200)]


def _back(request: Request, default: str, **extra: str) -> RedirectResponse:
    """303 back to the page the form was on (same site only), with a message."""
    target = request.headers.get("referer") or default
    path = "/" + target.split("://", 1)[-1].split("/", 1)[-1] if "://" in target else target
    if not path.startswith("/") or path.startswith(("//", "/\\")):
        path = default
    base, _, query = path.partition("?")
    params = [p for p in query.split("&") if p and not p.startswith(("msg=", "err="))]
    params += [urlencode({k: v}) for k, v in extra.items()]
    return RedirectResponse(base + ("?" + "&".join(params) if params else ""), status_code=303)


def open_cases(ctx: Ctx) -> list[dict]:
    """Cases an alert can be escalated into (for those who may)."""
    if not ctx.can(Perm.CASES_EDIT):
        return []
    from secops.console.cases import case_store

    store = case_store(ctx.state.settings, ctx.state.es)
    return [*store.list(status="open", size=50), *store.list(status="in_progress", size=50)]


@router.get("/")
def overview(request: Request, ctx: Annotated[Ctx, Depends(require(Perm.OVERVIEW))]) -> HTMLResponse:
    return render(ctx, request, "overview.html", data=ops.overview(ctx), kill_switch=ops.kill_switch(ctx))


@router.get("/alerts")
def alerts(request: Request, ctx: Annotated[Ctx, Depends(require(Perm.ALERTS_READ))], status: Opt = "open",
           severity: Opt = None, rule: Opt = None, since: Opt = None, field: Opt = None, value: Opt = None,
           group_by: Opt = None) -> HTMLResponse:
    flt = AlertFilter.from_params(status, severity, rule, since, field, value)
    page = ctx.state.queue.page(flt, group_by or None)
    return render(ctx, request, "alerts.html", page=page, flt=flt, group_fields=GROUP_FIELDS, severities=SEVERITIES,
                  open_cases=open_cases(ctx))


@router.post("/alerts/actions")
def alerts_action(request: Request, ctx: Annotated[Ctx, Depends(require(Perm.ALERTS_TRIAGE))],
                  action: Annotated[str, Form(max_length=20)], arg: Annotated[str, Form(max_length=10000)] = "",
                  ids: Annotated[list[str] | None, Form()] = None, scope: Annotated[str, Form(max_length=10)] = "ids",
                  f_status: Annotated[str, Form(max_length=200)] = "", f_severity: Annotated[str, Form()] = "",
                  f_rule: Annotated[str, Form(max_length=200)] = "", f_since: Annotated[str, Form()] = "",
                  f_field: Annotated[str, Form(max_length=200)] = "",
                  f_value: Annotated[str, Form(max_length=2000)] = "") -> RedirectResponse:
    flt = AlertFilter.from_params(f_status, f_severity, f_rule, f_since, f_field, f_value) if scope == "group" else None
    result = ops.triage(ctx, action, arg, ids if scope != "group" else None, flt)
    return _back(request, "/alerts", msg=f"{action}: {len(result.done)}")


@router.get("/alerts/{alert_id}")
def alert_page(request: Request, alert_id: str, ctx: Annotated[Ctx, Depends(require(Perm.ALERTS_READ))]) -> \
        HTMLResponse:
    c = ctx.state.queue.context(alert_id)
    hidden = ("secops.alert.history", "secops.alert.notes", "secops.alert.event_ids")
    fields = sorted((k, v) for k, v in flatten(c.alert) if k not in hidden)
    books = ops.playbook_names(ctx) if ctx.can(Perm.PLAYBOOK_START) else []
    return render(ctx, request, "alert.html", c=c, fields=fields, flat=lambda doc: sorted(flatten(doc)),
                  playbooks=books, open_cases=open_cases(ctx))


@router.post("/alerts/{alert_id}/actions")
def alert_action(request: Request, alert_id: str, ctx: Annotated[Ctx, Depends(require(Perm.ALERTS_TRIAGE))],
                 action: Annotated[str, Form(max_length=20)],
                 arg: Annotated[str, Form(max_length=10000)] = "") -> RedirectResponse:
    ops.triage(ctx, action, arg, [alert_id], None)
    return _back(request, f"/alerts/{alert_id}", msg=action)


@router.post("/alerts/{alert_id}/playbooks")
def alert_playbook(request: Request, alert_id: str, ctx: Annotated[Ctx, Depends(require(Perm.PLAYBOOK_START))],
                   name: Annotated[str, Form(max_length=200)], mode: Annotated[str, Form(pattern="^(plan|start)$")],
                   dry_run: Annotated[str, Form(max_length=5)] = "") -> Response:
    if mode == "plan":
        return render(ctx, request, "plan.html", alert_id=alert_id, name=name,
                      plan=ops.plan_playbook(ctx, alert_id, name))
    doc = ops.start_playbook(ctx, alert_id, name, dry_run == "on")
    return RedirectResponse(f"/runs/{quote(doc['secops']['playbook']['run_id'], safe='')}", status_code=303)


@router.get("/alerts/{alert_id}/pcap")
def alert_pcap(alert_id: str, ctx: Annotated[Ctx, Depends(require(Perm.PCAP_READ))]) -> FileResponse:
    workdir = ops.new_workdir()
    try:
        pcap = ops.alert_pcap(ctx, alert_id, workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return FileResponse(pcap.path, media_type="application/vnd.tcpdump.pcap", filename=pcap.path.name,
                        headers={"X-Content-SHA256": pcap.sha256, "X-Packets": str(pcap.packets)},
                        background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True))


@router.get("/alerts/{alert_id}/transcript")
def alert_transcript(request: Request, alert_id: str, ctx: Annotated[Ctx, Depends(require(Perm.PCAP_READ))]) -> \
        HTMLResponse:
    workdir = ops.new_workdir()
    try:
        pcap = ops.alert_pcap(ctx, alert_id, workdir, purpose="transcript")
        streams = tcp_transcripts(pcap.path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return render(ctx, request, "transcript.html", alert_id=alert_id, streams=streams, sha256=pcap.sha256,
                  packets=pcap.packets)


@router.get("/approvals")
def approvals(request: Request, ctx: Annotated[Ctx, Depends(require(Perm.RUNS_READ))]) -> HTMLResponse:
    return render(ctx, request, "approvals.html", pending=ops.pending_approvals(ctx))


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, ctx: Annotated[Ctx, Depends(require(Perm.RUNS_READ))]) -> HTMLResponse:
    run, trail = ops.run_timeline(ctx, run_id)
    return render(ctx, request, "run.html", run=run, trail=trail)


@router.post("/runs/{run_id}/decision")
def run_decision(request: Request, run_id: str, ctx: Annotated[Ctx, Depends(require(Perm.APPROVALS_DECIDE))],
                 decision: Annotated[str, Form(pattern="^(approve|deny)$")],
                 reason: Annotated[str, Form(max_length=2000)] = "") -> RedirectResponse:
    ops.decide(ctx, run_id, decision == "approve", reason)
    return _back(request, "/approvals", msg=decision)


@router.post("/kill-switch")
def kill_switch(request: Request, ctx: Annotated[Ctx, Depends(require(Perm.KILL_SWITCH))],
                state: Annotated[str, Form(pattern="^(on|off)$")]) -> RedirectResponse:
    ops.set_kill_switch(ctx, state == "on")
    return _back(request, "/", msg=f"kill switch {state}")


@router.get("/assets")
def assets(request: Request, ctx: Annotated[Ctx, Depends(require(Perm.ASSETS_READ))], q: Opt = None,
           zone: Opt = None) -> HTMLResponse:
    total, rows = ops.list_assets(ctx, q, zone)
    return render(ctx, request, "assets.html", total=total, rows=rows, q=q or "", zone=zone or "")


@router.get("/assets/export")
def assets_export(ctx: Annotated[Ctx, Depends(require(Perm.ASSETS_EXPORT))],
                  format: Annotated[str, Query(pattern="^(csv|xlsx|json)$")] = "csv",
                  lang: Annotated[str, Query(pattern="^(en|zh)$")] = "en", zone: Opt = None) -> FileResponse:
    workdir = ops.new_workdir()
    path, result = ops.export_inventory(ctx, format, lang, zone or None, workdir)
    return FileResponse(path, filename=path.name, headers={"X-Content-SHA256": result.sha256,
                                                           "X-Rows": str(result.rows)},
                        background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True))


@router.get("/assets/{asset_id}")
def asset_page(request: Request, asset_id: str, ctx: Annotated[Ctx, Depends(require(Perm.ASSETS_READ))]) -> \
        HTMLResponse:
    return render(ctx, request, "asset.html", c=ops.asset_context(ctx, asset_id))


@router.get("/audit")
def audit_page(request: Request, ctx: Annotated[Ctx, Depends(require(Perm.AUDIT_READ))], actor: Opt = None,
               action: Opt = None) -> HTMLResponse:
    return render(ctx, request, "audit.html", rows=ops.audit_trail(ctx, actor or None, action or None),
                  actor=actor or "", action=action or "")


@router.get("/preferences")
def preferences_page(request: Request, ctx: Annotated[Ctx, Depends(require(Perm.SELF))]) -> HTMLResponse:
    return render(ctx, request, "preferences.html", zones=zone_choices(),
                  chosen_zone=ctx.session.timezone or "", default_zone=ctx.state.settings.console.timezone,
                  now=utcnow())


@router.post("/preferences")
def preferences(request: Request, ctx: Annotated[Ctx, Depends(require(Perm.SELF))],
                lang: Annotated[str, Form(max_length=10)] = "",
                timezone: Annotated[str | None, Form(max_length=64)] = None) -> RedirectResponse:
    """The language (header select, preferences page) and the time zone (preferences page; empty: the default)."""
    if lang and lang not in LANGUAGES:
        raise QueryError(f"language must be one of {', '.join(LANGUAGES)}")
    if timezone and timezone not in zone_choices():
        raise QueryError(f"not a known IANA time zone: {timezone[:64]!r}")
    changed: dict[str, str | None] = {}
    if lang:
        ctx.state.users.set_lang(ctx.user, lang)
        changed["lang"] = lang
    if timezone is not None:
        ctx.state.users.set_timezone(ctx.user, timezone or None)
        changed["timezone"] = timezone or None
    ctx.audit("console.preferences", ctx.user, "success", changed)
    return _back(request, "/")


@cache
def zone_choices() -> tuple[str, ...]:
    """The IANA zones a user may choose (region/city names and UTC; not the database's aliases like posixrules)."""
    aliases = ("Etc/", "SystemV/", "posix", "right/")
    return tuple(sorted(z for z in available_timezones() if ("/" in z and not z.startswith(aliases)) or z == "UTC"))
