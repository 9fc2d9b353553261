"""Control through the real worker: hostile alert fields are refused with an audit and nothing runs;
the kill switch (stored, seen by running workers) stops new steps."""

from __future__ import annotations

import pytest

from tests.support.playbook_lab import (
    WebhookReceiver,
    audit_actions,
    celery_client,
    config_for,
    playbook_settings,
    put_alert,
    run_for_alert,
    secops_cli,
    wait_for,
)
from tests.support.services import CeleryWorker

pytestmark = pytest.mark.integration


def hostile_book(url: str) -> str:
    return f"""
name: hostile-inputs
trigger: {{tags: [secops.hostile]}}
steps:
  - name: tell
    action: notify
    params: {{channel: webhook, url: "{url}tell",
              message: "{{{{ alert.rule.name }}}} on {{{{ alert.host.hostname }}}}"}}
  - name: rescan
    action: rescan
    params: {{targets: ["{{{{ alert.host.hostname }}}}"]}}
  - name: block
    action: contain
    params: {{address: "{{{{ alert.source.address }}}}", ttl_seconds: 5}}
"""


HOSTILE = {
    "semicolon": {"source.address": "1.2.3.4; rm -rf /"},
    "subst": {"host.hostname": "$(id)"},
    "backtick": {"source.address": "198.18.0.5`id`"},
    "template": {"rule.name": "{{ ''.__class__.__mro__[1].__subclasses__() }}"},
    "long": {"rule.name": "A" * 5000},
    "newline": {"rule.name": "scan\nX-Injected: yes"},
    "option": {"host.hostname": "--script=evil"},
}
CLEAN = {"source.address": "198.18.0.5", "host.hostname": "victim.example", "rule.name": "Port scan"}


def test_hostile_alert_fields_are_refused_and_nothing_runs(settings, redis_server, es, tmp_path):
    with WebhookReceiver() as hook:
        s = playbook_settings(settings, tmp_path, {"hostile": hostile_book(hook.url)}, webhook_allow=[hook.url],
                              block_netns="secops-no-such-netns")
        config, prefix = config_for(s, tmp_path), s.elasticsearch.index_prefix
        worker = CeleryWorker(config, tmp_path / "worker.log", concurrency=2).start()
        try:
            client = celery_client(s)
            for name, fields in HOSTILE.items():
                put_alert(es, prefix, f"alert-{name}", source=None, tags=["secops.hostile"], extra={**CLEAN, **fields})
                client.send_task("playbooks.on_alert", args=[f"alert-{name}"])
            put_alert(es, prefix, "alert-clean", source=None, tags=["secops.hostile"], extra=CLEAN)
            client.send_task("playbooks.on_alert", args=["alert-clean"])
            for name in HOSTILE:
                run = wait_for(lambda n=name: run_for_alert(es, prefix, f"alert-{n}"), 30, what=f"run for {name}")
                assert run["status"] == "refused", (name, run)
                assert {s["status"] for s in run["steps"]} == {"not_run"}
                trail = audit_actions(es, prefix, run["run_id"])
                assert [a["action"] for a in trail] == ["playbook.refused"], name
                assert trail[0]["outcome"] == "failure" and trail[0]["details"]["error"] == run["error"]
            # the clean alert of the same playbook does run: the refusals are about the values
            wait_for(lambda: hook.count("tell"), 30, what="clean alert notified")
            # an analyst's manual run: refused the same way for a hostile alert, started for a clean one
            out = secops_cli(config, "playbooks", "run", "hostile-inputs", "--alert", "alert-subst")
            assert out.returncode == 2 and "refused" in out.stderr and "command-substitution" in out.stderr
            out = secops_cli(config, "playbooks", "run", "hostile-inputs", "--alert", "alert-clean")
            assert out.returncode == 0 and "started" in out.stdout, out.stderr
            wait_for(lambda: hook.count("tell") == 2, 30, what="manual run notified")
        finally:
            worker.stop()
        assert hook.count("tell") == 2
        errors = {n: run_for_alert(es, prefix, f"alert-{n}")["error"] for n in HOSTILE}
        assert "not an IP address" in errors["semicolon"] and "command-substitution" in errors["subst"]
        assert "template syntax" in errors["template"] and "longer than" in errors["long"]
        assert "control characters" in errors["newline"] and "hostname" in errors["option"]


def kill_book(url: str) -> str:
    return f"""
name: two-notes
trigger: {{tags: [secops.kill]}}
steps:
  - name: first
    action: notify
    params: {{channel: webhook, url: "{url}first-slow", message: "first"}}
    timeout_seconds: 15
  - name: second
    action: notify
    params: {{channel: webhook, url: "{url}second", message: "second"}}
"""


def test_kill_switch_stops_new_steps_on_running_workers(settings, redis_server, es, tmp_path):
    with WebhookReceiver(delay=6.0, slow_marker="-slow") as hook:
        s = playbook_settings(settings, tmp_path, {"two": kill_book(hook.url)}, webhook_allow=[hook.url])
        config, prefix = config_for(s, tmp_path), s.elasticsearch.index_prefix
        worker = CeleryWorker(config, tmp_path / "worker.log").start()
        try:
            client = celery_client(s)
            # switched on while a run is in its first step: that step finishes, the second never starts
            put_alert(es, prefix, "alert-mid", source="198.18.0.9", tags=["secops.kill"])
            client.send_task("playbooks.on_alert", args=["alert-mid"])
            wait_for(lambda: hook.count("first"), 30, interval=0.05, what="first step in flight")
            out = secops_cli(config, "playbooks", "kill-switch", "on", actor="soc-lead")
            assert out.returncode == 0 and "ON" in out.stdout, out.stderr
            run = wait_for(lambda: (r := run_for_alert(es, prefix, "alert-mid")) and r["status"] == "halted" and r,
                           30, what="run halted")
            assert [st["status"] for st in run["steps"]] == ["done", "pending"]
            # a new alert while the switch is on: nothing acts at all
            put_alert(es, prefix, "alert-off", source="198.18.0.9", tags=["secops.kill"])
            client.send_task("playbooks.on_alert", args=["alert-off"])
            run = wait_for(lambda: (r := run_for_alert(es, prefix, "alert-off")) and r["status"] == "halted" and r,
                           30, what="second run halted")
            trail = audit_actions(es, prefix, run["run_id"])
            assert not [a for a in trail if a["action"] == "playbook.step.acted"]
            assert hook.count("second") == 0 and hook.count("first") == 1
            # switched off: runs act again
            assert secops_cli(config, "playbooks", "kill-switch", "off", actor="soc-lead").returncode == 0
            put_alert(es, prefix, "alert-after", source="198.18.0.9", tags=["secops.kill"])
            client.send_task("playbooks.on_alert", args=["alert-after"])
            wait_for(lambda: (r := run_for_alert(es, prefix, "alert-after")) and r["status"] == "completed", 40,
                     what="run after the switch is off")
            assert hook.count("second") == 1
        finally:
            worker.stop()
        es.indices.refresh(index=f"{prefix}-audit-*")
        switch = es.search(index=f"{prefix}-audit-*", query={"term": {"secops.audit.action": "playbook.kill_switch"}},
                           sort=[{"@timestamp": "asc"}])["hits"]["hits"]
        assert [(h["_source"]["user"]["name"], h["_source"]["secops"]["audit"]["details"]) for h in switch] == \
            [("soc-lead", '{"on":true}'), ("soc-lead", '{"on":false}')]
