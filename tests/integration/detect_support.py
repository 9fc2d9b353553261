"""Synthetic ECS documents for detection tests (written through the real BulkWriter to the test node)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from secops.ecs import doc_id, iso
from secops.es.bulk import BulkWriter

T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


def conn(src: str, dst: str, dport: int, at: datetime, state: str = "S0", orig_bytes: int = 0,
         ingested: datetime | None = None, transport: str = "tcp", **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "_id": doc_id("conn", src, dst, dport, at.isoformat(), state), "@timestamp": iso(at),
        "event": {"dataset": "secops.conn", "kind": "event"},
        "source": {"ip": src, "port": 40000 + dport % 20000}, "destination": {"ip": dst, "port": dport},
        "network": {"transport": transport}, "secops": {"conn": {"state": state, "orig_bytes": orig_bytes}},
    }
    if ingested is not None:
        d["event"]["ingested"] = iso(ingested)
    d.update(extra)
    return d


def event(dataset: str, src: str, dst: str, at: datetime, fields: dict[str, Any],
          ingested: datetime | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"_id": doc_id(dataset, src, dst, at.isoformat(), sorted(map(str, fields.items()))),
                         "@timestamp": iso(at), "event": {"dataset": dataset, "kind": "event"},
                         "source": {"ip": src}, "destination": {"ip": dst}}
    if ingested is not None:
        d["event"]["ingested"] = iso(ingested)
    for key, value in fields.items():
        cur = d
        *parents, leaf = key.split(".")
        for p in parents:
            cur = cur.setdefault(p, {})
        cur[leaf] = value
    return d


def svcctl(src: str, dst: str, at: datetime, ingested: datetime | None = None) -> dict[str, Any]:
    return event("secops.smb", src, dst, at, {"secops.dcerpc.endpoint": "svcctl",
                                              "secops.dcerpc.operation": "CreateServiceW"}, ingested)


def write(es, settings, docs: list[dict[str, Any]]) -> None:
    with BulkWriter(es, settings.paths.spool(), settings.bulk, prefix=settings.elasticsearch.index_prefix) as w:
        for d in docs:
            w.add(d)
    es.indices.refresh(index=f"{settings.elasticsearch.index_prefix}-*")


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
