"""Playbook runs: the ``secops.playbook_run`` document as typed records.

A run crosses process boundaries (CLI, console, every worker that executes one of its steps) only as
this document in Elasticsearch; :class:`PlaybookRun` is the one place that reads and writes its shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

RUN_DATASET = "secops.playbook_run"


class RunStatus(StrEnum):
    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    REFUSED = "refused"
    DENIED = "denied"
    EXPIRED = "expired"
    HALTED = "halted"
    PLANNED = "planned"

    @property
    def terminal(self) -> bool:
        return self not in (RunStatus.RUNNING, RunStatus.WAITING_APPROVAL)


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    WAITING_APPROVAL = "waiting_approval"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    NOT_RUN = "not_run"

    @property
    def finished(self) -> bool:
        """The step ran to an end: it is never acted again."""
        return self in (StepStatus.DONE, StepStatus.SKIPPED, StepStatus.FAILED)


class StepOutcome(StrEnum):
    """What one execution of a step did (the ``playbooks.execute_step`` task's return value)."""

    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    RETRY = "retry"
    BUSY = "busy"
    WAITING = "waiting"
    HALTED = "halted"
    FINISHED = "finished"
    STALE = "stale"
    ALREADY_DONE = "already-done"

    @property
    def resend(self) -> bool:
        """The step must be sent again after the countdown."""
        return self in (StepOutcome.RETRY, StepOutcome.BUSY)


class ApprovalStatus(StrEnum):
    WAITING = "waiting"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@dataclass
class StepRecord:
    """One step of a run: its claim (action key, lease, holder), attempts and result."""

    name: str
    action: str
    action_key: str
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    params: str | None = None  # compact JSON of the resolved parameters
    dispatched_at: str | None = None
    holder: str | None = None
    started: str | None = None
    lease_until: str | None = None
    retry_at: str | None = None
    finished: str | None = None
    result: str | None = None  # compact JSON
    error: str | None = None  # the raw English text, for operators
    error_message: dict[str, Any] | None = None  # the same as a message ({id, params}), rendered per reader

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> StepRecord:
        return cls(name=doc["name"], action=doc["action"], action_key=doc["action_key"],
                   status=StepStatus(doc["status"]), attempts=int(doc.get("attempts") or 0),
                   params=doc.get("params"), dispatched_at=doc.get("dispatched_at"), holder=doc.get("holder"),
                   started=doc.get("started"), lease_until=doc.get("lease_until"), retry_at=doc.get("retry_at"),
                   finished=doc.get("finished"), result=doc.get("result"), error=doc.get("error"),
                   error_message=doc.get("error_message"))

    def to_doc(self) -> dict[str, Any]:
        return _drop_none({"name": self.name, "action": self.action, "status": str(self.status),
                           "attempts": self.attempts, "action_key": self.action_key, "params": self.params,
                           "dispatched_at": self.dispatched_at, "holder": self.holder, "started": self.started,
                           "lease_until": self.lease_until, "retry_at": self.retry_at, "finished": self.finished,
                           "result": self.result, "error": self.error, "error_message": self.error_message})


@dataclass
class Approval:
    """The approval a run waits on (or got): which step, until when, who decided."""

    step: str
    status: ApprovalStatus = ApprovalStatus.WAITING
    deadline: str | None = None
    by: str | None = None
    at: str | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Approval:
        return cls(step=doc["step"], status=ApprovalStatus(doc["status"]), deadline=doc.get("deadline"),
                   by=doc.get("by"), at=doc.get("at"))

    def to_doc(self) -> dict[str, Any]:
        return _drop_none({"step": self.step, "status": str(self.status), "deadline": self.deadline,
                           "by": self.by, "at": self.at})


@dataclass
class PlaybookRun:
    """One run of a playbook on an alert (``secops.playbook_run``)."""

    run_id: str
    name: str
    alert_id: str
    dry_run: bool
    status: RunStatus
    created: str
    updated: str
    actor: str
    steps: list[StepRecord]
    current: int = 0
    step: str | None = None  # name of the current step
    error: str | None = None  # the raw English text, for operators
    error_message: dict[str, Any] | None = None  # the same as a message ({id, params}), rendered per reader
    finished: str | None = None
    approval: Approval | None = None
    rule_id: str | None = None
    rule_name: str | None = None
    source_ip: str | None = None
    destination_ip: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields of the document this version does not know

    @property
    def current_step(self) -> StepRecord:
        return self.steps[self.current]

    def steps_from(self, index: int) -> list[StepRecord]:
        return self.steps[index:]

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> PlaybookRun:
        pb = dict(doc["secops"]["playbook"])
        approval = pb.pop("approval", None)
        rule = doc.get("rule") or {}
        known = {"run_id", "name", "alert_id", "dry_run", "status", "created", "updated", "actor", "steps",
                 "current", "step", "error", "error_message", "finished"}
        return cls(run_id=pb["run_id"], name=pb["name"], alert_id=pb["alert_id"], dry_run=bool(pb["dry_run"]),
                   status=RunStatus(pb["status"]), created=pb["created"], updated=pb.get("updated") or pb["created"],
                   actor=pb.get("actor") or "", steps=[StepRecord.from_doc(s) for s in pb["steps"]],
                   current=int(pb.get("current") or 0), step=pb.get("step"), error=pb.get("error"),
                   error_message=pb.get("error_message"), finished=pb.get("finished"),
                   approval=Approval.from_doc(approval) if approval else None,
                   rule_id=rule.get("id"), rule_name=rule.get("name"),
                   source_ip=(doc.get("source") or {}).get("ip"),
                   destination_ip=(doc.get("destination") or {}).get("ip"),
                   extra={k: v for k, v in pb.items() if k not in known})

    def to_doc(self) -> dict[str, Any]:
        pb = _drop_none({"run_id": self.run_id, "name": self.name, "alert_id": self.alert_id, "dry_run": self.dry_run,
                         "status": str(self.status), "current": self.current, "step": self.step,
                         "created": self.created, "updated": self.updated, "actor": self.actor,
                         "error": self.error, "error_message": self.error_message, "finished": self.finished,
                         "approval": self.approval.to_doc() if self.approval else None})
        pb.update(self.extra)
        pb["steps"] = [s.to_doc() for s in self.steps]
        doc: dict[str, Any] = {"@timestamp": self.created,
                               "event": {"dataset": RUN_DATASET, "kind": "event", "ingested": self.created},
                               "rule": _drop_none({"id": self.rule_id, "name": self.rule_name}),
                               "secops": {"playbook": pb}}
        if self.source_ip:
            doc["source"] = {"ip": self.source_ip}
        if self.destination_ip:
            doc["destination"] = {"ip": self.destination_ip}
        return doc
