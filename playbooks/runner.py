"""The playbook runner: start a run from an alert, execute one step at a time, approvals, housekeeping.

Celery-free on purpose: ``dispatch(run_id, index, countdown)`` is injected (tasks.py sends the
Celery task; tests and the CLI may pass their own). Every step execution is:

1. stop if the run is over, the kill switch is on, or the step already finished (redelivery);
2. skip if the step's ``when`` conditions do not hold; wait if it needs an approval not yet given;
3. claim the step (its action key) in the run document with a lease; a live lease held by another
   execution defers this one, so a redelivered or re-dispatched step never acts twice concurrently;
4. act (``plan`` in dry-run), audit, record the result, dispatch the next step.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError
from pydantic import ValidationError

from playbooks import store
from playbooks.actions import ACTIONS
from playbooks.actions.base import ActionContext, ActionError, PermanentError
from playbooks.blocking import Blocker
from playbooks.model import Playbook, load_all, matching
from playbooks.ratelimit import RateLimiter
from playbooks.template import render
from playbooks.values import HostileValue
from secops.config import Settings
from secops.ecs import doc_id, get, iso, parse_time, utcnow
from secops.es.templates import index_for

log = logging.getLogger(__name__)
Dispatch = Callable[..., None]  # dispatch(run_id, index, countdown=0.0, timeout=None)
KILL_SWITCH_CACHE = 1.0  # seconds a worker may act on a stale kill-switch reading
# Every countdown stays far below the broker's visibility timeout (>= 86400 + 3600 s, secops.celery_app).
MAX_COUNTDOWN = 3600.0
LEASE_MARGIN = 8.0  # > the soft time limit margin (tasks.SOFT_LIMIT_MARGIN)
SERVICE_ACTOR = "playbooks"


class RefusedInput(ValueError):
    """Alert values that failed validation; the run is refused and nothing acts."""


@dataclass
class Runner:
    settings: Settings
    es: Elasticsearch
    dispatch: Dispatch
    limiter: RateLimiter | None = None
    _switch: bool = False
    _switch_read: float = -1e9

    @property
    def prefix(self) -> str:
        return self.settings.elasticsearch.index_prefix

    # -- inputs --------------------------------------------------------------------------------
    def alert(self, alert_id: str) -> dict[str, Any]:
        try:
            return self.es.get(index=index_for(self.prefix, "secops.alert"), id=alert_id)["_source"]
        except NotFoundError:
            raise LookupError(f"no alert {alert_id!r}") from None

    def resolve(self, book: Playbook, alert: dict[str, Any], run_id: str) -> list[dict[str, Any]]:
        """Render and type-check every step's parameters up front; RefusedInput names the field and reason."""
        context = {"alert": alert, "run": {"id": run_id}, "playbook": {"name": book.name}}
        resolved = []
        for step in book.steps:
            try:
                raw = render(step.params, context, self.settings.playbooks.max_value_length)
                params = ACTIONS[step.action].Params(**raw)
            except HostileValue as exc:
                raise RefusedInput(f"step {step.name}: {exc}") from None
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(map(str, err["loc"]))
                raise RefusedInput(f"step {step.name}: parameter {where}: {err['msg']}") from None
            resolved.append(params.model_dump(mode="json"))
        return resolved

    # -- starting runs -------------------------------------------------------------------------
    def on_alert(self, alert_id: str) -> list[str]:
        """Start every enabled playbook whose trigger matches the alert (once per playbook and alert)."""
        alert = self.alert(alert_id)
        books, errors = load_all(self.settings, strict=False)
        for err in errors:
            log.error("playbook definition error: %s", err)
        return [self.start(book, alert_id, alert)["secops"]["playbook"]["run_id"]
                for book in matching(books.values(), alert)]

    def start(self, book: Playbook, alert_id: str, alert: dict[str, Any], *, dry_run: bool | None = None,
              actor: str = SERVICE_ACTOR, nonce: str = "") -> dict[str, Any]:
        dry = bool(dry_run) or book.dry_run or self.settings.playbooks.dry_run
        run_id = doc_id("playbook_run", book.name, alert_id, nonce)[:24]
        now = iso()
        steps = [{"name": s.name, "action": s.action, "status": "pending", "attempts": 0,
                  "action_key": doc_id("action", run_id, i, s.name)[:24]} for i, s in enumerate(book.steps)]
        pb: dict[str, Any] = {"run_id": run_id, "name": book.name, "alert_id": alert_id, "dry_run": dry,
                              "status": "running", "current": 0, "step": book.steps[0].name, "created": now,
                              "updated": now, "actor": actor, "steps": steps}
        doc: dict[str, Any] = {"@timestamp": now, "event": {"dataset": store.RUN, "kind": "event", "ingested": now},
                               "rule": {k: v for k in ("id", "name") if (v := get(alert, f"rule.{k}"))},
                               "secops": {"playbook": pb}}
        for side in ("source", "destination"):
            if isinstance(ip := get(alert, f"{side}.ip"), str) and len(ip) <= 45:
                doc[side] = {"ip": ip}
        try:
            params = self.resolve(book, alert, run_id)
        except RefusedInput as exc:
            pb.update(status="refused", error=str(exc), finished=now)
            for s in steps:
                s["status"] = "not_run"
            if store.create_run(self.es, self.prefix, doc):
                store.audit(self.es, self.prefix, "playbook.refused", run_id, "failure", actor=actor, run_id=run_id,
                            details={"playbook": book.name, "alert_id": alert_id, "error": str(exc)})
            return doc
        for s, p in zip(steps, params, strict=True):
            s["params"] = store.compact(p)
        steps[0]["dispatched_at"] = now
        if store.create_run(self.es, self.prefix, doc):
            store.audit(self.es, self.prefix, "playbook.started", run_id, "success", actor=actor, run_id=run_id,
                        details={"playbook": book.name, "alert_id": alert_id, "dry_run": dry,
                                 "steps": [s.name for s in book.steps]})
            self.dispatch(run_id, 0, timeout=book.steps[0].timeout_seconds)
            return doc
        return store.get_run(self.es, self.prefix, run_id)

    def plan(self, book: Playbook, alert: dict[str, Any]) -> list[dict[str, Any]]:
        """The full plan of a run without running it: each step's parameters and what the action would do."""
        params = self.resolve(book, alert, "dry-run")
        out = []
        for step, p in zip(book.steps, params, strict=True):
            action = ACTIONS[step.action]
            ctx = ActionContext(self.settings, self.es, "dry-run", step.name, "dry-run", alert, step.timeout_seconds)
            try:
                what = action.plan(action.Params(**p), ctx)
            except ActionError as exc:
                what = {"error": str(exc)}
            out.append({"step": step.name, "action": step.action, "params": p, "approval": step.approval,
                        "when": [c.model_dump() for c in step.when], "plan": what})
        return out

    # -- executing steps -----------------------------------------------------------------------
    def book(self, name: str) -> Playbook:
        books, _ = load_all(self.settings, strict=False)
        if name not in books:
            raise LookupError(f"playbook {name!r} no longer defined")
        return books[name]

    def kill_switch(self) -> bool:
        """Config or the stored switch; the stored one is re-read at most every KILL_SWITCH_CACHE seconds."""
        if self.settings.playbooks.kill_switch:
            return True
        now = time.monotonic()
        if now - self._switch_read > KILL_SWITCH_CACHE:
            self._switch, self._switch_read = store.kill_switch_stored(self.es, self.prefix), now
        return self._switch

    def execute(self, run_id: str, index: int) -> tuple[str, float]:
        """Run step ``index`` of a run; returns (outcome, countdown) where outcome 'retry'/'busy' asks for a re-send."""
        current = store.get_versioned(self.es, self.prefix, run_id)
        pb = current.doc["secops"]["playbook"]
        if pb["status"] in store.TERMINAL:
            return "finished", 0.0
        try:
            book = self.book(pb["name"])
        except LookupError as exc:
            self._finish(run_id, "failed", str(exc))
            return "failed", 0.0
        if index >= len(book.steps) or index != pb["current"]:
            return "stale", 0.0
        step, rec = book.steps[index], pb["steps"][index]
        if rec["status"] in ("done", "skipped", "failed"):
            self._advance(run_id, index, book)  # redelivered after it finished: make sure the next one is on its way
            return "already-done", 0.0
        if self.kill_switch():
            self._finish(run_id, "halted", "kill switch on: no new steps")
            store.audit(self.es, self.prefix, "playbook.halted", f"{run_id}/{step.name}", "failure",
                        actor=SERVICE_ACTOR, run_id=run_id, details={"reason": "kill switch", "step": step.name})
            return "halted", 0.0
        needs_alert = ACTIONS[step.action].uses_alert or any(c.field.startswith("alert.") for c in step.when)
        alert = self._alert_or_empty(pb["alert_id"]) if needs_alert else {}
        context = {"alert": alert, "steps": {s["name"]: _loads(s.get("result")) for s in pb["steps"]}}
        if step.when and not all(c.holds(context) for c in step.when):
            self._complete(run_id, index, book, "skipped", {"reason": "conditions not met"}, None, "", current)
            return "skipped", 0.0
        if step.approval and not pb["dry_run"]:
            approval = pb.get("approval") or {}
            if approval.get("step") != step.name or approval.get("status") != "approved":
                self._await_approval(run_id, step)
                return "waiting", 0.0
        holder = uuid.uuid4().hex
        claimed, wait, current = self._claim(run_id, index, step.timeout_seconds, holder, current)
        if not claimed:
            return ("busy", wait) if wait > 0 else ("already-done", 0.0)
        return self._act(run_id, index, book, alert, holder, current)

    def _alert_or_empty(self, alert_id: str) -> dict[str, Any]:
        try:
            return self.alert(alert_id)
        except LookupError:
            return {}

    def _claim(self, run_id: str, index: int, timeout: int, holder: str,
               known: store.Versioned) -> tuple[bool, float, store.Versioned]:
        now = utcnow()
        verdict: dict[str, Any] = {}

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            rec = doc["secops"]["playbook"]["steps"][index]
            if rec["status"] in ("done", "skipped", "failed"):
                verdict.update(ok=False, wait=0.0)
                return None
            lease = rec.get("lease_until")
            if rec["status"] == "running" and lease and parse_time(lease) > now:
                verdict.update(ok=False, wait=min((parse_time(lease) - now).total_seconds() + 0.5, MAX_COUNTDOWN))
                return None
            verdict.update(ok=True, wait=0.0, fresh=rec["status"] in ("pending", "retrying"))
            rec.update(status="running", holder=holder, started=rec.get("started") or iso(now),
                       lease_until=iso(now + timedelta(seconds=timeout + LEASE_MARGIN)),
                       attempts=rec.get("attempts", 0) + 1)
            doc["secops"]["playbook"]["step"] = rec["name"]
            return doc

        current = store.update_run(self.es, self.prefix, run_id, change, known)
        return verdict["ok"], verdict["wait"], current

    def _act(self, run_id: str, index: int, book: Playbook, alert: dict[str, Any], holder: str,
             current: store.Versioned) -> tuple[str, float]:
        pb = current.doc["secops"]["playbook"]
        step, rec = book.steps[index], pb["steps"][index]
        action = ACTIONS[step.action]
        params = action.Params(**_loads(rec["params"]))
        ctx = ActionContext(self.settings, self.es, run_id, step.name, rec["action_key"], alert,
                            float(step.timeout_seconds))
        dry = pb["dry_run"] and not action.read_only
        inputs = {"step": step.name, "action": step.action, "params": params.model_dump(mode="json"),
                  "action_key": rec["action_key"], "attempt": rec["attempts"], "dry_run": pb["dry_run"]}
        try:
            if not dry and self.limiter and rec["attempts"] == 1:
                self.limiter.take(step.action, self.settings.playbooks.rate_limits.get(step.action))
            result = action.plan(params, ctx) if dry else action.run(params, ctx)
        except Exception as exc:
            return self._failed(run_id, index, book, inputs, exc, current)
        store.audit(self.es, self.prefix, "playbook.step.planned" if dry else "playbook.step.acted",
                    f"{run_id}/{step.name}", "success", actor=SERVICE_ACTOR, run_id=run_id,
                    details={**inputs, "result": result, "holder": holder})
        self._complete(run_id, index, book, "done", result, None, holder, current)
        return "done", 0.0

    def _failed(self, run_id: str, index: int, book: Playbook, inputs: dict[str, Any], exc: Exception,
                current: store.Versioned) -> tuple[str, float]:
        step = book.steps[index]
        transient = isinstance(exc, ActionError) and not isinstance(exc, PermanentError)
        if not isinstance(exc, ActionError):
            transient = type(exc).__name__ in ("SoftTimeLimitExceeded", "TimeoutError", "ConnectionError")
        message = f"{type(exc).__name__}: {exc}"[:1000]
        retry = transient and inputs["attempt"] <= step.retries
        store.audit(self.es, self.prefix, "playbook.step.failed", f"{run_id}/{step.name}", "failure",
                    actor=SERVICE_ACTOR, run_id=run_id, details={**inputs, "error": message, "will_retry": retry})
        if retry:
            countdown = min(step.backoff_seconds * 2 ** (inputs["attempt"] - 1), MAX_COUNTDOWN)

            def mark(doc: dict[str, Any]) -> dict[str, Any]:
                doc["secops"]["playbook"]["steps"][index].update(
                    status="retrying", error=message, retry_at=iso(utcnow() + timedelta(seconds=countdown)),
                    lease_until=None)
                return doc

            store.update_run(self.es, self.prefix, run_id, mark, current)
            return "retry", countdown
        self._complete(run_id, index, book, "failed", None, message, "", current)
        return "failed", 0.0

    def _complete(self, run_id: str, index: int, book: Playbook, status: str, result: Any, error: str | None,
                  holder: str, known: store.Versioned | None = None) -> None:
        """Record a step's end and move the run on (next step, end, abort or revert per on_failure)."""
        step = book.steps[index]
        now = iso()
        policy = step.on_failure if status == "failed" else "continue"
        last = index + 1 >= len(book.steps)

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            pb = doc["secops"]["playbook"]
            rec = pb["steps"][index]
            if rec["status"] in ("done", "skipped", "failed") or (holder and rec.get("holder") != holder):
                return None  # someone else finished or took over this step
            rec.update(status=status, finished=now, result=store.compact(result) if result is not None else None,
                       error=error, lease_until=None)
            if policy != "continue":
                pb.update(status="failed", error=f"step {step.name} failed: {error}", finished=now)
                for later in pb["steps"][index + 1:]:
                    later["status"] = "not_run"
            elif last:
                failed = [s["name"] for s in pb["steps"] if s["status"] == "failed"]
                pb.update(status="completed", finished=now, error=f"failed steps: {failed}" if failed else None)
            else:
                pb.update(current=index + 1, step=book.steps[index + 1].name)
                pb["steps"][index + 1]["dispatched_at"] = now
            return doc

        updated = store.update_run(self.es, self.prefix, run_id, change, known)
        if not updated.changed:
            return
        pb = updated.doc["secops"]["playbook"]
        if policy == "revert":
            self._revert(run_id, index, book)
        if pb["status"] in store.TERMINAL:
            store.audit(self.es, self.prefix, f"playbook.{pb['status']}", run_id,
                        "success" if pb["status"] == "completed" else "failure", actor=SERVICE_ACTOR, run_id=run_id,
                        details={"playbook": book.name, "error": pb.get("error")})
        else:
            self.dispatch(run_id, index + 1, timeout=book.steps[index + 1].timeout_seconds)

    def _advance(self, run_id: str, index: int, book: Playbook) -> None:
        run = store.get_run(self.es, self.prefix, run_id)
        pb = run["secops"]["playbook"]
        nxt = index + 1
        if pb["status"] != "running" or pb["current"] != nxt or nxt >= len(book.steps):
            return
        rec = pb["steps"][nxt]
        stalled = not rec.get("dispatched_at") or \
            (utcnow() - parse_time(rec["dispatched_at"])).total_seconds() > self.settings.playbooks.stall_seconds
        if rec["status"] == "pending" and stalled:  # a fresh dispatch is in the queue already: no duplicate
            self.dispatch(run_id, nxt, timeout=book.steps[nxt].timeout_seconds)

    def _revert(self, run_id: str, failed_index: int, book: Playbook) -> None:
        pb = store.get_run(self.es, self.prefix, run_id)["secops"]["playbook"]
        for i in range(failed_index - 1, -1, -1):
            rec, step = pb["steps"][i], book.steps[i]
            action = ACTIONS[step.action]
            if rec["status"] != "done" or not action.reversible or pb["dry_run"]:
                continue
            ctx = ActionContext(self.settings, self.es, run_id, step.name, rec["action_key"], {},
                                float(step.timeout_seconds))
            try:
                result, outcome = action.revert(action.Params(**_loads(rec["params"])), ctx), "success"
            except Exception as exc:
                result, outcome = {"error": f"{type(exc).__name__}: {exc}"}, "failure"
            store.audit(self.es, self.prefix, "playbook.step.reverted", f"{run_id}/{step.name}", outcome,
                        actor=SERVICE_ACTOR, run_id=run_id, details={"step": step.name, "result": result})

    def _finish(self, run_id: str, status: str, error: str) -> None:
        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            pb = doc["secops"]["playbook"]
            if pb["status"] in store.TERMINAL:
                return None
            pb.update(status=status, error=error, finished=iso())
            return doc

        store.update_run(self.es, self.prefix, run_id, change)

    # -- approvals -----------------------------------------------------------------------------
    def _await_approval(self, run_id: str, step: Any) -> None:
        timeout = step.approval_timeout_seconds or self.settings.playbooks.approval_timeout_seconds
        deadline = iso(utcnow() + timedelta(seconds=timeout))

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            pb = doc["secops"]["playbook"]
            if pb["status"] != "running" or (pb.get("approval") or {}).get("step") == step.name:
                return None
            pb.update(status="waiting_approval", approval={"step": step.name, "status": "waiting",
                                                           "deadline": deadline})
            pb["steps"][pb["current"]]["status"] = "waiting_approval"
            return doc

        if store.update_run(self.es, self.prefix, run_id, change).changed:
            store.audit(self.es, self.prefix, "playbook.approval.requested", f"{run_id}/{step.name}", "unknown",
                        actor=SERVICE_ACTOR, run_id=run_id, details={"step": step.name, "deadline": deadline})

    def decide(self, run_id: str, approve: bool, actor: str, reason: str = "") -> dict[str, Any]:
        """Approve or deny the step a run waits on; raises ValueError when it waits on nothing."""
        now = iso()
        decision = "approved" if approve else "denied"

        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            pb = doc["secops"]["playbook"]
            if pb["status"] != "waiting_approval":
                raise ValueError(f"run {run_id} is {pb['status']}, not waiting for an approval")
            pb["approval"].update(status=decision, by=actor, at=now)
            rec = pb["steps"][pb["current"]]
            if approve:
                pb["status"] = "running"
                rec.update(status="pending", dispatched_at=now)
            else:
                pb.update(status="denied", finished=now, error=f"denied by {actor}: {reason}".strip(": "))
                for later in pb["steps"][pb["current"]:]:
                    later["status"] = "not_run"
            return doc

        doc = store.update_run(self.es, self.prefix, run_id, change).doc
        pb = doc["secops"]["playbook"]
        store.audit(self.es, self.prefix, f"playbook.{'approve' if approve else 'deny'}",
                    f"{run_id}/{pb['approval']['step']}", "success", actor=actor, run_id=run_id,
                    details={"step": pb["approval"]["step"], "reason": reason})
        if approve:
            self.dispatch(run_id, pb["current"])
        return doc

    # -- housekeeping --------------------------------------------------------------------------
    def housekeeping(self, recover: bool = False) -> dict[str, int]:
        """Expire approvals, re-dispatch stalled steps, book-keep expired blocks.

        ``recover`` (worker start): also re-dispatch steps whose lease is still live, delayed until it
        ends, because the worker that held them may have died with the message.
        """
        counts = {"approvals_expired": 0, "redispatched": 0, "blocks_expired": 0}
        now = utcnow()
        for run in store.runs_with_status(self.es, self.prefix, ["waiting_approval"]):
            pb = run["secops"]["playbook"]
            deadline = (pb.get("approval") or {}).get("deadline")
            if deadline and parse_time(deadline) <= now:
                counts["approvals_expired"] += self._expire_approval(pb["run_id"])
        stall = timedelta(seconds=self.settings.playbooks.stall_seconds)
        for run in store.runs_with_status(self.es, self.prefix, ["running"]):
            pb = run["secops"]["playbook"]
            if pb["current"] >= len(pb["steps"]):
                continue
            rec = pb["steps"][pb["current"]]
            due = _due(rec, now, stall, recover)
            if due is not None:
                self.dispatch(pb["run_id"], pb["current"], countdown=due)
                counts["redispatched"] += 1
        for block_id, src in store.due_blocks(self.es, self.prefix):
            store.mark_block(self.es, self.prefix, block_id, "expired")
            store.audit(self.es, self.prefix, "playbook.block.expired", src["secops"]["state"].get("address", "?"),
                        "success", actor=SERVICE_ACTOR, run_id=_loads(src["secops"]["state"]["value"]).get("run_id"),
                        details={"block": src["secops"]["state"]})
            counts["blocks_expired"] += 1
        if self.settings.playbooks.block_backend == "iptables":
            Blocker(self.settings.playbooks).expire_iptables()
        return counts

    def _expire_approval(self, run_id: str) -> int:
        def change(doc: dict[str, Any]) -> dict[str, Any] | None:
            pb = doc["secops"]["playbook"]
            if pb["status"] != "waiting_approval":
                return None
            pb["approval"]["status"] = "expired"
            pb.update(status="expired", finished=iso(), error="approval timed out")
            for later in pb["steps"][pb["current"]:]:
                later["status"] = "not_run"
            return doc

        updated = store.update_run(self.es, self.prefix, run_id, change)
        if updated.changed:
            store.audit(self.es, self.prefix, "playbook.approval.expired", run_id, "failure", actor=SERVICE_ACTOR,
                        run_id=run_id, details={"step": updated.doc["secops"]["playbook"]["approval"]["step"]})
        return int(updated.changed)


def _due(rec: dict[str, Any], now: Any, stall: timedelta, recover: bool) -> float | None:
    """Countdown for re-dispatching a step that may have lost its message, or None if it is fine."""
    status = rec["status"]
    if status == "running" and rec.get("lease_until"):
        left = (parse_time(rec["lease_until"]) - now).total_seconds()
        return 0.0 if left <= 0 else (left + 0.5 if recover else None)
    since = rec.get("retry_at") if status == "retrying" else rec.get("dispatched_at")
    if status in ("pending", "retrying") and since:
        late = now - parse_time(since)
        return 0.0 if (recover and late.total_seconds() > 0) or late > stall else None
    return None


def _loads(text: str | None) -> Any:
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return {}
