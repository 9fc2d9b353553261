"""Case pages and their JSON API: list, create, escalate alerts, edit, comment, attach the pcap, download an
attachment, export. Every route names a permission; every change is audited."""

from __future__ import annotations

import shutil
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from detections.cases import CASE_SEVERITIES, CASE_STATUSES, CaseError
from secops.console import ops
from secops.console.alerts import AlertFilter, QueryError
from secops.console.cases import attach_pcap, case_store, escalate, export_case
from secops.console.markdown import render_markdown
from secops.console.roles import Perm
from secops.console.web import Ctx, render, require

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["api"])
Opt = Annotated[str | None, Query(max_length=200)]
Text = Annotated[str, Form(max_length=300)]


def _store(ctx: Ctx):  # type: ignore[no-untyped-def]
    return case_store(ctx.state.settings, ctx.state.es)


def _checked(fn, *args: Any, **kw: Any) -> Any:  # type: ignore[no-untyped-def]
    """A store refusal (bad status, empty comment...) is the client's error: 400 with its message."""
    try:
        return fn(*args, **kw)
    except CaseError as exc:
        raise QueryError(str(exc)) from None


def _to(case_id: str, msg: str) -> RedirectResponse:
    from urllib.parse import quote, urlencode

    return RedirectResponse(f"/cases/{quote(case_id, safe='')}?{urlencode({'msg': msg})}", status_code=303)


# -- operations shared by pages and API (each writes its audit document) -----------------------------------
def do_create(ctx: Ctx, title: str, severity: str, tags: str, assignee: str) -> dict[str, Any]:
    case = _checked(_store(ctx).create, title, ctx.user, severity=severity or "medium", tags=tags or [],
                    assignee=assignee or None)
    ctx.audit("case.create", case["_id"], "success", {"title": title[:300], "severity": severity})
    return case


def do_escalate(ctx: Ctx, ids: list[str] | None, flt: AlertFilter | None, case_id: str, title: str) -> \
        dict[str, Any]:
    targets = list(dict.fromkeys(i for i in ids or [] if i)) or (ctx.state.queue.ids(flt) if flt else [])
    if not targets:
        raise QueryError("no alerts selected")
    case = _checked(escalate, _store(ctx), ctx.state.queue, ctx.user, targets[:1000], case_id or None,
                    title or None)
    ctx.audit("case.escalate", case["_id"], "success", {"alerts": targets[:1000], "new_case": not case_id,
                                                        "group": flt.params() if flt and not ids else None})
    return case


def do_update(ctx: Ctx, case_id: str, **fields: Any) -> dict[str, Any]:
    before = _store(ctx).get(case_id)["secops"]["case"]
    case = _checked(_store(ctx).update, case_id, ctx.user, **fields)
    changed = {k: {"old": before.get(k), "new": case["secops"]["case"].get(k)} for k in fields
               if before.get(k) != case["secops"]["case"].get(k)}
    ctx.audit("case.update", case_id, "success", {"changes": changed})
    return case


def do_comment(ctx: Ctx, case_id: str, text: str) -> dict[str, Any]:
    case = _checked(_store(ctx).comment, case_id, ctx.user, text)
    ctx.audit("case.comment", case_id, "success", {"comment": case["secops"]["case"]["comments"][-1]["id"],
                                                   "length": len(text)})
    return case


def do_attach_pcap(ctx: Ctx, case_id: str) -> dict[str, Any]:
    workdir = ops.new_workdir()
    try:
        result = attach_pcap(_store(ctx), ctx.state.queue, ctx.state.settings, case_id, ctx.user, workdir)
    except LookupError as exc:
        ctx.audit("case.attach_pcap", case_id, "failure", {"error": str(exc)})
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ctx.audit("case.attach_pcap", case_id, "success", {"attachment": result.attachment["id"],
                                                       "sha256": result.attachment["sha256"],
                                                       "packets": result.packets,
                                                       "community_ids": result.community_ids})
    return result.attachment


# -- pages -------------------------------------------------------------------------------------------
@pages.get("/cases")
def cases_page(request: Request, ctx: Annotated[Ctx, Depends(require(Perm.CASES_READ))], status: Opt = None) -> \
        HTMLResponse:
    if status and status not in CASE_STATUSES:
        raise QueryError(f"status must be one of {', '.join(CASE_STATUSES)}")
    return render(ctx, request, "cases.html", cases=_store(ctx).list(status=status or None), wanted=status or "",
                  statuses=CASE_STATUSES, severities=CASE_SEVERITIES)


@pages.post("/cases")
def case_create(ctx: Annotated[Ctx, Depends(require(Perm.CASES_EDIT))], title: Text,
                severity: Annotated[str, Form(max_length=20)] = "medium",
                tags: Annotated[str, Form(max_length=2000)] = "",
                assignee: Annotated[str, Form(max_length=64)] = "") -> RedirectResponse:
    case = do_create(ctx, title, severity, tags, assignee)
    return _to(case["_id"], "created")


@pages.post("/alerts/escalate")
def alerts_escalate(ctx: Annotated[Ctx, Depends(require(Perm.CASES_EDIT))],
                    ids: Annotated[list[str] | None, Form()] = None,
                    scope: Annotated[str, Form(max_length=10)] = "ids",
                    case_id: Annotated[str, Form(max_length=200)] = "",
                    title: Annotated[str, Form(max_length=300)] = "",
                    f_status: Annotated[str, Form(max_length=200)] = "", f_severity: Annotated[str, Form()] = "",
                    f_rule: Annotated[str, Form(max_length=200)] = "", f_since: Annotated[str, Form()] = "",
                    f_field: Annotated[str, Form(max_length=200)] = "",
                    f_value: Annotated[str, Form(max_length=2000)] = "") -> RedirectResponse:
    flt = AlertFilter.from_params(f_status, f_severity, f_rule, f_since, f_field, f_value) if scope == "group" else None
    case = do_escalate(ctx, ids if scope != "group" else None, flt, case_id, title)
    return _to(case["_id"], "escalated")


@pages.get("/cases/{case_id}")
def case_page(request: Request, case_id: str, ctx: Annotated[Ctx, Depends(require(Perm.CASES_READ))]) -> \
        HTMLResponse:
    case = _store(ctx).get(case_id)
    return render(ctx, request, "case.html", case=case, c=case["secops"]["case"], markdown=render_markdown,
                  statuses=CASE_STATUSES, severities=CASE_SEVERITIES)


@pages.post("/cases/{case_id}/update")
def case_update(case_id: str, ctx: Annotated[Ctx, Depends(require(Perm.CASES_EDIT))],
                title: Annotated[str | None, Form(max_length=300)] = None,
                status: Annotated[str | None, Form(max_length=20)] = None,
                severity: Annotated[str | None, Form(max_length=20)] = None,
                assignee: Annotated[str | None, Form(max_length=64)] = None,
                tags: Annotated[str | None, Form(max_length=2000)] = None) -> RedirectResponse:
    fields = {k: v for k, v in (("title", title), ("status", status), ("severity", severity), ("assignee", assignee),
                                ("tags", tags)) if v is not None}
    do_update(ctx, case_id, **fields)
    return _to(case_id, "updated")


@pages.post("/cases/{case_id}/comments")
def case_comment(case_id: str, ctx: Annotated[Ctx, Depends(require(Perm.CASES_EDIT))],
                 text: Annotated[str, Form(max_length=20000)]) -> RedirectResponse:
    do_comment(ctx, case_id, text)
    return _to(case_id, "commented")


@pages.post("/cases/{case_id}/pcap")
def case_pcap(case_id: str, ctx: Annotated[Ctx, Depends(require(Perm.CASES_EDIT))]) -> RedirectResponse:
    do_attach_pcap(ctx, case_id)
    return _to(case_id, "pcap attached")


@pages.get("/cases/{case_id}/attachments/{attachment_id}")
def case_attachment(case_id: str, attachment_id: str, ctx: Annotated[Ctx, Depends(require(Perm.PCAP_READ))]) -> \
        FileResponse:
    store = _store(ctx)
    atts = [a for a in store.get(case_id)["secops"]["case"].get("attachments") or [] if a["id"] == attachment_id]
    if not atts:
        raise LookupError(f"no attachment {attachment_id!r} in this case")
    ctx.audit("case.attachment.download", case_id, "success", {"attachment": attachment_id,
                                                               "sha256": atts[0]["sha256"]})
    return FileResponse(store.file_path(case_id, atts[0]), filename=atts[0]["name"],
                        media_type="application/octet-stream", headers={"X-Content-SHA256": atts[0]["sha256"]})


@pages.get("/cases/{case_id}/export")
def case_export(case_id: str, ctx: Annotated[Ctx, Depends(require(Perm.CASES_EXPORT))]) -> FileResponse:
    workdir = ops.new_workdir()
    try:
        result = export_case(_store(ctx), case_id, workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    ctx.audit("case.export", case_id, "success", {"sha256": result.sha256, "files": result.files})
    return FileResponse(result.path, filename=result.path.name, media_type="application/zip",
                        headers={"X-Content-SHA256": result.sha256},
                        background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True))


# -- JSON API ----------------------------------------------------------------------------------------
class CaseIn(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    tags: list[Annotated[str, Field(max_length=64)]] = Field([], max_length=50)
    assignee: str | None = Field(None, max_length=64)


class CaseChange(BaseModel):
    title: str | None = Field(None, min_length=1, max_length=300)
    status: Literal["open", "in_progress", "closed"] | None = None
    severity: Literal["low", "medium", "high", "critical"] | None = None
    assignee: str | None = Field(None, max_length=64)
    tags: list[Annotated[str, Field(max_length=64)]] | None = Field(None, max_length=50)


class EscalateIn(BaseModel):
    ids: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(min_length=1, max_length=1000)
    case_id: str | None = Field(None, max_length=200, description="an existing case; a new one when absent")
    title: str | None = Field(None, max_length=300)


class CommentIn(BaseModel):
    text: str = Field(min_length=1, max_length=20000, description="markdown; raw HTML is shown as text")


@api.get("/cases")
def api_cases(ctx: Annotated[Ctx, Depends(require(Perm.CASES_READ))],
              status: Annotated[Literal["open", "in_progress", "closed"] | None, Query()] = None) -> \
        list[dict[str, Any]]:
    return _store(ctx).list(status=status)


@api.post("/cases")
def api_case_create(body: CaseIn, ctx: Annotated[Ctx, Depends(require(Perm.CASES_EDIT))]) -> dict[str, Any]:
    return do_create(ctx, body.title, body.severity, ",".join(body.tags), body.assignee or "")


@api.post("/cases/escalate")
def api_escalate(body: EscalateIn, ctx: Annotated[Ctx, Depends(require(Perm.CASES_EDIT))]) -> dict[str, Any]:
    return do_escalate(ctx, body.ids, None, body.case_id or "", body.title or "")


@api.get("/cases/{case_id}")
def api_case(case_id: str, ctx: Annotated[Ctx, Depends(require(Perm.CASES_READ))]) -> dict[str, Any]:
    return _store(ctx).get(case_id)


@api.post("/cases/{case_id}")
def api_case_update(case_id: str, body: CaseChange, ctx: Annotated[Ctx, Depends(require(Perm.CASES_EDIT))]) -> \
        dict[str, Any]:
    return do_update(ctx, case_id, **body.model_dump(exclude_unset=True))


@api.post("/cases/{case_id}/comments")
def api_case_comment(case_id: str, body: CommentIn, ctx: Annotated[Ctx, Depends(require(Perm.CASES_EDIT))]) -> \
        dict[str, Any]:
    return do_comment(ctx, case_id, body.text)


@api.post("/cases/{case_id}/pcap")
def api_case_pcap(case_id: str, ctx: Annotated[Ctx, Depends(require(Perm.CASES_EDIT))]) -> dict[str, Any]:
    return do_attach_pcap(ctx, case_id)
