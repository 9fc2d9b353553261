#!/usr/bin/env python3
"""Hunt over 1M connections (issue 14's target: grouped by destination port with the rare view in under 2 s).

    python3 benchmarks/hunt_views.py [--docs 1000000] [--runs 5]

Loads ``--docs`` conn documents (the detection benchmark's mix: 8 common services, a scanner's long tail of
ports, a beacon) with the normal bulk writer (``Store.writer()``: BulkWriter with its spool), plus dns, http
and tls documents for 1 flow in 5,000 (same Community ID), all within the last 24 hours. Then each hunt view
is requested in process through the console (FastAPI TestClient: session, role check, audit document, the
hunt's Elasticsearch searches, template or JSON) as a signed-in analyst, median of ``--runs`` after a warm-up.

Peer: the raw Elasticsearch aggregation of the same query, alone (client time, same node, same run):
``rare_terms`` (Elasticsearch's own rare view) for the rare group-by, a ``terms`` aggregation for the common
view, a composite aggregation for two fields, a ``date_histogram`` for the histogram, a ``terms`` on
``event.dataset`` for the pivot. The console does more per request (hits, min/max, histogram, audit), so the
ratio is what the hunt page costs over the bare aggregation. Set SECOPS_BENCH_ES_URL to reuse a node.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient

from benchmarks.common import local_node, print_table
from benchmarks.console_pages import PASSWORD, median_ms
from benchmarks.detection_pass import conn_doc
from secops.config import load_settings
from secops.console.app import create_app
from secops.console.hunt import HuntQuery
from secops.console.users import UserStore
from secops.ecs import doc_id
from secops.es.client import make_client
from secops.es.store import Store
from secops.es.templates import install_templates

PIVOT_EVERY = 5000  # one flow in this many also has dns, http and tls documents


def community_id(i: int) -> str:
    """A Community ID v1-shaped value per flow (base64 of a SHA-1), so the pivot recognises it as one."""
    return "1:" + base64.b64encode(hashlib.sha1(str(i).encode()).digest()).decode()


def documents(n: int):
    rng = random.Random(42)
    base = time.time() - 7200
    for i in range(n):
        doc = conn_doc(i, rng, base)
        doc["network"]["community_id"] = community_id(i)
        yield doc
        if i % PIVOT_EVERY == 0:
            at, src, dst = doc["@timestamp"], doc["source"], doc["destination"]
            common = {"@timestamp": at, "source": src, "destination": dst,
                      "network": {"transport": "tcp", "community_id": community_id(i)}}
            yield {**common, "_id": doc_id("bench-dns", i), "event": {"dataset": "secops.dns", "kind": "event"},
                   "dns": {"question": {"name": f"host{i}.example.test"}}}
            yield {**common, "_id": doc_id("bench-http", i), "event": {"dataset": "secops.http", "kind": "event"},
                   "url": {"original": f"/download/{i}"}}
            yield {**common, "_id": doc_id("bench-tls", i), "event": {"dataset": "secops.tls", "kind": "event"},
                   "tls": {"client": {"server_name": f"host{i}.example.test"}}}


def load(es, settings, n: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    count = 0
    with Store.from_settings(es, settings).writer() as w:
        for doc in documents(n):
            w.add(doc)
            count += 1
    es.indices.refresh(index=f"{settings.elasticsearch.index_prefix}-*")
    return time.perf_counter() - t0, count


def run(es, settings, n: int, runs: int) -> list[list[object]]:
    prefix = settings.elasticsearch.index_prefix
    app = create_app(settings, es)
    UserStore(es, prefix).add("bench-hunter", "analyst", PASSWORD)
    client = TestClient(app)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
    client.post("/login", data={"name": "bench-hunter", "password": PASSWORD, "csrf": token})

    def page(path: str, **params: str):
        url = f"{path}?{urlencode(params)}"

        def fetch() -> None:
            res = client.get(url)
            assert res.status_code == 200, (url, res.status_code, res.text[:300])
        return fetch

    conn = HuntQuery(dataset="secops.conn", q="*", since="24h")
    index = conn.index(prefix)

    def agg(aggs: dict, index_name: str = index, query: dict | None = None):
        return lambda: es.options(request_timeout=120).search(index=index_name, size=0, query=query or conn.query(),
                                                               aggs=aggs)

    cid = community_id(PIVOT_EVERY * 3)
    pivot_q = {"bool": {"filter": [{"term": {"network.community_id": cid}}]}}
    # the answer must be right before its time counts
    rare = client.get("/api/hunt?" + urlencode({"dataset": "secops.conn", "q": "*", "group_by": "destination.port",
                                                "rare": "1", "since": "24h"})).json()
    assert rare["total"] >= n and rare["groups"] and rare["groups"][0]["count"] <= 10, rare["groups"][:3]
    pivot = client.get("/api/hunt/pivot?" + urlencode({"value": cid})).json()
    assert pivot["kind"] == "community_id" and set(pivot["datasets"]) == \
        {"secops.conn", "secops.dns", "secops.http", "secops.tls"}, pivot
    cases = [
        ("rare view: group by destination.port, least frequent first (page)",
         page("/hunt", dataset="secops.conn", q="*", since="24h", group_by="destination.port", rare="1"),
         agg({"g": {"rare_terms": {"field": "destination.port", "max_doc_count": 10}}})),
        ("same, JSON API", page("/api/hunt", dataset="secops.conn", q="*", since="24h", group_by="destination.port",
                                rare="1"),
         agg({"g": {"rare_terms": {"field": "destination.port", "max_doc_count": 10}}})),
        ("group by destination.port, most frequent first (page)",
         page("/hunt", dataset="secops.conn", q="*", since="24h", group_by="destination.port"),
         agg({"g": {"terms": {"field": "destination.port", "size": 100}}})),
        ("group by source.ip + destination.port, rare (page)",
         page("/hunt", dataset="secops.conn", q="*", since="24h", group_by="source.ip,destination.port", rare="1"),
         agg({"c": {"composite": {"size": 1000, "sources": [{"s": {"terms": {"field": "source.ip"}}},
                                                            {"p": {"terms": {"field": "destination.port"}}}]}}})),
        ("histogram + newest hits, query secops.conn.state:REJ (page)",
         page("/hunt", dataset="secops.conn", q="secops.conn.state:REJ", since="24h"),
         agg({"t": {"date_histogram": {"field": "@timestamp", "fixed_interval": "300s"}}},
             query=HuntQuery(dataset="secops.conn", q="secops.conn.state:REJ").query())),
        ("pivot by Community ID to every dataset (page)", page("/hunt/pivot", value=cid),
         agg({"d": {"terms": {"field": "event.dataset", "size": 100}}}, f"{prefix}-*", pivot_q)),
    ]
    rows: list[list[object]] = []
    for name, console_fn, peer_fn in cases:
        server = median_ms(console_fn, runs)
        peer = median_ms(peer_fn, runs)
        rows.append([name, f"{server:.0f}", f"{peer:.0f}", f"{server / peer:.1f}x", "yes" if server < 2000 else "NO"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with local_node() as node:
        state = Path(tempfile.mkdtemp(prefix="secops-bench-"))
        settings = load_settings(None, elasticsearch={"hosts": [node.url], "index_prefix": "benchhunt"},
                                 paths={"state_dir": str(state / "s"), "cache_dir": str(state / "c")})
        es = make_client(settings)
        es.indices.delete(index="benchhunt-*", allow_no_indices=True, expand_wildcards="all")
        install_templates(es, "benchhunt")
        try:
            took, count = load(es, settings, args.docs)
            print(f"loaded {count:,} documents ({args.docs:,} conn) with the bulk writer in {took:.1f} s "
                  f"({count / took:,.0f} docs/s); load average {os.getloadavg()}")
            rows = run(es, settings, args.docs, args.runs)
            print_table(f"hunt views over {args.docs:,} connections (median of {args.runs}, ms)",
                        ["view", "console ms", "raw ES aggregation ms", "ratio", "< 2 s"], rows)
            print(f"load average: {os.getloadavg()}")
        finally:
            es.indices.delete(index="benchhunt-*", allow_no_indices=True, expand_wildcards="all")
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
