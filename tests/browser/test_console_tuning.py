"""Tuning in real headless Chromium: create an exception from an alert (its open alert closes), the next
detection run over new matching traffic raises nothing while other traffic still alerts; expire the exception on
the exceptions page and the alert comes back. A viewer cannot create an exception."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from detections.alerts import AlertStore
from detections.compiler import compile_rules
from detections.loader import BUILTIN_RULES, load_rules
from detections.scheduler import Scheduler
from secops.ecs import iso
from tests.integration.detect_support import T0, minutes, svcctl, write
from tests.support.browser import post_json, screenshot, sign_in, submit_and_wait
from tests.support.console import audit_docs

pytestmark = pytest.mark.integration
SVC_RULE = "24e688c5-144e-5c29-9d44-a52e73cd78c6"


def sources(es, prefix, status="open"):
    return sorted(a["source"]["ip"] for a in AlertStore(es, prefix, notifier=None).list(status=status))


def test_exception_from_alert_silences_then_expires(browser, console_url, es, settings):
    prefix = settings.elasticsearch.index_prefix
    settings.detections.lookback_seconds = 60
    rules = [r for r in compile_rules(load_rules([BUILTIN_RULES])) if r.id == SVC_RULE]
    sched = Scheduler(es, settings, rules, alerts=AlertStore(es, prefix, notifier=None))
    write(es, settings, [svcctl("198.18.0.1", "198.18.0.9", T0 - minutes(2), ingested=T0 - minutes(2)),
                         svcctl("198.18.0.2", "198.18.0.9", T0 - minutes(2), ingested=T0 - minutes(2))])
    assert sched.run(now=T0)[0].created == 2
    alert_id = next(a["_id"] for a in AlertStore(es, prefix, notifier=None).list() if a["source"]["ip"] == "198.18.0.1")
    sign_in(browser, console_url, "viewer-user")
    browser.get(f"{console_url}/alerts/{alert_id}")
    assert not browser.find_elements(By.ID, "tune-link")
    assert post_json(browser, "/api/exceptions", {"rule_id": SVC_RULE, "comment": "x", "conditions": [
        {"field": "source.ip", "value": "198.18.0.1"}]}) == 403

    sign_in(browser, console_url, "analyst-user")
    browser.get(f"{console_url}/alerts/{alert_id}")
    browser.find_element(By.ID, "tune-link").click()
    assert browser.find_element(By.ID, "value-source.ip").get_attribute("value") == "198.18.0.1"
    browser.find_element(By.ID, "use-source.ip").click()
    browser.find_element(By.ID, "tune-comment").send_keys("jump host <b>installs</b> services")
    screenshot(browser, "tune-from-alert")
    submit_and_wait(browser, browser.find_element(By.ID, "tune-save"))
    row = browser.find_element(By.CSS_SELECTOR, "#exceptions tr.exception")
    assert row.find_element(By.CSS_SELECTOR, ".exc-conditions").text == "source.ip is 198.18.0.1"
    assert row.find_element(By.CSS_SELECTOR, ".exc-comment").text == "jump host <b>installs</b> services"
    assert sources(es, prefix) == ["198.18.0.2"] and sources(es, prefix, "closed") == ["198.18.0.1"]

    # next run over new traffic: the excepted host raises nothing, another host still alerts
    write(es, settings, [svcctl("198.18.0.1", "198.18.0.9", T0 + minutes(1), ingested=T0 + minutes(1)),
                         svcctl("198.18.0.3", "198.18.0.9", T0 + minutes(1), ingested=T0 + minutes(1))])
    assert sched.run(now=T0 + minutes(2))[0].created == 1
    assert sources(es, prefix) == ["198.18.0.2", "198.18.0.3"]

    # expire it on the exceptions page; new traffic from the host alerts again
    browser.find_element(By.CSS_SELECTOR, ".exc-new-expires").send_keys(iso(T0 + minutes(3)))
    submit_and_wait(browser, browser.find_element(By.CSS_SELECTOR, ".exc-save"))
    expires = browser.find_element(By.CSS_SELECTOR, ".exc-expires time")  # in the user's zone, with the zone
    assert expires.get_attribute("datetime").startswith("2026-11-20T12:03:00")
    assert expires.text.endswith("GMT+08:00")
    write(es, settings, [svcctl("198.18.0.1", "198.18.0.9", T0 + minutes(4), ingested=T0 + minutes(4))])
    assert sched.run(now=T0 + minutes(5))[0].created == 1
    assert sources(es, prefix) == ["198.18.0.1", "198.18.0.2", "198.18.0.3"]
    screenshot(browser, "exceptions-list")
    assert {d["action"] for d in audit_docs(es, prefix, actor="analyst-user")} >= {"exception.create",
                                                                                   "exception.edit"}
