"""BulkWriter throughput vs the raw elasticsearch.helpers.bulk on the same documents, same node, same run.

    python3 benchmarks/bulk_writer.py [--docs 200000] [--rounds 2]

Both sides use the same batch size; rounds alternate which goes first so caches and JIT warm-up
favour neither. Target: ratio (BulkWriter / helpers.bulk docs per second) >= 0.9.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elasticsearch import Elasticsearch, helpers

from benchmarks.common import Timer, local_node, print_table
from secops.config import BulkSettings
from secops.ecs import doc_id
from secops.es.bulk import BulkWriter
from secops.es.templates import index_for, install_templates

BATCH = 5000


def make_docs(n: int) -> list[dict]:
    docs = []
    for i in range(n):
        docs.append({
            "_id": doc_id("bench", i),
            "@timestamp": f"2026-11-20T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.000000Z",
            "event": {"dataset": "secops.conn", "kind": "event", "category": ["network"], "duration": i * 1000},
            "source": {"ip": f"198.18.{(i >> 8) & 255}.{i & 255}", "port": 1024 + i % 60000, "bytes": i * 3,
                       "packets": i % 50},
            "destination": {"ip": "198.19.0.1", "port": 443, "bytes": i * 7, "packets": i % 40},
            "network": {"transport": "tcp", "community_id": f"1:{doc_id('cid', i)[:28]}=", "protocol": "ssl"},
            "secops": {"conn": {"state": "SF", "history": "ShADadFf", "orig_bytes": i, "resp_bytes": 2 * i}},
        })
    return docs


def reset(es: Elasticsearch) -> None:
    es.indices.delete(index="secops-conn-*", allow_no_indices=True)
    install_templates(es)


def run_helpers(es: Elasticsearch, docs: list[dict]) -> float:
    def actions():
        for d in docs:
            source = {k: v for k, v in d.items() if k != "_id"}
            yield {"_index": index_for("secops", "secops.conn", d["@timestamp"]), "_id": d["_id"], "_source": source}

    with Timer() as t:
        ok, errors = helpers.bulk(es, actions(), chunk_size=BATCH, max_chunk_bytes=64 * 1024 * 1024,
                                  raise_on_error=True, stats_only=True)
    assert ok == len(docs) and not errors
    return t.seconds


def run_writer(es: Elasticsearch, docs: list[dict]) -> float:
    spool = Path(tempfile.mkdtemp(prefix="secops-bench-spool-"))
    cfg = BulkSettings(batch_docs=BATCH, batch_bytes=64 * 1024 * 1024, flush_seconds=3600)
    with Timer() as t, BulkWriter(es, spool, cfg) as w:
        for d in docs:
            w.add(d)
    shutil.rmtree(spool)
    assert w.stats.written == len(docs)
    return t.seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    docs = make_docs(args.docs)
    with local_node() as node:
        es = Elasticsearch(node.url, request_timeout=120)
        results: dict[str, list[float]] = {"helpers.bulk": [], "BulkWriter": []}
        for r in range(args.rounds):
            order = [("helpers.bulk", run_helpers), ("BulkWriter", run_writer)]
            for name, fn in order if r % 2 == 0 else reversed(order):
                reset(es)
                results[name].append(fn(es, docs))
                es.indices.refresh(index="secops-conn-*")
                assert es.count(index="secops-conn-*")["count"] == len(docs)
    rows = []
    best = {name: args.docs / min(times) for name, times in results.items()}
    for name, times in results.items():
        rows.append([name, args.docs, min(times), best[name]])
    print_table(f"bulk throughput, {args.docs:,} docs, batch {BATCH}, best of {args.rounds}",
                ["writer", "docs", "seconds", "docs/s"], rows)
    ratio = best["BulkWriter"] / best["helpers.bulk"]
    print(f"ratio BulkWriter/helpers.bulk = {ratio:.2f} (target >= 0.9)")


if __name__ == "__main__":
    main()
