"""Alerts: content (rule author, ATT&CK, link), triage through the CLI, playbook trigger via the real broker."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import redis

from detections.alerts import AlertStore
from detections.compiler import compile_rules
from detections.loader import BUILTIN_RULES, load_rules
from detections.scheduler import Scheduler
from secops.celery_app import app as celery_app
from secops.celery_app import configure
from tests.integration.detect_support import T0, minutes, svcctl, write

pytestmark = pytest.mark.integration
SVC_RULE = "24e688c5-144e-5c29-9d44-a52e73cd78c6"


def cli(config_file, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SECOPS_CONFIG": str(config_file), "SECOPS_ACTOR": "analyst1"}
    return subprocess.run([sys.executable, "-c", "from secops.cli import main; main()", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def run_detection(es, settings, notifier="celery"):
    rules = [r for r in compile_rules(load_rules([BUILTIN_RULES])) if r.id == SVC_RULE]
    kw = {} if notifier == "celery" else {"notifier": notifier}
    store = AlertStore(es, settings.elasticsearch.index_prefix, settings.detections.suppression_seconds,
                       kibana="http://kibana.example:5601", **kw)
    return Scheduler(es, settings, rules, alerts=store).run(now=T0 + minutes(5))[0]


def test_alert_document_and_cli_triage(es, settings, config_file):
    write(es, settings, [svcctl("198.18.7.1", "198.18.7.9", T0, ingested=T0)])
    run = run_detection(es, settings, notifier=None)
    [alert_id] = run.alert_ids
    listed = cli(config_file, "alerts", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    alert = json.loads(line)
    assert alert["_id"] == alert_id
    assert alert["rule"]["author"] == "secops project"
    assert alert["rule"]["severity"] == "high" and alert["event"]["severity"] == 73
    assert "T1021.002" in alert["threat"]["technique"]["id"]
    assert "Lateral Movement" in alert["threat"]["tactic"]["name"]
    assert alert["source"]["ip"] == "198.18.7.1" and alert["destination"]["ip"] == "198.18.7.9"
    assert alert["secops"]["alert"]["kibana_url"].startswith("http://kibana.example:5601/app/discover#/")
    assert alert["secops"]["alert"]["event_ids"]
    for args in (["ack", alert_id], ["note", alert_id, "looked at it; =cmd|' /C"]):
        out = cli(config_file, "alerts", *args)
        assert out.returncode == 0, out.stderr
    store = AlertStore(es, settings.elasticsearch.index_prefix, notifier=None)  # same code path, no process start
    store.assign(alert_id, "bob", "analyst1")
    store.set_status(alert_id, "closed", "analyst1")
    shown = json.loads(cli(config_file, "alerts", "show", alert_id).stdout)
    a = shown["secops"]["alert"]
    assert a["status"] == "closed" and a["assignee"] == "bob"
    assert a["notes"][0]["text"] == "looked at it; =cmd|' /C" and a["notes"][0]["by"] == "analyst1"
    assert [h["action"] for h in a["history"]] == ["created", "acknowledged", "noted", "assigned", "closed"]
    missing = cli(config_file, "alerts", "ack", "no-such-alert")
    assert missing.returncode == 2 and "no alert" in missing.stderr


def test_new_alert_sends_playbook_task_to_the_broker(es, settings, redis_server):
    configure(celery_app, settings)
    r = redis.Redis.from_url(settings.redis.url)
    r.delete("celery")
    write(es, settings, [svcctl("198.18.8.1", "198.18.8.9", T0, ingested=T0)])
    run = run_detection(es, settings)
    [alert_id] = run.alert_ids
    messages = [json.loads(m) for m in r.lrange("celery", 0, -1)]
    assert [(m["headers"]["task"], m["headers"]["argsrepr"]) for m in messages] == \
           [("playbooks.on_alert", repr([alert_id]))]


def test_detection_survives_unreachable_broker(es, settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    settings.redis.url = f"redis://127.0.0.1:{dead_port}/0"
    configure(celery_app, settings)
    write(es, settings, [svcctl("198.18.9.1", "198.18.9.9", T0, ingested=T0)])
    t0 = time.monotonic()
    run = run_detection(es, settings)
    assert run.error is None and run.created == 1
    # the notice is given up at once: no reconnect loop on the broker nor on the result store (it was ~20 s)
    assert time.monotonic() - t0 < 5


def test_kibana_import_unreachable_is_a_clear_error(config_file):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env_cfg = {**os.environ, "SECOPS_CONFIG": str(config_file), "SECOPS_KIBANA__URL": f"http://127.0.0.1:{port}"}
    out = subprocess.run([sys.executable, "-c", "from secops.cli import main; main()", "kibana", "import"],
                         env=env_cfg, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "Kibana unreachable" in out.stderr and "Traceback" not in out.stderr


def test_beat_task_runs_due_rules_once_per_interval(es, settings, redis_server, config_file, monkeypatch):
    from detections.tasks import run_due_rules
    from secops.config import get_settings

    monkeypatch.setenv("SECOPS_CONFIG", str(config_file))
    get_settings.cache_clear()  # the task reads the process-wide settings, as in a worker
    configure(celery_app, settings)
    write(es, settings, [svcctl("198.18.10.1", "198.18.10.9", T0, ingested=T0)])
    first = run_due_rules.run()
    assert first["created"] == 1 and first["failed"] == [], first
    second = run_due_rules.run()  # interval not elapsed: nothing is due
    assert second["rules"] == 0
    [alert] = AlertStore(es, settings.elasticsearch.index_prefix, notifier=None).list()
    assert alert["rule"]["id"] == SVC_RULE
    monkeypatch.undo()
    get_settings.cache_clear()


def test_detect_run_and_live_report_cli(es, settings, config_file):
    write(es, settings, [svcctl("198.18.11.1", "198.18.11.9", T0, ingested=T0)])
    run = cli(config_file, "detect", "run", "--rule", SVC_RULE)
    assert run.returncode == 0, run.stderr
    assert "1 rules run, 1 new alerts" in run.stdout
    again = cli(config_file, "detect", "run", "--rule", SVC_RULE, "--reset")
    assert again.returncode == 0 and "0 new alerts" in again.stdout
    report = cli(config_file, "rules", "report", "--live", "--json")
    assert report.returncode == 0, report.stderr
    rows = {r["id"]: r for r in map(json.loads, report.stdout.splitlines())}
    assert rows[SVC_RULE]["status"] == "all-fields" and rows[SVC_RULE]["hits"] == 1
