"""Containment end to end: netns attacker -> victim, alert -> Celery worker -> approval -> nftables block -> TTL."""

from __future__ import annotations

import time

import pytest

from playbooks.blocking import TABLE
from secops.ecs import parse_time
from tests.support.netns import Lab
from tests.support.playbook_lab import (
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
TTL = 6
SERVER = ("import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
          "s.bind(('0.0.0.0', 8080)); s.listen(64)\nwhile True:\n    c, _ = s.accept(); c.close()\n")
CONNECT = ("import socket, sys\ntry:\n    socket.create_connection((sys.argv[1], 8080), timeout=0.7).close()\n"
           "except OSError:\n    sys.exit(1)\n")
CONTAIN = f"""
name: contain-test
trigger: {{tags: [secops.contain], min_severity: high}}
steps:
  - name: enrich
    action: enrich
    params: {{address: "{{{{ alert.source.ip }}}}"}}
  - name: block
    action: contain
    params: {{address: "{{{{ alert.source.ip }}}}", ttl_seconds: {TTL}}}
    approval: true
    timeout_seconds: 20
"""


def reaches(attacker, victim) -> bool:
    return attacker.run("python3", "-c", CONNECT, victim.ip, check=False, timeout=10).returncode == 0


def ruleset(host) -> str:
    return host.run("nft", "list", "ruleset").stdout


@pytest.fixture
def lab():
    with Lab() as lab:
        attacker, victim = lab.add_host("atk"), lab.add_host("vic")
        victim.popen("python3", "-c", SERVER)
        wait_for(lambda: reaches(attacker, victim), 10, what="victim server")
        yield lab, attacker, victim


def test_alert_approval_block_and_ttl_expiry(settings, redis_server, es, tmp_path, lab):
    net, attacker, victim = lab
    s = playbook_settings(settings, tmp_path, {"contain": CONTAIN}, block_netns=victim.name,
                          protected=[net.gateway], stall_seconds=30)
    config = config_for(s, tmp_path)
    worker = CeleryWorker(config, tmp_path / "worker.log", concurrency=2).start()
    try:
        prefix = s.elasticsearch.index_prefix
        put_alert(es, prefix, "alert-atk", source=attacker.ip, destination=victim.ip, port=8080)
        t_alert = time.monotonic()
        celery_client(s).send_task("playbooks.on_alert", args=["alert-atk"])
        run = wait_for(lambda: (r := run_for_alert(es, prefix, "alert-atk")) and r["status"] == "waiting_approval"
                       and r, 30, what="run waiting for approval")
        t_waiting = time.monotonic() - t_alert
        assert run["steps"][0]["status"] == "done" and run["steps"][1]["status"] == "waiting_approval"
        # nothing blocked before the approval
        time.sleep(1.0)
        assert reaches(attacker, victim)
        assert TABLE not in ruleset(victim) or attacker.ip not in ruleset(victim)

        t0 = time.monotonic()
        out = secops_cli(config, "playbooks", "approve", run["run_id"], "--reason", "confirmed scan")
        assert out.returncode == 0, out.stderr
        wait_for(lambda: not reaches(attacker, victim), 15, interval=0.05, what="attacker blocked")
        t_blocked = time.monotonic() - t0
        done = wait_for(lambda: (r := run_for_alert(es, prefix, "alert-atk")) and r["status"] == "completed" and r,
                        15, what="run completed")
        assert f"{attacker.ip} timeout" in victim.run("nft", "list", "set", "inet", TABLE, "blocked4").stdout
        # the victim's other neighbours are not affected: the root namespace (gateway) still reaches it
        assert victim.run("nft", "get", "element", "inet", TABLE, "blocked4", "{", net.gateway, "}",
                          check=False).returncode != 0

        wait_for(lambda: reaches(attacker, victim), TTL + 10, interval=0.2, what="block expiry")
        t_expired = time.monotonic() - t0
        assert t_expired - t_blocked + 1 >= TTL - 1 and t_expired <= t_blocked + TTL + 6, (t_blocked, t_expired)

        trail = audit_actions(es, prefix, done["run_id"])
        actions = [(a["action"], a["actor"]) for a in trail]
        assert ("playbook.approval.requested", "playbooks") in actions
        assert ("playbook.approve", "analyst-alice") in actions
        acted = [a for a in trail if a["action"] == "playbook.step.acted"]
        assert [a["details"]["step"] for a in acted] == ["enrich", "block"]
        assert acted[1]["details"]["params"] == {"address": attacker.ip, "ttl_seconds": TTL}
        assert acted[1]["details"]["result"]["netns"] == victim.name

        shown = secops_cli(config, "playbooks", "show", done["run_id"])
        assert shown.returncode == 0 and "completed" in shown.stdout and "playbook.approve" in shown.stdout
        assert "analyst-alice" in shown.stdout
        listed = secops_cli(config, "playbooks", "runs", "--status", "completed")
        assert listed.returncode == 0 and done["run_id"] in listed.stdout

        # housekeeping books the expiry
        res = celery_client(s).send_task("playbooks.housekeeping").get(timeout=30)
        assert res["blocks_expired"] == 1
        assert any(a["action"] == "playbook.block.expired" for a in audit_actions(es, prefix, done["run_id"]))
        approved_at = next(a["at"] for a in trail if a["action"] == "playbook.approve")
        server_side = (parse_time(acted[1]["at"]) - parse_time(approved_at)).total_seconds()
        print(f"\nalert->waiting approval {t_waiting:.2f}s, approve command->blocked {t_blocked:.2f}s "
              f"(approval recorded->block acted {server_side:.2f}s), approve->passes again {t_expired:.2f}s "
              f"(TTL {TTL}s)")
    finally:
        worker.stop()


def test_dry_run_changes_nothing_and_protected_assets_are_never_contained(settings, redis_server, es, tmp_path, lab):
    net, attacker, victim = lab
    s = playbook_settings(settings, tmp_path, {"contain": CONTAIN}, block_netns=victim.name,
                          protected=[net.gateway, f"{victim.ip}/32"])
    config = config_for(s, tmp_path)
    prefix = s.elasticsearch.index_prefix
    put_alert(es, prefix, "alert-dry", source=attacker.ip, destination=victim.ip)
    before = ruleset(victim)
    out = secops_cli(config, "playbooks", "run", "contain-test", "--alert", "alert-dry", "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    assert '"would": "block ' + attacker.ip in out.stdout and "timeout" in out.stdout and victim.name in out.stdout
    assert ruleset(victim) == before
    assert reaches(attacker, victim)
    assert run_for_alert(es, prefix, "alert-dry") is None

    worker = CeleryWorker(config, tmp_path / "worker.log").start()
    try:
        client = celery_client(s)
        for alert_id, address in (("alert-gw", net.gateway), ("alert-lo", "127.0.0.1"), ("alert-self", victim.ip)):
            put_alert(es, prefix, alert_id, source=address, destination=victim.ip)
            client.send_task("playbooks.on_alert", args=[alert_id])
            run = wait_for(lambda a=alert_id: (r := run_for_alert(es, prefix, a)) and r["status"] ==
                           "waiting_approval" and r, 30, what=f"{alert_id} waiting")
            assert secops_cli(config, "playbooks", "approve", run["run_id"]).returncode == 0
            run = wait_for(lambda a=alert_id: (r := run_for_alert(es, prefix, a)) and r["status"] == "failed" and r,
                           30, what=f"{alert_id} failed")
            assert "protected" in run["steps"][1]["error"] or "loopback" in run["steps"][1]["error"]
            trail = audit_actions(es, prefix, run["run_id"])
            assert not [a for a in trail if a["action"] == "playbook.step.acted" and a["details"]["step"] == "block"]
            assert any(a["action"] == "playbook.step.failed" for a in trail)
        assert ruleset(victim).count("elements") == 0
        assert reaches(attacker, victim)
        assert net.gateway not in ruleset(victim)
    finally:
        worker.stop()
