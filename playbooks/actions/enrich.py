"""enrich: what the platform knows about an address — its asset, related alerts, a connection summary.

Read-only, so it also runs in dry-run. Later steps can test its result in ``when`` conditions
(``steps.<name>.asset.criticality``, ``steps.<name>.alerts.count``, ``steps.<name>.connections.count``).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from playbooks.actions.base import Action, ActionContext, ActionError, Params
from playbooks.values import Address
from secops.ecs import get
from secops.es.templates import index_for, index_pattern
from secops.i18n import N_, message

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
        """One multi-search (asset, related alerts, connection summary): one round trip to the store."""
        since = f"now-{p.lookback_hours}h"
        window = {"bool": {"filter": [_either(p.address), {"range": {"@timestamp": {"gte": since}}}]}}
        head = {"ignore_unavailable": True, "allow_no_indices": True}
        searches = [
            {"index": index_for(ctx.prefix, "secops.asset"), **head}, {"query": {"term": {"host.ip": p.address}},
                                                                       "size": 1},
            {"index": index_for(ctx.prefix, "secops.alert"), **head},
            {"query": window, "size": 10, "track_total_hits": True, "sort": [{"@timestamp": "desc"}],
             "_source": ["rule.name", "rule.severity"]},
            {"index": index_pattern(ctx.prefix, "secops.conn"), **head},
            {"query": window, "size": 0, "track_total_hits": True, "aggs": CONN_AGGS},
        ]
        answers = ctx.es.options(request_timeout=ctx.timeout).msearch(searches=searches)["responses"]
        asset, alerts, conns = (_answer(r) for r in answers)
        return {"address": p.address, "asset": _asset(asset), "alerts": _alerts(alerts),
                "connections": _connections(conns)}


CONN_AGGS = {"bytes_out": {"sum": {"field": "source.bytes"}}, "bytes_in": {"sum": {"field": "destination.bytes"}},
             "ports": {"terms": {"field": "destination.port", "size": 10}},
             "peers": {"terms": {"field": "destination.ip", "size": 10}},
             "states": {"terms": {"field": "secops.conn.state", "size": 10}}}


def _answer(response: dict[str, Any]) -> dict[str, Any]:
    """One msearch response; a missing index counts as no data, any other error fails the step."""
    if "error" in response:
        if response["error"].get("type") == "index_not_found_exception":
            return {"hits": {"total": {"value": 0}, "hits": []}, "aggregations": {}}
        raise ActionError(message(N_("enrich query failed: %(reason)s"),
                                  reason=str(response["error"].get("reason", response["error"]))))
    return response


def _either(address: str) -> dict[str, Any]:
    return {"bool": {"should": [{"term": {"source.ip": address}}, {"term": {"destination.ip": address}}],
                     "minimum_should_match": 1}}


def _asset(res: dict[str, Any]) -> dict[str, Any] | None:
    hits = res["hits"]["hits"]
    if not hits:
        return None
    src = hits[0]["_source"]
    out = {f.rsplit(".", 1)[-1]: get(src, f) for f in ASSET_FIELDS if get(src, f) is not None}
    out["services"] = [f"{s.get('port')}/{s.get('transport')} {s.get('name') or ''}".strip()
                       for s in get(src, "secops.asset.services") or []][:50]
    return out


def _alerts(res: dict[str, Any]) -> dict[str, Any]:
    return {"count": res["hits"]["total"]["value"],
            "recent": [{"id": h["_id"], "rule": get(h["_source"], "rule.name"),
                        "severity": get(h["_source"], "rule.severity")} for h in res["hits"]["hits"]]}


def _connections(res: dict[str, Any]) -> dict[str, Any]:
    agg = res.get("aggregations") or {}

    def buckets(name: str) -> dict[str, int]:
        return {str(b["key"]): b["doc_count"] for b in agg.get(name, {}).get("buckets", [])}

    return {"count": res["hits"]["total"]["value"], "bytes_out": int(agg.get("bytes_out", {}).get("value") or 0),
            "bytes_in": int(agg.get("bytes_in", {}).get("value") or 0), "top_ports": buckets("ports"),
            "top_peers": buckets("peers"), "states": buckets("states")}
