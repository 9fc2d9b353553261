"""Crash recovery on the real broker: a worker SIGKILLed mid-step and a Redis restart mid-run.

Each run is four webhook steps to a real HTTP receiver; step s2's receiver is slow, so the crash
lands while s2 is in flight. After recovery the run completes and the audit shows each step acted
exactly once; steps that had finished before the crash are never repeated.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from secops.devstack.stack import RedisServer
from tests.support.playbook_lab import (
    WebhookReceiver,
    audit_actions,
    celery_client,
    config_for,
    playbook_settings,
    put_alert,
    run_for_alert,
    wait_for,
)
from tests.support.services import CeleryWorker, stop_and_remove

pytestmark = pytest.mark.integration
STEPS = ["s1", "s2", "s3", "s4"]


def chain(url: str) -> str:
    steps = "".join(f"""
  - name: {s}
    action: notify
    params: {{channel: webhook, url: "{url}{s}{'-slow' if s == 's2' else ''}",
              message: "{s} {{{{ alert.source.ip }}}}"}}
    timeout_seconds: 4
    retries: 2
    backoff_seconds: 1""" for s in STEPS)
    return f"name: chain\ntrigger: {{tags: [secops.chain]}}\nsteps:{steps}\n"


def acted_once(es, prefix, run_id) -> dict[str, int]:
    trail = audit_actions(es, prefix, run_id)
    counts = {s: 0 for s in STEPS}
    for a in trail:
        if a["action"] == "playbook.step.acted":
            counts[a["details"]["step"]] += 1
    return counts


def start_chain(es, s, alert_id: str) -> None:
    put_alert(es, s.elasticsearch.index_prefix, alert_id, source="198.18.0.77", tags=["secops.chain"])
    celery_client(s).send_task("playbooks.on_alert", args=[alert_id])


def test_worker_sigkill_mid_step_completes_each_step_once(settings, redis_server, es, tmp_path):
    with WebhookReceiver(delay=2.5, slow_marker="-slow") as hook:
        s = playbook_settings(settings, tmp_path, {"chain": chain(hook.url)}, webhook_allow=[hook.url])
        config, prefix = config_for(s, tmp_path), s.elasticsearch.index_prefix
        worker = CeleryWorker(config, tmp_path / "w1.log", name="w1").start()
        start_chain(es, s, "alert-kill")
        wait_for(lambda: hook.count("s2-slow"), 30, interval=0.02, what="s2 in flight")
        worker.kill()  # SIGKILL the whole worker while the s2 request is in flight
        t_kill = time.monotonic()
        run = run_for_alert(es, prefix, "alert-kill")
        assert run["status"] == "running" and run["steps"][1]["status"] == "running"
        worker2 = CeleryWorker(config, tmp_path / "w2.log", name="w2").start()
        try:
            run = wait_for(lambda: (r := run_for_alert(es, prefix, "alert-kill")) and r["status"] == "completed"
                           and r, 60, what="run completed after restart")
            recovered = time.monotonic() - t_kill
        finally:
            worker2.stop()
        assert acted_once(es, prefix, run["run_id"]) == {s: 1 for s in STEPS}
        assert [hook.count(s) for s in ("s1", "s3", "s4")] == [1, 1, 1]
        # the interrupted s2 delivery is repeated with the same Idempotency-Key, so the receiver can drop it
        s2 = [r for r in hook.requests if "s2" in r["path"]]
        assert 1 <= len(s2) <= 2 and len({r["key"] for r in s2}) == 1
        assert run["steps"][1]["attempts"] == 2
        print(f"\nSIGKILL mid-step: run completed {recovered:.1f}s after the kill; s2 deliveries {len(s2)}")


def test_redis_restart_mid_run_completes_each_step_once(settings, es, tmp_path):
    base = Path(tempfile.mkdtemp(prefix="secops-test-redis-pb-"))
    redis = RedisServer(base_dir=base).start()
    try:
        with WebhookReceiver(delay=3.0, slow_marker="-slow") as hook:
            s = playbook_settings(settings, tmp_path, {"chain": chain(hook.url)}, webhook_allow=[hook.url])
            data = s.model_dump(mode="json", exclude_none=True)
            data["redis"] = {"url": redis.url}
            from secops.config import load_settings

            s = load_settings(None, **data)
            config, prefix = config_for(s, tmp_path), s.elasticsearch.index_prefix
            worker = CeleryWorker(config, tmp_path / "w1.log", name="w1").start()
            try:
                start_chain(es, s, "alert-redis")
                wait_for(lambda: hook.count("s2-slow"), 30, interval=0.02, what="s2 in flight")
                port = redis.port
                redis.stop()
                time.sleep(4.5)  # longer than s2's slow delivery: dispatching s3 has to outlast the outage
                redis.start()
                assert redis.port == port
                t_back = time.monotonic()
                run = wait_for(lambda: (r := run_for_alert(es, prefix, "alert-redis")) and r["status"] == "completed"
                               and r, 90, what="run completed after the Redis restart")
                recovered = time.monotonic() - t_back
            finally:
                worker.stop()
            assert acted_once(es, prefix, run["run_id"]) == {s: 1 for s in STEPS}
            assert [hook.count(s) for s in STEPS] == [1, 1, 1, 1]
            print(f"\nRedis restart mid-run: run completed {recovered:.1f}s after Redis came back")
    finally:
        stop_and_remove(redis)
