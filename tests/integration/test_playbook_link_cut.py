"""A playbook step on a worker in another namespace ("host") whose link to the broker and to Elasticsearch is cut
while the step's webhook is in flight: the receiver answers during the cut, the worker cannot record it; when
the link is back the run completes, the audit shows one acted entry per step, and every delivery of a step
carries the same Idempotency-Key, so the receiver applies each effect exactly once."""

from __future__ import annotations

import time

import pytest
import yaml

from secops.celery_app import app
from tests.support.linked_worker import LinkedWorker
from tests.support.netns import Lab, require_root
from tests.support.playbook_lab import (
    WebhookReceiver,
    audit_actions,
    config_for,
    playbook_settings,
    put_alert,
    run_for_alert,
    wait_for,
)

pytestmark = pytest.mark.integration
CUT_SECONDS = 6
STEP_TIMEOUT = 8  # the task's soft limit (timeout + 5 s) must outlast the cut, or the step dies mid-retry
STEPS = ["s1", "s2"]


def book(url: str) -> str:
    steps = "".join(f"""
  - name: {s}
    action: notify
    params: {{channel: webhook, url: "{url}{s}{'-slow' if s == 's1' else ''}",
              message: "{s} {{{{ alert.source.ip }}}}"}}
    timeout_seconds: {STEP_TIMEOUT}
    retries: 2
    backoff_seconds: 1""" for s in STEPS)
    return f"name: linkcut\ntrigger: {{tags: [secops.linkcut]}}\nsteps:{steps}\n"


def test_playbook_step_cut_off_mid_webhook_acts_once(es, settings, tmp_path):
    require_root()
    with Lab() as lab:
        wk = lab.add_host("pbw")
        with WebhookReceiver(delay=1.5, slow_marker="-slow", host=lab.gateway) as hook:
            s = playbook_settings(settings, tmp_path, {"linkcut": book(hook.url)}, webhook_allow=[hook.url])
            cfg = yaml.safe_load(config_for(s, tmp_path).read_text())
            prefix = s.elasticsearch.index_prefix
            with LinkedWorker(lab, wk, cfg, settings, tmp_path) as linked:
                put_alert(es, prefix, "alert-linkcut", source="198.18.0.77", tags=["secops.linkcut"])
                app.send_task("playbooks.on_alert", args=["alert-linkcut"])
                wait_for(lambda: hook.count("s1-slow"), 60, interval=0.02, what="s1 in flight")
                linked.cut()  # the receiver still answers (it is not behind the link); the worker cannot tell anyone
                t_cut = time.monotonic()
                wait_for(lambda: time.monotonic() - t_cut > CUT_SECONDS, CUT_SECONDS + 5, what="the cut")
                during = run_for_alert(es, prefix, "alert-linkcut")
                assert during["status"] == "running" and during["steps"][0]["status"] == "running", during
                assert hook.count("s2") == 0
                linked.restore()
                t_back = time.monotonic()
                run = wait_for(lambda: (r := run_for_alert(es, prefix, "alert-linkcut")) and r["status"] == "completed"
                               and r, 90, what=f"run completed after the link came back\n{linked.log_tail()}")
                recovered = time.monotonic() - t_back
                log = linked.log.read_text()
            trail = audit_actions(es, prefix, run["run_id"])
            acted = [a["details"]["step"] for a in trail if a["action"] == "playbook.step.acted"]
            assert sorted(acted) == STEPS, trail
            deliveries = {step: [r for r in hook.requests if f"/{step}" in r["path"]] for step in STEPS}
            effects = {step: len({r["key"] for r in reqs}) for step, reqs in deliveries.items()}
            assert effects == {"s1": 1, "s2": 1}, hook.requests
            assert 1 <= len(deliveries["s1"]) <= 2 and len(deliveries["s2"]) == 1
            assert "playbooks.execute_step" in log and "Connection to broker lost" in log, log[-4000:]
            print(f"\nplaybook link cut {CUT_SECONDS}s mid-step: run completed {recovered:.1f}s after the link "
                  f"returned; s1 deliveries {len(deliveries['s1'])} (one Idempotency-Key), audit acted {acted}")
