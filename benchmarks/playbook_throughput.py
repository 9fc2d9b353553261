"""Playbook runs per second through 2 Celery workers, and latency from alert to first step.

    python3 benchmarks/playbook_throughput.py [--runs 200] [--latency-samples 20]

The playbook is cheap on purpose (enrich + tag, dry-run: enrich queries the store, tag only plans),
so the figure is the runner's own overhead: run document, step claims, audit documents, Celery hops.
Peer: the built-in no-op ``celery.accumulate`` through the same 2 workers and broker in the same run; a run
of two steps is three task hops (on_alert + 2 steps), so ``runs/s / (ping/s / 3)`` is the share of
the bare broker's capacity the runner keeps.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from celery import Celery
from elasticsearch import Elasticsearch, helpers

from benchmarks.common import Timer, local_node, print_table
from secops.celery_app import configure
from secops.config import load_settings
from secops.devstack.stack import RedisServer
from secops.ecs import iso, parse_time
from secops.es.templates import index_for, install_templates
from tests.support.services import CeleryWorker, write_config

BOOK = """
name: bench
trigger: {tags: [bench]}
steps:
  - name: enrich
    action: enrich
    params: {address: "{{ alert.source.ip }}"}
  - name: tag
    action: tag
    params: {address: "{{ alert.source.ip }}", tags: [bench]}
"""


def alerts(prefix: str, start: int, n: int) -> list[dict]:
    now = iso()
    return [{"_index": index_for(prefix, "secops.alert"), "_id": f"bench-{i}", "@timestamp": now,
             "event": {"dataset": "secops.alert", "kind": "alert", "severity": 73, "ingested": now},
             "rule": {"id": "bench", "name": "bench", "severity": "high"}, "tags": ["bench"],
             "source": {"ip": f"198.18.{(i >> 8) & 255}.{i & 255}"},
             "secops": {"alert": {"id": f"bench-{i}", "status": "open"}}} for i in range(start, start + n)]


def completed(es: Elasticsearch, prefix: str) -> int:
    es.indices.refresh(index=index_for(prefix, "secops.playbook_run"), ignore_unavailable=True)
    return es.count(index=index_for(prefix, "secops.playbook_run"), ignore_unavailable=True,
                    query={"term": {"secops.playbook.status": "completed"}})["count"]


def wait_completed(es: Elasticsearch, prefix: str, target: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while completed(es, prefix) < target:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {completed(es, prefix)} of {target} runs completed in {timeout}s")
        time.sleep(0.2)


def first_step_latency(es: Elasticsearch, prefix: str, client: Celery, samples: int, offset: int) -> list[float]:
    """One alert at a time on idle workers: send time -> the first step's claim time in the run document."""
    helpers.bulk(es, alerts(prefix, offset, samples), refresh="wait_for")
    out = []
    for i in range(offset, offset + samples):
        sent = time.time()
        client.send_task("playbooks.on_alert", args=[f"bench-{i}"])
        wait_completed(es, prefix, i + 1, timeout=60)
        hit = es.search(index=index_for(prefix, "secops.playbook_run"),
                        query={"term": {"secops.playbook.alert_id": f"bench-{i}"}}, size=1)["hits"]["hits"][0]
        started = parse_time(hit["_source"]["secops"]["playbook"]["steps"][0]["started"]).timestamp()
        out.append((started - sent) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--latency-samples", type=int, default=20)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="secops-bench-pb-"))
    redis = RedisServer(base_dir=work / "redis").start()
    workers: list[CeleryWorker] = []
    try:
        with local_node(heap="1g") as node:
            books = work / "books"
            books.mkdir()
            (books / "bench.yaml").write_text(BOOK)
            s = load_settings(None, elasticsearch={"hosts": [node.url]}, redis={"url": redis.url},
                              paths={"state_dir": str(work / "state")},
                              playbooks={"dirs": [str(books)], "builtin": False, "dry_run": True})
            prefix = s.elasticsearch.index_prefix
            es = Elasticsearch(node.url, request_timeout=60)
            es.indices.delete(index=f"{prefix}-*", allow_no_indices=True, expand_wildcards="all")
            install_templates(es, prefix)
            config = write_config(s, work / "secops.yaml")
            workers = [CeleryWorker(config, work / f"w{i}.log", concurrency=1, name=f"bench{i}").start()
                       for i in (1, 2)]
            client = configure(Celery("bench"), s)

            with Timer() as ping:
                results = [client.send_task("celery.accumulate", args=[1]) for _ in range(args.runs * 3)]
                for r in results:
                    r.get(timeout=120)
            ping_rate = args.runs * 3 / ping.seconds

            latencies = first_step_latency(es, prefix, client, args.latency_samples, 0)
            base = args.latency_samples
            helpers.bulk(es, alerts(prefix, base, args.runs), refresh="wait_for")
            with Timer() as t:
                for i in range(base, base + args.runs):
                    client.send_task("playbooks.on_alert", args=[f"bench-{i}"])
                wait_completed(es, prefix, base + args.runs)
            rate = args.runs / t.seconds
            audits = es.count(index=f"{prefix}-audit-*")["count"]
    finally:
        for w in workers:
            w.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    lat = sorted(latencies)
    print_table("playbook runs through 2 workers (enrich + tag, dry-run)", ["measure", "value"], [
        ["runs", args.runs], ["playbook runs/s", rate], ["celery.accumulate tasks/s (peer)", ping_rate],
        ["ratio runs/s : (ping/s / 3 hops)", f"{rate / (ping_rate / 3):.2f}"],
        ["alert -> first step p50 ms (idle)", statistics.median(lat)],
        ["alert -> first step p95 ms (idle)", lat[max(0, int(len(lat) * 0.95) - 1)]],
        ["alert -> first step max ms (idle)", lat[-1]], ["audit documents", audits],
    ])


if __name__ == "__main__":
    main()
