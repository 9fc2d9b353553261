"""URL credentials never reach a Celery worker's banner or log (issue 17 item 14): a real worker subprocess
whose broker URL carries a password, pointed at a closed loopback port so it logs connection errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_celery_worker_banner_and_logs_hide_url_passwords(tmp_path: Path) -> None:
    cfg = tmp_path / "secops.yaml"
    cfg.write_text("redis:\n  url: 'redis://:BrokerPw7@127.0.0.1:9/0'\n"
                   "elasticsearch:\n  hosts: ['https://elastic:StorePw8@127.0.0.1:9']\n"
                   f"paths:\n  state_dir: {tmp_path / 'state'}\n")
    log = tmp_path / "worker.log"
    env = dict(os.environ, SECOPS_CONFIG=str(cfg))
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "secops.celery_app", "worker",
                                 "--loglevel=INFO", "--concurrency=1", "--without-gossip", "--without-mingle"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and log.read_text().count("Cannot connect") < 2:
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    text = log.read_text()
    assert text.count("Cannot connect") >= 2, text[-2000:]
    assert "BrokerPw7" not in text and "StorePw8" not in text
    assert "transport:" in text and "127.0.0.1:9/0" in text
