"""A Celery worker on another host (a network namespace) loses its link to the broker and to Elasticsearch
while it runs a scan chunk (nmap held mid-scan, both relays closed, nmap let go while the link is down); when the
link is back the chunk's result is delivered and merged: the inventory has each host once, one new-asset event
each."""

from __future__ import annotations

import os
import signal
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml
from celery.result import AsyncResult

from secops.celery_app import app, configure
from secops.config import load_settings
from secops.devstack.stack import RedisServer
from secops.ecs import iso, utcnow
from tests.integration.test_scan_lab import PORTS, assets, changes, wait_port
from tests.support.netns import Lab, require_root
from tests.support.relay import TcpRelay
from tests.support.services import CeleryWorker, stop_and_remove

pytestmark = pytest.mark.integration

CUT_SECONDS = 10


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def nmap_of(worker: CeleryWorker) -> list[int]:
    pids = []
    for pid in descendants(worker.proc.pid):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "nmap":
                pids.append(pid)
        except OSError:
            continue
    return pids


def test_worker_loses_broker_and_store_mid_chunk_and_the_chunk_is_merged_once(es, settings, config_file, tmp_path):
    require_root()
    with Lab() as lab:
        web1, web2 = lab.add_host("web1"), lab.add_host("web2")
        wk = lab.add_host("wk1")
        for web in (web1, web2):
            web.popen("python3", "-m", "http.server", "80", "--bind", web.ip, "--directory", str(tmp_path))
            wait_port(web.ip, 80)
        broker = RedisServer(Path(tempfile.mkdtemp(prefix="secops-test-redis-cut-"))).start()
        es_port = urllib.parse.urlsplit(settings.elasticsearch.hosts[0]).port
        links = [TcpRelay(lab.gateway, ("127.0.0.1", broker.port)), TcpRelay(lab.gateway, ("127.0.0.1", es_port))]
        worker: CeleryWorker | None = None
        try:
            cfg = yaml.safe_load(config_file.read_text())
            cfg["elasticsearch"]["hosts"] = [f"http://{lab.gateway}:{links[1].address[1]}"]
            cfg["redis"] = {"url": f"redis://{lab.gateway}:{links[0].address[1]}/0"}
            cfg["scanning"] = {"scopes": {"lab": [f"{web1.ip}/31"]}, "chunk_size": 2, "max_parallel_chunks": 1,
                               "host_timeout_seconds": 30,
                               "policies": [{"name": "lab", "scope": "lab", "profile": "discovery", "ports": PORTS,
                                             "timing": 4, "every_minutes": 60}]}
            cfg["inventory"] = {"zones": {"lab": [str(lab.subnet)]}}
            worker_config = tmp_path / "worker.yaml"
            worker_config.write_text(yaml.safe_dump(cfg))
            cfg["redis"] = {"url": f"redis://127.0.0.1:{broker.port}/0"}  # this side of the link
            cfg["elasticsearch"]["hosts"] = settings.elasticsearch.hosts
            config_file.write_text(yaml.safe_dump(cfg))
            configure(app, load_settings(config_file))
            worker = CeleryWorker(worker_config, tmp_path / "wk1.log", 1, "on-wk1", prefix=wk.cmd()).start()

            started = app.send_task("collectors.scan_due_policies", kwargs={"now_iso": iso(utcnow())}).get(timeout=60)
            (merge_id,) = [i for s in started["started"] for i in s["task_ids"]]
            deadline = time.monotonic() + 60
            while not (scans := nmap_of(worker)):
                assert time.monotonic() < deadline, (tmp_path / "wk1.log").read_text()[-3000:]
                time.sleep(0.02)
            for pid in scans:  # the chunk is under way: hold nmap there while the link goes
                os.kill(pid, signal.SIGSTOP)
            for link in links:
                link.close()
            for pid in scans:
                os.kill(pid, signal.SIGCONT)
            time.sleep(CUT_SECONDS)  # nmap finishes during the cut; the worker cannot report it
            assert AsyncResult(merge_id, app=app).state == "PENDING"
            links = [TcpRelay(lab.gateway, link.target, port=link.address[1]) for link in links]
            result = AsyncResult(merge_id, app=app)
            merged = result.get(timeout=120, propagate=False)
            log = (tmp_path / "wk1.log").read_text()
            assert result.state == "SUCCESS" and merged["hosts_seen"] == 2, (merged, log[-4000:])
            assert set(assets(es)) == {web1.ip, web2.ip}
            assert len(es.search(index="secops-asset", size=10)["hits"]["hits"]) == 2
            assert sorted(c["host"]["ip"][0] for c in changes(es, "new_asset")) == sorted([web1.ip, web2.ip])
            assert "collectors.scan_chunk" in log and "Connection to broker lost" in log, log[-4000:]
        finally:
            if worker is not None:
                worker.stop()
            for link in links:
                link.close()
            stop_and_remove(broker)
            configure(app, settings)
