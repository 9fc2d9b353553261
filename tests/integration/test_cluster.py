"""A real three-node Elasticsearch cluster on loopback: formation, replicas from the configuration, and
ingest + search that survive losing a data node or the elected master (every document exactly once)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from secops.config import Settings, load_settings
from secops.devstack.stack import ElasticsearchCluster, ElasticsearchNode, LocalStack, RedisServer
from secops.es.client import es_hosts, make_client
from secops.es.store import Store
from tests.integration.test_elasticsearch_layer import conn_doc

pytestmark = pytest.mark.integration

PREFIX = "scaleout"
DAY_INDEX = f"{PREFIX}-conn-2026.11.20"


def cluster_settings(cluster: ElasticsearchCluster, tmp_path: Path, **es: object) -> Settings:
    return load_settings(None, elasticsearch={"hosts": cluster.urls, "index_prefix": PREFIX, **es},
                         paths={"state_dir": str(tmp_path / "state")},
                         bulk={"batch_docs": 500, "backoff_seconds": 0.2, "probe_seconds": 1.0, "max_retries": 6})


@pytest.fixture
def cluster(es_cluster: ElasticsearchCluster) -> ElasticsearchCluster:
    """The session cluster, all nodes up and green, without secops-test indices."""
    es_cluster.start()
    es = Elasticsearch(es_cluster.urls)
    es.indices.delete(index=f"{PREFIX}-*", allow_no_indices=True, expand_wildcards="all")
    es_cluster.wait_health("green")
    return es_cluster


def test_three_nodes_form_one_green_cluster_and_status_shows_them(cluster, tmp_path):
    health, nodes = cluster.describe()
    assert health["status"] == "green" and health["number_of_nodes"] == 3
    assert [n.name for n in nodes] == [n.name for n in cluster.nodes]
    assert sum(n.master for n in nodes) == 1
    assert all({"m", "d"} <= set(n.roles) for n in nodes), "every node is master-eligible and holds data"
    assert len({n.port for n in cluster.nodes}) == 3 and len({n.transport_port for n in cluster.nodes}) == 3
    assert len({n.base_dir / "data" for n in cluster.nodes}) == 3
    # `secops stack status` reads the same state file `stack up --nodes 3` writes
    state_dir = tmp_path / "state"
    stack = LocalStack(state_dir)
    stack._save(cluster, RedisServer(tmp_path / "redis"))
    settings = load_settings(None, paths={"state_dir": str(state_dir)})
    assert es_hosts(settings) == cluster.urls, "without configured hosts the client knows every stack node"
    out = subprocess.run([sys.executable, "-m", "secops", "stack", "status"], capture_output=True, text=True,
                         env=dict(os.environ, SECOPS_PATHS__STATE_DIR=str(state_dir), COLUMNS="200"), check=True)
    for node in cluster.nodes:
        assert node.name in out.stdout
    assert out.stdout.count("running") == 3 and " *" in out.stdout
    assert "cluster health: green" in out.stdout


@pytest.mark.parametrize(("replicas", "expected"), [(None, "1"), (0, "0"), (2, "2")])
def test_index_replicas_come_from_the_configuration(cluster, tmp_path, replicas, expected):
    s = cluster_settings(cluster, tmp_path, replicas=replicas)
    es = make_client(s)
    with Store.from_settings(es, s).writer(install=True) as w:
        w.add(conn_doc(1))
    index_settings = es.indices.get_settings(index=DAY_INDEX, include_defaults=False)[DAY_INDEX]["settings"]
    number = index_settings["index"].get("number_of_replicas")
    assert number == expected
    cluster.wait_health("green")


def ingest_through_a_kill(cluster: ElasticsearchCluster, tmp_path: Path,
                          victim_of: Callable[[Elasticsearch], ElasticsearchNode]) -> dict:
    """Write ``total`` documents through BulkWriter while searching; SIGKILL the node chosen by
    ``victim_of(es)`` once a third is written. Returns what happened."""
    total = 30_000
    s = cluster_settings(cluster, tmp_path)
    es = make_client(s)
    store = Store.from_settings(es, s)
    w = store.writer(install=True)
    w.add(conn_doc(0))
    w.flush()
    cluster.wait_health("green")  # the daily index has its replica before anything is killed
    victim: list[ElasticsearchNode] = []
    searches, search_errors, stop = [0], [], threading.Event()

    def killer() -> None:
        while w.stats.written < total // 3:
            time.sleep(0.005)
        node = victim_of(es)
        node.kill()
        victim.append(node)

    def searcher() -> None:
        reader = make_client(s)
        while not stop.is_set():
            try:
                reader.search(index=f"{PREFIX}-conn-*", size=1, query={"term": {"destination.port": 80}})
                searches[0] += 1
            except Exception as exc:  # every failure is the finding
                search_errors.append(repr(exc))
            time.sleep(0.05)

    threads = [threading.Thread(target=killer), threading.Thread(target=searcher)]
    for t in threads:
        t.start()
    started = time.monotonic()
    for i in range(1, total):
        w.add(conn_doc(i))
        if i % 500 == 0:
            time.sleep(0.002)  # let the killer act mid-stream
    w.flush()
    threads[0].join()
    searches_during_outage = searches[0]
    stop.set()
    threads[1].join()
    ingest_seconds = time.monotonic() - started
    w.close()  # replays anything spooled
    restart = time.monotonic()
    victim[0].start()
    health = cluster.wait_health("green", timeout=180)
    recovered = time.monotonic() - restart
    es.indices.refresh(index=f"{PREFIX}-conn-*")
    ids = {h["_id"] for h in scan_ids_of(es)}
    return {"total": total, "count": es.count(index=f"{PREFIX}-conn-*")["count"], "ids": len(ids),
            "expected_ids": {conn_doc(i)["_id"] for i in range(total)} == ids, "stats": w.stats,
            "pending": w.spool.pending(), "search_errors": search_errors, "searches": searches_during_outage,
            "victim": victim[0], "health": health, "ingest_s": ingest_seconds, "recover_s": recovered}


def scan_ids_of(es: Elasticsearch):
    from elasticsearch.helpers import scan

    return scan(es, index=f"{PREFIX}-conn-*", query={"query": {"match_all": {}}}, _source=False)


def primary_holder(cluster: ElasticsearchCluster):
    def pick(es: Elasticsearch) -> ElasticsearchNode:
        shards = es.cat.shards(index=DAY_INDEX, format="json", h="prirep,node")
        name = next(s["node"] for s in shards if s["prirep"] == "p")
        return next(n for n in cluster.nodes if n.name == name)
    return pick


def test_data_node_killed_mid_ingest_loses_and_duplicates_nothing(cluster, tmp_path):
    r = ingest_through_a_kill(cluster, tmp_path, primary_holder(cluster))
    print(f"\nprimary holder {r['victim'].name} SIGKILLed: {r['total']} docs in {r['ingest_s']:.1f}s, "
          f"{r['searches']} searches answered, green again {r['recover_s']:.1f}s after restart; {r['stats']}")
    assert r["count"] == r["total"] and r["ids"] == r["total"] and r["expected_ids"]
    assert r["pending"] == 0 and r["stats"].rejected == 0
    assert r["search_errors"] == [], "searches must keep answering while a node is down"
    assert r["health"]["status"] == "green" and r["health"]["number_of_nodes"] == 3


def test_elected_master_killed_mid_ingest_new_master_and_nothing_lost(cluster, tmp_path):
    old_master = cluster.master()
    r = ingest_through_a_kill(cluster, tmp_path, lambda es: old_master)
    new_master = cluster.master()
    print(f"\nmaster {old_master.name} SIGKILLed, {new_master.name} elected: {r['total']} docs in "
          f"{r['ingest_s']:.1f}s, green again {r['recover_s']:.1f}s after restart; {r['stats']}")
    assert r["victim"] is old_master
    assert r["count"] == r["total"] and r["ids"] == r["total"] and r["expected_ids"]
    assert r["pending"] == 0 and r["stats"].rejected == 0
    assert r["health"]["status"] == "green"
    print(f"search errors while the master was away: {len(r['search_errors'])} of {r['searches']}")
    # the restarted node rejoins as a follower: mastership moved while it was away
    assert new_master is not old_master

