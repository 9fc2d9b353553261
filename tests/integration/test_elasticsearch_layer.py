"""The Elasticsearch layer against a real node: templates, bulk writes, crash + spool replay."""

from __future__ import annotations

import threading
import time

import pytest

from secops.ecs import doc_id, get
from secops.es.bulk import BulkWriter
from secops.es.spool import Spool
from secops.es.templates import DATASETS, index_for, mappings_for

pytestmark = pytest.mark.integration


def conn_doc(i: int, day: str = "2026-11-20") -> dict:
    return {
        "_id": doc_id("conn", i),
        "@timestamp": f"{day}T10:00:{i % 60:02d}.000000Z",
        "event": {"dataset": "secops.conn", "kind": "event"},
        "source": {"ip": f"198.18.{(i >> 8) & 255}.{i & 255}", "port": 40000 + i % 20000, "bytes": i},
        "destination": {"ip": "198.18.255.1", "port": 80},
        "network": {"transport": "tcp", "community_id": f"1:{i}"},
        "secops": {"conn": {"state": "SF", "history": "ShADadFf"}},
    }


def test_templates_installed_with_declared_mappings(es, settings):
    prefix = settings.elasticsearch.index_prefix
    for name, ds in DATASETS.items():
        tpl = es.indices.get_index_template(name=f"{prefix}-{ds.short}")["index_templates"][0]["index_template"]
        assert tpl["template"]["mappings"]["properties"] == mappings_for(ds)["properties"]
    # a document lands in the daily index and gets the declared (not guessed) field types
    source = {k: v for k, v in conn_doc(1).items() if k != "_id"}
    es.index(index=index_for(prefix, "secops.conn", "2026-11-20T00:00:00Z"), id="x", document=source, refresh=True)
    mapping = es.indices.get_mapping(index=f"{prefix}-conn-2026.11.20")[f"{prefix}-conn-2026.11.20"]["mappings"]
    props = mapping["properties"]
    assert props["source"]["properties"]["ip"]["type"] == "ip"
    assert props["secops"]["properties"]["conn"]["properties"]["orig_bytes"]["type"] == "long"
    assert props["network"]["properties"]["community_id"]["type"] == "keyword"


def test_bulk_writer_100k_exact(es, settings):
    with BulkWriter(es, settings.paths.spool(), settings.bulk) as w:
        for i in range(100_000):
            w.add(conn_doc(i))
    es.indices.refresh(index="secops-conn-*")
    assert es.count(index="secops-conn-*")["count"] == 100_000
    assert w.stats.written == 100_000 and w.stats.spooled == 0 and w.stats.rejected == 0
    # writing the same documents again (a replay) creates no duplicates
    with BulkWriter(es, settings.paths.spool(), settings.bulk) as w:
        for i in range(0, 100_000, 7):
            w.add(conn_doc(i))
    es.indices.refresh(index="secops-conn-*")
    assert es.count(index="secops-conn-*")["count"] == 100_000


def test_node_killed_mid_stream_then_spool_replayed(es, settings, es_node):
    if not hasattr(es_node, "kill"):
        pytest.fail("this test needs a node it started itself (unset SECOPS_TEST_ES_URL)")
    total = 50_000
    cfg = settings.bulk.model_copy(update={"batch_docs": 1000})
    w = BulkWriter(es, settings.paths.spool(), cfg)
    killed = threading.Event()

    def killer():
        while w.stats.written < 15_000:
            time.sleep(0.01)
        es_node.kill()
        killed.set()

    t = threading.Thread(target=killer)
    t.start()
    for i in range(total):
        w.add(conn_doc(i))
        if i % 1000 == 0:
            time.sleep(0.002)  # give the killer a chance to act mid-stream
    w.flush()
    t.join()
    assert killed.is_set()
    assert w.stats.spooled > 0, "node was killed mid-stream, something must have been spooled"
    assert w.spool.pending() > 0
    es_node.start()
    w.close()  # replays the spool
    assert w.spool.pending() == 0
    es.indices.refresh(index="secops-conn-*")
    assert es.count(index="secops-conn-*")["count"] == total
    ids = {h["_id"] for h in scan_ids(es)}
    assert len(ids) == total


def scan_ids(es):
    from elasticsearch.helpers import scan

    return scan(es, index="secops-conn-*", query={"query": {"match_all": {}}}, _source=False)


def test_corrupt_spool_file_is_reported_and_skipped(es, settings):
    spool = Spool(settings.paths.spool())
    good = [[Spool.encode("secops-conn-2026.11.20", doc_id("c", f, i), b'{"event":{"dataset":"secops.conn"}}')
             for i in range(100)] for f in range(3)]
    paths = [spool.append(lines) for lines in good]
    # flip bytes in the middle file
    raw = bytearray(paths[1].read_bytes())
    raw[50] ^= 0xFF
    paths[1].write_bytes(bytes(raw))
    w = BulkWriter(es, spool, settings.bulk)
    assert w.replay() == 200
    assert w.stats.corrupt_files == [paths[1].name]
    assert (spool.corrupt_dir / paths[1].name).exists()
    assert spool.pending() == 0
    es.indices.refresh(index="secops-conn-*")
    assert es.count(index="secops-conn-*")["count"] == 200


def test_rejected_documents_are_dead_lettered_not_lost(es, settings):
    with BulkWriter(es, settings.paths.spool(), settings.bulk) as w:
        w.add(conn_doc(1))
        bad = conn_doc(2)
        bad["source"]["ip"] = "not-an-ip"
        w.add(bad)
    assert w.stats.written == 1 and w.stats.rejected == 1
    dead = list(Spool(settings.paths.spool()).dead_dir.glob("*.ndjson"))
    assert len(dead) == 1 and b"not-an-ip" in dead[0].read_bytes()
    assert get({"a": {"b": 1}}, "a.b") == 1
