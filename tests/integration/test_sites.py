"""Sensors at two sites shipping to the three-node cluster, each with its own observer.name, spool and
pcap directory. Site A's link to the cluster is cut (every connection dropped) while it keeps
processing captures: its documents go to its own spool. Site B ships meanwhile. When A's link is back its
spool is replayed with `secops es spool --replay`: every document arrives, once, under its own site."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from elasticsearch.helpers import scan

from collectors.ingest import Pipeline
from secops.config import Settings, load_settings
from secops.es.client import make_client
from secops.es.store import Store
from tests.integration.test_cluster import PREFIX, cluster  # noqa: F401 (fixture)
from tests.support import TESTDATA
from tests.support.relay import TcpRelay
from tests.support.services import write_config

pytestmark = pytest.mark.integration

SITE_PCAPS = {"site-a": TESTDATA / "zeek/traces/globus-url-copy.pcap",
              "site-b": TESTDATA / "zeek/traces/http/pipelined-requests.pcap"}


def site_settings(name: str, hosts: list[str], tmp_path: Path, budget_mb: int) -> Settings:
    home = tmp_path / name
    return load_settings(None, elasticsearch={"hosts": hosts, "index_prefix": PREFIX},
                         paths={"state_dir": str(home / "state"), "spool_dir": str(home / "spool"),
                                "pcap_dir": str(home / "pcap")},
                         sensor={"pcap_budget_mb": budget_mb},
                         bulk={"backoff_seconds": 0.05, "max_retries": 1, "probe_seconds": 1.0})


def reference_ids(pcap: Path, site: str) -> set[str]:
    """The ids one run over the capture produces (observation ids include the observer)."""
    docs: list[dict] = []
    pipe = Pipeline(docs.append, observer=site, deep=False)
    pipe.process_file(pcap)
    pipe.finish()
    return {d["_id"] for d in docs}


def ids_of(es, site: str) -> list[str]:
    es.indices.refresh(index=f"{PREFIX}-*")
    hits = scan(es, index=f"{PREFIX}-*", query={"query": {"term": {"observer.name": site}}}, _source=False)
    return [h["_id"] for h in hits]


def cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "secops", *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, SECOPS_CONFIG=str(config)), check=True)


def test_site_cut_off_spools_and_replays_once_while_the_other_site_ships(cluster, tmp_path):  # noqa: F811
    expected = {site: reference_ids(pcap, site) for site, pcap in SITE_PCAPS.items()}
    assert all(expected.values()) and not expected["site-a"] & expected["site-b"]
    link = [TcpRelay("127.0.0.1", ("127.0.0.1", n.port)) for n in cluster.nodes]  # site A's WAN link
    via_link = [f"http://127.0.0.1:{r.address[1]}" for r in link]
    site_a = site_settings("site-a", via_link, tmp_path, budget_mb=2048)
    site_b = site_settings("site-b", cluster.urls, tmp_path, budget_mb=512)
    assert site_a.paths.spool() != site_b.paths.spool() and site_a.paths.pcaps() != site_b.paths.pcaps()
    es = make_client(site_b)

    writer = Store.from_settings(make_client(site_a), site_a).writer(install=True)
    for relay in link:  # the link goes down; site A keeps processing what it captures
        relay.close()
    pipe = Pipeline(writer.add, observer="site-a", deep=False)
    pipe.process_file(SITE_PCAPS["site-a"])
    pipe.finish()
    writer.close()
    assert writer.stats.written == 0 and writer.stats.spooled == len(expected["site-a"])
    assert writer.spool.pending() > 0 and writer.spool.dir.is_relative_to(tmp_path / "site-a")

    # site B ships directly meanwhile
    config_b = write_config(site_b, tmp_path / "site-b.yaml")
    cli(config_b, "ingest", "--no-deep", "--observer", "site-b", str(SITE_PCAPS["site-b"]))
    assert sorted(ids_of(es, "site-b")) == sorted(expected["site-b"])
    assert ids_of(es, "site-a") == []

    # the link is back (same addresses): A's spool is replayed, once
    link = [TcpRelay("127.0.0.1", ("127.0.0.1", n.port), port=r.address[1]) for n, r in zip(cluster.nodes, link)]
    config_a = write_config(site_a, tmp_path / "site-a.yaml")
    out = cli(config_a, "es", "spool", "--replay")
    assert f"replayed {len(expected['site-a'])} documents" in out.stdout
    assert sorted(ids_of(es, "site-a")) == sorted(expected["site-a"])
    # the same capture processed again (a sensor restart re-reading its pcap spool) duplicates nothing
    cli(config_a, "ingest", "--no-deep", "--observer", "site-a", str(SITE_PCAPS["site-a"]))
    assert sorted(ids_of(es, "site-a")) == sorted(expected["site-a"])
    assert sorted(ids_of(es, "site-b")) == sorted(expected["site-b"])
    assert not list(writer.spool.files())
    for relay in link:
        relay.close()
