# ruff: noqa: RUF001  (Chinese text uses full-width punctuation, as GB/T 15834 prescribes)
"""The CLI's tables against the real store: document values print literally (no Rich markup, no terminal escape
sequences) in `alerts list` and the playbook tables; the dry-run plan table shows each step's summary in English;
a failed step, and a run denied, expired or halted, keeps its raw English error for operators while the console
shows it in the reader's language."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from playbooks.runner import Runner
from playbooks.store import PlaybookRunStore
from secops.console.app import create_app
from secops.console.users import UserStore
from secops.contracts.playbook import PlaybookRun, RunStatus, StepRecord, StepStatus
from secops.ecs import iso
from tests.integration.test_playbook_containment import CONTAIN
from tests.integration.test_playbook_runner import APPROVE, Inline
from tests.support.console import add_users, http_client, sign_in
from tests.support.playbook_lab import playbook_settings, put_alert
from tests.support.services import write_config

pytestmark = pytest.mark.integration
HOSTILE = "[red]x[/red]\x1b[2J"
SHOWN = "[red]x[/red][2J"  # markup as text, ESC dropped


def cli(config, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SECOPS_CONFIG": str(config), "SECOPS_ACTOR": "analyst1", "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-c", "from secops.cli import main; main()", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_document_values_print_literally_in_alert_and_playbook_tables(es, settings, config_file):
    prefix = settings.elasticsearch.index_prefix
    put_alert(es, prefix, "hostile-1", source="198.18.0.66", extra={
        "rule.name": HOSTILE, "rule.severity": HOSTILE, "secops.alert.status": "open",
        "secops.alert.assignee": HOSTILE})
    listed = cli(config_file, "alerts", "list")
    assert listed.returncode == 0, listed.stderr
    assert "\x1b" not in listed.stdout and listed.stdout.count(SHOWN) == 2, listed.stdout  # rule name, severity

    now = iso()
    run = PlaybookRun(run_id="run-hostile", name=f"book {HOSTILE}", alert_id=f"alert {HOSTILE}", dry_run=False,
                      status=RunStatus.FAILED, created=now, updated=now, actor="analyst1", step=HOSTILE,
                      error=f"step failed: {HOSTILE}",
                      steps=[StepRecord(name=HOSTILE, action="notify", action_key="k1", status=StepStatus.FAILED,
                                        attempts=1, error=f"ActionError: {HOSTILE}")])
    assert PlaybookRunStore.on(es, prefix).create(run)
    es.indices.refresh(index=f"{prefix}-*")
    runs, shown = cli(config_file, "playbooks", "runs"), cli(config_file, "playbooks", "show", "run-hostile")
    assert runs.returncode == 0 and shown.returncode == 0, runs.stderr + shown.stderr
    assert "\x1b" not in runs.stdout + shown.stdout
    assert runs.stdout.count(SHOWN) == 3, runs.stdout  # name, step, alert
    assert shown.stdout.count(SHOWN) == 5, shown.stdout  # name, alert, run error, step name, step error


def test_plan_table_in_english_and_step_errors_in_the_readers_language(es, settings, redis_server, tmp_path):
    """A contain step on a protected address: the plan cannot be made (the CLI says so in English, not as a
    stored message id); run in dry-run, the step fails with the raw text kept and a zh-CN rendering in the
    console's run page."""
    s = playbook_settings(settings, tmp_path, {"contain": CONTAIN}, protected=["198.18.4.0/24"], dry_run=True)
    prefix = s.elasticsearch.index_prefix
    put_alert(es, prefix, "p1", source="198.18.4.4", destination="198.18.4.5", tags=["secops.contain"])
    config = write_config(s, tmp_path / "secops.yaml")
    plan = cli(config, "playbooks", "run", "contain-test", "--alert", "p1", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "run the enrich action" in plan.stdout
    assert ("cannot plan this step: refused: 198.18.4.4 is protected (198.18.4.0/24); containment never touches "
            "protected assets") in plan.stdout
    assert '"id"' not in plan.stdout and "%(" not in plan.stdout  # no stored message shape in the terminal

    inline = Inline()
    runner = Runner(s, es, inline)
    run_id = runner.start(runner.book("contain-test"), runner.alert("p1"), actor="analyst1").run_id
    inline.drain(runner)
    step = PlaybookRunStore.on(es, prefix).get(run_id).steps[1]
    raw = "PermanentError: refused: 198.18.4.4 is protected (198.18.4.0/24); containment never touches " \
          "protected assets"
    assert step.status is StepStatus.FAILED and step.error == raw
    assert step.error_message["id"] == "refused: %(reason)s; containment never touches protected assets"

    app = create_app(s, es)
    users = add_users(es, prefix)
    UserStore(es, prefix).set_lang(users["auditor"], "zh_CN")
    client = http_client(app)
    sign_in(client, users["auditor"])
    page = client.get(f"/runs/{run_id}").text
    assert ('<span class="step-error">已拒绝：198.18.4.4 受保护（198.18.4.0/24）；遏制动作从不触及受保护资产</span>'
            in page)
    assert f'<code class="step-error-raw">{raw}</code>' in page  # the operator's exact text beside it
    # the run ended on that step (on_failure: abort): its error line in Chinese, the raw run error beside it
    assert ('<span class="run-error-text">步骤 block 失败：已拒绝：198.18.4.4 受保护（198.18.4.0/24）；遏制动作从不触及'
            '受保护资产</span>') in page
    assert f'<code class="run-error-raw">step block failed: {raw}</code>' in page
    out = cli(config, "playbooks", "show", run_id)
    assert raw in out.stdout  # the CLI stays English and shows the raw text


def test_denied_expired_and_halted_runs_show_their_reason_in_the_readers_language(es, settings, redis_server,
                                                                                  tmp_path):
    """A run denied at its approval, one whose approval timed out and one stopped by the kill switch: each keeps
    its raw English reason and stores it as a message that the run page renders in zh-CN for a zh user and in
    English for an en user."""
    s = playbook_settings(settings, tmp_path, {"gated": APPROVE}, block_netns="secops-no-such-netns")
    prefix = s.elasticsearch.index_prefix
    inline = Inline()
    runner = Runner(s, es, inline)
    runs = {}
    for name, ip in (("denied", "198.18.6.1"), ("expired", "198.18.6.2")):
        put_alert(es, prefix, name, source=ip, tags=["t.gated"])
        runs[name] = runner.start(runner.book("gated"), runner.alert(name), actor="analyst1").run_id
    assert inline.drain(runner) == ["waiting", "waiting"]
    runner.decide(runs["denied"], False, "responder-user", "false positive")
    time.sleep(1.1)  # the book's approval_timeout_seconds is 1
    es.indices.refresh(index=f"{prefix}-playbook_run")
    assert runner.housekeeping()["approvals_expired"] == 1
    put_alert(es, prefix, "halted", source="198.18.6.3", tags=["t.gated"])
    runs["halted"] = runner.start(runner.book("gated"), runner.alert("halted"), actor="analyst1").run_id
    runner.settings.playbooks.kill_switch = True
    assert inline.drain(runner) == ["halted"]

    store = PlaybookRunStore.on(es, prefix)
    stored = {name: store.get(run_id) for name, run_id in runs.items()}
    assert [stored[n].status for n in runs] == [RunStatus.DENIED, RunStatus.EXPIRED, RunStatus.HALTED]
    assert stored["denied"].error == "denied by responder-user: false positive"
    assert stored["denied"].error_message == {"id": "denied by %(actor)s: %(reason)s",
                                              "params": {"actor": "responder-user", "reason": "false positive"}}
    assert stored["expired"].error_message == {"id": "approval timed out", "params": {}}
    assert stored["halted"].error_message == {"id": "kill switch on: no new steps", "params": {}}

    shown = {
        "zh_CN": {"denied": "已被 responder-user 驳回：false positive", "expired": "审批超时",
                  "halted": "剧本总开关（紧急停止）已开启：不再执行新步骤"},
        "en": {"denied": "denied by responder-user: false positive", "expired": "approval timed out",
               "halted": "kill switch on: no new steps"}}
    users = add_users(es, prefix)
    UserStore(es, prefix).set_lang(users["auditor"], "zh_CN")
    UserStore(es, prefix).set_lang(users["analyst"], "en")
    app = create_app(s, es)
    for user, lang in (("auditor", "zh_CN"), ("analyst", "en")):
        client = http_client(app)
        sign_in(client, users[user])
        for name, run_id in runs.items():
            page = client.get(f"/runs/{run_id}").text
            assert f'<span class="run-error-text">{shown[lang][name]}</span>' in page, (lang, name)
            assert f'<code class="run-error-raw">{stored[name].error}</code>' in page  # the operator's raw text
