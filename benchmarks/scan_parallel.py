"""One nmap process vs the chunked Celery scan (2 workers) over the same namespace hosts.

Creates a lab of network namespaces (198.18.x.0/24) with HTTP and Modbus/TCP servers, then scans the
same host set (a) with a single nmap process and (b) split into 2 chunks run by 2 real Celery workers
(Redis broker). Prints both wall times and the speed-up ratio. Needs root (network namespaces).

    python3 benchmarks/scan_parallel.py [--hosts 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.test_scan_lab import MODBUS_SERVER, wait_port
from tests.support.netns import Lab
from tests.support.services import CeleryWorker, start_redis, stop_and_remove

PORTS = "22,80,443,502,8080"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="secops-bench-scan-"))
    redis = start_redis()
    workers: list[CeleryWorker] = []
    try:
        with Lab() as lab:
            hosts = []
            for i in range(args.hosts):
                h = lab.add_host(f"h{i}")
                if i % 2:
                    h.popen("python3", "-c", MODBUS_SERVER, h.ip)
                    wait_port(h.ip, 502)
                else:
                    h.popen("python3", "-m", "http.server", "80", "--bind", h.ip, "--directory", str(tmp))
                    wait_port(h.ip, 80)
                hosts.append(h.ip)
            policy = {"name": "bench", "scope": "lab", "profile": "standard", "ports": PORTS, "timing": 4,
                      "version_intensity": 0}
            cfg = {"redis": {"url": redis.url}, "paths": {"state_dir": str(tmp / "state")},
                   "elasticsearch": {"hosts": ["http://127.0.0.1:9"]},
                   "scanning": {"scopes": {"lab": [str(lab.subnet)]}, "exclusions": [f"{lab.gateway}/32"],
                                "host_timeout_seconds": 120, "policies": [policy]}}
            config = tmp / "secops.yaml"
            config.write_text(yaml.safe_dump(cfg))
            from collectors.scanning.runner import plan_scan
            from collectors.scanning.targets import Scope
            from secops.celery_app import app, configure
            from secops.config import load_settings

            settings = load_settings(config)
            configure(app, settings)
            pol = settings.scanning.policies[0]
            workers = [CeleryWorker(config, tmp / f"w{i}.log", 1, f"bench{i}").start() for i in (1, 2)]
            scope = Scope.from_config(settings.scanning.scopes, settings.scanning.exclusions, ["lab"])
            whole = [str(a) for a in scope.expand()]  # the lab /24 without the gateway
            for label, targets in (("live hosts only", hosts), ("whole lab /24", whole)):
                plan = plan_scan(targets, "standard", settings.scanning, policy=pol)
                compare(app, plan, settings, label, len(hosts), args.rounds)
    finally:
        for w in workers:
            w.stop()
        stop_and_remove(redis)


def compare(app, plan, settings, label: str, n_live: int, rounds: int) -> None:
    from collectors.scanning.runner import chunk_hosts, run_plan

    chunks = chunk_hosts(plan.host_args, -(-sum(1 for _ in _addresses(plan.host_args)) // 2))
    assert len(chunks) == 2
    single_t, chunked_t = [], []
    for r in range(rounds):
        t0 = time.perf_counter()
        rep = run_plan(plan, nmap_path=settings.scanning.nmap_path)
        single_t.append(time.perf_counter() - t0)
        open_single = sum(len(h.open_ports) for h in rep.live_hosts)
        t0 = time.perf_counter()
        results = [app.send_task("collectors.scan_chunk", args=[c, "standard", "bench", "bench"]) for c in chunks]
        payloads = [res.get(timeout=600) for res in results]
        chunked_t.append(time.perf_counter() - t0)
        open_chunked = sum(1 for p in payloads for h in p["hosts"] for port in h["ports"] if port["state"] == "open")
        assert open_single == open_chunked == n_live, (open_single, open_chunked)
        print(f"[{label}] round {r + 1}: one nmap process {single_t[-1]:.1f}s, 2 chunks on 2 Celery workers "
              f"{chunked_t[-1]:.1f}s ({open_single} open ports found by both)")
    best_single, best_chunked = min(single_t), min(chunked_t)
    print(f"[{label}] {' '.join(plan.host_args)[:60]}: ports {PORTS}, -sV intensity 0, -T4: single "
          f"{best_single:.1f}s vs chunked {best_chunked:.1f}s -> speed-up {best_single / best_chunked:.2f}x")


def _addresses(host_args):
    import ipaddress

    for h in host_args:
        net = ipaddress.ip_network(h)
        yield from ([net.network_address] if net.num_addresses == 1 else net.hosts())


if __name__ == "__main__":
    main()
