"""Real services for tests: an Elasticsearch node, redis-server and Celery workers as subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from secops.config import Settings
from secops.devstack.stack import CLUSTER_HEAP, ElasticsearchCluster, ElasticsearchNode, RedisServer


def start_es() -> ElasticsearchNode:
    # mkdtemp outside pytest's 0700 tree: the node runs as the unprivileged 'secops' user when we are root.
    base = Path(tempfile.mkdtemp(prefix="secops-test-es-"))
    os.chmod(base, 0o755)
    return ElasticsearchNode(base_dir=base, heap=os.environ.get("SECOPS_TEST_ES_HEAP", "1g")).start()


def start_cluster(size: int = 3) -> ElasticsearchCluster:
    """A real ``size``-node cluster on loopback (small heaps), under a world-readable temp dir."""
    base = Path(tempfile.mkdtemp(prefix="secops-test-cluster-"))
    os.chmod(base, 0o755)
    return ElasticsearchCluster(base, size, heap=os.environ.get("SECOPS_TEST_CLUSTER_HEAP", CLUSTER_HEAP)).start()


def start_redis() -> RedisServer:
    return RedisServer(base_dir=Path(tempfile.mkdtemp(prefix="secops-test-redis-"))).start()


def stop_and_remove(service: ElasticsearchNode | ElasticsearchCluster | RedisServer) -> None:
    service.stop()
    shutil.rmtree(service.base_dir, ignore_errors=True)


def write_config(settings: Settings, path: Path) -> Path:
    """Write settings as a YAML file that a subprocess (CLI, worker) loads with SECOPS_CONFIG."""
    data = settings.model_dump(mode="json", exclude_none=True)
    # secrets are dumped redacted: write the real values
    es = settings.elasticsearch
    if es.password:
        data["elasticsearch"]["password"] = es.password.get_secret_value()
    if es.api_key:
        data["elasticsearch"]["api_key"] = es.api_key.get_secret_value()
    path.write_text(yaml.safe_dump(data))
    return path


class CeleryWorker:
    """`celery worker` as a real subprocess against the test Redis; kill() simulates a crash."""

    def __init__(self, config: Path, log: Path, concurrency: int = 1, name: str = "w1", queues: str | None = None,
                 prefix: list[str] | None = None):
        """``prefix`` runs the worker under another command, e.g. ``ip netns exec <ns>`` for another host."""
        self.config, self.log, self.concurrency, self.name, self.queues = config, log, concurrency, name, queues
        self.prefix = prefix or []
        self.proc: subprocess.Popen | None = None

    def start(self) -> CeleryWorker:
        cmd = [*self.prefix, sys.executable, "-m", "celery", "-A", "secops.celery_app", "worker", "--loglevel=INFO",
               f"--concurrency={self.concurrency}", "--pool=prefork", f"--hostname={self.name}@%h",
               "--without-gossip", "--without-mingle"]
        if self.queues:
            cmd.append(f"--queues={self.queues}")
        env = dict(os.environ, SECOPS_CONFIG=str(self.config))
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited: {self.log.read_text()[-2000:]}")
            if b"ready." in self.log.read_bytes():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"celery worker not ready: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
