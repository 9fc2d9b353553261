"""Ingest into one Elasticsearch node vs a three-node cluster (replicas 0 and 1), same documents, same run.

    python3 benchmarks/cluster_ingest.py [--packets 400000] [--rounds 3] [--heap 320m]

The documents are what the sensor ships: the conn documents and observations of a synthetic capture (whole
TCP/UDP conversations, benchmarks/live_capture.build_capture), made once and written by the project's
BulkWriter (Store.writer: templates with number_of_replicas, batches, spool) into each target. Every node gets
the same heap; the single node and the cluster run side by side and rounds alternate the order of the targets.
Every run is checked: count == documents. On one machine the three nodes share its cores, so this measures
the cost of a cluster and of replication (each document is indexed once per copy), not the gain of more
machines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elasticsearch import Elasticsearch

from benchmarks.common import Timer, print_table
from benchmarks.live_capture import build_capture
from collectors.ingest import Pipeline
from secops.config import BulkSettings
from secops.devstack.stack import ElasticsearchCluster, ElasticsearchNode
from secops.es.store import Store

PREFIX = "benchcluster"


def sensor_documents(packets: int, workdir: Path) -> list[dict]:
    pcap = workdir / "bench.pcap"
    build_capture(pcap, packets)
    docs: list[dict] = []
    pipe = Pipeline(docs.append, observer="bench-sensor", deep=False)
    pipe.process_file(pcap)
    pipe.finish()
    pcap.unlink()
    return docs


def ingest(urls: list[str], replicas: int, docs: list[dict], spool: Path) -> float:
    """Seconds to write every document (templates installed first, not timed), checked by count."""
    es = Elasticsearch(urls, request_timeout=120, max_retries=len(urls) - 1)
    es.indices.delete(index=f"{PREFIX}-*", allow_no_indices=True, expand_wildcards="all")
    store = Store(es, PREFIX, spool_dir=spool, bulk=BulkSettings(batch_docs=2000, flush_seconds=3600),
                  replicas=replicas)
    store.install_templates()
    with Timer() as t, store.writer() as w:
        for doc in docs:
            w.add(dict(doc))
    assert w.stats.written == len(docs) and w.stats.spooled == 0, w.stats
    es.indices.refresh(index=f"{PREFIX}-*")
    assert es.count(index=f"{PREFIX}-*")["count"] == len(docs)
    es.indices.delete(index=f"{PREFIX}-*", expand_wildcards="all")
    return t.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=400_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--heap", default="320m", help="heap of every node (the test cluster's default)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="secops-bench-cluster-"))
    os.chmod(work, 0o755)
    try:
        docs = sensor_documents(args.packets, work)
        results: dict[str, list[float]] = {}
        node = ElasticsearchNode(base_dir=work / "single", heap=args.heap)
        cluster = ElasticsearchCluster(work / "cluster", 3, heap=args.heap)
        try:  # both run through every round, so a change in the machine's load hits every target alike
            node.start()
            cluster.start()
            targets = [("1 node, replicas 0", [node.url], 0), ("3 nodes, replicas 0", cluster.urls, 0),
                       ("3 nodes, replicas 1", cluster.urls, 1)]
            for r in range(args.rounds):
                for name, urls, replicas in targets if r % 2 == 0 else reversed(targets):
                    results.setdefault(name, []).append(ingest(urls, replicas, docs, work / "spool"))
        finally:
            node.stop()
            cluster.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {name: len(docs) / min(times) for name, times in results.items()}
    base = best["1 node, replicas 0"]
    rows = [[name, len(docs), min(times), best[name], f"{best[name] / base:.2f}"] for name, times in results.items()]
    print_table(f"sensor documents into Elasticsearch, {len(docs):,} docs, heap {args.heap} per node, "
                f"best of {args.rounds}", ["target", "docs", "seconds", "docs/s", "vs 1 node"], rows)
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
