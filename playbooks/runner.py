"""The playbook runner: start a run from an alert, execute one step at a time, approvals, housekeeping.

Celery-free on purpose: ``dispatch(run_id, index, countdown)`` is injected (tasks.py sends the
Celery task; tests and the CLI may pass their own). Every step execution is:

1. stop if the run is over, the kill switch is on, or the step already finished (redelivery);
2. skip if the step's ``when`` conditions do not hold; wait if it needs an approval not yet given;
3. claim the step (its action key) in the run document with a lease; a live lease held by another
   execution defers this one, so a redelivered or re-dispatched step never acts twice concurrently;
4. act (``plan`` in dry-run), audit, record the result, dispatch the next step.

Runs and steps are the typed records of ``secops.contracts.playbook``; ``PlaybookRunStore`` reads and
writes them.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from billiard.exceptions import SoftTimeLimitExceeded
from elastic_transport import ConnectionError as TransportConnectionError
from elasticsearch import Elasticsearch, NotFoundError
from pydantic import ValidationError

from playbooks.actions import ACTIONS
from playbooks.actions.base import ActionContext, ActionError, PermanentError
from playbooks.blocking import Blocker
from playbooks.errors import error_message
from playbooks.model import Playbook, Step, load_all, matching
from playbooks.ratelimit import RateLimiter
from playbooks.store import PlaybookRunStore, Versioned, compact, loads
from playbooks.template import render
from playbooks.values import HostileValue
from secops.config import Settings
from secops.contracts.alert import ALERT_DATASET, AlertRef
from secops.contracts.playbook import (
    Approval,
    ApprovalStatus,
    PlaybookRun,
    RunStatus,
    StepOutcome,
    StepRecord,
    StepStatus,
)
from secops.ecs import doc_id, iso, parse_time, utcnow
from secops.es.store import Store
from secops.i18n import N_, Message, message
from secops.notify import Notifier

log = logging.getLogger(__name__)
KILL_SWITCH_CACHE = 1.0  # seconds a worker may act on a stale kill-switch reading
# Every countdown stays far below the broker's visibility timeout (>= 86400 + 3600 s, secops.celery_app).
MAX_COUNTDOWN = 3600.0
LEASE_MARGIN = 8.0  # > the soft time limit margin (tasks.SOFT_LIMIT_MARGIN)
SERVICE_ACTOR = "playbooks"
# Failures outside ActionError that a retry may cure: the step's time limit, a timeout, a lost connection.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (SoftTimeLimitExceeded, TimeoutError, ConnectionError,
                                                      TransportConnectionError)


class Dispatch(Protocol):
    def __call__(self, run_id: str, index: int, countdown: float = 0.0, timeout: float | None = None) -> None: ...


def transient(exc: BaseException) -> bool:
    """Whether a step that failed with ``exc`` may succeed on a retry."""
    if isinstance(exc, ActionError):
        return not isinstance(exc, PermanentError)
    return isinstance(exc, TRANSIENT_ERRORS)


class RefusedInput(ValueError):
    """Alert values that failed validation; the run is refused and nothing acts. ``message`` is the reason as a
    translatable message (the detail inside it, from the validator, stays English)."""

    def __init__(self, text: str, why: Message) -> None:
        super().__init__(text)
        self.message = why


def set_error(run: PlaybookRun, why: Message, raw: str | None = None) -> None:
    """A run's error: the raw English text for operators (``raw``, else the message in English) and the same
    reason as a message ({id, params}) the console renders in the reader's language."""
    run.error, run.error_message = raw if raw is not None else why.english(), why.as_doc()


@dataclass
class Runner:
    settings: Settings
    es: Elasticsearch
    dispatch: Dispatch
    limiter: RateLimiter | None = None
    _switch: bool = False
    _switch_read: float = -1e9
    runs: PlaybookRunStore = field(init=False)

    def __post_init__(self) -> None:
        self.runs = PlaybookRunStore(Store(self.es, self.prefix))

    @property
    def prefix(self) -> str:
        return self.settings.elasticsearch.index_prefix

    def _audit(self, action: str, obj: str, outcome: str, run_id: str | None, details: dict[str, Any],
               actor: str = SERVICE_ACTOR) -> None:
        self.runs.audit(action, obj, outcome, actor=actor, run_id=run_id, details=details)

    # -- inputs --------------------------------------------------------------------------------
    def alert(self, alert_id: str) -> AlertRef:
        try:
            doc = self.es.get(index=self.runs.store.index(ALERT_DATASET), id=alert_id)["_source"]
        except NotFoundError:
            raise LookupError(f"no alert {alert_id!r}") from None
        return AlertRef.from_doc(alert_id, doc)

    def resolve(self, book: Playbook, alert: AlertRef, run_id: str) -> list[dict[str, Any]]:
        """Render and type-check every step's parameters up front; RefusedInput names the field and reason."""
        context = {"alert": alert.fields, "run": {"id": run_id}, "playbook": {"name": book.name}}
        resolved = []
        for step in book.steps:
            try:
                raw = render(step.params, context, self.settings.playbooks.max_value_length)
                params = ACTIONS[step.action].Params(**raw)
            except HostileValue as exc:
                why = message(N_("step %(step)s refused the alert's values: %(error)s"), step=step.name, error=str(exc))
                raise RefusedInput(f"step {step.name}: {exc}", why) from None
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(map(str, err["loc"]))
                raise RefusedInput(f"step {step.name}: parameter {where}: {err['msg']}", message(
                    N_("step %(step)s: parameter %(parameter)s is invalid: %(error)s"), step=step.name,
                    parameter=where, error=err["msg"])) from None
            resolved.append(params.model_dump(mode="json"))
        return resolved

    # -- starting runs -------------------------------------------------------------------------
    def on_alert(self, alert_id: str) -> list[str]:
        """Start every enabled playbook whose trigger matches the alert (once per playbook and alert)."""
        alert = self.alert(alert_id)
        books, errors = load_all(self.settings, strict=False)
        for err in errors:
            log.error("playbook definition error: %s", err)
        return [self.start(book, alert).run_id for book in matching(books.values(), alert.fields)]

    def start(self, book: Playbook, alert: AlertRef, *, dry_run: bool | None = None, actor: str = SERVICE_ACTOR,
              nonce: str = "") -> PlaybookRun:
        dry = bool(dry_run) or book.dry_run or self.settings.playbooks.dry_run
        run_id = doc_id("playbook_run", book.name, alert.id, nonce)[:24]
        now = iso()
        steps = [StepRecord(name=s.name, action=s.action, action_key=doc_id("action", run_id, i, s.name)[:24])
                 for i, s in enumerate(book.steps)]
        run = PlaybookRun(run_id=run_id, name=book.name, alert_id=alert.id, dry_run=dry, status=RunStatus.RUNNING,
                          created=now, updated=now, actor=actor, steps=steps, step=book.steps[0].name,
                          rule_id=alert.rule_id, rule_name=alert.rule_name, source_ip=alert.source_ip,
                          destination_ip=alert.destination_ip)
        try:
            params = self.resolve(book, alert, run_id)
        except RefusedInput as exc:
            run.status, run.finished = RunStatus.REFUSED, now
            set_error(run, exc.message, str(exc))
            for rec in steps:
                rec.status = StepStatus.NOT_RUN
            if self.runs.create(run):
                self._audit("playbook.refused", run_id, "failure", run_id, actor=actor,
                            details={"playbook": book.name, "alert_id": alert.id, "error": str(exc)})
            return run
        for rec, p in zip(steps, params, strict=True):
            rec.params = compact(p)
        steps[0].dispatched_at = now
        if self.runs.create(run):
            self._audit("playbook.started", run_id, "success", run_id, actor=actor,
                        details={"playbook": book.name, "alert_id": alert.id, "dry_run": dry,
                                 "steps": [s.name for s in book.steps]})
            self.dispatch(run_id, 0, timeout=book.steps[0].timeout_seconds)
            return run
        return self.runs.get(run_id)

    def plan(self, book: Playbook, alert: AlertRef) -> list[dict[str, Any]]:
        """The full plan of a run without running it: each step's parameters and what the action would do."""
        params = self.resolve(book, alert, "dry-run")
        out = []
        for step, p in zip(book.steps, params, strict=True):
            action = ACTIONS[step.action]
            ctx = ActionContext(self.settings, self.es, "dry-run", step.name, "dry-run", dict(alert.fields),
                                step.timeout_seconds)
            try:
                what = action.plan(action.Params(**p), ctx)
            except ActionError as exc:
                why = error_message(exc)
                what = {"error": str(exc), "error_message": why.as_doc(),
                        "summary": message(N_("cannot plan this step: %(error)s"), error=why).as_doc()}
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
            self._switch, self._switch_read = self.runs.kill_switch_stored(), now
        return self._switch

    def execute(self, run_id: str, index: int) -> tuple[StepOutcome, float]:
        """Run step ``index`` of a run; returns (outcome, countdown) where a ``resend`` outcome asks for a re-send."""
        current = self.runs.get_versioned(run_id)
        run = current.run
        if run.status.terminal:
            return StepOutcome.FINISHED, 0.0
        try:
            book = self.book(run.name)
        except LookupError as exc:
            self._finish(run_id, RunStatus.FAILED, message(N_("playbook %(name)s is no longer defined"),
                                                           name=run.name), str(exc))
            return StepOutcome.FAILED, 0.0
        if index >= len(book.steps) or index != run.current:
            return StepOutcome.STALE, 0.0
        step, rec = book.steps[index], run.steps[index]
        if rec.status.finished:
            self._advance(run_id, index, book)  # redelivered after it finished: make sure the next one is on its way
            return StepOutcome.ALREADY_DONE, 0.0
        if self.kill_switch():
            self._finish(run_id, RunStatus.HALTED, message(N_("kill switch on: no new steps")))
            self._audit("playbook.halted", f"{run_id}/{step.name}", "failure", run_id,
                        details={"reason": "kill switch", "step": step.name})
            return StepOutcome.HALTED, 0.0
        needs_alert = ACTIONS[step.action].uses_alert or any(c.field.startswith("alert.") for c in step.when)
        alert = self._alert_or_missing(run.alert_id) if needs_alert else AlertRef.missing(run.alert_id)
        context = {"alert": alert.fields, "steps": {s.name: loads(s.result) for s in run.steps}}
        if step.when and not all(c.holds(context) for c in step.when):
            self._complete(run_id, index, book, StepStatus.SKIPPED, {"reason": "conditions not met"}, None, "",
                           current)
            return StepOutcome.SKIPPED, 0.0
        if step.approval and not run.dry_run:
            approval = run.approval
            if approval is None or approval.step != step.name or approval.status is not ApprovalStatus.APPROVED:
                self._await_approval(run_id, step)
                return StepOutcome.WAITING, 0.0
        holder = uuid.uuid4().hex
        claimed, wait, current = self._claim(run_id, index, step.timeout_seconds, holder, current)
        if not claimed:
            return (StepOutcome.BUSY, wait) if wait > 0 else (StepOutcome.ALREADY_DONE, 0.0)
        return self._act(run_id, index, book, alert, holder, current)

    def _alert_or_missing(self, alert_id: str) -> AlertRef:
        try:
            return self.alert(alert_id)
        except LookupError:
            return AlertRef.missing(alert_id)

    def _claim(self, run_id: str, index: int, timeout: int, holder: str,
               known: Versioned) -> tuple[bool, float, Versioned]:
        now = utcnow()
        wait: float | None = None  # None: claimed

        def change(run: PlaybookRun) -> PlaybookRun | None:
            nonlocal wait
            rec = run.steps[index]
            if rec.status.finished:
                wait = 0.0
                return None
            if rec.status is StepStatus.RUNNING and rec.lease_until and parse_time(rec.lease_until) > now:
                wait = min((parse_time(rec.lease_until) - now).total_seconds() + 0.5, MAX_COUNTDOWN)
                return None
            wait = None
            rec.status, rec.holder, rec.started = StepStatus.RUNNING, holder, rec.started or iso(now)
            rec.lease_until = iso(now + timedelta(seconds=timeout + LEASE_MARGIN))
            rec.attempts += 1
            run.step = rec.name
            return run

        current = self.runs.update(run_id, change, known)
        return wait is None, wait or 0.0, current

    def _act(self, run_id: str, index: int, book: Playbook, alert: AlertRef, holder: str,
             current: Versioned) -> tuple[StepOutcome, float]:
        run = current.run
        step, rec = book.steps[index], run.steps[index]
        action = ACTIONS[step.action]
        params = action.Params(**loads(rec.params))
        ctx = ActionContext(self.settings, self.es, run_id, step.name, rec.action_key, dict(alert.fields),
                            float(step.timeout_seconds))
        dry = run.dry_run and not action.read_only
        inputs = {"step": step.name, "action": step.action, "params": params.model_dump(mode="json"),
                  "action_key": rec.action_key, "attempt": rec.attempts, "dry_run": run.dry_run}
        try:
            if not dry and self.limiter and rec.attempts == 1:
                self.limiter.take(step.action, self.settings.playbooks.rate_limits.get(step.action))
            result = action.plan(params, ctx) if dry else action.run(params, ctx)
        except Exception as exc:
            return self._failed(run_id, index, book, inputs, exc, current)
        self._audit("playbook.step.planned" if dry else "playbook.step.acted", f"{run_id}/{step.name}", "success",
                    run_id, details={**inputs, "result": result, "holder": holder})
        self._complete(run_id, index, book, StepStatus.DONE, result, None, holder, current)
        return StepOutcome.DONE, 0.0

    def _failed(self, run_id: str, index: int, book: Playbook, inputs: dict[str, Any], exc: Exception,
                current: Versioned) -> tuple[StepOutcome, float]:
        step = book.steps[index]
        message = f"{type(exc).__name__}: {exc}"[:1000]
        translatable = error_message(exc).as_doc()
        retry = transient(exc) and inputs["attempt"] <= step.retries
        self._audit("playbook.step.failed", f"{run_id}/{step.name}", "failure", run_id,
                    details={**inputs, "error": message, "will_retry": retry})
        if retry:
            countdown = min(step.backoff_seconds * 2 ** (inputs["attempt"] - 1), MAX_COUNTDOWN)

            def mark(run: PlaybookRun) -> PlaybookRun:
                rec = run.steps[index]
                rec.status, rec.error, rec.lease_until = StepStatus.RETRYING, message, None
                rec.error_message = translatable
                rec.retry_at = iso(utcnow() + timedelta(seconds=countdown))
                return run

            self.runs.update(run_id, mark, current)
            return StepOutcome.RETRY, countdown
        self._complete(run_id, index, book, StepStatus.FAILED, None, message, "", current, translatable)
        return StepOutcome.FAILED, 0.0

    def _complete(self, run_id: str, index: int, book: Playbook, status: StepStatus, result: Any, error: str | None,
                  holder: str, known: Versioned | None = None, error_msg: dict[str, Any] | None = None) -> None:
        """Record a step's end and move the run on (next step, end, abort or revert per on_failure)."""
        step = book.steps[index]
        now = iso()
        policy = step.on_failure if status is StepStatus.FAILED else "continue"
        last = index + 1 >= len(book.steps)

        def change(run: PlaybookRun) -> PlaybookRun | None:
            rec = run.steps[index]
            if rec.status.finished or (holder and rec.holder != holder):
                return None  # someone else finished or took over this step
            rec.status, rec.finished, rec.error, rec.lease_until = status, now, error, None
            rec.error_message = error_msg
            rec.result = compact(result) if result is not None else None
            if policy != "continue":
                run.status, run.finished = RunStatus.FAILED, now
                set_error(run, message(N_("step %(step)s failed: %(error)s"), step=step.name,
                                       error=error_msg if error_msg is not None else error),
                          f"step {step.name} failed: {error}")
                for later in run.steps_from(index + 1):
                    later.status = StepStatus.NOT_RUN
            elif last:
                failed = [s.name for s in run.steps if s.status is StepStatus.FAILED]
                run.status, run.finished = RunStatus.COMPLETED, now
                if failed:
                    set_error(run, message(N_("failed steps: %(steps)s"), steps=", ".join(failed)),
                              f"failed steps: {failed}")
            else:
                run.current, run.step = index + 1, book.steps[index + 1].name
                run.steps[index + 1].dispatched_at = now
            return run

        updated = self.runs.update(run_id, change, known)
        if not updated.changed:
            return
        run = updated.run
        if policy == "revert":
            self._revert(run_id, index, book)
        if run.status.terminal:
            self._audit(f"playbook.{run.status}", run_id, "success" if run.status is RunStatus.COMPLETED else "failure",
                        run_id, details={"playbook": book.name, "error": run.error})
        else:
            self.dispatch(run_id, index + 1, timeout=book.steps[index + 1].timeout_seconds)

    def _advance(self, run_id: str, index: int, book: Playbook) -> None:
        run = self.runs.get(run_id)
        nxt = index + 1
        if run.status is not RunStatus.RUNNING or run.current != nxt or nxt >= len(book.steps):
            return
        rec = run.steps[nxt]
        stalled = not rec.dispatched_at or \
            (utcnow() - parse_time(rec.dispatched_at)).total_seconds() > self.settings.playbooks.stall_seconds
        if rec.status is StepStatus.PENDING and stalled:  # a fresh dispatch is in the queue already: no duplicate
            self.dispatch(run_id, nxt, timeout=book.steps[nxt].timeout_seconds)

    def _revert(self, run_id: str, failed_index: int, book: Playbook) -> None:
        run = self.runs.get(run_id)
        for i in range(failed_index - 1, -1, -1):
            rec, step = run.steps[i], book.steps[i]
            action = ACTIONS[step.action]
            if rec.status is not StepStatus.DONE or not action.reversible or run.dry_run:
                continue
            ctx = ActionContext(self.settings, self.es, run_id, step.name, rec.action_key, {},
                                float(step.timeout_seconds))
            try:
                result, outcome = action.revert(action.Params(**loads(rec.params)), ctx), "success"
            except Exception as exc:
                result, outcome = {"error": f"{type(exc).__name__}: {exc}"}, "failure"
            self._audit("playbook.step.reverted", f"{run_id}/{step.name}", outcome, run_id,
                        details={"step": step.name, "result": result})

    def _finish(self, run_id: str, status: RunStatus, why: Message, raw: str | None = None) -> None:
        def change(run: PlaybookRun) -> PlaybookRun | None:
            if run.status.terminal:
                return None
            run.status, run.finished = status, iso()
            set_error(run, why, raw)
            return run

        self.runs.update(run_id, change)

    # -- approvals -----------------------------------------------------------------------------
    def _await_approval(self, run_id: str, step: Step) -> None:
        timeout = step.approval_timeout_seconds or self.settings.playbooks.approval_timeout_seconds
        deadline = iso(utcnow() + timedelta(seconds=timeout))

        def change(run: PlaybookRun) -> PlaybookRun | None:
            if run.status is not RunStatus.RUNNING or (run.approval and run.approval.step == step.name):
                return None
            run.status = RunStatus.WAITING_APPROVAL
            run.approval = Approval(step=step.name, status=ApprovalStatus.WAITING, deadline=deadline)
            run.current_step.status = StepStatus.WAITING_APPROVAL
            return run

        updated = self.runs.update(run_id, change)
        if updated.changed:
            self._audit("playbook.approval.requested", f"{run_id}/{step.name}", "unknown", run_id,
                        details={"step": step.name, "deadline": deadline})
            self._announce_approval(updated.run, step, deadline)

    def _announce_approval(self, run: PlaybookRun, step: Step, deadline: str) -> None:
        """Tell the configured targets that a person must decide (secops.notify; never fails the run)."""
        notifier = Notifier.from_settings(self.settings, self.es)
        if notifier is None:
            return
        try:
            severity = self.alert(run.alert_id).severity or "high"
        except LookupError:
            severity = "high"
        notifier.approval_pending(run.run_id, run.name, run.alert_id, step.name, deadline, severity)

    def decide(self, run_id: str, approve: bool, actor: str, reason: str = "") -> PlaybookRun:
        """Approve or deny the step a run waits on; raises ValueError when it waits on nothing."""
        now = iso()
        decision = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED

        def change(run: PlaybookRun) -> PlaybookRun | None:
            if run.status is not RunStatus.WAITING_APPROVAL or run.approval is None:
                raise ValueError(f"run {run_id} is {run.status}, not waiting for an approval")
            run.approval.status, run.approval.by, run.approval.at = decision, actor, now
            rec = run.current_step
            if approve:
                run.status = RunStatus.RUNNING
                rec.status, rec.dispatched_at = StepStatus.PENDING, now
            else:
                run.status, run.finished = RunStatus.DENIED, now
                why = message(N_("denied by %(actor)s: %(reason)s"), actor=actor, reason=reason) if reason \
                    else message(N_("denied by %(actor)s"), actor=actor)
                set_error(run, why, f"denied by {actor}: {reason}".strip(": "))
                for later in run.steps_from(run.current):
                    later.status = StepStatus.NOT_RUN
            return run

        run = self.runs.update(run_id, change).run
        step_name = run.approval.step if run.approval else ""
        self._audit(f"playbook.{'approve' if approve else 'deny'}", f"{run_id}/{step_name}", "success", run_id,
                    actor=actor, details={"step": step_name, "reason": reason})
        if approve:
            self.dispatch(run_id, run.current)
        return run

    # -- housekeeping --------------------------------------------------------------------------
    def housekeeping(self, recover: bool = False) -> dict[str, int]:
        """Expire approvals, re-dispatch stalled steps, book-keep expired blocks.

        ``recover`` (worker start): also re-dispatch steps whose lease is still live, delayed until it
        ends, because the worker that held them may have died with the message.
        """
        counts = {"approvals_expired": 0, "redispatched": 0, "blocks_expired": 0}
        now = utcnow()
        for run in self.runs.with_status([RunStatus.WAITING_APPROVAL]):
            deadline = run.approval.deadline if run.approval else None
            if deadline and parse_time(deadline) <= now:
                counts["approvals_expired"] += self._expire_approval(run.run_id)
        stall = timedelta(seconds=self.settings.playbooks.stall_seconds)
        for run in self.runs.with_status([RunStatus.RUNNING]):
            if run.current >= len(run.steps):
                continue
            due = _due(run.current_step, now, stall, recover)
            if due is not None:
                self.dispatch(run.run_id, run.current, countdown=due)
                counts["redispatched"] += 1
        for block in self.runs.due_blocks():
            self.runs.mark_block(block.id, "expired")
            self._audit("playbook.block.expired", block.address, "success", block.run_id,
                        details={"block": block.state})
            counts["blocks_expired"] += 1
        if self.settings.playbooks.block_backend == "iptables":
            Blocker(self.settings.playbooks).expire_iptables()
        return counts

    def _expire_approval(self, run_id: str) -> int:
        def change(run: PlaybookRun) -> PlaybookRun | None:
            if run.status is not RunStatus.WAITING_APPROVAL or run.approval is None:
                return None
            run.approval.status = ApprovalStatus.EXPIRED
            run.status, run.finished = RunStatus.EXPIRED, iso()
            set_error(run, message(N_("approval timed out")))
            for later in run.steps_from(run.current):
                later.status = StepStatus.NOT_RUN
            return run

        updated = self.runs.update(run_id, change)
        if updated.changed:
            step = updated.run.approval.step if updated.run.approval else ""
            self._audit("playbook.approval.expired", run_id, "failure", run_id, details={"step": step})
        return int(updated.changed)


def _due(rec: StepRecord, now: datetime, stall: timedelta, recover: bool) -> float | None:
    """Countdown for re-dispatching a step that may have lost its message, or None if it is fine."""
    if rec.status is StepStatus.RUNNING and rec.lease_until:
        left = (parse_time(rec.lease_until) - now).total_seconds()
        return 0.0 if left <= 0 else (left + 0.5 if recover else None)
    since = rec.retry_at if rec.status is StepStatus.RETRYING else rec.dispatched_at
    if rec.status in (StepStatus.PENDING, StepStatus.RETRYING) and since:
        late = now - parse_time(since)
        return 0.0 if (recover and late.total_seconds() > 0) or late > stall else None
    return None
