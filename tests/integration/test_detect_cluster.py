"""Detection on a cluster gives what it gives on one node: the same labelled captures are ingested with
`secops ingest --output es` into the session's single node and into the session's three-node cluster (one
replica per index), `secops detect run` makes one pass on each, and the alerts are identical: ids, rules,
counts, first and last times, addresses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from detections.alerts import AlertStore
from secops.config import Settings, load_settings
from secops.es.client import make_client
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


def secops(config: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "secops", *args], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, SECOPS_CONFIG=str(config)), check=False)
    assert proc.returncode == 0, f"secops {args[0]} failed: {proc.stderr[-2000:]}"
    return proc.stdout


def ingest_and_detect(hosts: list[str], home: Path, pcaps: list[Path]) -> tuple[list[dict[str, Any]], str]:
    """A clean store under PREFIX, the captures ingested, one detection pass; its alerts and its pass summary."""
    home.mkdir()
    s = store_settings(hosts, home)
    es = make_client(s)
    clear(es)
    config = write_config(s, home / "secops.yaml")
    secops(config, "ingest", "--no-deep", "--output", "es", *map(str, pcaps))
    es.indices.refresh(index=f"{PREFIX}-*")
    summary = secops(config, "detect", "run").strip().splitlines()[-1]
    es.indices.refresh(index=f"{PREFIX}-*")
    return AlertStore(es, PREFIX, s.detections.suppression_seconds).list(size=1000), summary


def clear(es: Elasticsearch) -> None:
    es.indices.delete(index=f"{PREFIX}-*", allow_no_indices=True, expand_wildcards="all")
    es.options(ignore_status=404).indices.delete_index_template(name=f"{PREFIX}-*")


def essence(alert: dict[str, Any]) -> tuple:
    a = alert["secops"]["alert"]
    return (alert["_id"], a["id"], alert["rule"]["id"], alert["rule"]["severity"], a["count"], a["first_time"],
            a["last_time"], alert.get("source", {}).get("ip"), alert.get("destination", {}).get("ip"),
            alert.get("destination", {}).get("port"))


def test_cluster_and_single_node_raise_identical_alerts(es_node, cluster, testdata, tmp_path):  # noqa: F811
    pcaps = [testdata / "attacks" / c for c in CAPTURES]
    try:
        single, single_summary = ingest_and_detect([es_node.url], tmp_path / "node", pcaps)
        multi, multi_summary = ingest_and_detect(cluster.urls, tmp_path / "cluster", pcaps)
        replicas = make_client(store_settings(cluster.urls, tmp_path)).indices.get_settings(
            index=f"{PREFIX}-alert*", name="index.number_of_replicas")
    finally:
        for hosts in ([es_node.url], cluster.urls):
            clear(make_client(store_settings(hosts, tmp_path)))
    assert single, "the captures raise alerts on one node"
    assert {v["settings"]["index"]["number_of_replicas"] for v in replicas.values()} == {"1"}
    assert sorted(map(essence, multi)) == sorted(map(essence, single))
    assert multi_summary == single_summary
    rules = sorted({a["rule"]["id"] for a in single})
    print(f"\n{len(single)} alerts from {len(rules)} rules, identical on 1 node and 3 nodes; pass: {single_summary}")
