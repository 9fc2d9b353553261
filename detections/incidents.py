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
HOSTS_PER_SEARCH = 1000
MAX_OPEN = 10000  # open incidents one search may return (hosts x overlapping incidents; never near in practice)


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

    def _open_for(self, hosts: list[str], first: str, last: str) -> dict[str, list[dict[str, Any]]]:
        """The open incidents of ``hosts`` whose span, widened by the window, reaches into [first, last]."""
        lo = iso(parse_time(first) - timedelta(seconds=self.window_seconds))
        hi = iso(parse_time(last) + timedelta(seconds=self.window_seconds))
        out: dict[str, list[dict[str, Any]]] = {}
        for i in range(0, len(hosts), HOSTS_PER_SEARCH):
            resp = self.es.search(index=self.index, size=MAX_OPEN, ignore_unavailable=True, allow_no_indices=True,
                                  query={"bool": {
                                      "filter": [{"terms": {"secops.incident.host": hosts[i:i + HOSTS_PER_SEARCH]}},
                                                 {"range": {"secops.incident.last_time": {"gte": lo}}},
                                                 {"range": {"secops.incident.first_time": {"lte": hi}}}],
                                      "must_not": [{"term": {"secops.incident.status": "closed"}}]}})
            if resp["hits"]["total"]["value"] > len(resp["hits"]["hits"]):
                raise RuntimeError(f"more than {MAX_OPEN} open incidents for {HOSTS_PER_SEARCH} hosts")
            for h in resp["hits"]["hits"]:
                inc = h["_source"]["secops"]["incident"]
                out.setdefault(inc["host"], []).append({"_id": h["_id"], **inc})
        return out

    def roll_up(self, alert_id: str, alert: dict[str, Any]) -> str:
        """Add one alert (its current document) to its host's incident; returns the incident id."""
        return self.roll_up_many([(alert_id, alert)])[0]

    def roll_up_many(self, alerts: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """Add alerts (each as stored at its turn) to their hosts' incidents in order, as :meth:`roll_up` would one
        after the other, with one search for the open incidents and one bulk write; returns the incident ids."""
        ids, operations = self.plan(alerts)
        bulk_write(self.es, operations)
        return ids

    def plan(self, alerts: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[dict[str, Any]]]:
        """The incident id of each alert rolled up in order, and the bulk operations that write those incidents."""
        if not alerts:
            return [], []
        firsts = [a["secops"]["alert"]["first_time"] for _, a in alerts]
        lasts = [a["secops"]["alert"]["last_time"] for _, a in alerts]
        open_by_host = self._open_for(sorted({host_of(a) for _, a in alerts}), min(firsts, key=parse_time),
                                      max(lasts, key=parse_time))
        touched: dict[str, tuple[str, dict[str, Any]]] = {}
        out = []
        for alert_id, alert in alerts:
            inc_id, inc = self._apply(alert_id, alert, open_by_host)
            touched[inc_id] = (host_of(alert), inc)
            out.append(inc_id)
        now = iso(utcnow())
        ops: list[dict[str, Any]] = []
        for inc_id, (host, inc) in touched.items():
            ops += [{"index": {"_index": self.index, "_id": inc_id}}, incident_doc(host, inc, now)]
        return out, ops

    def _apply(self, alert_id: str, alert: dict[str, Any], open_by_host: dict[str, list[dict[str, Any]]]
               ) -> tuple[str, dict[str, Any]]:
        """Roll one alert into its host's open incident (found as the search of one alert would: the one with the
        latest last time overlapping the alert's span widened by the window) or a new one, in memory."""
        a, rule = alert["secops"]["alert"], alert["rule"]
        host = host_of(alert)
        lo = parse_time(a["first_time"]) - timedelta(seconds=self.window_seconds)
        hi = parse_time(a["last_time"]) + timedelta(seconds=self.window_seconds)
        candidates = [i for i in open_by_host.get(host, [])
                      if parse_time(i["last_time"]) >= lo and parse_time(i["first_time"]) <= hi]
        if candidates:
            inc = max(candidates, key=lambda i: parse_time(i["last_time"]))
        else:
            inc_id = doc_id("incident", host, a["first_time"])  # overwrites a closed incident of that id, as before
            inc = {"_id": inc_id, "id": inc_id, "host": host, "status": "open", "severity": rule["severity"],
                "score": alert["event"]["severity"], "rules": [], "rule_ids": [], "tactics": [], "techniques": [],
                "alert_ids": [], "alert_count": 0, "first_time": a["first_time"], "last_time": a["last_time"]}
            open_by_host.setdefault(host, []).append(inc)
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
        return inc["_id"], {k: v for k, v in inc.items() if k != "_id"}

    def list(self, size: int = 100) -> list[dict[str, Any]]:
        resp = self.es.search(index=self.index, size=size, sort=[{"secops.incident.last_time": "desc"}],
                              ignore_unavailable=True, allow_no_indices=True)
        return [{"_id": h["_id"], **h["_source"]} for h in resp["hits"]["hits"]]


def incident_doc(host: str, inc: dict[str, Any], now: str) -> dict[str, Any]:
    return {"@timestamp": inc["first_time"],
            "event": {"dataset": "secops.incident", "kind": "alert", "severity": inc["score"], "ingested": now},
            "message": f"{len(inc['rules'])} rule(s) on {host}: {', '.join(inc['rules'])[:500]}",
            "source": {"ip": host} if host_is_ip(host) else {},
            "secops": {"incident": inc}}


def bulk_write(es: Elasticsearch, operations: list[dict[str, Any]]) -> None:
    """One bulk request, visible to searches when it returns; any failed item is an error."""
    if not operations:
        return
    resp = es.bulk(operations=operations, refresh=True, filter_path="errors,items.*.error,items.*._id")
    if resp.get("errors"):
        failed = [next(iter(i.values())) for i in resp["items"] if "error" in next(iter(i.values()))]
        raise RuntimeError(f"{len(failed)} document(s) not written, first {failed[0].get('_id')}: "
                           f"{str(failed[0].get('error'))[:300]}")


def host_is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
