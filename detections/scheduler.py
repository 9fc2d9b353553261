"""Rule scheduling: per-rule checkpoints in Elasticsearch, look-back for late data, backfill after downtime.

Each rule remembers (``secops-state``, one document per rule) the end of the last ingest window it
evaluated. A run evaluates ``[checkpoint - lookback, now)``, cut into chunks of at most
``max_window_seconds`` so a scheduler that was stopped for a day backfills in order. A rule never run
before starts at the oldest ``event.ingested`` in its indices, so an imported capture of any age is
evaluated once. Alerts are idempotent (see alerts.py), so overlapping windows never duplicate.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from detections.alerts import AlertStore
from detections.compiler import CompiledRule
from detections.deadline import DeadlineClient, RuleTimeout
from detections.engine import Match, indices_for, run_rule
from detections.exceptions import ExceptionStore, excepted, with_exceptions
from secops.config import Settings
from secops.ecs import doc_id, iso, parse_time, utcnow
from secops.es.templates import index_for
from secops.notify import Notifier

log = logging.getLogger(__name__)
Runner = Callable[[Elasticsearch, str, CompiledRule, str, str], list[Match]]
RULE_TIMEOUT_SECONDS = 60.0  # one rule's searches in one pass; a slower rule is reported and skipped


@dataclass
class RuleRun:
    rule_id: str
    windows: int = 0
    matches: int = 0
    created: int = 0
    updated: int = 0
    excepted: int = 0  # matches an exception covers (not recorded)
    error: str | None = None
    timed_out: bool = False  # slow rule: skipped this pass, its checkpoint kept for the next
    seconds: float = 0.0
    alert_ids: list[str] = field(default_factory=list)


def state_id(rule_id: str) -> str:
    return doc_id("detections.checkpoint", rule_id)


class Scheduler:
    def __init__(self, es: Elasticsearch, settings: Settings, rules: list[CompiledRule],
                 alerts: AlertStore | None = None, runner: Runner = run_rule,
                 rule_timeout: float = RULE_TIMEOUT_SECONDS):
        self.es = es
        self.cfg = settings.detections
        self.prefix = settings.elasticsearch.index_prefix
        self.rules = [r for r in rules if r.runnable]
        self.alerts = alerts or AlertStore(es, self.prefix, self.cfg.suppression_seconds, settings.kibana.url,
                                           announce=Notifier.from_settings(settings, es))
        self.runner = runner
        self.rule_timeout = rule_timeout
        self.exceptions = ExceptionStore(es, self.prefix)
        self.state_index = index_for(self.prefix, "secops.state")

    # -- checkpoints -------------------------------------------------------------------------------
    def checkpoint(self, rule_id: str) -> dict[str, Any] | None:
        try:
            src = self.es.get(index=self.state_index, id=state_id(rule_id))["_source"]
        except NotFoundError:
            return None
        return json.loads(src["secops"]["state"]["value"]) | {"checkpoint": src["secops"]["state"]["checkpoint"]}

    def _save(self, rule_id: str, checkpoint: str, last_run: str) -> None:
        now = iso(utcnow())
        # no forced refresh: a checkpoint is only read back by id (a realtime GET), and on a cluster with replicas
        # one forced refresh per rule per pass was a good part of the pass
        self.es.index(index=self.state_index, id=state_id(rule_id), document={
            "@timestamp": now, "event": {"dataset": "secops.state", "kind": "state", "ingested": now},
            "secops": {"state": {"key": f"detections:{rule_id}", "checkpoint": checkpoint,
                                 "value": json.dumps({"last_run": last_run, "rule_id": rule_id})}}})

    def reset(self, rule_id: str | None = None) -> None:
        ids = [state_id(rule_id)] if rule_id else [state_id(r.id) for r in self.rules]
        for i in ids:
            self.es.options(ignore_status=404).delete(index=self.state_index, id=i, refresh=True)

    def _earliest_ingested(self, rule: CompiledRule) -> datetime | None:
        datasets = [m.dataset for m in rule.correlation.members] if rule.correlation else rule.dataset.split(",")
        resp = self.es.search(index=indices_for(self.prefix, datasets), size=0, ignore_unavailable=True,
                              allow_no_indices=True, aggs={"t": {"min": {"field": "event.ingested"}}})
        value = (resp.get("aggregations") or {}).get("t", {}).get("value_as_string")
        return parse_time(value) if value else None

    # -- runs ----------------------------------------------------------------------------------------
    def windows(self, rule: CompiledRule, now: datetime) -> list[tuple[str, str]]:
        state = self.checkpoint(rule.id)
        if state:
            start = parse_time(state["checkpoint"]) - timedelta(seconds=self.cfg.lookback_seconds)
        else:
            start = self._earliest_ingested(rule) or now
        out = []
        step = timedelta(seconds=self.cfg.max_window_seconds)
        while start < now:
            end = min(start + step, now)
            out.append((iso(start), iso(end)))
            start = end
        return out

    def due(self, rule: CompiledRule, now: datetime) -> bool:
        state = self.checkpoint(rule.id)
        if not state:
            return True
        return (now - parse_time(state["last_run"])).total_seconds() >= self.cfg.interval_seconds

    def run_rule(self, rule: CompiledRule, now: datetime | None = None) -> RuleRun:
        now = now or utcnow()
        result = RuleRun(rule.id)
        t0 = time.monotonic()
        client = DeadlineClient(self.es, self.rule_timeout, f"secops-rule:{rule.id}")
        try:
            live = self.exceptions.live(rule.id, now)  # tuning: exceptions live at this run narrow the rule
            effective = with_exceptions(rule, live)
            for start, end in self.windows(rule, now):
                result.windows += 1
                for match in self.runner(client, self.prefix, effective, start, end):
                    if live and excepted(match, live):
                        result.excepted += 1
                        continue
                    result.matches += 1
                    for alert_id, outcome in self.alerts.record_all(effective, match):
                        if outcome == "created":
                            result.created += 1
                        elif outcome == "updated":
                            result.updated += 1
                        if alert_id not in result.alert_ids:
                            result.alert_ids.append(alert_id)
            self._save(rule.id, iso(now), iso(now))
        except RuleTimeout as exc:
            result.timed_out = True
            result.error = f"slow rule skipped: {exc}"
            log.warning("rule %s (%s) %s", rule.id, rule.title, result.error)
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {str(exc)[:500]}"
            log.warning("rule %s failed: %s", rule.id, result.error)
        result.seconds = time.monotonic() - t0
        return result

    def run(self, now: datetime | None = None, only_due: bool = False,
            rule_ids: list[str] | None = None) -> list[RuleRun]:
        """One detection pass: every (due) rule over everything not yet evaluated."""
        now = now or utcnow()
        runs = []
        for rule in self.rules:
            if rule_ids and rule.id not in rule_ids:
                continue
            if only_due and not self.due(rule, now):
                continue
            runs.append(self.run_rule(rule, now))
        return runs
