"""Alerts: deterministic ids, suppression (repeated matches update one alert), triage workflow, playbook trigger.

A rule with its own suppression setting (``x_secops_suppression``, see suppression.py) folds matches by its
fields into fixed windows instead.

An alert's id derives from (rule id, group key, time of its first matching event), so evaluating the
same window twice writes the same alert. A new match for the same rule and group within
``suppression_seconds`` (event time) of an open alert updates that alert (count, last time, event ids)
instead of creating another. Triage (ack, close, assign, note) appends to ``secops.alert.history``.
"""

from __future__ import annotations

import copy
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
from detections.incidents import IncidentStore, bulk_write
from detections.suppression import (
    Suppression,
    WindowStats,
    count_events,
    countable,
    suppression_key,
    terms_of,
    window_end,
)
from secops.ecs import doc_id, iso, parse_time, utcnow
from secops.es.templates import bound_keywords, index_for
from secops.i18n import Message
from secops.notify import Notifier

log = logging.getLogger(__name__)

MAX_EVENT_IDS = 1000
KEYS_PER_SEARCH = 1000
MAX_OPEN = 10000  # open alerts one search returns; more and the matches are recorded one by one
MAX_WINDOWS_PER_MATCH = 10000  # suppression windows one match may span (a bound, never reached by real windows)
STATUSES = ("open", "acknowledged", "closed")
AlertHook = Callable[[str], None]


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
    """Send ``playbooks.on_alert`` by name, fire and forget; never fails or stalls detection when there is no
    broker or worker. Its result is never read, so no result-store subscription is made (with Redis away that
    subscription retried 20 times, 1 s apart, for every new alert), and the broker is tried once on a connection
    of its own (the pooled one would retry for ``broker_connection_timeout``)."""
    try:
        from secops.celery_app import app

        with app.connection_for_write(transport_options={"max_retries": 0}) as connection:
            app.send_task("playbooks.on_alert", args=[alert_id], retry=False, ignore_result=True,
                          connection=connection)
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


def _window_reason(rule: CompiledRule, match: Match, count: int) -> Message | None:
    """A query rule's reason ("N events matched") counts the suppression window's events, not the match's."""
    if rule.kind != "query" or match.reason_message is None or "n" not in match.reason_message.params:
        return match.reason_message
    return Message(match.reason_message.id, {**match.reason_message.params, "n": count})


def merged(alert: dict[str, Any], match: Match) -> dict[str, Any] | None:
    """The partial update that folds a match into an open alert (``secops.alert`` of it), None when it adds nothing:
    new event ids, the wider time span, the larger count, one history entry."""
    ids = list(alert.get("event_ids") or [])
    seen = set(ids)
    fresh = [i for i in match.event_ids if i not in seen]
    first = min(alert["first_time"], match.first_time, key=lambda t: parse_time(t))
    last = max(alert["last_time"], match.last_time, key=lambda t: parse_time(t))
    if not fresh and first == alert["first_time"] and last == alert["last_time"]:
        return None
    all_ids = (ids + fresh)[:MAX_EVENT_IDS]
    count = max(int(alert.get("count") or 0), len(all_ids)) if len(ids) < MAX_EVENT_IDS else alert["count"] + len(fresh)
    count = max(count, match.count)
    now = iso(utcnow())
    entry = {"at": now, "by": "secops-detect", "action": "updated", "old": str(alert.get("count")), "new": str(count)}
    history = [*list(alert.get("history") or []), entry]
    return {"event": {"ingested": now}, "secops": {"alert": {
        "count": count, "first_time": first, "last_time": last, "event_ids": all_ids, "history": history[-200:]}}}


def deep_update(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Apply a partial update the way Elasticsearch's update API merges objects."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_update(target[key], value)
        else:
            target[key] = value


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
    notifier: AlertHook | None = celery_notifier
    incident_window_seconds: int = 3600
    announce: Notifier | None = None  # notifications of new alerts (secops.notify), by severity policy

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

    def _open_alerts(self, rule: CompiledRule, keys: list[str], matches: list[Match]
                     ) -> dict[str, list[dict[str, Any]]] | None:
        """The rule's open alerts of these group keys whose span reaches into some match's, widened by the
        suppression time (None when there are more than one search returns: record those matches one by one)."""
        lo = iso(min(parse_time(m.first_time) for m in matches) - timedelta(seconds=self.suppression_seconds))
        hi = iso(max(parse_time(m.last_time) for m in matches) + timedelta(seconds=self.suppression_seconds))
        distinct = sorted(set(keys))
        out: dict[str, list[dict[str, Any]]] = {}
        for i in range(0, len(distinct), KEYS_PER_SEARCH):
            resp = self.es.search(index=self.index, size=MAX_OPEN, ignore_unavailable=True, allow_no_indices=True,
                                  query={"bool": {
                                      "filter": [{"term": {"rule.id": rule.id}},
                                                 {"terms": {"secops.alert.group_key": distinct[i:i + KEYS_PER_SEARCH]}},
                                                 {"range": {"secops.alert.last_time": {"gte": lo}}},
                                                 {"range": {"secops.alert.first_time": {"lte": hi}}}],
                                      "must_not": [{"term": {"secops.alert.status": "closed"}}]}})
            hits = resp["hits"]["hits"]
            if resp["hits"]["total"]["value"] > len(hits):
                return None
            for h in hits:
                key = h["_source"]["secops"]["alert"]["group_key"]
                out.setdefault(key, []).append({"_id": h["_id"], **h["_source"]})
        return out

    def _overlapping(self, alerts: list[dict[str, Any]], match: Match) -> dict[str, Any] | None:
        """Of a group's open alerts, the one a match updates: the latest whose span overlaps the match's widened by
        the suppression time."""
        lo = parse_time(match.first_time) - timedelta(seconds=self.suppression_seconds)
        hi = parse_time(match.last_time) + timedelta(seconds=self.suppression_seconds)
        hits = [a for a in alerts if parse_time(a["secops"]["alert"]["last_time"]) >= lo
                and parse_time(a["secops"]["alert"]["first_time"]) <= hi]
        return max(hits, key=lambda a: parse_time(a["secops"]["alert"]["last_time"])) if hits else None

    def _taken(self, ids: list[str]) -> set[str]:
        """Which deterministic alert ids exist already (open or closed)."""
        resp = self.es.mget(index=self.index, ids=sorted(set(ids)), source=False)
        return {d["_id"] for d in resp["docs"] if d.get("found")}

    def record_all(self, rule: CompiledRule, match: Match) -> list[tuple[str, str]]:
        """Create or update the alert(s) for one match: one, or one per suppression window the match spans;
        each as (alert id, created|updated|unchanged). ``rule`` is the rule as evaluated (exceptions applied)."""
        return self.record_matches(rule, [match])[0]

    def record_matches(self, rule: CompiledRule, matches: list[Match]) -> list[list[tuple[str, str]]]:
        """:meth:`record_all` for each match of a rule run, in order and with the same outcomes, but the matches
        without per-rule suppression written together (see :meth:`_record_plain`)."""
        out: list[list[tuple[str, str]]] = []
        plain: list[Match] = []

        def flush() -> None:
            out.extend([r] for r in self._record_plain(rule, plain))
            plain.clear()

        sup = rule.suppression
        for match in matches:
            terms = terms_of(sup, match) if sup is not None and countable(rule) else None
            if sup is None or terms is None:
                plain.append(match)
                continue
            flush()  # a suppressed match sees every alert recorded before it
            out.append(self._record_suppressed(rule, sup, terms, match))
        flush()
        return out

    def record(self, rule: CompiledRule, match: Match) -> tuple[str, str]:
        """Create or update the alert for one match; returns (alert id, created|updated|unchanged)."""
        return self._record_plain(rule, [match])[0]

    def _record_plain(self, rule: CompiledRule, matches: list[Match]) -> list[tuple[str, str]]:
        """Create or update the alert of each match, in order, exactly as one at a time would: a match updates its
        group's open alert within the suppression time (one created earlier in this batch included), else creates
        the alert of its deterministic id unless that id exists (a rerun after the alert was closed). One search
        for the open alerts, one multi-get for the ids, one incident search, one bulk write of alerts and
        incidents, then the playbook and notification hooks in order."""
        if not matches:
            return []
        keys = [group_key(rule, m) for m in matches]
        view = self._open_alerts(rule, keys, matches)
        if view is None:
            return [self._record_plain(rule, [m])[0] for m in matches]
        taken = self._taken([doc_id("alert", rule.id, k, m.first_time) for k, m in zip(keys, matches, strict=True)])
        current: dict[str, dict[str, Any]] = {}  # alert id -> document as it will be stored
        created: set[str] = set()
        changes: dict[str, dict[str, Any]] = {}  # existing alert id -> its partial update
        events: list[tuple[str, str, dict[str, Any]]] = []  # (alert id, created|updated, document at that turn)
        out: list[tuple[str, str]] = []
        for key, match in zip(keys, matches, strict=True):
            existing = self._overlapping(view.get(key, []), match)
            if existing is None:
                alert_id = doc_id("alert", rule.id, key, match.first_time)
                if alert_id in taken:  # a deterministic rerun of a window whose alert was closed meanwhile
                    out.append((alert_id, "unchanged"))
                    continue
                doc = {"_id": alert_id, **bound_keywords(new_alert(rule, match, key, alert_id, self.kibana))}
                view.setdefault(key, []).append(doc)
                taken.add(alert_id)
                current[alert_id] = doc
                created.add(alert_id)
                events.append((alert_id, "created", copy.deepcopy(doc)))
                out.append((alert_id, "created"))
                continue
            alert_id = existing["_id"]
            change = merged(existing["secops"]["alert"], match)
            if change is None:
                out.append((alert_id, "unchanged"))
                continue
            deep_update(existing, change)
            current[alert_id] = existing
            if alert_id in changes:
                deep_update(changes[alert_id], change)
            elif alert_id not in created:
                changes[alert_id] = change
            events.append((alert_id, "updated", copy.deepcopy(existing)))
            out.append((alert_id, "updated"))
        incidents = IncidentStore(self.es, self.prefix, self.incident_window_seconds)
        incident_ids, incident_ops = incidents.plan([(alert_id, doc) for alert_id, _, doc in events])
        for (alert_id, _, _), incident_id in zip(events, incident_ids, strict=True):
            current[alert_id]["secops"]["alert"]["incident_id"] = incident_id
            if alert_id in changes:
                changes[alert_id]["secops"]["alert"]["incident_id"] = incident_id
        operations: list[dict[str, Any]] = []
        for alert_id, doc in current.items():
            if alert_id in changes:
                operations += [{"update": {"_index": self.index, "_id": alert_id}}, {"doc": changes[alert_id]}]
            else:
                operations += [{"index": {"_index": self.index, "_id": alert_id}},
                               {k: v for k, v in doc.items() if k != "_id"}]
        bulk_write(self.es, operations + incident_ops)
        for alert_id, outcome, _ in events:
            self._notify(alert_id)
            if outcome == "created" and self.announce is not None:
                self.announce.alert_created(copy.deepcopy(current[alert_id]))
        return out

    # -- per-rule suppression ----------------------------------------------------------------------
    def _open_window(self, rule: CompiledRule, key: str, at: str) -> dict[str, Any] | None:
        """The rule's open alert for ``key`` whose suppression window holds the time ``at``."""
        resp = self.es.search(index=self.index, size=1, ignore_unavailable=True, allow_no_indices=True, query={
            "bool": {"filter": [{"term": {"rule.id": rule.id}}, {"term": {"secops.alert.suppression.key": key}},
                                {"range": {"secops.alert.suppression.start": {"lte": at}}},
                                {"range": {"secops.alert.suppression.end": {"gt": at}}}],
                     "must_not": [{"term": {"secops.alert.status": "closed"}}]}},
            sort=[{"secops.alert.suppression.start": "desc"}])
        hits = resp["hits"]["hits"]
        return {"_id": hits[0]["_id"], **hits[0]["_source"]} if hits else None

    def _record_suppressed(self, rule: CompiledRule, sup: Suppression, terms: list[tuple[str, Any]],
                           match: Match) -> list[tuple[str, str]]:
        """Fold the match's events into the alert of each suppression window they fall in, counting each window's
        events in Elasticsearch (exact, and idempotent when an ingest window is evaluated again)."""
        key = suppression_key(terms)
        out: list[tuple[str, str]] = []
        cursor, after, last = match.first_time, False, parse_time(match.last_time)
        for _ in range(MAX_WINDOWS_PER_MATCH):
            if parse_time(cursor) > last:
                break
            existing = self._open_window(rule, key, cursor)
            if existing is None:
                ahead = count_events(self.es, self.prefix, rule, terms, cursor, match.last_time, hi_inclusive=True,
                                     lo_exclusive=after)
                if not ahead.count or ahead.first_time is None:
                    break
                existing = self._open_window(rule, key, ahead.first_time)
                if existing is None:
                    closed = self._closed_window(doc_id("alert", rule.id, "suppression", key, ahead.first_time))
                    if closed is not None:  # closed: suppression ends; later events open a new alert
                        cursor, after = closed["secops"]["alert"]["last_time"], True
                        continue
            start = existing["secops"]["alert"]["suppression"]["start"] if existing else ahead.first_time
            end = window_end(start, sup)
            stats = count_events(self.es, self.prefix, rule, terms, start, end)
            if stats.count:
                out.append(self._write_window(rule, sup, key, terms, match, existing, start, end, stats))
            cursor, after = end, False
        return out

    def _closed_window(self, alert_id: str) -> dict[str, Any] | None:
        try:
            return self.get(alert_id)
        except NotFoundError:
            return None

    def _write_window(self, rule: CompiledRule, sup: Suppression, key: str, terms: list[tuple[str, Any]],
                      match: Match, existing: dict[str, Any] | None, start: str, end: str,
                      stats: WindowStats) -> tuple[str, str]:
        suppression = {"key": key, "terms": [{"field": f, "value": None if v is None else str(v)} for f, v in terms],
                       "start": start, "end": end, "window_seconds": sup.window_seconds,
                       "docs_count": stats.count - 1}
        now = iso(utcnow())
        if existing is None:
            alert_id = doc_id("alert", rule.id, "suppression", key, start)
            reason = _window_reason(rule, match, stats.count)
            window_match = Match(group=match.group, first_time=stats.first_time, last_time=stats.last_time,
                                 count=stats.count, event_ids=stats.event_ids, event_index=stats.event_index,
                                 fields=match.fields, reason=reason.english() if reason else match.reason,
                                 reason_message=reason)
            doc = new_alert(rule, window_match, key, alert_id, self.kibana)
            doc["secops"]["alert"]["suppression"] = suppression
            self.es.index(index=self.index, id=alert_id, refresh=True, document=bound_keywords(doc))
            self._roll_up(alert_id)
            self._notify(alert_id)
            self._announce(alert_id)
            return alert_id, "created"
        alert_id = existing["_id"]
        a = existing["secops"]["alert"]
        if int(a.get("count") or 0) == stats.count and a.get("last_time") == stats.last_time:
            return alert_id, "unchanged"
        entry = {"at": now, "by": "secops-detect", "action": "suppressed", "old": str(a.get("count")),
                 "new": str(stats.count)}
        ids = list(dict.fromkeys([*(a.get("event_ids") or []), *stats.event_ids]))[:MAX_EVENT_IDS]
        update: dict[str, Any] = {"event": {"ingested": now}, "secops": {"alert": {
            "count": stats.count, "first_time": stats.first_time, "last_time": stats.last_time, "event_ids": ids,
            "suppression": suppression, "history": [*list(a.get("history") or []), entry][-200:]}}}
        reason = _window_reason(rule, match, stats.count)
        if rule.kind == "query" and reason is not None:
            update["event"]["reason"] = reason.english()
            update["message"] = f"{rule.title}: {reason.english()}"
            update["secops"]["alert"]["reason_message"] = reason.as_doc()
        self.es.update(index=self.index, id=alert_id, refresh=True, doc=update)
        self._roll_up(alert_id)
        return alert_id, "updated"

    def _notify(self, alert_id: str) -> None:
        if self.notifier is not None:
            self.notifier(alert_id)

    def _announce(self, alert_id: str) -> None:
        if self.announce is not None:
            self.announce.alert_created(self.get(alert_id))

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
