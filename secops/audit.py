"""Audit trail: one ``secops.audit`` document per consequential action (who, what, when, inputs, outcome)."""

from __future__ import annotations

import getpass
import os
from typing import Any

from elasticsearch import Elasticsearch

from secops.ecs import doc_id, iso, utcnow
from secops.es.bulk import dumps
from secops.es.templates import index_for


def current_actor() -> str:
    """The human or service behind an action: SECOPS_ACTOR, else the login name."""
    try:
        return os.environ.get("SECOPS_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def audit_doc(action: str, obj: str, outcome: str, *, actor: str | None = None, run_id: str | None = None,
              details: dict[str, Any] | None = None, at: str | None = None) -> dict[str, Any]:
    at = at or iso(utcnow())
    actor = actor or current_actor()
    return {
        "_id": doc_id("audit", at, actor, action, obj, run_id or ""),
        "@timestamp": at,
        "event": {"dataset": "secops.audit", "kind": "event", "category": ["configuration"], "action": action,
                  "outcome": outcome},
        "user": {"name": actor},
        "secops": {"audit": {"actor": actor, "action": action, "object": obj, "outcome": outcome,
                             "run_id": run_id, "details": dumps(details or {}).decode()}},
    }


def write_audit(es: Elasticsearch, prefix: str, action: str, obj: str, outcome: str, *,
                source_ip: str | None = None, refresh: bool | str = "wait_for", **kw: Any) -> dict[str, Any]:
    """Index one audit document immediately (by default refresh=wait_for, so the next query sees it).

    ``source_ip`` records where a request came from (the console's client address).
    """
    doc = audit_doc(action, obj, outcome, **kw)
    if source_ip:
        doc["source"] = {"ip": source_ip}
    source = {k: v for k, v in doc.items() if k != "_id"}
    es.index(index=index_for(prefix, "secops.audit", doc["@timestamp"]), id=doc["_id"], document=source,
             refresh=refresh)
    return doc
