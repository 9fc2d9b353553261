"""Hunt in real headless Chromium: a query grouped by destination port with the rare view, a pivot by Community
ID from a result to every dataset holding that flow, and a rule made from the query."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
import yaml
from selenium.webdriver.common.by import By

from tests.integration.detect_support import T0, conn, event, minutes, write
from tests.support.browser import screenshot, sign_in, submit_and_wait, wait_download
from tests.support.playbook_lab import put_alert

pytestmark = pytest.mark.integration
CID = "1:LQU9qZlK+B5F3KDmev6m5PMibrg="


def text(element, selector):
    return element.find_element(By.CSS_SELECTOR, selector).text


def test_rare_ports_pivot_and_rule(browser, console_url, es, settings):
    prefix = settings.elasticsearch.index_prefix
    docs = [conn(f"198.18.9.{i % 5 + 1}", "198.18.10.1", (443, 80)[i % 2], T0 + minutes(i), ingested=T0)
            for i in range(20)]
    docs.append(conn("198.18.9.66", "198.18.10.1", 4444, T0 + minutes(3), ingested=T0,
                     network={"transport": "tcp", "community_id": CID}))
    docs.append(event("secops.dns", "198.18.9.66", "198.18.10.53", T0 + minutes(3),
                      {"dns.question.name": "c2.example.org", "network.community_id": CID}, ingested=T0))
    write(es, settings, docs)
    put_alert(es, prefix, "c2", source="198.18.9.66", destination="198.18.10.1", port=4444,
              extra={"network.community_id": CID})
    sign_in(browser, console_url, "analyst-user")
    browser.get(f"{console_url}/hunt")
    browser.find_element(By.ID, "h-q").clear()
    browser.find_element(By.ID, "h-q").send_keys("network.transport:tcp")
    # From/To are datetime-local inputs in the user's zone (the console default here): the browser submits the
    # wall-clock value and the server reads it in that zone
    zone = ZoneInfo(settings.console.timezone)
    for field, moment in (("h-start", T0 - minutes(5)), ("h-end", T0 + minutes(60))):
        element = browser.find_element(By.ID, field)
        assert element.get_attribute("type") == "datetime-local"
        browser.execute_script("arguments[0].value = arguments[1]", element,
                               moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M"))
    browser.find_element(By.ID, "h-group-by").send_keys("destination.port")
    browser.find_element(By.ID, "h-rare").click()
    submit_and_wait(browser, browser.find_element(By.ID, "h-run"))
    groups = browser.find_elements(By.CSS_SELECTOR, "#hunt-groups tr.hunt-group")
    rows = [(text(r, ".group-value"), text(r, ".group-count")) for r in groups]
    assert rows == [("4444", "1"), ("80", "10"), ("443", "10")]  # least frequent first, ties by value
    assert len(browser.find_elements(By.CSS_SELECTOR, "#histogram progress")) >= 2
    assert browser.find_element(By.ID, "h-start").get_attribute("value") == \
        (T0 - minutes(5)).astimezone(zone).strftime("%Y-%m-%dT%H:%M")  # kept, in the user's zone
    screenshot(browser, "hunt-rare-ports")
    # pivot from the rare flow's Community ID
    link = next(a for a in browser.find_elements(By.CSS_SELECTOR, "#hunt-hits .pivot-link") if a.text == CID)
    submit_and_wait(browser, link)
    counts = {text(r, ".pivot-dataset"): text(r, ".pivot-count")
              for r in browser.find_elements(By.CSS_SELECTOR, "#pivot-datasets tr.pivot-row")}
    assert counts == {"secops.conn": "1", "secops.dns": "1", "secops.alert": "1"}
    screenshot(browser, "hunt-pivot")
    # make a rule from the query
    browser.get(f"{console_url}/hunt?dataset=secops.conn&since=all&q=destination.port%3A4444")
    browser.find_element(By.ID, "make-rule").click()
    rule = yaml.safe_load(wait_download(browser.downloads, "rule.yml").read_text())
    assert rule["detection"]["selection"] == {"destination.port": "4444"}
    (browser.downloads / "rule.yml").unlink()
