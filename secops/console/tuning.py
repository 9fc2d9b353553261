"""Tuning from the alert: rule exceptions made from an alert's values, listed, edited and removed; the open
alerts an exception covers closed in the same step. Every route names a permission; every change is audited."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from detections.exceptions import OPS, ExceptionError, ExceptionStore, RuleException, conditions_from
from secops.console.alerts import QueryError
from secops.console.roles import Perm
from secops.console.web import Ctx, render, require
from secops.ecs import get

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["api"])
# fields offered as conditions when tuning from an alert, with the operator that suits each
CANDIDATES = (("source.ip", "is"), ("destination.ip", "is"), ("destination.port", "is"), ("network.transport", "is"),
              ("dns.question.name", "suffix"), ("tls.client.server_name", "suffix"), ("url.domain", "suffix"),
              ("http.request.method", "is"), ("user_agent.original", "is"), ("tls.client.ja3", "is"),
              ("tls.client.ja4", "is"))


def _store(ctx: Ctx) -> ExceptionStore:
    return ExceptionStore(ctx.state.es, ctx.state.prefix)


def _view(e: RuleException) -> dict[str, Any]:
    return {"id": e.id, "rule_id": e.rule_id, "conditions": [c.as_doc() for c in e.conditions],
            "expires": e.expires, "comment": e.comment, "author": e.author, "created": e.created,
            "updated": e.updated}


def _checked(fn, *args: Any, **kw: Any) -> Any:  # type: ignore[no-untyped-def]
    try:
        return fn(*args, **kw)
    except ExceptionError as exc:
        raise QueryError(str(exc)) from None


def do_add(ctx: Ctx, rule_id: str, conditions: list[tuple[str, str, str]], expires: str, comment: str,
           close_matching: bool, from_alert: str | None = None) -> tuple[RuleException, list[str]]:
    conds = _checked(conditions_from, conditions)
    exc = _checked(_store(ctx).add, rule_id, conds, ctx.user, comment, expires or None)
    closed: list[str] = []
    if close_matching:
        for alert_id in _store(ctx).covered_alerts(exc):
            ctx.state.queue.store.set_status(alert_id, "closed", ctx.user)
            ctx.state.queue.store.note(alert_id, f"closed by exception {exc.id}: {exc.comment[:500]}", ctx.user)
            closed.append(alert_id)
    ctx.audit("exception.create", exc.id, "success", {"exception": _view(exc), "from_alert": from_alert,
                                                      "closed_alerts": closed})
    return exc, closed


def do_edit(ctx: Ctx, exception_id: str, expires: str | None, comment: str | None) -> RuleException:
    before, after = _checked(_store(ctx).edit, exception_id, comment=comment, expires=expires)
    ctx.audit("exception.edit", exception_id, "success", {"before": _view(before), "after": _view(after)})
    return after


def do_remove(ctx: Ctx, exception_id: str) -> RuleException:
    exc = _store(ctx).remove(exception_id)
    ctx.audit("exception.remove", exception_id, "success", {"exception": _view(exc)})
    return exc


# -- pages -------------------------------------------------------------------------------------------
@pages.get("/exceptions")
def exceptions_page(request: Request, ctx: Annotated[Ctx, Depends(require(Perm.ALERTS_READ))]) -> HTMLResponse:
    return render(ctx, request, "exceptions.html", rows=[_view(e) for e in _store(ctx).list(size=1000)])


@pages.get("/alerts/{alert_id}/tune")
def tune_page(request: Request, alert_id: str, ctx: Annotated[Ctx, Depends(require(Perm.EXCEPTIONS_EDIT))]) -> \
        HTMLResponse:
    c = ctx.state.queue.context(alert_id)
    offered = []
    for name, op in CANDIDATES:
        for doc in [c.alert, *c.events]:
            value = get(doc, name)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
                offered.append({"field": name, "op": op, "value": str(value)})
                break
    return render(ctx, request, "tune.html", alert=c.alert, offered=offered, ops=OPS)


@pages.post("/exceptions")
def exception_create(ctx: Annotated[Ctx, Depends(require(Perm.EXCEPTIONS_EDIT))],
                     rule_id: Annotated[str, Form(max_length=200)],
                     comment: Annotated[str, Form(max_length=4000)],
                     use: Annotated[list[int] | None, Form()] = None,
                     field: Annotated[list[str] | None, Form()] = None, op: Annotated[list[str] | None, Form()] = None,
                     value: Annotated[list[str] | None, Form()] = None,
                     expires: Annotated[str, Form(max_length=40)] = "",
                     close_matching: Annotated[str, Form(max_length=5)] = "",
                     alert_id: Annotated[str, Form(max_length=200)] = "") -> RedirectResponse:
    rows = list(zip(field or [], op or [], value or [], strict=False))
    chosen = [rows[i] for i in sorted(set(use or [])) if 0 <= i < len(rows)]
    exc, closed = do_add(ctx, rule_id, chosen, expires, comment, close_matching == "on", alert_id or None)
    return RedirectResponse("/exceptions?" + urlencode({"msg": f"{exc.id}: {len(closed)} alerts closed"}),
                            status_code=303)


@pages.post("/exceptions/{exception_id}/edit")
def exception_edit(exception_id: str, ctx: Annotated[Ctx, Depends(require(Perm.EXCEPTIONS_EDIT))],
                   expires: Annotated[str, Form(max_length=40)] = "",
                   comment: Annotated[str, Form(max_length=4000)] = "",
                   never: Annotated[str, Form(max_length=5)] = "") -> RedirectResponse:
    do_edit(ctx, exception_id, None if never == "on" else expires, comment or None)
    return RedirectResponse(f"/exceptions?msg={quote(exception_id)}", status_code=303)


@pages.post("/exceptions/{exception_id}/delete")
def exception_delete(exception_id: str, ctx: Annotated[Ctx, Depends(require(Perm.EXCEPTIONS_EDIT))]) -> \
        RedirectResponse:
    do_remove(ctx, exception_id)
    return RedirectResponse(f"/exceptions?msg={quote(exception_id)}", status_code=303)


# -- JSON API ----------------------------------------------------------------------------------------
class ConditionIn(BaseModel):
    field: str = Field(max_length=128, pattern=r"^[A-Za-z0-9_@][A-Za-z0-9_.@-]*$")
    op: Literal["is", "suffix", "cidr"] = "is"
    value: str = Field(min_length=1, max_length=1000)


class ExceptionIn(BaseModel):
    rule_id: str = Field(min_length=1, max_length=200)
    conditions: list[ConditionIn] = Field(min_length=1, max_length=10)
    expires: str | None = Field(None, max_length=40, description="ISO time or a duration: 30d, 12h, 90m")
    comment: str = Field(min_length=1, max_length=4000)
    close_matching: bool = False


class ExceptionChange(BaseModel):
    expires: str | None = Field("", max_length=40, description="'' keeps, null removes, else ISO time or 30d")
    comment: str | None = Field(None, max_length=4000)


@api.get("/exceptions")
def api_exceptions(ctx: Annotated[Ctx, Depends(require(Perm.ALERTS_READ))]) -> list[dict[str, Any]]:
    return [_view(e) for e in _store(ctx).list(size=1000)]


@api.post("/exceptions")
def api_exception_create(body: ExceptionIn, ctx: Annotated[Ctx, Depends(require(Perm.EXCEPTIONS_EDIT))]) -> \
        dict[str, Any]:
    exc, closed = do_add(ctx, body.rule_id, [(c.field, c.op, c.value) for c in body.conditions], body.expires or "",
                         body.comment, body.close_matching)
    return {**_view(exc), "closed_alerts": closed}


@api.post("/exceptions/{exception_id}")
def api_exception_edit(exception_id: str, body: ExceptionChange,
                       ctx: Annotated[Ctx, Depends(require(Perm.EXCEPTIONS_EDIT))]) -> dict[str, Any]:
    return _view(do_edit(ctx, exception_id, body.expires, body.comment))


@api.post("/exceptions/{exception_id}/delete")
def api_exception_delete(exception_id: str, ctx: Annotated[Ctx, Depends(require(Perm.EXCEPTIONS_EDIT))]) -> \
        dict[str, Any]:
    return _view(do_remove(ctx, exception_id))
