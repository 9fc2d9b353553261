"""Runner semantics on the real store and Redis, steps driven in-process (no worker needed for these):
redelivery, conditions, failure policies, approvals (deny, timeout), rate limits, config kill switch,
syslog delivery, pcap degradation, stalled-step re-dispatch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest

from playbooks.model import load_all
from playbooks.ratelimit import RateLimiter
from playbooks.runner import Runner
from playbooks.store import PlaybookRunStore
from secops.config import load_settings
from secops.es.client import make_client
from tests.support.playbook_lab import audit_actions, playbook_settings, put_alert
from tests.support.services import write_config

pytestmark = pytest.mark.integration


@dataclass
class Inline:
    """Collects dispatches; ``drain`` executes them in order like a worker would."""

    queue: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, run_id: str, index: int, countdown: float = 0.0, timeout: float | None = None) -> None:
        self.queue.append((run_id, index))

    def drain(self, runner: Runner) -> list[str]:
        outcomes = []
        while self.queue:
            outcomes.append(runner.execute(*self.queue.pop(0))[0])
        return outcomes


BOOK = """
name: basic
trigger: {tags: [t.basic]}
steps:
  - name: look
    action: enrich
    params: {address: "{{ alert.source.ip }}"}
  - name: mail
    action: notify
    params: {channel: syslog, message: "alert on {{ alert.source.ip }}"}
    when: [{field: steps.look.alerts.count, op: gte, value: 1}]
    on_failure: continue
  - name: evidence
    action: pcap
    params: {address: "{{ alert.source.ip }}"}
"""

APPROVE = """
name: gated
trigger: {tags: [t.gated]}
steps:
  - name: block
    action: contain
    params: {address: "{{ alert.source.ip }}", ttl_seconds: 5}
    approval: true
    approval_timeout_seconds: 1
"""


def make(settings, tmp_path, redis_server, **over) -> tuple[Runner, Inline]:
    s = playbook_settings(settings, tmp_path, {"basic": BOOK, "gated": APPROVE}, **over)
    inline = Inline()
    return Runner(s, make_client(s), inline, RateLimiter(redis_server.url)), inline


def test_steps_conditions_syslog_pcap_and_redelivery(settings, redis_server, tmp_path):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    r, inline = make(settings, tmp_path, redis_server, syslog_address=f"127.0.0.1:{udp.getsockname()[1]}")
    prefix = r.prefix
    put_alert(r.es, prefix, "a1", source="198.18.0.20", tags=["t.basic"])
    assert len(r.on_alert("a1")) == 1
    assert r.on_alert("a1") == r.on_alert("a1")  # a redelivered trigger starts no second run
    assert inline.drain(r) == ["done", "done", "done"]
    run_id = r.on_alert("a1")[0]
    pb = PlaybookRunStore.on(r.es, prefix).get(run_id).to_doc()["secops"]["playbook"]
    assert pb["status"] == "completed"
    assert b"alert on 198.18.0.20" in udp.recv(4096)
    assert '"status": "unavailable"' in pb["steps"][2]["result"] and "no pcap spool" in pb["steps"][2]["result"]
    # a step message delivered again after it finished does not act again
    assert r.execute(run_id, 2)[0] == "finished"
    assert [a["action"] for a in audit_actions(r.es, prefix, run_id)].count("playbook.step.acted") == 3

    # no related alert for this address -> the condition skips the syslog step
    put_alert(r.es, prefix, "a2", source="198.18.0.21", tags=["t.basic"])
    r.es.delete(index=f"{prefix}-alert", id="a1", refresh=True)
    run2 = r.on_alert("a2")[0]
    r.es.delete(index=f"{prefix}-alert", id="a2", refresh=True)
    inline.drain(r)
    steps = PlaybookRunStore.on(r.es, prefix).get(run2).to_doc()["secops"]["playbook"]["steps"]
    assert [st["status"] for st in steps] == ["done", "skipped", "done"]


def test_rate_limit_and_failure_policy(settings, redis_server, tmp_path):
    r, inline = make(settings, tmp_path, redis_server, syslog_address="127.0.0.1:9", rate_limits={"notify": 1})
    redis = RateLimiter(redis_server.url).redis
    for key in redis.scan_iter("secops:playbooks:rate:*"):
        redis.delete(key)
    results = []
    for n in (1, 2):
        put_alert(r.es, r.prefix, f"rl{n}", source="198.18.0.30", tags=["t.basic"])
        run_id = r.on_alert(f"rl{n}")[0]
        inline.drain(r)
        results.append(PlaybookRunStore.on(r.es, r.prefix).get(run_id).to_doc()["secops"]["playbook"])
    assert results[0]["steps"][1]["status"] == "done"
    assert results[1]["steps"][1]["status"] == "failed" and "rate limit" in results[1]["steps"][1]["error"]
    # the raw text for operators, and the same failure as a message the console renders per reader
    assert results[1]["steps"][1]["error_message"] == {
        "id": "rate limit: action %(action)s ran %(limit)s times this hour (playbooks.rate_limits)",
        "params": {"action": "notify", "limit": 1}}
    # on_failure: continue -> the run went on to the next step
    assert results[1]["steps"][2]["status"] == "done" and results[1]["status"] == "completed"


def test_deny_timeout_and_config_kill_switch(settings, redis_server, tmp_path):
    r, inline = make(settings, tmp_path, redis_server, block_netns="secops-no-such-netns")
    put_alert(r.es, r.prefix, "g1", source="198.18.0.40", tags=["t.gated"])
    run_id = r.on_alert("g1")[0]
    assert inline.drain(r) == ["waiting"]
    doc = r.decide(run_id, False, "analyst-bob", "false positive").to_doc()
    assert doc["secops"]["playbook"]["status"] == "denied" and not inline.queue
    with pytest.raises(ValueError, match="not waiting"):
        r.decide(run_id, True, "analyst-bob")

    put_alert(r.es, r.prefix, "g2", source="198.18.0.41", tags=["t.gated"])
    run2 = r.on_alert("g2")[0]
    inline.drain(r)
    time.sleep(1.2)
    r.es.indices.refresh(index=f"{r.prefix}-playbook_run")
    assert r.housekeeping()["approvals_expired"] == 1
    assert PlaybookRunStore.on(r.es, r.prefix).get(run2).to_doc()["secops"]["playbook"]["status"] == "expired"
    actions = [a["action"] for a in audit_actions(r.es, r.prefix, run2)]
    assert actions[-1] == "playbook.approval.expired"

    r.settings.playbooks.kill_switch = True
    put_alert(r.es, r.prefix, "g3", source="198.18.0.42", tags=["t.gated"])
    run3 = r.on_alert("g3")[0]
    assert inline.drain(r) == ["halted"]
    assert PlaybookRunStore.on(r.es, r.prefix).get(run3).to_doc()["secops"]["playbook"]["status"] == "halted"


def test_stalled_step_is_redispatched(settings, redis_server, tmp_path):
    r, inline = make(settings, tmp_path, redis_server, stall_seconds=1)
    put_alert(r.es, r.prefix, "st", source="198.18.0.50", tags=["t.basic"])
    run_id = r.on_alert("st")[0]
    inline.queue.clear()  # the step message is lost (broker gone, worker killed before it claimed it)
    time.sleep(1.2)
    r.es.indices.refresh(index=f"{r.prefix}-playbook_run")
    assert r.housekeeping()["redispatched"] == 1
    inline.drain(r)
    assert PlaybookRunStore.on(r.es, r.prefix).get(run_id).to_doc()["secops"]["playbook"]["status"] == "completed"
    assert len(load_all(r.settings)[0]) == 2


def test_cli_run_with_the_broker_unreachable_fails_in_one_line(settings, tmp_path):
    """Issue 17.18: with Redis unreachable `secops playbooks run` printed five chained tracebacks."""
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        where = f"127.0.0.1:{probe.getsockname()[1]}"
    dead = f"redis://{where}/0"
    data = playbook_settings(settings, tmp_path, {"basic": BOOK}).model_dump(mode="json", exclude_none=True)
    data["redis"] = {"url": dead}
    config = write_config(load_settings(None, **data), tmp_path / "dead-broker.yaml")
    put_alert(make_client(settings), settings.elasticsearch.index_prefix, "nb1", source="198.18.0.60",
              tags=["t.basic"])
    env = dict(os.environ, SECOPS_CONFIG=str(config), COLUMNS="250")
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "secops", "playbooks", "run", "basic", "--alert", "nb1"],
                         capture_output=True, text=True, env=env, timeout=240)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr and len(lines) == 1, res.stderr[-3000:]
    assert where in lines[0] and "broker" in lines[0], lines
    assert time.monotonic() - started < 60
