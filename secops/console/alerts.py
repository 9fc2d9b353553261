"""The alert queue: filters, group-by with counts, triage of one alert or a whole group, an alert's context."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import BadRequestError, Elasticsearch, NotFoundError

from detections.alerts import STATUSES, AlertStore
from inventory.store import AssetStore
from secops.ecs import get
from secops.es.templates import index_for

FIELD_RE = re.compile(r"^[A-Za-z0-9_@][A-Za-z0-9_.@-]{0,127}$")
SINCE = {"1h": "now-1h", "24h": "now-24h", "7d": "now-7d", "30d": "now-30d", "all": None}
SEVERITIES = ("informational", "low", "medium", "high", "critical")
GROUP_FIELDS = ("rule.name", "rule.id", "rule.severity", "secops.alert.status", "secops.alert.assignee",
                "source.ip", "destination.ip", "destination.port", "network.transport", "tags",
                "threat.technique.id", "observer.name")
ACTIONS = ("acknowledge", "close", "reopen", "assign", "note")
MAX_GROUP_ACTION = 1000


class QueryError(ValueError):
    """A filter or group-by the store cannot answer (unknown or non-aggregatable field...)."""


def check_field(name: str) -> str:
    if not FIELD_RE.match(name or ""):
        raise QueryError(f"not a field name: {name[:60]!r}")
    return name


@dataclass(frozen=True)
class AlertFilter:
    status: str | None = None
    severity: str | None = None
    rule: str | None = None
    since: str = "all"
    field: str | None = None  # a pivot: only alerts whose ``field`` has ``value``
    value: str | None = None

    def __post_init__(self) -> None:
        if self.status and self.status not in STATUSES:
            raise QueryError(f"status must be one of {', '.join(STATUSES)}")
        if self.severity and self.severity not in SEVERITIES:
            raise QueryError(f"severity must be one of {', '.join(SEVERITIES)}")
        if self.since not in SINCE:
            raise QueryError(f"since must be one of {', '.join(SINCE)}")
        if self.field:
            check_field(self.field)

    @classmethod
    def from_params(cls, status: str | None, severity: str | None, rule: str | None, since: str | None,
                    field: str | None, value: str | None) -> AlertFilter:
        """From query-string or form values, where an empty string means 'any'."""
        return cls(status=status or None, severity=severity or None, rule=rule or None, since=since or "all",
                   field=field or None, value=value if field else None)

    def query(self) -> dict[str, Any]:
        filters: list[dict[str, Any]] = []
        for name, value in (("secops.alert.status", self.status), ("rule.severity", self.severity),
                            ("rule.id", self.rule)):
            if value:
                filters.append({"term": {name: value}})
        if SINCE[self.since]:
            filters.append({"range": {"secops.alert.last_time": {"gte": SINCE[self.since]}}})
        if self.field and self.value is not None:
            filters.append({"term": {self.field: self.value}})
        return {"bool": {"filter": filters}}

    def params(self) -> dict[str, str]:
        """As query-string parameters (for links that keep the current filter)."""
        return {k: v for k, v in (("status", self.status), ("severity", self.severity), ("rule", self.rule),
                                  ("since", self.since), ("field", self.field), ("value", self.value)) if v}


@dataclass
class QueuePage:
    total: int
    alerts: list[dict[str, Any]]
    groups: list[tuple[str, int]] = field(default_factory=list)
    group_by: str | None = None
    other: int = 0  # alerts in groups beyond the ones listed


@dataclass
class AlertContext:
    alert: dict[str, Any]
    events: list[dict[str, Any]]
    related: list[dict[str, Any]]
    assets: dict[str, dict[str, Any] | None]
    runs: list[dict[str, Any]]


class AlertQueue:
    def __init__(self, es: Elasticsearch, prefix: str) -> None:
        self.es, self.prefix = es, prefix
        self.store = AlertStore(es, prefix, notifier=None)

    def page(self, flt: AlertFilter, group_by: str | None = None, size: int = 100) -> QueuePage:
        body: dict[str, Any] = {"query": flt.query(), "size": size, "track_total_hits": True,
                                "sort": [{"secops.alert.last_time": {"order": "desc", "unmapped_type": "date"}}]}
        if group_by:
            body["aggs"] = {"groups": {"terms": {"field": check_field(group_by), "size": 100,
                                                 "order": {"_count": "desc"}}}}
            body["size"] = 0
        try:
            res = self.es.search(index=self.store.index, ignore_unavailable=True, allow_no_indices=True, **body)
        except BadRequestError as exc:
            raise QueryError(f"cannot group or filter by that field ({exc.message})") from None
        alerts = [{"_id": h["_id"], **h["_source"]} for h in res["hits"]["hits"]]
        total = int(res["hits"]["total"]["value"])
        page = QueuePage(total, alerts, group_by=group_by)
        if group_by:
            agg = res.get("aggregations", {}).get("groups", {})
            page.groups = [(str(b.get("key_as_string", b["key"])), int(b["doc_count"])) for b in agg.get("buckets", [])]
            page.other = int(agg.get("sum_other_doc_count", 0))
        return page

    def ids(self, flt: AlertFilter, limit: int = MAX_GROUP_ACTION) -> list[str]:
        """Ids of the alerts a filter selects (a group action's targets), at most ``limit``."""
        res = self.es.search(index=self.store.index, query=flt.query(), size=limit, source=False,
                             ignore_unavailable=True, allow_no_indices=True)
        return [h["_id"] for h in res["hits"]["hits"]]

    def act(self, alert_id: str, action: str, actor: str, value: str = "") -> dict[str, Any]:
        if action == "acknowledge":
            return self.store.set_status(alert_id, "acknowledged", actor)
        if action == "close":
            return self.store.set_status(alert_id, "closed", actor)
        if action == "reopen":
            return self.store.set_status(alert_id, "open", actor)
        if action == "assign":
            if not value or not FIELD_RE.match(value):
                raise QueryError("assign needs a user name")
            return self.store.assign(alert_id, value, actor)
        if action == "note":
            if not value.strip():
                raise QueryError("a note needs text")
            return self.store.note(alert_id, value, actor)
        raise QueryError(f"action must be one of {', '.join(ACTIONS)}")

    def get(self, alert_id: str) -> dict[str, Any]:
        """The alert, or LookupError."""
        try:
            return self.store.get(alert_id)
        except NotFoundError:
            raise LookupError(f"no alert {alert_id!r}") from None

    def context(self, alert_id: str) -> AlertContext:
        alert = self.get(alert_id)
        a = alert.get("secops", {}).get("alert", {})
        ids = list(a.get("event_ids") or [])[:50]
        events: list[dict[str, Any]] = []
        if ids:
            index = a.get("event_index") or f"{self.prefix}-*"
            res = self.es.search(index=index, query={"ids": {"values": ids}}, size=len(ids),
                                 ignore_unavailable=True, allow_no_indices=True)
            events = [{"_id": h["_id"], "_index": h["_index"], **h["_source"]} for h in res["hits"]["hits"]]
        ips = [ip for ip in (get(alert, "source.ip"), get(alert, "destination.ip")) if isinstance(ip, str)]
        related: list[dict[str, Any]] = []
        if ips:
            res = self.es.search(index=self.store.index, size=50, query={"bool": {
                "should": [{"terms": {"source.ip": ips}}, {"terms": {"destination.ip": ips}}],
                "minimum_should_match": 1, "must_not": [{"ids": {"values": [alert_id]}}]}},
                sort=[{"secops.alert.last_time": {"order": "desc", "unmapped_type": "date"}}])
            related = [{"_id": h["_id"], **h["_source"]} for h in res["hits"]["hits"]]
        assets = AssetStore(self.es, self.prefix)
        context_assets: dict[str, dict[str, Any] | None] = {}
        for side in ("source", "destination"):
            ip = get(alert, f"{side}.ip")
            if isinstance(ip, str):
                try:
                    found = assets.find_by("host.ip", ip, 1)
                except BadRequestError:
                    found = []
                context_assets[side] = found[0] if found else None
        res = self.es.search(index=index_for(self.prefix, "secops.playbook_run"), size=20,
                             query={"term": {"secops.playbook.alert_id": alert_id}}, ignore_unavailable=True,
                             allow_no_indices=True, sort=[{"@timestamp": {"order": "desc", "unmapped_type": "date"}}])
        runs = [h["_source"] for h in res["hits"]["hits"]]
        return AlertContext(alert, events, related, context_assets, runs)

    def community_ids(self, ctx: AlertContext) -> list[str]:
        """The Community IDs of the alert's connections (its matched events, else its own field)."""
        out: list[str] = []
        for doc in [*ctx.events, ctx.alert]:
            cid = get(doc, "network.community_id")
            for c in cid if isinstance(cid, list) else [cid]:
                if isinstance(c, str) and c.startswith("1:") and c not in out:
                    out.append(c)
        return out
