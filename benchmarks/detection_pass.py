#!/usr/bin/env python3
"""Detection pass over 1M generated connection documents, and event-to-alert latency in live mode.

    python3 benchmarks/detection_pass.py [--docs 1000000] [--live-seconds 90] [--interval 10]

Uses SECOPS_BENCH_ES_URL, or starts a local node like the tests do. Prints:
  * indexing rate, then the time of one pass of the whole rule pack (Sigma rules, correlations,
    beaconing/DNS/IOC analytics) over the documents, with the slowest rules; the peer is one plain
    terms aggregation over the same documents (what any single-aggregation rule costs at least);
  * live mode: a producer writes matching events while a scheduler loop runs due rules every
    --interval seconds; latency = alert created - event ingested, p50/p95 (target p95 < 60 s, vs the
    5-minute default interval of Elastic Security rules).

Each pass also prints its Elasticsearch requests by kind, the seconds spent waiting on them and in Python, per rule
(the query rules that run together as one line), and is repeated with the SigmaHQ rules of the shared test data
added (--sigmahq). --reuse keeps the documents of an earlier run on SECOPS_BENCH_ES_URL; --live-seconds 0 skips
live mode.

Measured 2026-11-29, 1M docs, 38 rules, same node, load 5-6 on 2 cores: before batching 54.4 s (Beaconing 34.8,
Port Probe Burst 15.0, Host Sweep 2.6); after 24.1 s (Beaconing 11.2, Port Probe Burst 7.5, Host Sweep 3.3),
34 alerts both. Then (same day, same node, this script run alternately on main and on the branch, load 6-10):
main 101.2 s and 65.5 s, 599 requests (318 searches, 281 alert/incident/checkpoint writes and reads); with bulk
alert writes, shared query-rule searches, cheaper beaconing and orjson responses 26.6 s and 26.9 s, 162 requests,
26 alerts both. At load 2.5-3.4: 13.3-14.7 s (pack) and 15.2 s (pack + 98 SigmaHQ rules = 136 rules, whose 121
query rules take 0.2-0.4 s in 5 requests); Beaconing is 60-70 % of a pass (56 searches returning the 1M
(source, destination, port) groups in batches), Port Probe Burst 20 %.

Then (detect5; the request cache is cleared before each pass, main run the same way, alternating on one node):
sources and correlation leads whose largest group cannot reach the threshold are left out before groups are
counted (Beaconing 59 -> 9 searches), the rules outside the shared query-rule searches are evaluated 4 at a time
and recorded in order, matched buckets' sample events read 50 buckets a search. At load 3.9-4.5: main 13.2 and
15.4 s (pack), 15.7 and 21.5 s (with SigmaHQ); this branch 3.6 and 4.6 s (pack), 4.6 and 5.7 s (with SigmaHQ);
104 requests (was 162), 26 alerts both. At load 6-8 main 41.0 and 51.8 s, this branch 9.5 and 9.7 s. With the
sample searches narrowed by their buckets' span, on a quiet machine (load 0.9-1.3, three alternating rounds): main
10.8/10.6/10.0 s (pack) and 11.3/10.1/9.6 s (with SigmaHQ); this branch 2.1/2.0/1.8 s and 2.1/2.4/2.2 s; with one
evaluation thread 2.3-2.4 s and 2.5-2.6 s (load 1.8-1.9): the pruning and the sample reads are most of the gain.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import local_node
from detections.alerts import AlertStore
from detections.loader import default_rule_dirs
from detections.pack import build_pack
from detections.scheduler import Scheduler
from secops.config import load_settings
from secops.ecs import doc_id, iso, parse_time, utcnow
from secops.es.client import make_client
from secops.es.store import Store
from secops.es.templates import install_templates

SIGMAHQ_RULES = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "sigma" / "rules"
STATES = ["SF"] * 90 + ["S0"] * 4 + ["REJ"] * 3 + ["RSTO", "S1", "SH"]


def conn_doc(i: int, rng: random.Random, base: float) -> dict:
    kind = rng.random()
    at = base + rng.uniform(0, 3600)
    if kind < 0.005:  # scanner
        src, dst, port, state, ob = "198.18.200.1", f"198.18.{100 + i % 4}.{i % 250 + 1}", rng.randint(1, 1024), \
            "REJ", 0
    elif kind < 0.006:  # beacon every 60 s
        k = i % 60
        src, dst, port, state, ob, at = "198.18.201.7", "198.18.250.9", 443, "SF", 310, base + 60 * k
    else:
        src = f"198.18.{i % 40}.{rng.randint(1, 254)}"
        dst = f"198.19.{rng.randint(0, 7)}.{rng.randint(1, 254)}"
        port, state, ob = rng.choice([80, 443, 443, 53, 22, 445, 8080, 3389]), rng.choice(STATES), rng.randint(0, 9000)
    return {"_id": doc_id("bench", i), "@timestamp": iso(at),
            "event": {"dataset": "secops.conn", "kind": "event"},
            "source": {"ip": src, "port": rng.randint(1024, 65535), "bytes": ob + 40, "packets": 3},
            "destination": {"ip": dst, "port": port, "bytes": 900, "packets": 3},
            "network": {"transport": "tcp", "community_id": f"1:{i}"},
            "secops": {"conn": {"state": state, "orig_bytes": 0 if state in ("S0", "REJ") else ob, "resp_bytes": 800}}}


def load(es, settings, n: int) -> float:
    rng = random.Random(42)
    base = time.time() - 7200
    t0 = time.perf_counter()
    with Store.from_settings(es, settings).writer() as w:
        for i in range(n):
            w.add(conn_doc(i, rng, base))
    es.indices.refresh(index="secops-conn-*")
    return time.perf_counter() - t0


class RequestMeter:
    """Counts the Elasticsearch requests of each rule and the seconds spent waiting for them (the client's
    transport is shared by every ``options()`` clone, so wrapping it sees every request; rules evaluated at the
    same time in other threads are told apart by thread)."""

    def __init__(self, es: Any) -> None:
        self.transport = es._transport
        self.inner = self.transport.perform_request
        self.local = threading.local()
        self.lock = threading.Lock()
        self.requests: dict[str, Counter] = defaultdict(Counter)
        self.waited: dict[str, float] = defaultdict(float)
        self.seconds: dict[str, Counter] = defaultdict(Counter)

    @property
    def rule(self) -> str:
        return getattr(self.local, "rule", "-")

    def perform_request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.inner(method, path, *args, **kwargs)
        finally:
            took, kind, rule = time.perf_counter() - t0, request_kind(method, path), self.rule
            with self.lock:
                self.waited[rule] += took
                self.requests[rule][kind] += 1
                self.seconds[rule][kind] += took

    @contextmanager
    def installed(self, sched: Scheduler) -> Iterator[None]:
        evaluate, conclude = sched._evaluate, sched._conclude

        def metered(step: Any, rule_id: str, *args: Any) -> Any:
            self.local.rule = rule_id
            try:
                return step(*args)
            finally:
                self.local.rule = "-"

        self.transport.perform_request = self.perform_request
        sched._evaluate = lambda rule, now: metered(evaluate, rule.id, rule, now)  # type: ignore[method-assign]
        sched._conclude = lambda ev: metered(conclude, ev.rule.id, ev)  # type: ignore[method-assign]
        try:
            yield
        finally:
            self.transport.perform_request = self.inner
            del sched._evaluate, sched._conclude


def request_kind(method: str, path: str) -> str:
    """``search``, ``msearch``, ``bulk``, ``GET doc``, ``PUT doc``, ``update``, ...: the path's API name."""
    api = next((part[1:] for part in path.split("?")[0].split("/") if part.startswith("_")), "index")
    return f"{method} {api}" if api in ("doc", "index") else api


def _kinds(requests: Counter, seconds: Counter) -> str:
    return ", ".join(f"{v} {k} {seconds[k]:.2f} s" for k, v in requests.most_common(4))


def one_pass(es, settings, rule_dirs: list[Path] | None = None, label: str = "pack") -> None:
    pack = build_pack(settings, rule_dirs)
    store = AlertStore(es, settings.elasticsearch.index_prefix, notifier=None)
    sched = Scheduler(es, settings, pack.runnable, alerts=store)
    sched.reset()
    es.options(ignore_status=404).indices.delete(index=store.index)
    es.options(ignore_status=404).indices.delete(index=f"{settings.elasticsearch.index_prefix}-incident*")
    meter = RequestMeter(es)
    es.indices.clear_cache(index="secops-*", request=True)  # no answer of an earlier pass served from the cache
    load = Path("/proc/loadavg").read_text().split()[0]
    t0 = time.perf_counter()
    with meter.installed(sched):
        runs = sched.run()
    total = time.perf_counter() - t0
    t1 = time.perf_counter()
    es.search(index="secops-conn-*", size=0, aggs={"s": {"terms": {"field": "source.ip", "size": 10}}})
    peer = time.perf_counter() - t1
    count = es.count(index="secops-conn-*")["count"]
    by_id = {r.id: r for r in pack.rules}
    requests = sum(sum(c.values()) for c in meter.requests.values())
    waited = sum(meter.waited.values())
    print(f"detection pass ({label}, load {load}): {len(runs)} rules over {count} conn documents in {total:.1f} s "
          f"({count / total:,.0f} docs/s); peer (one terms aggregation): {peer:.2f} s; ratio {total / peer:.0f}x")
    kinds = _kinds(sum(meter.requests.values(), Counter()), sum(meter.seconds.values(), Counter()))
    print(f"  {requests} Elasticsearch requests, {waited:.1f} s waiting on Elasticsearch (summed over the rules "
          f"evaluated at once, {sched.threads} at a time); {kinds}")
    print(f"  alerts: {sum(r.created for r in runs)} new; failed rules: {[r.rule_id for r in runs if r.error]}")
    shared = [r for r in runs if r.rule_id not in meter.requests]
    if shared:
        print(f"  {sum(r.seconds for r in shared):6.2f} s  (ES {meter.waited['-']:5.2f} s, "
              f"{sum(meter.requests['-'].values()):4} requests: {_kinds(meter.requests['-'], meter.seconds['-'])})  "
              f"{len(shared)} query rules together")
    for r in sorted(runs, key=lambda r: -r.seconds)[:12]:
        n = sum(meter.requests[r.rule_id].values())
        print(f"  {r.seconds:6.2f} s  (ES {meter.waited[r.rule_id]:5.2f} s, {n:4} requests: "
              f"{_kinds(meter.requests[r.rule_id], meter.seconds[r.rule_id])})  {by_id[r.rule_id].title}")

def live(es, settings, seconds: int, interval: int) -> None:
    settings.detections.interval_seconds = interval
    pack = build_pack(settings)
    rules = [r for r in pack.runnable if r.id == "24e688c5-144e-5c29-9d44-a52e73cd78c6"] + \
        [r for r in pack.runnable if r.kind == "correlation"]
    store = AlertStore(es, settings.elasticsearch.index_prefix, notifier=None)
    sched = Scheduler(es, settings, rules, alerts=store)
    sched.run()  # checkpoints at now: live from here
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            sched.run(only_due=True)
            stop.wait(1.0)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    sent: dict[str, float] = {}
    settings.bulk.flush_seconds = 1.0
    with Store.from_settings(es, settings).writer(background_flush=True) as w:
        end = time.time() + seconds
        i = 0
        while time.time() < end:
            src = f"198.18.210.{i % 250 + 1}"
            now = utcnow()
            w.add({"_id": doc_id("live", i), "@timestamp": iso(now), "source": {"ip": src},
                   "destination": {"ip": "198.18.211.1"}, "event": {"dataset": "secops.smb", "kind": "event"},
                   "secops": {"dcerpc": {"endpoint": "svcctl", "operation": "CreateServiceW"}}})
            sent[src] = now.timestamp()
            i += 1
            time.sleep(2.0)
    time.sleep(interval + 15)
    stop.set()
    thread.join(timeout=60)
    latencies = []
    for a in store.list(rule="24e688c5-144e-5c29-9d44-a52e73cd78c6", size=1000):
        src = a["source"]["ip"]
        if src in sent:
            latencies.append(parse_time(a["event"]["created"]).timestamp() - sent[src])
    missed = len(sent) - len(latencies)
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
    print(f"live mode (interval {interval} s): {len(latencies)} events -> alerts, {missed} missed; latency "
          f"p50 {statistics.median(latencies):.1f} s, p95 {p95:.1f} s, max {max(latencies):.1f} s "
          f"(target p95 < 60 s; peer Elastic Security default interval 300 s -> ratio {300 / p95:.1f}x)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--live-seconds", type=int, default=90)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--sigmahq", type=Path, default=SIGMAHQ_RULES,
                    help="SigmaHQ rules added for the second pass (the shared test data's network rules)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the documents of an earlier run on SECOPS_BENCH_ES_URL when the count matches")
    args = ap.parse_args()
    with local_node() as node:
        state = Path(tempfile.mkdtemp(prefix="secops-bench-"))
        settings = load_settings(None, elasticsearch={"hosts": [node.url]},
                                 paths={"state_dir": str(state / "s"), "cache_dir": str(state / "c")})
        es = make_client(settings)
        reuse = args.reuse and es.options(ignore_status=404).count(index="secops-conn-*").get("count") == args.docs
        if not reuse:
            es.indices.delete(index="secops-*", allow_no_indices=True, expand_wildcards="all")
        install_templates(es, settings.elasticsearch.index_prefix)
        try:
            if not reuse:
                took = load(es, settings, args.docs)
                print(f"indexed {args.docs} conn documents in {took:.1f} s ({args.docs / took:,.0f} docs/s)")
            one_pass(es, settings)
            if args.sigmahq and args.sigmahq.is_dir():
                one_pass(es, settings, [*default_rule_dirs(settings.detections.rules_dirs), args.sigmahq],
                         "pack + SigmaHQ network rules")
            if args.live_seconds > 0:
                live(es, settings, args.live_seconds, args.interval)
        finally:
            shutil.rmtree(state, ignore_errors=True)

if __name__ == "__main__":
    main()
