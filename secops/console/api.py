"""The JSON API under /api/: everything the pages do, described by the application's OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from secops.console import ops
from secops.console.alerts import AlertFilter
from secops.console.roles import PERMISSIONS, Perm
from secops.console.web import Ctx, require

router = APIRouter(prefix="/api", tags=["api"])
Opt = Annotated[str | None, Query(max_length=200)]


class Me(BaseModel):
    name: str
    role: str
    permissions: list[str]
    csrf: str = Field(description="send as the X-CSRF-Token header on POST")
    lang: str
    timezone: str = Field(description="IANA zone of the dates the pages show (the user's, else console.timezone)")


class Group(BaseModel):
    value: str
    count: int


class AlertPage(BaseModel):
    total: int
    alerts: list[dict[str, Any]]
    group_by: str | None = None
    groups: list[Group] = []
    other: int = 0


class FilterIn(BaseModel):
    status: Literal["open", "acknowledged", "closed"] | None = None
    severity: Literal["informational", "low", "medium", "high", "critical"] | None = None
    rule: str | None = Field(None, max_length=200)
    since: Literal["1h", "24h", "7d", "30d", "all"] = "all"
    field: str | None = Field(None, max_length=128, pattern=r"^[A-Za-z0-9_@][A-Za-z0-9_.@-]*$")
    value: str | None = Field(None, max_length=2000)

    def to_filter(self) -> AlertFilter:
        return AlertFilter(self.status, self.severity, self.rule, self.since, self.field,
                           self.value if self.field else None)


class TriageIn(BaseModel):
    action: Literal["acknowledge", "close", "reopen", "assign", "note"]
    arg: str = Field("", max_length=10000, description="assignee for assign, text for note")
    ids: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(None, max_length=1000)
    group: FilterIn | None = Field(None, description="act on every alert this filter selects (at most 1000)")


class TriageOut(BaseModel):
    done: list[str]
    failed: dict[str, str]


class AlertContextOut(BaseModel):
    alert: dict[str, Any]
    events: list[dict[str, Any]]
    related: list[dict[str, Any]]
    assets: dict[str, dict[str, Any] | None]
    runs: list[dict[str, Any]]


class DecisionIn(BaseModel):
    decision: Literal["approve", "deny"]
    reason: str = Field(min_length=1, max_length=2000)


class PlaybookIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    dry_run: bool = Field(True, description="plan-only run; forced on when the playbook or configuration says so")
    plan_only: bool = Field(False, description="return the plan and start nothing")


class KillSwitchIn(BaseModel):
    on: bool


class AssetPage(BaseModel):
    total: int
    assets: list[dict[str, Any]]


@router.get("/me")
def me(ctx: Annotated[Ctx, Depends(require(Perm.SELF))]) -> Me:
    return Me(name=ctx.user, role=ctx.session.role.value, csrf=ctx.session.csrf, lang=ctx.lang,
              timezone=ctx.timezone, permissions=sorted(p.value for p in PERMISSIONS[ctx.session.role]))


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, ctx: Annotated[Ctx, Depends(require(Perm.SELF))]) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/alerts")
def alerts(ctx: Annotated[Ctx, Depends(require(Perm.ALERTS_READ))], status: Opt = None, severity: Opt = None,
           rule: Opt = None, since: Opt = None, field: Opt = None, value: Opt = None, group_by: Opt = None,
           size: Annotated[int, Query(ge=0, le=1000)] = 100) -> AlertPage:
    flt = AlertFilter.from_params(status, severity, rule, since, field, value)
    page = ctx.state.queue.page(flt, group_by or None, size)
    return AlertPage(total=page.total, alerts=page.alerts, group_by=page.group_by, other=page.other,
                     groups=[Group(value=v, count=c) for v, c in page.groups])


@router.post("/alerts/actions")
def alerts_action(body: TriageIn, ctx: Annotated[Ctx, Depends(require(Perm.ALERTS_TRIAGE))]) -> TriageOut:
    group = body.group.to_filter() if body.group else None
    result = ops.triage(ctx, body.action, body.arg, body.ids, group)
    return TriageOut(done=result.done, failed=result.failed)


@router.get("/alerts/{alert_id}")
def alert(alert_id: str, ctx: Annotated[Ctx, Depends(require(Perm.ALERTS_READ))]) -> AlertContextOut:
    c = ctx.state.queue.context(alert_id)
    return AlertContextOut(alert=c.alert, events=c.events, related=c.related, assets=c.assets, runs=c.runs)


@router.post("/alerts/{alert_id}/playbooks")
def alert_playbook(alert_id: str, body: PlaybookIn, ctx: Annotated[Ctx, Depends(require(Perm.PLAYBOOK_START))]) -> \
        dict[str, Any]:
    if body.plan_only:
        return {"plan": ops.plan_playbook(ctx, alert_id, body.name)}
    return ops.start_playbook(ctx, alert_id, body.name, body.dry_run)


@router.get("/approvals")
def approvals(ctx: Annotated[Ctx, Depends(require(Perm.RUNS_READ))]) -> list[dict[str, Any]]:
    return ops.pending_approvals(ctx)


@router.get("/runs/{run_id}")
def run(run_id: str, ctx: Annotated[Ctx, Depends(require(Perm.RUNS_READ))]) -> dict[str, Any]:
    doc, trail = ops.run_timeline(ctx, run_id)
    return {"run": doc, "audit": trail}


@router.post("/runs/{run_id}/decision")
def decision(run_id: str, body: DecisionIn, ctx: Annotated[Ctx, Depends(require(Perm.APPROVALS_DECIDE))]) -> \
        dict[str, Any]:
    return ops.decide(ctx, run_id, body.decision == "approve", body.reason)


@router.post("/kill-switch")
def kill_switch(body: KillSwitchIn, ctx: Annotated[Ctx, Depends(require(Perm.KILL_SWITCH))]) -> dict[str, bool]:
    ops.set_kill_switch(ctx, body.on)
    return {"on": ops.kill_switch(ctx)}


@router.get("/assets")
def assets(ctx: Annotated[Ctx, Depends(require(Perm.ASSETS_READ))], q: Opt = None, zone: Opt = None,
           size: Annotated[int, Query(ge=0, le=1000)] = 100) -> AssetPage:
    total, rows = ops.list_assets(ctx, q, zone, size)
    return AssetPage(total=total, assets=rows)


@router.get("/assets/{asset_id}")
def asset(asset_id: str, ctx: Annotated[Ctx, Depends(require(Perm.ASSETS_READ))]) -> dict[str, Any]:
    return ops.asset_context(ctx, asset_id)


@router.get("/overview")
def overview(ctx: Annotated[Ctx, Depends(require(Perm.OVERVIEW))]) -> dict[str, Any]:
    return {**ops.overview(ctx), "kill_switch": ops.kill_switch(ctx)}


@router.get("/audit")
def audit(ctx: Annotated[Ctx, Depends(require(Perm.AUDIT_READ))], actor: Opt = None, action: Opt = None,
          size: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[dict[str, Any]]:
    return ops.audit_trail(ctx, actor or None, action or None, size)
