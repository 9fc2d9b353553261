"""Workers on several hosts: two Celery workers, each in its own network namespace (its own "host"),
share one Redis broker and one Elasticsearch reachable only over the lab network; a chunked scan policy
over namespace hosts runs its chunks on both, and both chunks are merged into the inventory."""

from __future__ import annotations

import tempfile
import urllib.parse
from pathlib import Path

import pytest
import yaml

from secops.celery_app import app, configure
from secops.config import load_settings
from secops.devstack.stack import RedisServer
from secops.ecs import utcnow
from tests.integration.test_scan_lab import PORTS, assets, run_policy, wait_port
from tests.support.netns import Lab, require_root
from tests.support.relay import TcpRelay
from tests.support.services import CeleryWorker, stop_and_remove

pytestmark = pytest.mark.integration


def test_scan_chunks_spread_over_workers_in_two_namespaces(es, settings, config_file, tmp_path: Path):
    require_root()
    with Lab() as lab:
        web1, web2 = lab.add_host("web1"), lab.add_host("web2")
        hosts = [lab.add_host("wk1"), lab.add_host("wk2")]  # the worker hosts
        for web in (web1, web2):
            web.popen("python3", "-m", "http.server", "80", "--bind", web.ip, "--directory", str(tmp_path))
            wait_port(web.ip, 80)
        # one broker and one store for every host, reachable on the lab network (not on each host's loopback)
        broker = RedisServer(Path(tempfile.mkdtemp(prefix="secops-test-redis-lab-")),
                             extra=["--bind", "127.0.0.1", lab.gateway, "--protected-mode", "no"]).start()
        es_port = urllib.parse.urlsplit(settings.elasticsearch.hosts[0]).port
        relay = TcpRelay(lab.gateway, ("127.0.0.1", es_port))
        workers: list[CeleryWorker] = []
        try:
            cfg = yaml.safe_load(config_file.read_text())
            cfg["elasticsearch"]["hosts"] = [f"http://{lab.gateway}:{relay.address[1]}"]
            cfg["redis"] = {"url": f"redis://{lab.gateway}:{broker.port}/0"}
            cfg["scanning"] = {"scopes": {"lab": [f"{web1.ip}/32", f"{web2.ip}/32"]}, "chunk_size": 1,
                               "max_parallel_chunks": 2, "host_timeout_seconds": 30,
                               "policies": [{"name": "lab", "scope": "lab", "profile": "discovery",
                                             "ports": PORTS, "timing": 5, "every_minutes": 60}]}
            cfg["inventory"] = {"zones": {"lab": [str(lab.subnet)]}}
            config_file.write_text(yaml.safe_dump(cfg))
            configure(app, load_settings(config_file))
            workers = [CeleryWorker(config_file, tmp_path / f"{h.name}.log", 1, f"on-{h.name}",
                                    prefix=h.cmd()).start() for h in hosts]
            results = run_policy(utcnow())
            assert sum(r["hosts_seen"] for r in results) == 2
            assert set(assets(es)) == {web1.ip, web2.ip}
            for h in hosts:
                log = (tmp_path / f"{h.name}.log").read_text()
                assert "collectors.scan_chunk" in log and "succeeded" in log, f"no chunk ran on {h.name}"
            # the workers really are elsewhere: their own loopback has no broker
            probe = hosts[0].run("python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', "
                                 f"{broker.port}), timeout=2)", check=False)
            assert probe.returncode != 0
        finally:
            for w in workers:
                w.stop()
            relay.close()
            stop_and_remove(broker)
            configure(app, settings)
