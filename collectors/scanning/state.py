"""When each scan policy last ran (secops-state index, one document per policy)."""

from __future__ import annotations

from datetime import datetime

from elasticsearch import Elasticsearch, NotFoundError

from secops.ecs import doc_id, iso, parse_time
from secops.es.templates import index_for


def _key(policy: str) -> str:
    return f"collectors.scan_policy.{policy}"


def last_run(es: Elasticsearch, prefix: str, policy: str) -> datetime | None:
    try:
        doc = es.get(index=index_for(prefix, "secops.state"), id=doc_id("state", _key(policy)))["_source"]
    except NotFoundError:
        return None
    value = doc.get("secops", {}).get("state", {}).get("checkpoint")
    return parse_time(value) if value else None


def record_run(es: Elasticsearch, prefix: str, policy: str, at: datetime, detail: str = "") -> None:
    es.index(index=index_for(prefix, "secops.state"), id=doc_id("state", _key(policy)), refresh="wait_for",
             document={"@timestamp": iso(at), "event": {"dataset": "secops.state", "ingested": iso()},
                       "secops": {"state": {"key": _key(policy), "checkpoint": iso(at), "value": detail}}})
