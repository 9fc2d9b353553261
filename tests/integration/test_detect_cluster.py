"""Detection on a cluster gives what it gives on one node: the documents of the same labelled captures (one
`secops ingest` run) are bulked into the session's single node and into the session's three-node cluster (one
replica per index), the detection scheduler makes one pass on each, and the alerts are identical: ids, rules,
counts, first and last times, addresses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch

from detections.alerts import AlertStore
from detections.pack import build_pack
from detections.scheduler import Scheduler
from secops.config import Settings, load_settings
from secops.es.client import make_client
from secops.es.store import Store
from tests.integration.test_cluster import cluster  # noqa: F401 (fixture)
from tests.support.services import write_config

pytestmark = pytest.mark.integration

PREFIX = "parity"
CAPTURES = ["scans/nmap_80_vanilla.pcap", "bruteforce/ftp-bruteforce.pcap", "dns-tunnel/dns-tunnel-iodine.pcap",
            "ics/modbus/modbus-eit.pcap",
            "lateral-movement/empire_psexec_dcerpc_tcp_svcctl_WORKSTATION5_2020-09-20121608.pcap"]


def store_settings(hosts: list[str], home: Path) -> Settings:
    return load_settings(None, elasticsearch={"hosts": hosts, "index_prefix": PREFIX},
                         paths={"state_dir": str(home / "state"), "cache_dir": str(home / "cache")})


def captured(pcaps: list[Path], home: Path) -> list[dict[str, Any]]:
    """The captures' documents, from one `secops ingest -o ndjson` run (the deep path included)."""
    s = store_settings(["http://127.0.0.1:9"], home)
    proc = subprocess.run([sys.executable, "-m", "secops", "ingest", "--output", "ndjson", "--observer", "parity",
                           *map(str, pcaps)], capture_output=True, timeout=600, check=False,
                          env=dict(os.environ, SECOPS_CONFIG=str(write_config(s, home / "ingest.yaml"))))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [orjson.loads(line) for line in proc.stdout.splitlines()]


def load_and_detect(hosts: list[str], home: Path, docs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict]:
    """A clean store under PREFIX, the documents bulked in, one scheduler pass; its alerts and pass totals."""
    s = store_settings(hosts, home)
    es = make_client(s)
    clear(es)
    writer = Store.from_settings(es, s).writer(install=True)
    writer.add_many(docs)
    writer.close()
    es.indices.refresh(index=f"{PREFIX}-*")
    t0 = time.monotonic()
    runs = Scheduler(es, s, build_pack(s).runnable).run()
    assert not [(r.rule_id, r.error) for r in runs if r.error]
    es.indices.refresh(index=f"{PREFIX}-*")
    totals = {"rules": len(runs), "matches": sum(r.matches for r in runs), "created": sum(r.created for r in runs),
              "seconds": round(time.monotonic() - t0, 1)}
    return AlertStore(es, PREFIX, s.detections.suppression_seconds).list(size=1000), totals


def clear(es: Elasticsearch) -> None:
    es.indices.delete(index=f"{PREFIX}-*", allow_no_indices=True, expand_wildcards="all")
    es.options(ignore_status=404).indices.delete_index_template(name=f"{PREFIX}-*")


def essence(alert: dict[str, Any]) -> tuple:
    a = alert["secops"]["alert"]
    return (alert["_id"], a["id"], alert["rule"]["id"], alert["rule"]["severity"], a["count"], a["first_time"],
            a["last_time"], alert.get("source", {}).get("ip"), alert.get("destination", {}).get("ip"),
            alert.get("destination", {}).get("port"))


def test_cluster_and_single_node_raise_identical_alerts(es_node, cluster, testdata, tmp_path):  # noqa: F811
    docs = captured([testdata / "attacks" / c for c in CAPTURES], tmp_path)
    try:
        single, single_summary = load_and_detect([es_node.url], tmp_path / "node", docs)
        multi, multi_summary = load_and_detect(cluster.urls, tmp_path / "cluster", docs)
        replicas = make_client(store_settings(cluster.urls, tmp_path)).indices.get_settings(
            index=f"{PREFIX}-alert*", name="index.number_of_replicas")
    finally:
        for hosts in ([es_node.url], cluster.urls):
            clear(make_client(store_settings(hosts, tmp_path)))
    assert single, "the captures raise alerts on one node"
    assert {v["settings"]["index"]["number_of_replicas"] for v in replicas.values()} == {"1"}
    assert sorted(map(essence, multi)) == sorted(map(essence, single))
    assert {k: v for k, v in multi_summary.items() if k != "seconds"} == \
        {k: v for k, v in single_summary.items() if k != "seconds"}
    rules = sorted({a["rule"]["id"] for a in single})
    print(f"\n{len(docs)} documents, {len(single)} alerts from {len(rules)} rules, identical on 1 node and 3 "
          f"nodes; pass on 1 node {single_summary}, on 3 nodes {multi_summary}")
