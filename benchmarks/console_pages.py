"""Server time of the console's heaviest pages over 100,000 alerts and 100,000 assets (target: under 1 s).

Each page is requested in process (FastAPI TestClient: routing, session and role check, Elasticsearch query,
template rendering) as a signed-in analyst; the median of 7 requests after one warm-up is reported. Peer: the
Elasticsearch query behind the page alone (its own ``took`` plus client overhead, measured the same way), so
the ratio is what the console adds on top of the store.

    python3 benchmarks/console_pages.py [--alerts 100000] [--assets 100000]
Set SECOPS_BENCH_ES_URL to reuse a running node (otherwise one is started and removed).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elasticsearch import Elasticsearch, helpers
from fastapi.testclient import TestClient

from benchmarks.asset_export import make_asset
from benchmarks.common import local_node, print_table
from secops.config import load_settings
from secops.console.alerts import AlertFilter
from secops.console.app import create_app
from secops.console.users import UserStore
from secops.ecs import doc_id, iso, utcnow
from secops.es.templates import install_templates

PREFIX = "benchconsole"
RULES = [f"Rule {i:02d}: {name}" for i, name in enumerate(
    ["port scan", "ssh brute force", "dns tunnelling", "beaconing", "smb lateral movement", "modbus write",
     "ioc domain", "tls self-signed", "http sqlmap", "ftp cleartext login"] * 4)]
PASSWORD = "benchmark password 1"


def alerts(n: int, rnd: random.Random):
    now = utcnow().timestamp()
    for i in range(n):
        at = iso(now - rnd.uniform(0, 30 * 86400))
        rule = rnd.choice(RULES)
        aid = doc_id("bench-alert", i)
        yield {"_index": f"{PREFIX}-alert", "_id": aid, "_source": {
            "@timestamp": at, "event": {"dataset": "secops.alert", "kind": "alert", "severity": 47},
            "rule": {"id": rule[:7], "name": rule, "severity": rnd.choice(["low", "medium", "high", "critical"])},
            "source": {"ip": f"198.18.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"},
            "destination": {"ip": f"198.19.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}", "port": rnd.choice([22, 80,
                                                                                                             502])},
            "secops": {"alert": {"id": aid, "status": rnd.choice(["open", "open", "acknowledged", "closed"]),
                                 "count": rnd.randint(1, 50), "first_time": at, "last_time": at,
                                 "history": [{"at": at, "by": "secops-detect", "action": "created", "new": "open"}]}}}}


def median_ms(fn, runs: int = 7) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--alerts", type=int, default=100_000)
    ap.add_argument("--assets", type=int, default=100_000)
    args = ap.parse_args()
    with local_node() as node:
        run(node.url, args.alerts, args.assets)


def run(url: str, n_alerts: int, n_assets: int) -> None:
    es = Elasticsearch(url, request_timeout=300)
    es.indices.delete(index=f"{PREFIX}-*", allow_no_indices=True, expand_wildcards="all")
    install_templates(es, PREFIX)
    rnd = random.Random(13)
    t0 = time.perf_counter()
    helpers.bulk(es, alerts(n_alerts, rnd), chunk_size=5000)
    now = iso()
    helpers.bulk(es, ({"_index": f"{PREFIX}-asset", "_id": (d := make_asset(i, rnd, now)).pop("_id"), "_source": d}
                      for i in range(n_assets)), chunk_size=5000)
    es.indices.refresh(index=f"{PREFIX}-*")
    es.indices.forcemerge(index=f"{PREFIX}-*", max_num_segments=1)
    print(f"loaded {n_alerts} alerts and {n_assets} assets in {time.perf_counter() - t0:.1f} s")

    settings = load_settings(None, elasticsearch={"hosts": [url], "index_prefix": PREFIX})
    app = create_app(settings, es)
    UserStore(es, PREFIX).add("bench-analyst", "analyst", PASSWORD)
    client = TestClient(app)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    client.post("/login", data={"name": "bench-analyst", "password": PASSWORD, "csrf": token})

    def page(path: str):
        def fetch() -> None:
            res = client.get(path)
            assert res.status_code == 200, (path, res.status_code, res.text[:300])
        return fetch

    def query(body: dict, index: str):
        return lambda: es.search(index=index, **body)

    grouped = {"query": AlertFilter().query(), "size": 0, "track_total_hits": True,
               "aggs": {"groups": {"terms": {"field": "rule.name", "size": 100}}}}
    listed = {"query": AlertFilter(status="open").query(), "size": 100, "track_total_hits": True,
              "sort": [{"secops.alert.last_time": "desc"}]}
    assets = {"query": {"match_all": {}}, "size": 100, "track_total_hits": True,
              "sort": [{"secops.asset.last_seen": "desc"}]}
    cases = [
        ("alert queue grouped by rule (all alerts)", "/alerts?status=&group_by=rule.name", grouped, "alert"),
        ("same, JSON API", "/api/alerts?group_by=rule.name", grouped, "alert"),
        ("alert queue, open, newest 100", "/alerts?status=open", listed, "alert"),
        ("asset list, newest 100", "/assets", assets, "asset"),
        ("asset search 'host-4242'", "/assets?q=host-4242", None, "asset"),
    ]
    rows = []
    for name, path, body, index in cases:
        server = median_ms(page(path))
        peer = median_ms(query(body, f"{PREFIX}-{index}")) if body else None
        rows.append([name, f"{server:.0f}", f"{peer:.0f}" if peer else "-",
                     f"{server / peer:.1f}x" if peer else "-", "yes" if server < 1000 else "NO"])
    print_table(f"console server time, {n_alerts:,} alerts / {n_assets:,} assets (median of 7)",
                ["page", "console ms", "ES query ms", "ratio", "< 1 s"], rows)
    print(f"load average: {os.getloadavg()}")
    es.indices.delete(index=f"{PREFIX}-*", allow_no_indices=True, expand_wildcards="all")


if __name__ == "__main__":
    main()
