"""Two sensors (two observer names, each with its own spool) ship the same capture into the three-node cluster
while a node is SIGKILLed and restarted: the one holding the primary shard, or the elected master (a new one is
elected while it is down; ingest goes on, through the spool if it must). Every document of both arrives exactly
once (the flow seen by both sensors is one document per sensor), and the cluster is green again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan

from benchmarks.live_capture import build_capture
from secops.config import load_settings
from secops.devstack.stack import ElasticsearchCluster, ElasticsearchNode
from secops.es.client import make_client
from tests.integration.test_cluster import PREFIX, cluster  # noqa: F401 (fixture)
from tests.integration.test_sites import reference_ids
from tests.support.services import write_config

pytestmark = pytest.mark.integration

SENSORS = ("city-hall", "water-scada")
PACKETS = 60_000


@pytest.fixture(scope="module")
def site_capture(tmp_path_factory) -> tuple[Path, dict[str, set[str]]]:
    """One capture both sensors replay, and each sensor's expected document ids (built once for both kills)."""
    pcap = tmp_path_factory.mktemp("sites") / "site.pcap"
    build_capture(pcap, PACKETS)
    expected = {name: reference_ids(pcap, name) for name in SENSORS}
    assert not expected[SENSORS[0]] & expected[SENSORS[1]], "one flow, two sensors: two documents"
    return pcap, expected


def primary_holder(nodes: ElasticsearchCluster, es: Elasticsearch) -> ElasticsearchNode:
    shards = es.cat.shards(index=f"{PREFIX}-conn-*", format="json", h="prirep,node")
    return next(n for n in nodes.nodes if n.name == next(s["node"] for s in shards if s["prirep"] == "p"))


def elected_master(nodes: ElasticsearchCluster, es: Elasticsearch) -> ElasticsearchNode:
    return nodes.master()


@pytest.mark.parametrize("victim_of", [primary_holder, elected_master], ids=["data-node", "elected-master"])
def test_two_sensors_ship_through_a_node_kill_nothing_lost_nothing_duplicated(cluster, site_capture, tmp_path,  # noqa: F811
                                                                              victim_of):
    pcap, expected = site_capture
    configs = {}
    for name in SENSORS:
        s = load_settings(None, elasticsearch={"hosts": cluster.urls, "index_prefix": PREFIX},
                          paths={"state_dir": str(tmp_path / name / "state")},
                          bulk={"batch_docs": 500, "backoff_seconds": 0.2, "probe_seconds": 1.0, "max_retries": 6})
        configs[name] = write_config(s, tmp_path / f"{name}.yaml")
    es = make_client(s)
    runs = {name: subprocess.Popen([sys.executable, "-m", "secops", "ingest", "--no-deep", "--observer", name,
                                    str(pcap)], env=dict(os.environ, SECOPS_CONFIG=str(config)),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name, config in configs.items()}
    total = sum(len(ids) for ids in expected.values())

    def shipped() -> int:
        answer = es.options(ignore_status=(404, 503)).count(index=f"{PREFIX}-conn-*", allow_no_indices=True)
        return answer.get("count", 0)  # 503 while the new index's shards are being allocated

    deadline = time.monotonic() + 120
    while shipped() < 2000:  # both under way (refresh interval 1 s)
        assert time.monotonic() < deadline and all(p.poll() is None for p in runs.values()), "ingest ended early"
        time.sleep(0.05)
    cluster.wait_health("green")  # the day's index has its replicas before a node goes
    victim = victim_of(cluster, es)
    was_master = victim is cluster.master()
    before = shipped()
    victim.kill()
    outputs = {name: p.communicate(timeout=300) for name, p in runs.items()}
    for name, p in runs.items():
        assert p.returncode == 0, outputs[name][1]
    elected = cluster.master()  # while the victim is still down
    restart = time.monotonic()
    victim.start()
    health = cluster.wait_health("green", timeout=180)
    recovered = time.monotonic() - restart
    spooled = sum(1 for name in SENSORS for _ in (tmp_path / name / "state").rglob("spool/*.ndjson"))
    for name, config in configs.items():  # anything a sensor spooled while shards moved is sent now
        subprocess.run([sys.executable, "-m", "secops", "es", "spool", "--replay"], check=True, capture_output=True,
                       env=dict(os.environ, SECOPS_CONFIG=str(config)), timeout=120)
    es.indices.refresh(index=f"{PREFIX}-*")
    for name in SENSORS:
        q = {"query": {"term": {"observer.name": name}}}
        got = [h["_id"] for h in scan(es, index=f"{PREFIX}-*", query=q, _source=False)]
        assert len(got) == len(set(got)) and set(got) == expected[name], name
    role = "elected master" if was_master else "primary holder"
    print(f"\n{len(SENSORS)} sensors x {len(expected[SENSORS[0]])} documents; {victim.name} ({role}) SIGKILLed at "
          f"{before} of {total} shipped, {elected.name} master while it was down; {spooled} spool files left for "
          f"replay; all {total} present once, green {recovered:.1f} s after restart")
    assert before < total, "the node went down mid-ingest"
    if victim_of is elected_master:
        assert was_master and elected is not victim, "a new master was elected while the old one was down"
    assert not list(tmp_path.rglob("spool/*.ndjson")), "every spool replayed"
    assert health["status"] == "green" and health["number_of_nodes"] == 3
