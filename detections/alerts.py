"""Alerts: deterministic ids, suppression (repeated matches update one alert), triage workflow, playbook trigger.

An alert's id derives from (rule id, group key, time of its first matching event), so evaluating the
same window twice writes the same alert. A new match for the same rule and group within
``suppression_seconds`` (event time) of an open alert updates that alert (count, last time, event ids)
instead of creating another. Triage (ack, close, assign, note) appends to ``secops.alert.history``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from elasticsearch import Elasticsearch, NotFoundError

from detections.compiler import SEVERITY_SCORE, CompiledRule
from detections.engine import Match
from detections.incidents import IncidentStore
from secops.ecs import doc_id, iso, parse_time, utcnow
from secops.es.templates import bound_keywords, index_for

log = logging.getLogger(__name__)

MAX_EVENT_IDS = 1000
STATUSES = ("open", "acknowledged", "closed")
Notifier = Callable[[str], None]


def alert_index(prefix: str) -> str:
    return index_for(prefix, "secops.alert")


MAX_GROUP_KEY = 1024


def group_key(rule: CompiledRule, match: Match) -> str:
    """The match's group as one keyword; a long one (grouped by a URL, say) becomes its digest, so the
    suppression lookup by term never misses a value Elasticsearch would not index."""
    key = "|".join(f"{k}={'' if v is None else v}" for k, v in sorted(match.group.items())) or "-"
    if len(key) > MAX_GROUP_KEY:
        return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return key


def celery_notifier(alert_id: str) -> None:
    """Send ``playbooks.on_alert`` by name; never fails detection when there is no broker or worker."""
    try:
        from secops.celery_app import app

        app.send_task("playbooks.on_alert", args=[alert_id], retry=False)
    except Exception as exc:
        log.warning("could not send playbooks.on_alert for %s: %s", alert_id, exc)


def kibana_url(base: str | None, match: Match) -> str:
    """A Discover link to the alert's events (ids), relative when no Kibana URL is configured."""
    ids = " OR ".join(f'"{i}"' for i in match.event_ids[:50])
    query = quote(f"_id:({ids})" if ids else "*", safe="")
    frm, to = iso(parse_time(match.first_time) - timedelta(minutes=1)), iso(parse_time(match.last_time)
                                                                               + timedelta(minutes=1))
    return (f"{(base or '').rstrip('/')}/app/discover#/?_g=(time:(from:'{frm}',to:'{to}'))"
            f"&_a=(query:(language:lucene,query:'{query}'))")


def _threat(rule: CompiledRule) -> dict[str, Any]:
    return {"framework": "MITRE ATT&CK", "technique": {"id": rule.techniques}, "tactic": {"name": rule.tactics}}


def rule_texts(rule: CompiledRule) -> dict[str, dict[str, str]]:
    """The rule's name and description per translated language, as ``secops.alert.i18n.<tag>.name/description``."""
    return {lang: {k: v for k, v in (("name", t.get("title")), ("description", (t.get("description") or "")[:4000]))
                   if v} for lang, t in sorted(rule.i18n.items())}


def new_alert(rule: CompiledRule, match: Match, key: str, alert_id: str, kibana: str | None) -> dict[str, Any]:
    now = iso(utcnow())
    severity = match.severity or rule.severity
    doc: dict[str, Any] = {
        "@timestamp": match.first_time,
        "event": {"dataset": "secops.alert", "kind": "alert", "severity": SEVERITY_SCORE[severity], "created": now,
                  "ingested": now, "reason": match.reason},
        "message": f"{rule.title}: {match.reason}",
        "rule": {"id": rule.id, "name": rule.title, "author": rule.author, "severity": severity,
                 "description": rule.description[:4000], "reference": rule.references, "license": rule.license,
                 "ruleset": "sigma" if rule.kind != "analytic" else "analytic"},
        "threat": _threat(rule),
        "tags": rule.tags,
        "secops": {"alert": {"id": alert_id, "status": "open", "assignee": None, "group_key": key,
                             "count": match.count, "first_time": match.first_time, "last_time": match.last_time,
                             "event_ids": match.event_ids[:MAX_EVENT_IDS], "event_index": match.event_index,
                             "kibana_url": kibana_url(kibana, match), "notes": [], "i18n": rule_texts(rule),
                             "reason_message": match.reason_message.as_doc() if match.reason_message else None,
                             "history": [{"at": now, "by": "secops-detect", "action": "created", "old": None,
                                          "new": "open"}]}},
    }
    for name in ("source.ip", "destination.ip", "destination.port", "source.port", "network.transport"):
        value = match.group.get(name, match.fields.get(name))
        if value is not None:
            top, leaf = name.split(".")
            doc.setdefault(top, {})[leaf] = value
    return doc


@dataclass
class AlertStore:
    """Writes and triages alerts in the ``secops-alert`` index."""

    es: Elasticsearch
    prefix: str = "secops"
    suppression_seconds: int = 3600
    kibana: str | None = None
    notifier: Notifier | None = celery_notifier
    incident_window_seconds: int = 3600

    @property
    def index(self) -> str:
        return alert_index(self.prefix)

    def _roll_up(self, alert_id: str) -> None:
        """Put the alert (as stored now) into its host's incident and remember which."""
        alert = self.get(alert_id)
        inc_id = IncidentStore(self.es, self.prefix, self.incident_window_seconds).roll_up(alert_id, alert)
        if alert["secops"]["alert"].get("incident_id") != inc_id:
            self.es.update(index=self.index, id=alert_id, refresh=True,
                           doc={"secops": {"alert": {"incident_id": inc_id}}})

    def _open_alert_for(self, rule: CompiledRule, key: str, match: Match) -> dict[str, Any] | None:
        lo = iso(parse_time(match.first_time) - timedelta(seconds=self.suppression_seconds))
        hi = iso(parse_time(match.last_time) + timedelta(seconds=self.suppression_seconds))
        resp = self.es.search(index=self.index, size=1, ignore_unavailable=True, allow_no_indices=True, query={
            "bool": {"filter": [{"term": {"rule.id": rule.id}}, {"term": {"secops.alert.group_key": key}},
                                {"range": {"secops.alert.last_time": {"gte": lo}}},
                                {"range": {"secops.alert.first_time": {"lte": hi}}}],
                     "must_not": [{"term": {"secops.alert.status": "closed"}}]}},
            sort=[{"secops.alert.last_time": "desc"}])
        hits = resp["hits"]["hits"]
        return {"_id": hits[0]["_id"], **hits[0]["_source"]} if hits else None

    def record(self, rule: CompiledRule, match: Match) -> tuple[str, str]:
        """Create or update the alert for one match; returns (alert id, created|updated|unchanged)."""
        key = group_key(rule, match)
        existing = self._open_alert_for(rule, key, match)
        if existing is None:
            alert_id = doc_id("alert", rule.id, key, match.first_time)
            try:  # a deterministic rerun of a window whose alert was closed meanwhile: leave it be
                self.es.get(index=self.index, id=alert_id, source=False)
                return alert_id, "unchanged"
            except NotFoundError:
                pass
            self.es.index(index=self.index, id=alert_id, refresh=True,
                          document=bound_keywords(new_alert(rule, match, key, alert_id, self.kibana)))
            self._roll_up(alert_id)
            self._notify(alert_id)
            return alert_id, "created"
        alert_id, outcome = self._merge(existing, match)
        if outcome == "updated":
            self._roll_up(alert_id)
        return alert_id, outcome

    def _merge(self, existing: dict[str, Any], match: Match) -> tuple[str, str]:
        alert_id = existing["_id"]
        a = existing["secops"]["alert"]
        ids = list(a.get("event_ids") or [])
        seen = set(ids)
        fresh = [i for i in match.event_ids if i not in seen]
        first = min(a["first_time"], match.first_time, key=lambda t: parse_time(t))
        last = max(a["last_time"], match.last_time, key=lambda t: parse_time(t))
        if not fresh and first == a["first_time"] and last == a["last_time"]:
            return alert_id, "unchanged"
        all_ids = (ids + fresh)[:MAX_EVENT_IDS]
        count = max(int(a.get("count") or 0), len(all_ids)) if len(ids) < MAX_EVENT_IDS else a["count"] + len(fresh)
        count = max(count, match.count)
        now = iso(utcnow())
        entry = {"at": now, "by": "secops-detect", "action": "updated", "old": str(a.get("count")), "new": str(count)}
        history = [*list(a.get("history") or []), entry]
        self.es.update(index=self.index, id=alert_id, refresh=True, doc={
            "event": {"ingested": now}, "secops": {"alert": {
                "count": count, "first_time": first, "last_time": last, "event_ids": all_ids,
                "history": history[-200:]}}})
        self._notify(alert_id)
        return alert_id, "updated"

    def _notify(self, alert_id: str) -> None:
        if self.notifier is not None:
            self.notifier(alert_id)

    # -- triage --------------------------------------------------------------------------------
    def get(self, alert_id: str) -> dict[str, Any]:
        doc = self.es.get(index=self.index, id=alert_id)
        return {"_id": doc["_id"], **doc["_source"]}

    def list(self, status: str | None = None, severity: str | None = None, rule: str | None = None,
             size: int = 100) -> list[dict[str, Any]]:
        filters: list[dict[str, Any]] = []
        if status:
            filters.append({"term": {"secops.alert.status": status}})
        if severity:
            filters.append({"term": {"rule.severity": severity}})
        if rule:
            filters.append({"term": {"rule.id": rule}})
        resp = self.es.search(index=self.index, size=size, query={"bool": {"filter": filters}},
                              sort=[{"secops.alert.last_time": "desc"}], ignore_unavailable=True,
                              allow_no_indices=True)
        return [{"_id": h["_id"], **h["_source"]} for h in resp["hits"]["hits"]]

    def _change(self, alert_id: str, actor: str, action: str, field_name: str | None, new: Any,
                note: str | None = None) -> dict[str, Any]:
        alert = self.get(alert_id)
        a = alert["secops"]["alert"]
        now = iso(utcnow())
        old = a.get(field_name) if field_name else None
        entry = {"at": now, "by": actor, "action": action, "old": None if old is None else str(old),
                 "new": None if new is None else str(new)}
        update: dict[str, Any] = {"history": [*list(a.get("history") or []), entry]}
        if field_name:
            update[field_name] = new
        if note is not None:
            update["notes"] = [*list(a.get("notes") or []), {"at": now, "by": actor, "text": note}]
        self.es.update(index=self.index, id=alert_id, doc={"secops": {"alert": update}}, refresh=True)
        if action == "reopened":
            self._notify(alert_id)
        return self.get(alert_id)

    def set_status(self, alert_id: str, status: str, actor: str) -> dict[str, Any]:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        old = self.get(alert_id)["secops"]["alert"].get("status")
        action = "reopened" if status == "open" and old != "open" else status
        return self._change(alert_id, actor, action, "status", status)

    def assign(self, alert_id: str, assignee: str, actor: str) -> dict[str, Any]:
        return self._change(alert_id, actor, "assigned", "assignee", assignee)

    def note(self, alert_id: str, text: str, actor: str) -> dict[str, Any]:
        return self._change(alert_id, actor, "noted", None, None, note=text[:10000])
