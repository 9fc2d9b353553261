"""Hunt pages and API: query, group-by (most or least frequent), histogram, pivot, rule skeleton. Raw-data
queries are audited like every other console action."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from secops.console.hunt import (
    SINCE,
    HuntQuery,
    TimeInputError,
    bounds,
    datasets,
    local_input,
    pivot,
    rule_skeleton,
    run_hunt,
)
from secops.console.i18n import translations
from secops.console.roles import Perm
from secops.console.web import Ctx, render, require

pages = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["api"])
Opt = Annotated[str | None, Query(max_length=200)]


def _hunt_query(dataset: str | None, q: str | None, since: str | None, start: str | None, end: str | None,
                group_by: str | None, rare: str | None) -> HuntQuery:
    fields = tuple(f.strip() for f in (group_by or "").split(",") if f.strip())
    return HuntQuery(dataset=dataset or "secops.conn", q=q or "*", since=since or "24h", start=start or None,
                     end=end or None, group_by=fields, rare=rare in ("1", "on", "true"))


def _audit(ctx: Ctx, hq: HuntQuery, total: int) -> None:
    ctx.audit("console.hunt", hq.dataset, "success", {"q": hq.q[:2000], "group_by": list(hq.group_by),
                                                      "rare": hq.rare, "since": hq.since, "start": hq.start,
                                                      "end": hq.end, "total": total})


@pages.get("/hunt")
def hunt_page(request: Request, ctx: Annotated[Ctx, Depends(require(Perm.HUNT))], dataset: Opt = None,
              q: Annotated[str | None, Query(max_length=4000)] = None, since: Opt = None, start: Opt = None,
              end: Opt = None, group_by: Opt = None, rare: Opt = None) -> HTMLResponse:
    """From and To are datetime-local inputs in the reader's zone; a bad value keeps the form as typed and says
    why, in the reader's language (status 400), and runs no query."""
    try:
        lo, hi = bounds(start, end, ctx.timezone)
        shown, why = (local_input(lo, ctx.timezone), local_input(hi, ctx.timezone)), None
    except TimeInputError as exc:
        lo, hi, shown, why = None, None, (start or "", end or ""), exc.message.render(translations(ctx.lang))
    hq = _hunt_query(dataset, q, since, lo, hi, group_by, rare)
    result = run_hunt(ctx.state.es, ctx.state.prefix, hq) if q is not None and why is None else None
    if result is not None:
        _audit(ctx, hq, result.total)
    peak = max((n for _t, n in result.histogram), default=0) if result else 0
    return render(ctx, request, "hunt.html", status=400 if why else 200, hq=hq, result=result, datasets=datasets(),
                  sinces=list(SINCE), peak=peak, group_by=group_by or "", shown=shown, time_error=why)


@pages.get("/hunt/pivot")
def pivot_page(request: Request, ctx: Annotated[Ctx, Depends(require(Perm.HUNT))],
               value: Annotated[str, Query(max_length=500)], since: Opt = "all") -> HTMLResponse:
    kind, q, counts = pivot(ctx.state.es, ctx.state.prefix, value, since or "all")
    ctx.audit("console.hunt.pivot", value, "success", {"kind": kind, "datasets": dict(counts)})
    return render(ctx, request, "pivot.html", value=value, kind=kind, q=q, counts=counts, since=since or "all")


@pages.get("/hunt/rule")
def rule_page(ctx: Annotated[Ctx, Depends(require(Perm.HUNT))], dataset: Opt = None,
              q: Annotated[str | None, Query(max_length=4000)] = None, part: Opt = "rule") -> PlainTextResponse:
    hq = _hunt_query(dataset, q, None, None, None, None, None)
    rule, info = rule_skeleton(hq, ctx.user)
    ctx.audit("console.hunt.rule", hq.dataset, "success", {"q": hq.q[:2000]})
    name = "info.yml" if part == "info" else "rule.yml"
    return PlainTextResponse(info if part == "info" else rule, media_type="application/yaml",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


@api.get("/hunt")
def api_hunt(ctx: Annotated[Ctx, Depends(require(Perm.HUNT))], dataset: Opt = None,
             q: Annotated[str | None, Query(max_length=4000)] = None, since: Opt = None, start: Opt = None,
             end: Opt = None, group_by: Opt = None, rare: Opt = None) -> dict[str, Any]:
    """``start``/``end``: ISO 8601; without an offset, in the caller's zone (Preferences)."""
    hq = _hunt_query(dataset, q, since, *bounds(start, end, ctx.timezone), group_by, rare)
    r = run_hunt(ctx.state.es, ctx.state.prefix, hq)
    _audit(ctx, hq, r.total)
    return {"total": r.total, "took_ms": r.took_ms, "hits": r.hits, "histogram": r.histogram,
            "groups": [{"values": v, "count": n} for v, n in r.groups], "other": r.other}


@api.get("/hunt/pivot")
def api_pivot(ctx: Annotated[Ctx, Depends(require(Perm.HUNT))], value: Annotated[str, Query(max_length=500)],
              since: Opt = "all") -> dict[str, Any]:
    kind, q, counts = pivot(ctx.state.es, ctx.state.prefix, value, since or "all")
    ctx.audit("console.hunt.pivot", value, "success", {"kind": kind, "datasets": dict(counts)})
    return {"kind": kind, "query": q, "datasets": dict(counts)}
