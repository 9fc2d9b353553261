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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from detections.alerts import AlertStore
from detections.compiler import CompiledRule
from detections.deadline import DeadlineClient, RuleTimeout
from detections.engine import Match, indices_for, msearch, run_query_rules, run_rule
from detections.exceptions import ExceptionStore, RuleException, excepted, with_exceptions
from detections.incidents import bulk_write
from secops.config import Settings
from secops.ecs import doc_id, iso, parse_time, utcnow
from secops.es.templates import index_for
from secops.notify import Notifier

log = logging.getLogger(__name__)
Runner = Callable[[Elasticsearch, str, CompiledRule, str, str], list[Match]]
RULE_TIMEOUT_SECONDS = 60.0  # one rule's searches in one pass; a slower rule is reported and skipped
EVALUATION_THREADS = 4  # rules whose searches run at once (a node's search pool has 1.5 x cores + 1 threads)


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


@dataclass
class Evaluation:
    """One rule run's searches before anything is recorded (Scheduler._evaluate, then Scheduler._conclude)."""

    rule: CompiledRule
    now: datetime
    result: RuleRun
    effective: CompiledRule  # the rule narrowed by its live exceptions
    live: list[RuleException] = field(default_factory=list)
    found: list[list[Match]] = field(default_factory=list)  # each window's matches, in order
    windows: int = 0  # windows whose evaluation started
    error: Exception | None = None  # what stopped the evaluation


def state_id(rule_id: str) -> str:
    return doc_id("detections.checkpoint", rule_id)


class Scheduler:
    def __init__(self, es: Elasticsearch, settings: Settings, rules: list[CompiledRule],
                 alerts: AlertStore | None = None, runner: Runner = run_rule,
                 rule_timeout: float = RULE_TIMEOUT_SECONDS, threads: int = EVALUATION_THREADS):
        self.es = es
        self.cfg = settings.detections
        self.prefix = settings.elasticsearch.index_prefix
        self.rules = [r for r in rules if r.runnable]
        self.alerts = alerts or AlertStore(es, self.prefix, self.cfg.suppression_seconds, settings.kibana.url,
                                           announce=Notifier.from_settings(settings, es))
        self.runner = runner
        self.rule_timeout = rule_timeout
        self.threads = threads
        self.exceptions = ExceptionStore(es, self.prefix)
        self.state_index = index_for(self.prefix, "secops.state")

    # -- checkpoints -------------------------------------------------------------------------------
    def checkpoint(self, rule_id: str) -> dict[str, Any] | None:
        try:
            src = self.es.get(index=self.state_index, id=state_id(rule_id))["_source"]
        except NotFoundError:
            return None
        return json.loads(src["secops"]["state"]["value"]) | {"checkpoint": src["secops"]["state"]["checkpoint"]}

    def _state_doc(self, rule_id: str, checkpoint: str, last_run: str) -> dict[str, Any]:
        now = iso(utcnow())
        return {"@timestamp": now, "event": {"dataset": "secops.state", "kind": "state", "ingested": now},
                "secops": {"state": {"key": f"detections:{rule_id}", "checkpoint": checkpoint,
                                     "value": json.dumps({"last_run": last_run, "rule_id": rule_id})}}}

    def _save(self, rule_id: str, checkpoint: str, last_run: str) -> None:
        # no forced refresh: a checkpoint is only read back by id (a realtime GET or mget), and on a cluster with
        # replicas one forced refresh per rule per pass was a good part of the pass
        self.es.index(index=self.state_index, id=state_id(rule_id),
                      document=self._state_doc(rule_id, checkpoint, last_run))

    def _save_many(self, rule_ids: list[str], at: str) -> None:
        """Checkpoint several rules at ``at`` with one bulk write."""
        operations: list[dict[str, Any]] = []
        for rule_id in rule_ids:
            operations += [{"index": {"_index": self.state_index, "_id": state_id(rule_id)}},
                           self._state_doc(rule_id, at, at)]
        bulk_write(self.es, operations)

    def checkpoints(self, rule_ids: list[str]) -> dict[str, dict[str, Any]]:
        """:meth:`checkpoint` of several rules with one multi-get (rules never run are left out)."""
        if not rule_ids:
            return {}
        resp = self.es.mget(index=self.state_index, ids=[state_id(r) for r in rule_ids])
        out = {}
        for rule_id, doc in zip(rule_ids, resp["docs"], strict=True):
            if doc.get("found"):
                src = doc["_source"]
                out[rule_id] = json.loads(src["secops"]["state"]["value"]) | {
                    "checkpoint": src["secops"]["state"]["checkpoint"]}
        return out

    def reset(self, rule_id: str | None = None) -> None:
        ids = [state_id(rule_id)] if rule_id else [state_id(r.id) for r in self.rules]
        for i in ids:
            self.es.options(ignore_status=404).delete(index=self.state_index, id=i, refresh=True)

    def _earliest_index(self, rule: CompiledRule) -> str:
        datasets = [m.dataset for m in rule.correlation.members] if rule.correlation else rule.dataset.split(",")
        return indices_for(self.prefix, datasets)

    def _earliest_many(self, es: Any, indices: list[str]) -> dict[str, datetime | None]:
        """The oldest ``event.ingested`` of each index pattern, with one multi-search."""
        answers = msearch(es, [{"index": index, "size": 0, "aggs": {"t": {"min": {"field": "event.ingested"}}}}
                               for index in indices])
        out: dict[str, datetime | None] = {}
        for index, resp in zip(indices, answers, strict=True):
            if isinstance(resp, Exception):
                raise resp
            value = (resp.get("aggregations") or {}).get("t", {}).get("value_as_string")
            out[index] = parse_time(value) if value else None
        return out

    def _earliest_ingested(self, rule: CompiledRule) -> datetime | None:
        resp = self.es.search(index=self._earliest_index(rule), size=0, ignore_unavailable=True,
                              allow_no_indices=True, aggs={"t": {"min": {"field": "event.ingested"}}})
        value = (resp.get("aggregations") or {}).get("t", {}).get("value_as_string")
        return parse_time(value) if value else None

    # -- runs ----------------------------------------------------------------------------------------
    def windows(self, rule: CompiledRule, now: datetime) -> list[tuple[str, str]]:
        return self._windows_from(rule, now, self.checkpoint(rule.id))

    def _windows_from(self, rule: CompiledRule, now: datetime, state: dict[str, Any] | None,
                      earliest: dict[str, datetime | None] | None = None) -> list[tuple[str, str]]:
        """The ingest windows a run evaluates: from the checkpoint ``state`` less the look-back, or the oldest
        ingested event (cached per index in ``earliest``), up to now."""
        if state:
            start = parse_time(state["checkpoint"]) - timedelta(seconds=self.cfg.lookback_seconds)
        else:
            key = self._earliest_index(rule)
            if earliest is None or key not in earliest:
                found = self._earliest_ingested(rule)
                if earliest is not None:
                    earliest[key] = found
            else:
                found = earliest[key]
            start = found or now
        out = []
        step = timedelta(seconds=self.cfg.max_window_seconds)
        while start < now:
            end = min(start + step, now)
            out.append((iso(start), iso(end)))
            start = end
        return out

    def due(self, rule: CompiledRule, now: datetime) -> bool:
        return self._due_from(self.checkpoint(rule.id), now)

    def _due_from(self, state: dict[str, Any] | None, now: datetime) -> bool:
        if not state:
            return True
        return (now - parse_time(state["last_run"])).total_seconds() >= self.cfg.interval_seconds

    def run_rule(self, rule: CompiledRule, now: datetime | None = None) -> RuleRun:
        now = now or utcnow()
        return self._conclude(self._evaluate(rule, now))

    def _evaluate(self, rule: CompiledRule, now: datetime) -> Evaluation:
        """The searches of one rule run, without writing anything: its live exceptions, its windows and each
        window's matches, up to the first error (safe to run beside other rules' evaluations)."""
        evaluation = Evaluation(rule, now, RuleRun(rule.id), rule)
        t0 = time.monotonic()
        client = DeadlineClient(self.es, self.rule_timeout, f"secops-rule:{rule.id}")
        try:
            evaluation.live = self.exceptions.live(rule.id, now)  # tuning: exceptions live at this run narrow it
            evaluation.effective = with_exceptions(rule, evaluation.live)
            for start, end in self.windows(rule, now):
                evaluation.windows += 1
                evaluation.found.append(self.runner(client, self.prefix, evaluation.effective, start, end))
        except Exception as exc:
            evaluation.error = exc
        evaluation.result.seconds = time.monotonic() - t0
        return evaluation

    def _conclude(self, evaluation: Evaluation) -> RuleRun:
        """Record an evaluated rule run: each window's alerts in order, then its checkpoint, or the error that
        stopped it (the windows before the error recorded, the checkpoint kept for the next pass)."""
        result, rule, now = evaluation.result, evaluation.rule, iso(evaluation.now)
        t0 = time.monotonic()
        result.windows = evaluation.windows
        try:
            for matches in evaluation.found:
                self._record(result, evaluation.effective, matches, evaluation.live)
            if evaluation.error is not None:
                raise evaluation.error
            self._save(rule.id, now, now)
        except RuleTimeout as exc:
            result.timed_out = True
            result.error = f"slow rule skipped: {exc}"
            log.warning("rule %s (%s) %s", rule.id, rule.title, result.error)
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {str(exc)[:500]}"
            log.warning("rule %s failed: %s", rule.id, result.error)
        result.seconds += time.monotonic() - t0
        return result

    def _record(self, result: RuleRun, rule: CompiledRule, matches: list[Match],
                live: list[RuleException]) -> None:
        """Record one window's matches (those no live exception covers) as alerts, written together."""
        kept = [m for m in matches if not (live and excepted(m, live))]
        result.excepted += len(matches) - len(kept)
        result.matches += len(kept)
        for outcomes in self.alerts.record_matches(rule, kept):
            for alert_id, outcome in outcomes:
                if outcome == "created":
                    result.created += 1
                elif outcome == "updated":
                    result.updated += 1
                if alert_id not in result.alert_ids:
                    result.alert_ids.append(alert_id)

    def shareable(self, rule: CompiledRule) -> bool:
        """Plain Sigma query rules run together (see :meth:`run_shared`); the rest one by one."""
        return self.runner is run_rule and rule.kind == "query" and rule.analytic is None

    def run_shared(self, rules: list[CompiledRule], now: datetime,
                   states: dict[str, dict[str, Any]] | None = None) -> dict[str, RuleRun]:
        """Query rules evaluated together, each with the result it gets alone: live exceptions read with one
        search, windows from the checkpoints, the rules of each window searched with shared multi-searches
        (engine.run_query_rules), each rule's alerts recorded in one bulk write, the checkpoints saved in another.
        A rule whose searches fail reports its own error and keeps its checkpoint. When the shared searches
        exceed the time budget, nothing is returned and the caller runs the rules one by one."""
        if not rules:
            return {}
        t0 = time.monotonic()
        states = states if states is not None else self.checkpoints([r.id for r in rules])
        client = DeadlineClient(self.es, self.rule_timeout, "secops-rules:shared")
        found: dict[tuple[str, tuple[str, str]], list[Match] | Exception] = {}
        try:
            live = self.exceptions.live_for([r.id for r in rules], now)
            effective = {r.id: with_exceptions(r, live[r.id]) for r in rules}
            earliest = self._earliest_many(client, sorted({self._earliest_index(r) for r in rules
                                                           if not states.get(r.id)}))
            windows = {r.id: self._windows_from(r, now, states.get(r.id), earliest) for r in rules}
            by_window: dict[tuple[str, str], list[CompiledRule]] = {}
            for rule in rules:
                for window in windows[rule.id]:
                    by_window.setdefault(window, []).append(rule)
            for window, group in by_window.items():
                answers = run_query_rules(client, self.prefix, [effective[r.id] for r in group], *window)
                found.update({(r.id, window): answer for r, answer in zip(group, answers, strict=True)})
        except Exception as exc:  # slow or failing shared searches: each rule alone, with its own budget and error
            log.warning("shared detection run: %s: %s; rules run one by one", type(exc).__name__, str(exc)[:300])
            return {}
        shared_seconds = (time.monotonic() - t0) / len(rules)
        results: dict[str, RuleRun] = {}
        done: list[str] = []
        for rule in rules:
            t1 = time.monotonic()
            result = results[rule.id] = RuleRun(rule.id)
            try:
                for window in windows[rule.id]:
                    result.windows += 1
                    answer = found[(rule.id, window)]
                    if isinstance(answer, Exception):
                        raise answer
                    self._record(result, effective[rule.id], answer, live[rule.id])
                done.append(rule.id)
            except Exception as exc:
                result.error = f"{type(exc).__name__}: {str(exc)[:500]}"
                log.warning("rule %s failed: %s", rule.id, result.error)
            result.seconds = shared_seconds + time.monotonic() - t1
        t2 = time.monotonic()
        self._save_many(done, iso(now))
        for rule_id in done:
            results[rule_id].seconds += (time.monotonic() - t2) / len(done)
        return results

    def run(self, now: datetime | None = None, only_due: bool = False,
            rule_ids: list[str] | None = None) -> list[RuleRun]:
        """One detection pass: every (due) rule over everything not yet evaluated. The query rules search together
        (:meth:`run_shared`); the other rules' searches run beside them and beside each other, ``threads`` at a
        time (the node answers several searches at once while this process waits), a rule that reads other rules'
        alerts (``after_techniques``) only once the rules before it that it reads are recorded. Alerts and
        checkpoints are recorded one rule at a time in the rules' order: the same outcome as one rule after the
        other."""
        now = now or utcnow()
        selected = [r for r in self.rules if not rule_ids or r.id in rule_ids]
        states = self.checkpoints([r.id for r in selected])
        if only_due:
            selected = [r for r in selected if self._due_from(states.get(r.id), now)]
        with ThreadPoolExecutor(max(1, self.threads), thread_name_prefix="secops-rule") as pool:
            started = {r.id: pool.submit(self._evaluate, r, now) for r in selected
                       if not self.shareable(r) and not r.after_techniques}
            runs = self.run_shared([r for r in selected if self.shareable(r)], now, states)
            rest = [r for r in selected if r.id not in runs]  # in order; shared rules that fell back included
            waiting = {r.id: {q.id for q in rest[:i] if _explains(q, r)} for i, r in enumerate(rest)}

            def release() -> None:
                for rule in rest:
                    if rule.id not in started and not waiting[rule.id]:
                        started[rule.id] = pool.submit(self._evaluate, rule, now)
            release()
            for rule in rest:
                runs[rule.id] = self._conclude(started[rule.id].result())
                for before in waiting.values():
                    before.discard(rule.id)
                release()
        return [runs[r.id] for r in selected]


def _explains(rule: CompiledRule, reader: CompiledRule) -> bool:
    """``rule``'s alerts are among those ``reader`` reads (a technique under one of its ``after_techniques``)."""
    return any(t.startswith(prefix) for t in rule.techniques for prefix in reader.after_techniques)
