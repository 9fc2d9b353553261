"""Responder approves a pending containment step in the browser and the block takes effect in a namespace lab;
denies another, which then never acts. Real Celery worker, Redis, nftables, Chromium."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from playbooks.blocking import TABLE
from secops.console.app import create_app
from tests.integration.test_playbook_containment import CONTAIN, SERVER, reaches
from tests.support.browser import post_json, screenshot, sign_in, submit_and_wait
from tests.support.console import ConsoleServer, add_users, audit_docs
from tests.support.netns import Lab
from tests.support.playbook_lab import (
    audit_actions,
    celery_client,
    config_for,
    playbook_settings,
    put_alert,
    run_for_alert,
    wait_for,
)
from tests.support.services import CeleryWorker

pytestmark = [pytest.mark.integration, pytest.mark.root]


def decide_in_browser(driver, run_id, decision, reason):
    section = driver.find_element(By.ID, f"approval-{run_id}")
    assert "contain" in section.find_element(By.CSS_SELECTOR, ".plan-action").text
    section.find_element(By.CSS_SELECTOR, "input.reason").send_keys(reason)
    submit_and_wait(driver, section.find_element(By.CSS_SELECTOR, f"button.{decision}"))


def test_responder_approves_one_containment_and_denies_another(browser, settings, redis_server, es, tmp_path):
    with Lab() as net:
        attacker, other, victim = net.add_host("atk"), net.add_host("oth"), net.add_host("vic")
        victim.popen("python3", "-c", SERVER)
        wait_for(lambda: reaches(attacker, victim) and reaches(other, victim), 10, what="victim server")
        s = playbook_settings(settings, tmp_path, {"contain": CONTAIN}, block_netns=victim.name,
                              protected=[net.gateway], stall_seconds=30)
        prefix = s.elasticsearch.index_prefix
        worker = CeleryWorker(config_for(s, tmp_path), tmp_path / "worker.log", concurrency=2).start()
        add_users(es, prefix)
        try:
            with ConsoleServer(create_app(s, es)) as server:
                runs = {}
                for alert_id, host in (("alert-approve", attacker), ("alert-deny", other)):
                    put_alert(es, prefix, alert_id, source=host.ip, destination=victim.ip, port=8080)
                    celery_client(s).send_task("playbooks.on_alert", args=[alert_id])
                    runs[alert_id] = wait_for(lambda a=alert_id: (r := run_for_alert(es, prefix, a)) and
                                              r["status"] == "waiting_approval" and r, 60, what="waiting approval")

                # an analyst sees the plan but may not decide
                sign_in(browser, server.url, "analyst-user")
                browser.get(f"{server.url}/approvals")
                assert not browser.find_elements(By.CSS_SELECTOR, "button.approve")
                status = post_json(browser, f"/api/runs/{runs['alert-approve']['run_id']}/decision",
                                   {"decision": "approve", "reason": "me too"})
                assert status == 403

                sign_in(browser, server.url, "responder-user")
                browser.get(f"{server.url}/approvals")
                screenshot(browser, "approvals-responder")
                decide_in_browser(browser, runs["alert-approve"]["run_id"], "approve", "confirmed scanner")
                wait_for(lambda: not reaches(attacker, victim), 30, interval=0.1, what="attacker blocked")
                decide_in_browser(browser, runs["alert-deny"]["run_id"], "deny", "known backup host")
                assert browser.find_element(By.ID, "no-approvals")

                done = wait_for(lambda: (r := run_for_alert(es, prefix, "alert-approve")) and
                                r["status"] == "completed" and r, 30, what="run completed")
                denied = run_for_alert(es, prefix, "alert-deny")
                assert denied["status"] == "denied" and "responder-user" in denied["error"]
                assert reaches(other, victim)
                assert other.ip not in victim.run("nft", "list", "table", "inet", TABLE).stdout

                browser.get(f"{server.url}/runs/{done['run_id']}")
                assert browser.find_element(By.ID, "run-status").text == "completed"
                assert "playbook.approve" in browser.find_element(By.ID, "run-audit").text
                screenshot(browser, "run-timeline")
                trail = audit_actions(es, prefix, done["run_id"])
                assert ("playbook.approve", "responder-user") in [(a["action"], a["actor"]) for a in trail]
                assert len(audit_docs(es, prefix, actor="analyst-user", action="console.denied")) == 1
                decisions = audit_docs(es, prefix, actor="responder-user")
                assert {"console.playbook.approve", "console.playbook.deny"} <= {d["action"] for d in decisions}
        finally:
            worker.stop()
