"""Two real `secops beat` processes against one Redis and one Elasticsearch: only the lease holder
schedules; the standby takes over when the holder dies (SIGKILL) and its lease expires. Every
detections run in the broker was sent by exactly one beat, and the two never scheduled at the same time."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import redis
import yaml

pytestmark = pytest.mark.integration

SENT = re.compile(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+): INFO/[^\]]+\] Scheduler: Sending due task "
                  r"detections-run-due-rules")
LEASE_SECONDS = 6


def start_beat(config: Path, state_dir: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, SECOPS_CONFIG=str(config), SECOPS_PATHS__STATE_DIR=str(state_dir))
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "secops", "beat"], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)


def wait_for(log: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in {log.name}: {log.read_text(errors='replace')[-2000:]}")


def sends(log: Path) -> list[datetime]:
    return [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f") for m in SENT.finditer(log.read_text())]


def queued_detection_runs(url: str) -> int:
    broker = redis.Redis.from_url(url)
    messages = [json.loads(m) for m in broker.lrange("celery", 0, -1)]
    return sum(m["headers"]["task"] == "detections.run_due_rules" for m in messages)


def test_second_beat_waits_on_the_lease_and_takes_over_once(settings, redis_server, config_file, tmp_path):
    data = yaml.safe_load(config_file.read_text())
    data["detections"] = {**data.get("detections", {}), "interval_seconds": 5}
    data["beat"] = {"lease_seconds": LEASE_SECONDS}
    config_file.write_text(yaml.safe_dump(data))
    redis.Redis.from_url(redis_server.url).delete("celery")
    log_a, log_b = tmp_path / "beat-a.log", tmp_path / "beat-b.log"
    a = start_beat(config_file, tmp_path / "a", log_a)
    b = None
    try:
        wait_for(log_a, "holding the beat lease")
        wait_for(log_a, "Sending due task detections-run-due-rules")
        b = start_beat(config_file, tmp_path / "b", log_b)
        wait_for(log_b, "standby: waiting for the beat lease")
        time.sleep(12)  # two detection intervals with both beats alive
        assert sends(log_b) == [], "the standby beat must not schedule"
        assert len(sends(log_a)) >= 3
        os.killpg(a.pid, signal.SIGKILL)  # a crash: no release, the lease has to expire
        a.wait(timeout=10)
        killed_at = time.monotonic()
        wait_for(log_b, "holding the beat lease", timeout=LEASE_SECONDS * 4)
        took_over = time.monotonic() - killed_at
        wait_for(log_b, "Sending due task detections-run-due-rules", timeout=30)
        time.sleep(6)
    finally:
        for proc in (a, b):
            if proc and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
    sent_a, sent_b = sends(log_a), sends(log_b)
    print(f"\nbeat A sent {len(sent_a)}, beat B sent {len(sent_b)} detection runs; B took over {took_over:.1f}s "
          f"after A was killed (lease {LEASE_SECONDS}s)")
    assert took_over <= LEASE_SECONDS + 5
    assert max(sent_a) < min(sent_b), "the two beats never scheduled at the same time"
    assert queued_detection_runs(redis_server.url) == len(sent_a) + len(sent_b)
    assert "beat lease" in log_b.read_text() and b.returncode is not None
