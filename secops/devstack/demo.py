"""`secops demo`: the whole platform end to end on this machine, offline.

Starts the local stack, writes a synthetic labelled capture (secops.devstack.demo_traffic), ingests it,
scans loopback with the real nmap, merges the inventory, runs the detections, lists the alerts,
plans a containment playbook in dry-run for the top alert and exports the inventory for auditors.
Each stage is the real `secops` command, run as a subprocess with a demo configuration, so what the
demo shows is exactly what an operator would type. The demo writes under its own index prefix
(``secops_demo-*``), cleared at the start: every run shows the same results, and an operator's own
``secops-*`` data on the same node is never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Console

from secops.config import Settings, load_settings
from secops.devstack.demo_traffic import write_demo_pcap
from secops.devstack.stack import LocalStack
from secops.es.client import make_client

DEMO_PREFIX = "secops_demo"


@dataclass
class Stage:
    title: str
    args: list[str]
    optional: bool = False


def demo_config(settings: Settings, directory: Path) -> Path:
    es_url, redis_url = LocalStack(settings.paths.state_dir).urls()
    config = {
        "elasticsearch": {"hosts": [es_url], "index_prefix": DEMO_PREFIX},
        "redis": {"url": redis_url},
        "paths": {"state_dir": str(settings.paths.state_dir), "spool_dir": str(directory / "spool"),
                  "pcap_dir": str(directory / "pcap")},
        "scanning": {"scopes": {"demo-loopback": ["127.0.0.1/32"]}},
        "inventory": {"zones": {"demo-lab": ["198.18.0.0/15"], "loopback": ["127.0.0.0/8"]}},
        "playbooks": {"dry_run": True, "protected": ["198.18.0.53"]},
    }
    path = directory / "secops-demo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_demo(settings: Settings, console: Console) -> int:
    """Run every stage; returns the number of failed stages (0 = the demo worked end to end)."""
    directory = settings.paths.state_dir / "demo"
    directory.mkdir(parents=True, exist_ok=True)
    with console.status("starting Elasticsearch and Redis (first run fetches Elasticsearch with mvn)..."):
        es, rd = LocalStack(settings.paths.state_dir).up()
    console.print(f"[green]stack[/] elasticsearch {es.url}, redis {rd.url}")
    config = demo_config(settings, directory)
    make_client(load_settings(config)).indices.delete(index=f"{DEMO_PREFIX}-*", allow_no_indices=True,
                                                       expand_wildcards="all")
    console.print(f"[green]clean slate[/] earlier demo indices ({DEMO_PREFIX}-*) removed; secops-* data untouched")
    pcap = directory / "demo-traffic.pcap"
    packets, behaviours = write_demo_pcap(pcap, time.time() - 3600)
    console.print(f"[green]capture[/] {pcap} ({packets} packets): " + "; ".join(behaviours))
    exports = directory / "exports"
    exports.mkdir(exist_ok=True)
    stages = [
        Stage("install index templates", ["es", "templates"]),
        Stage("ingest the capture (flows + protocol metadata + passive observations)", ["ingest", str(pcap)]),
        Stage("scan loopback with nmap (scope: demo-loopback)", ["scan", "127.0.0.1", "--profile", "discovery"]),
        Stage("merge passive observations into the inventory", ["assets", "merge"]),
        Stage("run every detection rule once", ["detect", "run"]),
        Stage("alerts for the SOC", ["alerts", "list"]),
        Stage("assets", ["assets", "list"]),
        Stage("export the inventory for auditors (XLSX + SHA-256 manifest)",
              ["assets", "export", "--format", "xlsx", "--output", str(exports / "assets.xlsx")]),
        Stage("documents per index", ["es", "indices"]),
    ]
    failures = 0
    env = dict(os.environ, SECOPS_CONFIG=str(config))
    for n, stage in enumerate(stages, 1):
        console.rule(f"[bold]{n}/{len(stages) + 1} {stage.title}[/]  secops {' '.join(stage.args)}")
        proc = subprocess.run([sys.executable, "-m", "secops", *stage.args], env=env, check=False)
        if proc.returncode != 0:
            failures += 1
            console.print(f"[red]stage failed (exit {proc.returncode})[/]")
    console.rule(f"[bold]{len(stages) + 1}/{len(stages) + 1} containment playbook for the top alert, dry run[/]")
    failures += _dry_run_playbook(env, console)
    console.rule()
    verdict = "[green]demo complete[/]" if not failures else f"[red]demo finished with {failures} failed stage(s)[/]"
    console.print(f"{verdict}. Config: {config}. Kibana: `secops kibana import` against your Kibana.")
    return failures


def _dry_run_playbook(env: dict[str, str], console: Console) -> int:
    listing = subprocess.run([sys.executable, "-m", "secops", "alerts", "list", "--format", "json"], env=env,
                             capture_output=True, text=True, check=False)
    alerts = [json.loads(line) for line in listing.stdout.splitlines() if line.startswith("{")]
    if listing.returncode != 0 or not alerts:
        console.print("[red]no alerts to run a playbook for[/]")
        return 1
    top = max(alerts, key=lambda a: a.get("event", {}).get("severity", 0))
    alert_id = top.get("secops", {}).get("alert", {}).get("id") or top.get("_id")
    console.print(f"top alert: {top.get('rule', {}).get('name')} ({alert_id})")
    proc = subprocess.run([sys.executable, "-m", "secops", "playbooks", "run", "contain-attacker", "--alert",
                           alert_id, "--dry-run"], env=env, check=False)
    return 0 if proc.returncode == 0 else 1
