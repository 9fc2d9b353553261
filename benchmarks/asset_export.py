"""Time a compliance export of 100,000 assets (CSV, XLSX, JSON) against a real Elasticsearch node.

Peer: streaming the same 100,000 asset documents out of Elasticsearch without writing anything
(the floor any export pays). Prints seconds, assets/s and the ratio export / peer per format.

    python3 benchmarks/asset_export.py [--assets 100000]
Set SECOPS_BENCH_ES_URL to reuse a running node (otherwise one is started and removed).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elasticsearch import Elasticsearch

from benchmarks.common import local_node
from inventory.export import export_assets
from inventory.store import AssetStore
from secops.config import BulkSettings, InventorySettings
from secops.ecs import doc_id, iso, utcnow
from secops.es.store import Store
from secops.es.templates import install_templates

PREFIX = "benchexport"
SERVICES = [(22, "ssh", "OpenSSH", "9.2p1"), (80, "http", "nginx", "1.24"), (502, "mbap", None, None),
            (21, "ftp", "vsftpd", "3.0.3"), (443, "https", "Apache httpd", "2.4.57"), (23, "telnet", None, None)]


def make_asset(i: int, rnd: random.Random, now: str) -> dict:
    aid = doc_id("bench-asset", i)
    services = [{"port": p, "transport": "tcp", "name": n, "product": pr, "version": v, "state": "open"}
                for p, n, pr, v in rnd.sample(SERVICES, rnd.randint(1, 4))]
    owner = rnd.choice(["Zhang Wei", "Li Na", None, "=HYPERLINK(\"http://x\")", "Ops Team"])
    return {"_id": aid, "@timestamp": now, "event": {"dataset": "secops.asset", "kind": "state"},
            "host": {"ip": [f"198.18.{(i >> 8) & 255}.{i & 255}"], "mac": [f"02:00:00:{(i >> 16) & 255:02x}:"
                                                                         f"{(i >> 8) & 255:02x}:{i & 255:02x}"],
                     "hostname": f"host-{i}", "os": {"full": "Linux 5.x"}},
            "secops": {"asset": {"id": aid, "zone": rnd.choice(["it", "ot", "dmz"]), "owner": owner,
                                 "department": "Water", "location": f"Site {i % 40}", "criticality": "medium",
                                 "sources": ["scan"], "first_seen": now, "last_seen": now, "last_scan": now,
                                 "services": services, "findings": []}},
            "tags": ["bench"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", type=int, default=100_000)
    args = ap.parse_args()
    with local_node() as node:
        run(Elasticsearch(node.url, request_timeout=120), args.assets)


def run(es: Elasticsearch, assets: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="secops-bench-export-"))
    try:
        es.indices.delete(index=f"{PREFIX}-*", allow_no_indices=True)
        install_templates(es, PREFIX)
        rnd, now = random.Random(7), iso(utcnow())
        t0 = time.perf_counter()
        with Store(es, PREFIX, spool_dir=tmp / "spool", bulk=BulkSettings(batch_docs=5000)).writer() as w:
            for i in range(assets):
                w.add(make_asset(i, rnd, now))
        es.indices.refresh(index=f"{PREFIX}-asset")
        print(f"indexed {assets} assets in {time.perf_counter() - t0:.1f}s")
        store = AssetStore(es, PREFIX)
        assert store.count() == assets
        t0 = time.perf_counter()
        n = sum(1 for _ in store.iter_all())
        peer = time.perf_counter() - t0
        print(f"peer: stream {n} assets from Elasticsearch: {peer:.1f}s ({n / peer:,.0f} assets/s)")
        for fmt in ("csv", "json", "xlsx"):
            t0 = time.perf_counter()
            res = export_assets(store.iter_all(), tmp / f"assets.{fmt}", fmt, InventorySettings(), utcnow(),
                                lang="zh")
            took = time.perf_counter() - t0
            size = res.path.stat().st_size / 1e6
            print(f"export {fmt:4s}: {res.rows} assets in {took:.1f}s ({res.rows / took:,.0f} assets/s, "
                  f"{size:.1f} MB, sha256+sm3 manifests) ratio vs peer {took / peer:.2f}x")
    finally:
        es.indices.delete(index=f"{PREFIX}-*", allow_no_indices=True)
        for f in tmp.rglob("*"):
            if f.is_file():
                f.unlink()


if __name__ == "__main__":
    main()
