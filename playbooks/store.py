"""Run state, audit documents, the kill switch and block records in Elasticsearch.

Run documents (``secops-playbook_run``) are updated read-modify-write with optimistic concurrency
(``if_seq_no``/``if_primary_term``), so a step claim, an approval and housekeeping never overwrite
each other. The step claim in the run document is the action key: a step marked done is never acted again.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from elasticsearch import ConflictError, Elasticsearch, NotFoundError

from secops.audit import audit_doc
from secops.ecs import doc_id, iso, utcnow
from secops.es.templates import index_for

RUN = "secops.playbook_run"
STATE = "secops.state"
KILL_SWITCH_ID = "playbooks-kill-switch"
TERMINAL = {"completed", "failed", "refused", "denied", "expired", "halted", "planned"}


class RunNotFound(LookupError):
    pass


def run_index(prefix: str) -> str:
    return index_for(prefix, RUN)


def state_index(prefix: str) -> str:
    return index_for(prefix, STATE)


def compact(value: Any, limit: int = 4000) -> str:
    """JSON text of a result, cut to what a keyword field keeps."""
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 20] + '..."<truncated>"'


def get_run(es: Elasticsearch, prefix: str, run_id: str) -> dict[str, Any]:
    try:
        return es.get(index=run_index(prefix), id=run_id)["_source"]
    except NotFoundError:
        raise RunNotFound(f"no playbook run {run_id!r}") from None


def create_run(es: Elasticsearch, prefix: str, doc: dict[str, Any]) -> bool:
    """Create a run document; False if a run with this id already exists (idempotent trigger)."""
    try:
        es.create(index=run_index(prefix), id=doc["secops"]["playbook"]["run_id"], document=doc)
        return True
    except ConflictError:
        return False


@dataclass
class Versioned:
    """A run document with the version it was read or written at (for compare-and-set updates)."""

    doc: dict[str, Any]
    seq_no: int
    primary_term: int
    changed: bool = False


def get_versioned(es: Elasticsearch, prefix: str, run_id: str) -> Versioned:
    try:
        got = es.get(index=run_index(prefix), id=run_id)
    except NotFoundError:
        raise RunNotFound(f"no playbook run {run_id!r}") from None
    return Versioned(got["_source"], got["_seq_no"], got["_primary_term"])


def update_run(es: Elasticsearch, prefix: str, run_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None],
               known: Versioned | None = None) -> Versioned:
    """Apply ``change`` to the run under optimistic concurrency and return the result.

    ``change`` edits the document in place and returns it, or returns None to leave it unchanged.
    ``known`` (a version just read or written) saves the first read; a conflict falls back to reading.
    """
    index = run_index(prefix)
    for _ in range(50):
        current = known or get_versioned(es, prefix, run_id)
        known = None
        new = change(copy.deepcopy(current.doc))
        if new is None:
            return current
        new["secops"]["playbook"]["updated"] = iso()
        try:
            res = es.index(index=index, id=run_id, document=new, if_seq_no=current.seq_no,
                           if_primary_term=current.primary_term)
            return Versioned(new, res["_seq_no"], res["_primary_term"], changed=True)
        except ConflictError:
            continue
    raise RuntimeError(f"run {run_id}: too many concurrent updates")


def audit(es: Elasticsearch, prefix: str, action: str, obj: str, outcome: str, *, actor: str, run_id: str | None,
          details: dict[str, Any], refresh: bool = False) -> None:
    """One audit document (who, what, when, inputs, result) for a playbook event."""
    doc = audit_doc(action, obj, outcome, actor=actor, run_id=run_id, details=details)
    doc["event"]["category"] = ["process"]
    doc["event"]["ingested"] = doc["@timestamp"]
    source = {k: v for k, v in doc.items() if k != "_id"}
    es.index(index=index_for(prefix, "secops.audit", doc["@timestamp"]), id=doc["_id"], document=source,
             refresh="wait_for" if refresh else False)


def _state_doc(key: str, value: Any, **extra: Any) -> dict[str, Any]:
    now = iso()
    return {"@timestamp": now, "event": {"dataset": STATE, "kind": "state", "ingested": now},
            "secops": {"state": {"key": key, "value": compact(value), **extra}}}


def kill_switch_stored(es: Elasticsearch, prefix: str) -> bool:
    try:
        src = es.get(index=state_index(prefix), id=KILL_SWITCH_ID)["_source"]
    except NotFoundError:
        return False
    return json.loads(src["secops"]["state"]["value"]).get("on", False)


def set_kill_switch(es: Elasticsearch, prefix: str, on: bool, actor: str) -> None:
    es.index(index=state_index(prefix), id=KILL_SWITCH_ID, refresh="wait_for",
             document=_state_doc("playbooks.kill_switch", {"on": on, "by": actor}))
    audit(es, prefix, "playbook.kill_switch", "kill_switch", "success", actor=actor, run_id=None,
          details={"on": on}, refresh=True)


def record_block(es: Elasticsearch, prefix: str, address: str, ttl: int, run_id: str, backend: str,
                 status: str = "active") -> str:
    """Book-keep a block (housekeeping marks it expired when its TTL passed); returns the expiry time."""
    expires = iso(utcnow() + timedelta(seconds=ttl))
    doc = _state_doc("playbooks.block", {"address": address, "run_id": run_id, "backend": backend},
                     checkpoint=expires, status=status, address=address)
    es.index(index=state_index(prefix), id=doc_id("playbooks.block", address), document=doc)
    return expires


def due_blocks(es: Elasticsearch, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    """Active block records whose expiry passed."""
    query = {"bool": {"filter": [{"term": {"secops.state.key": "playbooks.block"}},
                                 {"term": {"secops.state.status": "active"}},
                                 {"range": {"secops.state.checkpoint": {"lte": "now"}}}]}}
    try:
        hits = es.search(index=state_index(prefix), query=query, size=500)["hits"]["hits"]
    except NotFoundError:
        return []
    return [(h["_id"], h["_source"]) for h in hits]


def mark_block(es: Elasticsearch, prefix: str, block_id: str, status: str) -> None:
    es.update(index=state_index(prefix), id=block_id, doc={"secops": {"state": {"status": status}}})


def runs_with_status(es: Elasticsearch, prefix: str, statuses: list[str], size: int = 1000) -> list[dict[str, Any]]:
    try:
        res = es.search(index=run_index(prefix), query={"terms": {"secops.playbook.status": statuses}}, size=size,
                        sort=[{"@timestamp": "asc"}])
    except NotFoundError:
        return []
    return [h["_source"] for h in res["hits"]["hits"]]


def list_runs(es: Elasticsearch, prefix: str, limit: int = 50, status: str | None = None) -> list[dict[str, Any]]:
    query = {"term": {"secops.playbook.status": status}} if status else {"match_all": {}}
    try:
        res = es.search(index=run_index(prefix), query=query, size=limit, sort=[{"@timestamp": "desc"}])
    except NotFoundError:
        return []
    return [h["_source"] for h in res["hits"]["hits"]]


def run_audit(es: Elasticsearch, prefix: str, run_id: str) -> list[dict[str, Any]]:
    """Audit documents of one run, oldest first."""
    es.indices.refresh(index=f"{prefix}-audit-*", allow_no_indices=True)
    try:
        res = es.search(index=f"{prefix}-audit-*", query={"term": {"secops.audit.run_id": run_id}}, size=1000,
                        sort=[{"@timestamp": "asc"}])
    except NotFoundError:
        return []
    return [h["_source"] for h in res["hits"]["hits"]]
