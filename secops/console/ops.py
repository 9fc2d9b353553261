"""Console operations shared by the pages and the JSON API: each one checks its inputs, acts through the
contexts' public functions and writes its audit document."""

from __future__ import annotations

import ipaddress
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from elasticsearch import NotFoundError

from collectors.connection_pcap import MAX_PCAP_CONNECTIONS, PcapFile, Wanted, spool_frames, write_pcap
from collectors.pcap_service import SensorPcapError, fetch_frames
from inventory.export import FORMATS, export_assets
from inventory.store import AssetStore
from playbooks import store as runs
from secops.config import Settings
from secops.console.alerts import MAX_GROUP_ACTION, AlertFilter, QueryError
from secops.console.web import Ctx
from secops.contracts.playbook import RunStatus
from secops.ecs import get, parse_time, utcnow
from secops.es.templates import index_for, index_pattern


@dataclass
class TriageResult:
    done: list[str]
    failed: dict[str, str]


def triage(ctx: Ctx, action: str, arg: str, ids: list[str] | None, flt: AlertFilter | None) -> TriageResult:
    """Acknowledge, close, reopen, assign or note the listed alerts, or every alert a filter selects."""
    queue = ctx.state.queue
    targets = list(dict.fromkeys(i for i in ids if i))[:MAX_GROUP_ACTION] if ids else (queue.ids(flt) if flt else [])
    if not targets:
        raise QueryError("no alerts selected")
    result = TriageResult([], {})
    for alert_id in targets:
        try:
            queue.act(alert_id, action, ctx.user, arg)
            result.done.append(alert_id)
        except NotFoundError:
            result.failed[alert_id] = "no such alert"
        except QueryError:
            raise
    ctx.audit(f"alert.{action}", ",".join(targets)[:1000], "success" if not result.failed else "partial",
              {"alerts": len(targets), "done": len(result.done), "failed": result.failed, "arg": arg[:500],
               "group": flt.params() if flt and not ids else None})
    return result


# -- playbook runs and approvals ------------------------------------------------------------------
def pending_approvals(ctx: Ctx) -> list[dict[str, Any]]:
    out = []
    # decisions made a moment ago (by this console or the CLI) must not show as pending
    store = runs.PlaybookRunStore.on(ctx.state.es, ctx.state.prefix)
    ctx.state.es.indices.refresh(index=store.run_index, ignore_unavailable=True)
    for typed in store.with_status([RunStatus.WAITING_APPROVAL], size=200):
        run = typed.to_doc()
        pb = run["secops"]["playbook"]
        step = pb["steps"][pb["current"]] if pb["current"] < len(pb["steps"]) else {}
        out.append({"run": run, "step": step})
    return out


def run_timeline(ctx: Ctx, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    store = runs.PlaybookRunStore.on(ctx.state.es, ctx.state.prefix)
    try:
        doc = store.get(run_id).to_doc()
    except runs.RunNotFound as exc:
        raise LookupError(str(exc)) from None
    return doc, store.run_audit(run_id)


def decide(ctx: Ctx, run_id: str, approve: bool, reason: str) -> dict[str, Any]:
    """Approve or deny the step a run waits on (the runner audits the decision; so does the console)."""
    if not reason.strip():
        raise QueryError("a decision needs a reason")
    runner = _runner(ctx)
    try:
        doc = runner.decide(run_id, approve, ctx.user, reason[:2000]).to_doc()
    except runs.RunNotFound as exc:
        raise LookupError(str(exc)) from None
    except ValueError as exc:
        ctx.audit(f"playbook.{'approve' if approve else 'deny'}", run_id, "failure", {"error": str(exc)})
        raise QueryError(str(exc)) from None
    ctx.audit(f"console.playbook.{'approve' if approve else 'deny'}", run_id, "success",
              {"step": doc["secops"]["playbook"]["approval"]["step"], "reason": reason[:2000]})
    return doc


def _runner(ctx: Ctx):  # type: ignore[no-untyped-def]
    from playbooks.runner import Runner
    from playbooks.tasks import dispatch

    return Runner(ctx.state.settings, ctx.state.es, dispatch)


def playbook_names(ctx: Ctx) -> list[str]:
    from playbooks.model import load_all

    books, _errors = load_all(ctx.state.settings, strict=False)
    return sorted(name for name, book in books.items() if book.enabled)


def plan_playbook(ctx: Ctx, alert_id: str, name: str) -> list[dict[str, Any]]:
    """Every step's parameters and what it would do on this alert; nothing acts."""
    from playbooks.runner import RefusedInput

    runner = _runner(ctx)
    book, alert = runner.book(name), runner.alert(alert_id)
    try:
        plan = runner.plan(book, alert)
    except RefusedInput as exc:
        ctx.audit("console.playbook.plan", alert_id, "failure", {"playbook": name, "error": str(exc)})
        raise QueryError(f"refused: {exc}") from None
    ctx.audit("console.playbook.plan", alert_id, "success", {"playbook": name})
    return plan


def start_playbook(ctx: Ctx, alert_id: str, name: str, dry_run: bool) -> dict[str, Any]:
    """Start a playbook on an alert by hand; dry-run when asked, or when the playbook or configuration says so."""
    from secops.ecs import iso

    runner = _runner(ctx)
    book, alert = runner.book(name), runner.alert(alert_id)
    doc = runner.start(book, alert, dry_run=dry_run, actor=ctx.user, nonce=iso()).to_doc()
    pb = doc["secops"]["playbook"]
    ctx.audit("console.playbook.start", alert_id, "failure" if pb["status"] == "refused" else "success",
              {"playbook": name, "run_id": pb["run_id"], "dry_run": pb["dry_run"], "error": pb.get("error")})
    return doc


def set_kill_switch(ctx: Ctx, on: bool) -> None:
    runs.PlaybookRunStore.on(ctx.state.es, ctx.state.prefix).set_kill_switch(on, ctx.user)
    ctx.audit("console.kill_switch", "kill_switch", "success", {"on": on})


def kill_switch(ctx: Ctx) -> bool:
    return ctx.state.settings.playbooks.kill_switch or \
        runs.PlaybookRunStore.on(ctx.state.es, ctx.state.prefix).kill_switch_stored()


# -- pcap -----------------------------------------------------------------------------------------
def alert_pcap(ctx: Ctx, alert_id: str, workdir: Path, purpose: str = "download") -> PcapFile:
    """The packets of an alert's connections (by Community ID, within the alert's time range), from this host's
    spool and from the remote sensors (``console.sensors``) that saw its events."""
    queue = ctx.state.queue
    context = queue.context(alert_id)
    cids = queue.community_ids(context)[:MAX_PCAP_CONNECTIONS]
    if not cids:
        raise LookupError("this alert names no connection (no Community ID in it or its events)")
    a = context.alert.get("secops", {}).get("alert", {})
    first = parse_time(a.get("first_time") or context.alert["@timestamp"]) - timedelta(minutes=5)
    last = parse_time(a.get("last_time") or context.alert["@timestamp"]) + timedelta(minutes=5)
    pcap, asked, problems = gather_pcap(ctx.state.settings, observers([context.alert, *context.events]),
                                        [(cid, first, last) for cid in cids], workdir / f"alert-{alert_id[:40]}.pcap")
    if pcap is None:
        raise LookupError("no capture holds packets of this alert's connections" +
                          "".join(f"; {p}" for p in problems))
    ctx.audit(f"console.pcap.{purpose}", alert_id, "success", {"packets": pcap.packets, "sha256": pcap.sha256,
                                                             "community_ids": cids, "sensors": asked,
                                                             "problems": problems})
    return pcap


def observers(docs: list[dict[str, Any]]) -> list[str]:
    """The sensors (``observer.name``) that saw these documents, in order, each once."""
    names = [get(d, "observer.name") for d in docs]
    return list(dict.fromkeys(n for n in names if isinstance(n, str) and n))


def gather_pcap(settings: Settings, sensors: list[str], wanted: list[Wanted], out: Path) -> \
        tuple[PcapFile | None, list[str], list[str]]:
    """One pcap of the wanted connections from this host's spool and each named remote sensor; also which remote
    sensors were asked and one line per sensor that could not answer (the others' packets still count)."""
    frames = spool_frames(settings.paths.pcaps(), wanted, out)
    asked, problems = [], []
    for name in sensors:
        remote = settings.console.sensors.get(name)
        if remote is None:
            continue
        asked.append(name)
        try:
            frames += fetch_frames(name, remote, wanted, out.with_name(f"{out.stem}-{len(asked)}.part"))
        except SensorPcapError as exc:
            problems.append(str(exc))
    return write_pcap(frames, out, [cid for cid, _f, _l in wanted]), asked, problems


# -- assets ---------------------------------------------------------------------------------------
def asset_query(q: str | None, zone: str | None) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [{"term": {"secops.asset.zone": zone}}] if zone else []
    q = (q or "").strip()[:200]
    if not q:
        return {"bool": {"filter": filters}}
    should: list[dict[str, Any]] = [
        {"term": {"secops.asset.id": q}}, {"term": {"host.mac": q.lower()}}, {"term": {"secops.asset.owner": q}},
        {"term": {"secops.asset.department": q}}, {"term": {"tags": q}},
        {"wildcard": {"host.hostname.ci": {"value": f"*{_wild(q.lower())}*"}}}]
    try:
        ipaddress.ip_network(q, strict=False)
        should.append({"term": {"host.ip": q}})
    except ValueError:
        pass
    return {"bool": {"filter": filters, "should": should, "minimum_should_match": 1}}


def _wild(text: str) -> str:
    return "".join("\\" + c if c in "*?\\" else c for c in text)


def list_assets(ctx: Ctx, q: str | None, zone: str | None, size: int = 100) -> tuple[int, list[dict[str, Any]]]:
    res = ctx.state.es.search(index=index_for(ctx.state.prefix, "secops.asset"), query=asset_query(q, zone),
                              size=size, track_total_hits=True, ignore_unavailable=True, allow_no_indices=True,
                              sort=[{"secops.asset.last_seen": {"order": "desc", "unmapped_type": "date"}}])
    return int(res["hits"]["total"]["value"]), [h["_source"] for h in res["hits"]["hits"]]


def asset_context(ctx: Ctx, asset_id: str) -> dict[str, Any]:
    es, prefix = ctx.state.es, ctx.state.prefix
    asset = AssetStore(es, prefix).get(asset_id)
    if asset is None:
        raise LookupError(f"no asset {asset_id!r}")
    changes = es.search(index=index_pattern(prefix, "secops.asset_change"), size=100, ignore_unavailable=True,
                        allow_no_indices=True, query={"term": {"secops.asset_change.asset_id": asset_id}},
                        sort=[{"@timestamp": {"order": "desc", "unmapped_type": "date"}}])["hits"]["hits"]
    ips = [ip for ip in get(asset, "host.ip") or [] if isinstance(ip, str)]
    alerts: list[dict[str, Any]] = []
    if ips:
        alerts = [{"_id": h["_id"], **h["_source"]} for h in es.search(
            index=index_for(prefix, "secops.alert"), size=50, ignore_unavailable=True, allow_no_indices=True,
            query={"bool": {"should": [{"terms": {"source.ip": ips}}, {"terms": {"destination.ip": ips}}],
                            "minimum_should_match": 1}},
            sort=[{"secops.alert.last_time": {"order": "desc", "unmapped_type": "date"}}])["hits"]["hits"]]
    return {"asset": asset, "changes": [h["_source"] for h in changes], "alerts": alerts}


def export_inventory(ctx: Ctx, fmt: str, lang: str, zone: str | None, workdir: Path) -> tuple[Path, Any]:
    if fmt not in FORMATS:
        raise QueryError(f"format must be one of {', '.join(FORMATS)}")
    if lang not in ("en", "zh"):
        raise QueryError("lang must be en or zh")
    now = utcnow()
    store = AssetStore(ctx.state.es, ctx.state.prefix)
    path = workdir / f"assets-{zone or 'all'}-{now.strftime('%Y%m%dT%H%M%SZ')}.{fmt}"
    result = export_assets(store.iter_all(zone), path, fmt, ctx.state.settings.inventory, now, lang=lang, zone=zone)
    ctx.audit("inventory.export", path.name, "success", {"format": fmt, "zone": zone, "lang": lang,
                                                         "rows": result.rows, "sha256": result.sha256,
                                                         "sm3": result.sm3, "via": "console"})
    return path, result


def new_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="secops-console-"))


# -- overview and audit ---------------------------------------------------------------------------
def overview(ctx: Ctx) -> dict[str, Any]:
    es, prefix = ctx.state.es, ctx.state.prefix
    alerts = es.search(index=index_for(prefix, "secops.alert"), size=0, ignore_unavailable=True,
                       allow_no_indices=True, query={"range": {"secops.alert.last_time": {"gte": "now-24h"}}},
                       aggs={"hours": {"date_histogram": {"field": "secops.alert.last_time", "fixed_interval": "1h",
                                                        "time_zone": ctx.timezone},  # the reader's hours
                                       "aggs": {"sev": {"terms": {"field": "rule.severity", "size": 10}}}}})
    open_by_rule = es.search(index=index_for(prefix, "secops.alert"), size=0, ignore_unavailable=True,
                             allow_no_indices=True, query={"term": {"secops.alert.status": "open"}},
                             aggs={"rules": {"terms": {"field": "rule.name", "size": 20}, "aggs": {"sample": {
                                 "top_hits": {"size": 1, "_source": ["rule.name", "secops.alert.i18n"]}}}}})
    talkers = es.search(index=index_pattern(prefix, "secops.conn"), size=0, ignore_unavailable=True,
                        allow_no_indices=True, query={"range": {"@timestamp": {"gte": "now-24h"}}},
                        aggs={"src": {"terms": {"field": "source.ip", "size": 10, "order": {"bytes": "desc"}},
                                      "aggs": {"bytes": {"sum": {"field": "source.bytes"}}}}})
    sensors = es.search(index=index_pattern(prefix, "secops.sensor"), size=0, ignore_unavailable=True,
                        allow_no_indices=True,
                        aggs={"sensors": {"terms": {"field": "observer.name", "size": 50, "missing": "-"},
                                          "aggs": {"last": {"top_hits": {"size": 1,
                                                                         "sort": [{"@timestamp": "desc"}]}}}}})
    hours = [(b["key_as_string"], {s["key"]: s["doc_count"] for s in b["sev"]["buckets"]})
             for b in alerts.get("aggregations", {}).get("hours", {}).get("buckets", [])]
    return {
        "hours": hours,
        "open_by_rule": [(b["key"], b["doc_count"], b["sample"]["hits"]["hits"][0]["_source"]) for b in
                         open_by_rule.get("aggregations", {}).get("rules", {}).get("buckets", [])],
        "talkers": [(b["key"], int(b["bytes"]["value"]), b["doc_count"]) for b in
                    talkers.get("aggregations", {}).get("src", {}).get("buckets", [])],
        "sensors": [(b["key"], b["last"]["hits"]["hits"][0]["_source"]) for b in
                    sensors.get("aggregations", {}).get("sensors", {}).get("buckets", [])],
    }


def audit_trail(ctx: Ctx, actor: str | None, action: str | None, size: int = 200) -> list[dict[str, Any]]:
    filters = [{"term": {f"secops.audit.{k}": v}} for k, v in (("actor", actor), ("action", action)) if v]
    res = ctx.state.es.search(index=index_pattern(ctx.state.prefix, "secops.audit"), size=size,
                              query={"bool": {"filter": filters}}, ignore_unavailable=True, allow_no_indices=True,
                              sort=[{"@timestamp": {"order": "desc"}}])
    return [h["_source"] for h in res["hits"]["hits"]]
