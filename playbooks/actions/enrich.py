"""enrich: what the platform knows about an address — its asset, related alerts, a connection summary.

Read-only, so it also runs in dry-run. Later steps can test its result in ``when`` conditions
(``steps.<name>.asset.criticality``, ``steps.<name>.alerts.count``, ``steps.<name>.connections.count``).
"""

from __future__ import annotations

from typing import Any

from elasticsearch import NotFoundError
from pydantic import Field

from playbooks.actions.base import Action, ActionContext, Params
from playbooks.values import Address
from secops.ecs import get
from secops.es.templates import index_for, index_pattern

ASSET_FIELDS = ["host.hostname", "host.os.name", "secops.asset.id", "secops.asset.zone", "secops.asset.owner",
                "secops.asset.criticality", "secops.asset.department", "secops.asset.location", "tags"]


class EnrichParams(Params):
    address: Address
    lookback_hours: int = Field(24, ge=1, le=24 * 90)


class Enrich(Action):
    name = "enrich"
    Params = EnrichParams
    read_only = True

    def run(self, p: EnrichParams, ctx: ActionContext) -> dict[str, Any]:
        since = f"now-{p.lookback_hours}h"
        return {"address": p.address, "asset": _asset(ctx, p.address), "alerts": _alerts(ctx, p.address, since),
                "connections": _connections(ctx, p.address, since)}


def _search(ctx: ActionContext, index: str, **kw: Any) -> dict[str, Any]:
    try:
        return dict(ctx.es.search(index=index, ignore_unavailable=True, allow_no_indices=True,
                                  request_timeout=ctx.timeout, **kw))
    except NotFoundError:
        return {"hits": {"total": {"value": 0}, "hits": []}, "aggregations": {}}


def _asset(ctx: ActionContext, address: str) -> dict[str, Any] | None:
    res = _search(ctx, index_for(ctx.prefix, "secops.asset"), query={"term": {"host.ip": address}}, size=1)
    hits = res["hits"]["hits"]
    if not hits:
        return None
    src = hits[0]["_source"]
    out = {f.rsplit(".", 1)[-1]: get(src, f) for f in ASSET_FIELDS if get(src, f) is not None}
    out["services"] = [f"{s.get('port')}/{s.get('transport')} {s.get('name') or ''}".strip()
                       for s in get(src, "secops.asset.services") or []][:50]
    return out


def _either(address: str) -> dict[str, Any]:
    return {"bool": {"should": [{"term": {"source.ip": address}}, {"term": {"destination.ip": address}}],
                     "minimum_should_match": 1}}


def _alerts(ctx: ActionContext, address: str, since: str) -> dict[str, Any]:
    query = {"bool": {"filter": [_either(address), {"range": {"@timestamp": {"gte": since}}}]}}
    res = _search(ctx, index_for(ctx.prefix, "secops.alert"), query=query, size=10, track_total_hits=True,
                  sort=[{"@timestamp": "desc"}], source=["rule.name", "rule.severity"])
    return {"count": res["hits"]["total"]["value"],
            "recent": [{"id": h["_id"], "rule": get(h["_source"], "rule.name"),
                        "severity": get(h["_source"], "rule.severity")} for h in res["hits"]["hits"]]}


def _connections(ctx: ActionContext, address: str, since: str) -> dict[str, Any]:
    query = {"bool": {"filter": [_either(address), {"range": {"@timestamp": {"gte": since}}}]}}
    aggs = {"bytes_out": {"sum": {"field": "source.bytes"}}, "bytes_in": {"sum": {"field": "destination.bytes"}},
            "ports": {"terms": {"field": "destination.port", "size": 10}},
            "peers": {"terms": {"field": "destination.ip", "size": 10}},
            "states": {"terms": {"field": "secops.conn.state", "size": 10}}}
    res = _search(ctx, index_pattern(ctx.prefix, "secops.conn"), query=query, size=0, aggs=aggs,
                  track_total_hits=True)
    agg = res.get("aggregations") or {}

    def buckets(name: str) -> dict[str, int]:
        return {str(b["key"]): b["doc_count"] for b in agg.get(name, {}).get("buckets", [])}

    return {"count": res["hits"]["total"]["value"], "bytes_out": int(agg.get("bytes_out", {}).get("value") or 0),
            "bytes_in": int(agg.get("bytes_in", {}).get("value") or 0), "top_ports": buckets("ports"),
            "top_peers": buckets("peers"), "states": buckets("states")}
