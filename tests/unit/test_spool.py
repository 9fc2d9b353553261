"""The durable spool and the writer's behaviour while Elasticsearch cannot be reached at all."""

from __future__ import annotations

import time

import pytest
from elasticsearch import Elasticsearch

from secops.config import BulkSettings
from secops.ecs import doc_id
from secops.es.bulk import BulkWriter
from secops.es.spool import Spool, SpoolCorrupt


def test_round_trip_preserves_order_and_content(tmp_path):
    spool = Spool(tmp_path)
    for batch in range(3):
        spool.append([Spool.encode("idx", f"{batch}-{i}", b'{"n":%d}' % i) for i in range(5)])
    files = spool.files()
    assert len(files) == 3 and files == sorted(files)
    records = [r for f in files for r in spool.read(f)]
    assert [r.id for r in records][:6] == ["0-0", "0-1", "0-2", "0-3", "0-4", "1-0"]
    assert records[7].source == {"n": 2} and records[7].index == "idx"
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files left behind"


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "drop_trailer"])
def test_damaged_files_are_detected(tmp_path, damage):
    spool = Spool(tmp_path)
    path = spool.append([Spool.encode("idx", str(i), b"{}") for i in range(10)])
    raw = path.read_bytes()
    damaged = {"truncate": raw[: len(raw) // 2], "flip": raw[:20] + bytes([raw[20] ^ 1]) + raw[21:], "empty": b"",
               "drop_trailer": raw[: raw.rstrip(b"\n").rfind(b"\n") + 1]}[damage]
    path.write_bytes(damaged)
    with pytest.raises(SpoolCorrupt):
        spool.read(path)


def test_unreachable_node_spools_everything_quickly(tmp_path):
    es = Elasticsearch("http://127.0.0.1:9", request_timeout=2, max_retries=0)
    cfg = BulkSettings(batch_docs=100, backoff_seconds=0.05, probe_seconds=60)
    w = BulkWriter(es, tmp_path, cfg)
    started = time.monotonic()
    for i in range(1000):
        w.add({"_id": doc_id(i), "@timestamp": "2026-11-20T00:00:00Z", "event": {"dataset": "secops.conn"}})
    w.close()
    assert time.monotonic() - started < 20, "a dead node must not stall every batch"
    assert w.stats.spooled == 1000 and w.stats.written == 0
    spooled = [r for f in w.spool.files() for r in w.spool.read(f)]
    assert sorted(r.id for r in spooled) == sorted(doc_id(i) for i in range(1000))
    assert all(r.index == "secops-conn-2026.11.20" and r.source["event"]["ingested"] for r in spooled)


def test_documents_without_identity_are_refused(tmp_path):
    w = BulkWriter(Elasticsearch("http://127.0.0.1:9"), tmp_path)
    with pytest.raises(ValueError, match="deterministic id"):
        w.add({"event": {"dataset": "secops.conn"}})
    with pytest.raises(ValueError, match=r"no event\.dataset"):
        w.add({"_id": "x"})
    with pytest.raises(KeyError, match="unknown dataset"):
        w.add({"_id": "x", "event": {"dataset": "secops.nope"}})
