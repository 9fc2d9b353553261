"""Run state, audit documents, the kill switch and block records in Elasticsearch.

Run documents (``secops-playbook_run``) are updated read-modify-write with optimistic concurrency
(``if_seq_no``/``if_primary_term``), so a step claim, an approval and housekeeping never overwrite
each other. The step claim in the run document is the action key: a step marked done is never acted again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from elasticsearch import ConflictError, Elasticsearch, NotFoundError

from secops.audit import audit_doc
from secops.contracts.playbook import RUN_DATASET, PlaybookRun, RunStatus
from secops.ecs import doc_id, iso, utcnow
from secops.es.store import STATE_DATASET, Store

KILL_SWITCH_ID = "playbooks-kill-switch"
MAX_UPDATE_ATTEMPTS = 50
RunChange = Callable[[PlaybookRun], PlaybookRun | None]


class RunNotFound(LookupError):
    pass


def compact(value: Any, limit: int = 4000) -> str:
    """JSON text of a result, cut to what a keyword field keeps."""
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 20] + '..."<truncated>"'


def loads(text: str | None) -> Any:
    """The value of a compact JSON field ({} when empty or unreadable)."""
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return {}


@dataclass
class Versioned:
    """A run with the version it was read or written at (for compare-and-set updates)."""

    run: PlaybookRun
    seq_no: int
    primary_term: int
    changed: bool = False


@dataclass(frozen=True)
class BlockRecord:
    """A block booked by the contain action; housekeeping marks it expired when its TTL passed."""

    id: str
    address: str
    run_id: str | None
    state: dict[str, Any]  # the stored secops.state section, for the audit trail


class PlaybookRunStore:
    """Playbook runs, their audit trail, the kill switch and block records, on one store handle."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.es: Elasticsearch = store.es
        self.run_index = store.index(RUN_DATASET)
        self.state_index = store.state_index

    @classmethod
    def on(cls, es: Elasticsearch, prefix: str) -> PlaybookRunStore:
        return cls(Store(es, prefix))

    # -- runs ------------------------------------------------------------------------------
    def get(self, run_id: str) -> PlaybookRun:
        return self.get_versioned(run_id).run

    def get_versioned(self, run_id: str) -> Versioned:
        try:
            got = self.es.get(index=self.run_index, id=run_id)
        except NotFoundError:
            raise RunNotFound(f"no playbook run {run_id!r}") from None
        return Versioned(PlaybookRun.from_doc(got["_source"]), got["_seq_no"], got["_primary_term"])

    def create(self, run: PlaybookRun) -> bool:
        """Create a run document; False if a run with this id already exists (idempotent trigger)."""
        try:
            self.es.create(index=self.run_index, id=run.run_id, document=run.to_doc())
            return True
        except ConflictError:
            return False

    def update(self, run_id: str, change: RunChange, known: Versioned | None = None) -> Versioned:
        """Apply ``change`` to the run under optimistic concurrency and return the result.

        ``change`` edits the run it is given and returns it, or returns None to leave it unchanged.
        ``known`` (a version just read or written) saves the first read; a conflict falls back to reading.
        """
        for _ in range(MAX_UPDATE_ATTEMPTS):
            current = known or self.get_versioned(run_id)
            known = None
            new = change(PlaybookRun.from_doc(current.run.to_doc()))  # a private copy to edit
            if new is None:
                return current
            new.updated = iso()
            try:
                res = self.es.index(index=self.run_index, id=run_id, document=new.to_doc(),
                                    if_seq_no=current.seq_no, if_primary_term=current.primary_term)
                return Versioned(new, res["_seq_no"], res["_primary_term"], changed=True)
            except ConflictError:
                continue
        raise RuntimeError(f"run {run_id}: too many concurrent updates")

    def _search(self, query: dict[str, Any], size: int, order: str) -> list[PlaybookRun]:
        try:
            res = self.es.search(index=self.run_index, query=query, size=size, sort=[{"@timestamp": order}])
        except NotFoundError:
            return []
        return [PlaybookRun.from_doc(h["_source"]) for h in res["hits"]["hits"]]

    def with_status(self, statuses: list[RunStatus], size: int = 1000) -> list[PlaybookRun]:
        """Runs in any of these states, oldest first."""
        return self._search({"terms": {"secops.playbook.status": [str(s) for s in statuses]}}, size, "asc")

    def recent(self, limit: int = 50, status: str | None = None) -> list[PlaybookRun]:
        """The latest runs, newest first (optionally only those in one state)."""
        query = {"term": {"secops.playbook.status": status}} if status else {"match_all": {}}
        return self._search(query, limit, "desc")

    # -- audit -----------------------------------------------------------------------------
    def audit(self, action: str, obj: str, outcome: str, *, actor: str, run_id: str | None,
              details: dict[str, Any], refresh: bool = False) -> None:
        """One audit document (who, what, when, inputs, result) for a playbook event."""
        doc = audit_doc(action, obj, outcome, actor=actor, run_id=run_id, details=details)
        doc["event"]["category"] = ["process"]
        doc["event"]["ingested"] = doc["@timestamp"]
        source = {k: v for k, v in doc.items() if k != "_id"}
        self.es.index(index=self.store.index("secops.audit", doc["@timestamp"]), id=doc["_id"], document=source,
                      refresh="wait_for" if refresh else False)

    def run_audit(self, run_id: str) -> list[dict[str, Any]]:
        """Audit documents of one run, oldest first."""
        pattern = self.store.pattern("secops.audit")
        self.es.indices.refresh(index=pattern, allow_no_indices=True)
        try:
            res = self.es.search(index=pattern, query={"term": {"secops.audit.run_id": run_id}}, size=1000,
                                 sort=[{"@timestamp": "asc"}])
        except NotFoundError:
            return []
        return [h["_source"] for h in res["hits"]["hits"]]

    # -- kill switch -----------------------------------------------------------------------
    def kill_switch_stored(self) -> bool:
        try:
            src = self.es.get(index=self.state_index, id=KILL_SWITCH_ID)["_source"]
        except NotFoundError:
            return False
        return bool(loads(src["secops"]["state"]["value"]).get("on", False))

    def set_kill_switch(self, on: bool, actor: str) -> None:
        self.es.index(index=self.state_index, id=KILL_SWITCH_ID, refresh="wait_for",
                      document=_state_doc("playbooks.kill_switch", {"on": on, "by": actor}))
        self.audit("playbook.kill_switch", "kill_switch", "success", actor=actor, run_id=None,
                   details={"on": on}, refresh=True)

    # -- blocks ----------------------------------------------------------------------------
    def record_block(self, address: str, ttl: int, run_id: str, backend: str, status: str = "active") -> str:
        """Book-keep a block (housekeeping marks it expired when its TTL passed); returns the expiry time."""
        expires = iso(utcnow() + timedelta(seconds=ttl))
        doc = _state_doc("playbooks.block", {"address": address, "run_id": run_id, "backend": backend},
                         checkpoint=expires, status=status, address=address)
        self.es.index(index=self.state_index, id=doc_id("playbooks.block", address), document=doc)
        return expires

    def due_blocks(self) -> list[BlockRecord]:
        """Active block records whose expiry passed."""
        query = {"bool": {"filter": [{"term": {"secops.state.key": "playbooks.block"}},
                                     {"term": {"secops.state.status": "active"}},
                                     {"range": {"secops.state.checkpoint": {"lte": "now"}}}]}}
        try:
            hits = self.es.search(index=self.state_index, query=query, size=500)["hits"]["hits"]
        except NotFoundError:
            return []
        blocks = []
        for h in hits:
            state = h["_source"]["secops"]["state"]
            blocks.append(BlockRecord(h["_id"], state.get("address", "?"), loads(state["value"]).get("run_id"), state))
        return blocks

    def mark_block(self, block_id: str, status: str) -> None:
        self.es.update(index=self.state_index, id=block_id, doc={"secops": {"state": {"status": status}}})


def _state_doc(key: str, value: Any, **extra: Any) -> dict[str, Any]:
    now = iso()
    return {"@timestamp": now, "event": {"dataset": STATE_DATASET, "kind": "state", "ingested": now},
            "secops": {"state": {"key": key, "value": compact(value), **extra}}}
