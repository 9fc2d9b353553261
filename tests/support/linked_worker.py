"""A Celery worker on another "host" (a lab namespace) whose only way to its broker and to Elasticsearch is a
link that a test can cut and restore: a Redis of its own plus two TCP relays on the lab gateway. ``cut()``
closes both relays (connections reset, new ones refused), ``restore()`` reopens them on the same ports.
The test process talks to the same broker and store directly on loopback (this side of the link)."""

from __future__ import annotations

import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from secops.celery_app import app, configure
from secops.config import Settings, load_settings
from secops.devstack.stack import RedisServer
from tests.support.netns import Host, Lab
from tests.support.relay import TcpRelay
from tests.support.services import CeleryWorker, stop_and_remove


class LinkedWorker:
    """Use as a context manager. ``cfg`` is the configuration for both sides (a dict as in the YAML file);
    ``home`` the test's settings, which the Celery app gets back on exit."""

    def __init__(self, lab: Lab, host: Host, cfg: dict[str, Any], home: Settings, workdir: Path) -> None:
        self.lab, self.host, self.cfg, self.home, self.workdir = lab, host, cfg, home, workdir
        self.es_port = urllib.parse.urlsplit(home.elasticsearch.hosts[0]).port
        self.log = workdir / f"{host.name}.log"
        self.broker: RedisServer | None = None
        self.links: list[TcpRelay] = []
        self.worker: CeleryWorker | None = None
        self.settings: Settings | None = None  # this side of the link, for the test's own clients

    def __enter__(self) -> LinkedWorker:
        self.broker = RedisServer(Path(tempfile.mkdtemp(prefix="secops-test-redis-cut-"))).start()
        try:
            self.links = [TcpRelay(self.lab.gateway, ("127.0.0.1", self.broker.port)),
                          TcpRelay(self.lab.gateway, ("127.0.0.1", self.es_port))]
            far = dict(self.cfg, redis={"url": f"redis://{self.lab.gateway}:{self.links[0].address[1]}/0"})
            far["elasticsearch"] = dict(self.cfg["elasticsearch"],
                                        hosts=[f"http://{self.lab.gateway}:{self.links[1].address[1]}"])
            near = dict(self.cfg, redis={"url": f"redis://127.0.0.1:{self.broker.port}/0"})
            worker_config, local_config = self.workdir / "worker.yaml", self.workdir / "near.yaml"
            worker_config.write_text(yaml.safe_dump(far))
            local_config.write_text(yaml.safe_dump(near))
            self.settings = load_settings(local_config)
            configure(app, self.settings)
            self.worker = CeleryWorker(worker_config, self.log, 1, f"on-{self.host.name}",
                                       prefix=self.host.cmd()).start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def cut(self) -> None:
        for link in self.links:
            link.close()

    def restore(self) -> None:
        self.links = [TcpRelay(self.lab.gateway, link.target, port=link.address[1]) for link in self.links]

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text()[-chars:] if self.log.exists() else ""

    def __exit__(self, *exc: object) -> None:
        if self.worker is not None:
            self.worker.stop()
        for link in self.links:
            link.close()
        if self.broker is not None:
            stop_and_remove(self.broker)
        configure(app, self.home)
