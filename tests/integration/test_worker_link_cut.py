"""A Celery worker on another host (a network namespace) loses its link to the broker and to Elasticsearch
while it runs a scan chunk (nmap held as it starts by a gate, both relays closed, nmap let go while the link is
down); when the link is back the chunk's result is delivered and merged: the inventory has each host once, one
new-asset event each."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml
from celery.result import AsyncResult

from secops.celery_app import app
from secops.ecs import iso, utcnow
from tests.integration.test_scan_lab import PORTS, assets, changes, wait_port
from tests.support.linked_worker import LinkedWorker
from tests.support.netns import Lab, require_root

pytestmark = pytest.mark.integration

CUT_SECONDS = 10


def gated_nmap(workdir: Path) -> tuple[Path, Path, Path]:
    """An ``nmap`` that announces its start and waits for a gate file before it runs the real one, so the test
    holds the chunk mid-way without racing a fast scan. ``nmap -V`` (python-nmap's probe) is not held."""
    script, started, gate = workdir / "nmap-gated", workdir / "nmap-started", workdir / "nmap-gate"
    script.write_text(f"""#!/bin/sh
case "$*" in *-V*) exec {shutil.which("nmap")} "$@";; esac
touch {started}
i=0
while [ ! -e {gate} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
exec {shutil.which("nmap")} "$@"
""")
    script.chmod(0o755)
    return script, started, gate


def test_worker_loses_broker_and_store_mid_chunk_and_the_chunk_is_merged_once(es, settings, config_file, tmp_path):
    require_root()
    with Lab() as lab:
        web1, web2 = lab.add_host("web1"), lab.add_host("web2")
        wk = lab.add_host("wk1")
        for web in (web1, web2):
            web.popen("python3", "-m", "http.server", "80", "--bind", web.ip, "--directory", str(tmp_path))
            wait_port(web.ip, 80)
        cfg = yaml.safe_load(config_file.read_text())
        nmap_path, nmap_started, nmap_gate = gated_nmap(tmp_path)
        cfg["scanning"] = {"nmap_path": str(nmap_path), "scopes": {"lab": [f"{web1.ip}/31"]}, "chunk_size": 2,
                           "max_parallel_chunks": 1,
                           "host_timeout_seconds": 30,
                           "policies": [{"name": "lab", "scope": "lab", "profile": "discovery", "ports": PORTS,
                                         "timing": 4, "every_minutes": 60}]}
        cfg["inventory"] = {"zones": {"lab": [str(lab.subnet)]}}
        with LinkedWorker(lab, wk, cfg, settings, tmp_path) as linked:
            started = app.send_task("collectors.scan_due_policies", kwargs={"now_iso": iso(utcnow())}).get(timeout=60)
            (merge_id,) = [i for s in started["started"] for i in s["task_ids"]]
            deadline = time.monotonic() + 60
            while not nmap_started.exists():  # the chunk is under way, nmap held at its gate
                assert time.monotonic() < deadline, linked.log_tail()
                time.sleep(0.05)
            linked.cut()
            nmap_gate.touch()
            time.sleep(CUT_SECONDS)  # nmap finishes during the cut; the worker cannot report it
            assert AsyncResult(merge_id, app=app).state == "PENDING"
            linked.restore()
            result = AsyncResult(merge_id, app=app)
            merged = result.get(timeout=120, propagate=False)
            log = linked.log.read_text()
            assert result.state == "SUCCESS" and merged["hosts_seen"] == 2, (merged, log[-4000:])
            assert set(assets(es)) == {web1.ip, web2.ip}
            assert len(es.search(index="secops-asset", size=10)["hits"]["hits"]) == 2
            assert sorted(c["host"]["ip"][0] for c in changes(es, "new_asset")) == sorted([web1.ip, web2.ip])
            assert "collectors.scan_chunk" in log and "Connection to broker lost" in log, log[-4000:]
