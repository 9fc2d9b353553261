"""Incidents: alerts about the same host within a window roll up into one thing to triage.

An alert joins the open incident of its host (``source.ip``, the actor; the group key when there is none)
whose event time span, widened by ``window_seconds``, overlaps the alert's; otherwise it opens a new
incident with a deterministic id (host + first event time). The incident lists the rules as facets,
takes the highest severity, and keeps every alert id; the alerts stay queryable on their own and carry
``secops.alert.incident_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from elasticsearch import Elasticsearch

from secops.ecs import doc_id, iso, parse_time, utcnow
from secops.es.templates import index_for

SEVERITY_ORDER = ["low", "medium", "high", "critical"]
MAX_ALERT_IDS = 1000


def incident_index(prefix: str) -> str:
    return index_for(prefix, "secops.incident")


def host_of(alert: dict[str, Any]) -> str:
    return str((alert.get("source") or {}).get("ip") or alert["secops"]["alert"].get("group_key") or "-")


@dataclass
class IncidentStore:
    es: Elasticsearch
    prefix: str = "secops"
    window_seconds: int = 3600

    @property
    def index(self) -> str:
        return incident_index(self.prefix)

    def _open_for(self, host: str, first: str, last: str) -> dict[str, Any] | None:
        lo = iso(parse_time(first) - timedelta(seconds=self.window_seconds))
        hi = iso(parse_time(last) + timedelta(seconds=self.window_seconds))
        resp = self.es.search(index=self.index, size=1, ignore_unavailable=True, allow_no_indices=True, query={
            "bool": {"filter": [{"term": {"secops.incident.host": host}},
                                {"range": {"secops.incident.last_time": {"gte": lo}}},
                                {"range": {"secops.incident.first_time": {"lte": hi}}}],
                     "must_not": [{"term": {"secops.incident.status": "closed"}}]}},
            sort=[{"secops.incident.last_time": "desc"}])
        hits = resp["hits"]["hits"]
        return {"_id": hits[0]["_id"], **hits[0]["_source"]} if hits else None

    def roll_up(self, alert_id: str, alert: dict[str, Any]) -> str:
        """Add one alert (its current document) to its host's incident; returns the incident id."""
        a, rule = alert["secops"]["alert"], alert["rule"]
        host = host_of(alert)
        existing = self._open_for(host, a["first_time"], a["last_time"])
        now = iso(utcnow())
        if existing is None:
            inc_id = doc_id("incident", host, a["first_time"])
            inc = {"id": inc_id, "host": host, "status": "open", "severity": rule["severity"],
                   "score": alert["event"]["severity"], "rules": [], "rule_ids": [], "tactics": [], "techniques": [],
                   "alert_ids": [], "alert_count": 0, "first_time": a["first_time"], "last_time": a["last_time"]}
        else:
            inc_id, inc = existing["_id"], existing["secops"]["incident"]
        threat = alert.get("threat") or {}
        facets = {"rules": [rule["name"]], "rule_ids": [rule["id"]],
                  "tactics": list((threat.get("tactic") or {}).get("name") or []),
                  "techniques": list((threat.get("technique") or {}).get("id") or [])}
        for name, values in facets.items():
            inc[name] = list(dict.fromkeys([*inc.get(name, []), *values]))
        if alert_id not in inc["alert_ids"]:
            inc["alert_ids"] = [*inc["alert_ids"], alert_id][:MAX_ALERT_IDS]
            inc["alert_count"] = int(inc.get("alert_count") or 0) + 1
        if SEVERITY_ORDER.index(rule["severity"]) > SEVERITY_ORDER.index(inc["severity"]):
            inc["severity"], inc["score"] = rule["severity"], alert["event"]["severity"]
        inc["first_time"] = min(inc["first_time"], a["first_time"], key=parse_time)
        inc["last_time"] = max(inc["last_time"], a["last_time"], key=parse_time)
        self.es.index(index=self.index, id=inc_id, refresh=True, document={
            "@timestamp": inc["first_time"],
            "event": {"dataset": "secops.incident", "kind": "alert", "severity": inc["score"], "ingested": now},
            "message": f"{len(inc['rules'])} rule(s) on {host}: {', '.join(inc['rules'])[:500]}",
            "source": {"ip": host} if host_is_ip(host) else {},
            "secops": {"incident": inc}})
        return inc_id

    def list(self, size: int = 100) -> list[dict[str, Any]]:
        resp = self.es.search(index=self.index, size=size, sort=[{"secops.incident.last_time": "desc"}],
                              ignore_unavailable=True, allow_no_indices=True)
        return [{"_id": h["_id"], **h["_source"]} for h in resp["hits"]["hits"]]


def host_is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
