"""Cases in real headless Chromium: escalate alerts to a case, attach the pcap of its connections and check the
attachment's hash, comment with hostile markdown (inert), export and verify the manifests; the auditor reads
and exports but may not edit."""

from __future__ import annotations

import hashlib
import zipfile

import pytest
from gmssl import func, sm3
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.support.browser import post_json, screenshot, sign_in, submit_and_wait, wait_download
from tests.support.console import audit_docs, spool_capture
from tests.support.playbook_lab import put_alert

pytestmark = pytest.mark.integration


def test_escalate_attach_pcap_comment_and_export(browser, console_url, es, settings, testdata):
    prefix = settings.elasticsearch.index_prefix
    cids, first, last = spool_capture(settings.paths.pcaps(), testdata / "zeek" / "traces" / "ftp" / "ipv4.pcap")
    for i in range(2):  # one incident: two alerts of the same connections
        put_alert(es, prefix, f"ftp-{i}", source="198.18.1.1", destination="198.18.2.2", port=21, rule_id=f"ftp{i}",
                  extra={"network.community_id": cids, "secops.alert.first_time": first,
                         "secops.alert.last_time": last})
    sign_in(browser, console_url, "analyst-user")
    # escalate the first alert into a new case, then the second into that same case
    browser.get(f"{console_url}/alerts/ftp-0")
    browser.find_element(By.ID, "one-title").send_keys("FTP session from 198.18.1.1")
    submit_and_wait(browser, browser.find_element(By.ID, "escalate"))
    case_id = browser.find_element(By.ID, "case-id").text
    assert browser.find_element(By.ID, "case-title").text == "FTP session from 198.18.1.1"
    browser.get(f"{console_url}/alerts/ftp-1")
    Select(browser.find_element(By.ID, "one-case")).select_by_value(case_id)
    submit_and_wait(browser, browser.find_element(By.ID, "escalate"))
    assert browser.find_element(By.ID, "case-id").text == case_id
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#case-alerts a")] == ["ftp-0", "ftp-1"]
    values = {e.text for e in browser.find_elements(By.CSS_SELECTOR, "#observables .obs-value")}
    assert {"198.18.1.1", "198.18.2.2", *cids} <= values
    # attach the pcap; the hash shown is the hash of what downloads
    submit_and_wait(browser, browser.find_element(By.ID, "attach-pcap"))
    shown = browser.find_element(By.CSS_SELECTOR, "#attachments .att-sha256").text
    browser.find_element(By.CSS_SELECTOR, "#attachments .att-link").click()
    pcap = wait_download(browser.downloads, ".pcap")
    assert hashlib.sha256(pcap.read_bytes()).hexdigest() == shown
    (audited,) = audit_docs(es, prefix, action="case.attach_pcap")
    assert audited["details"]["sha256"] == shown and audited["details"]["packets"] > 10
    pcap.unlink()
    # a hostile comment renders as inert text; markdown still works
    browser.find_element(By.ID, "comment-text").send_keys(
        "**bold** <script>window.__pwned=1</script> [x](javascript:window.__pwned=2) "
        "<img src=x onerror=window.__pwned=3>")
    submit_and_wait(browser, browser.find_element(By.ID, "comment-add"))
    body = browser.find_element(By.CSS_SELECTOR, "#comments .comment-body")
    assert body.find_element(By.TAG_NAME, "strong").text == "bold"
    assert "<script>window.__pwned=1</script>" in body.text and not body.find_elements(By.TAG_NAME, "a")
    assert not body.find_elements(By.TAG_NAME, "img") and browser.execute_script("return window.__pwned") is None
    # status change, then export as the auditor and check both manifests
    Select(browser.find_element(By.ID, "edit-status")).select_by_value("in_progress")
    submit_and_wait(browser, browser.find_element(By.ID, "edit-save"))
    assert browser.find_element(By.ID, "case-status").text == "in_progress"
    screenshot(browser, "case-analyst")
    sign_in(browser, console_url, "auditor-user")
    browser.get(f"{console_url}/cases/{case_id}")
    assert not browser.find_elements(By.ID, "case-edit") and not browser.find_elements(By.ID, "comment-add")
    assert post_json(browser, f"/api/cases/{case_id}", {"status": "closed"}) == 403
    browser.find_element(By.ID, "case-export").click()
    exported = wait_download(browser.downloads, ".zip")
    with zipfile.ZipFile(exported) as zf:
        files = {n.split("/", 1)[1]: zf.read(n) for n in zf.namelist()}
    for manifest, digest in (("MANIFEST.sha256", lambda b: hashlib.sha256(b).hexdigest()),
                             ("MANIFEST.sm3", lambda b: sm3.sm3_hash(func.bytes_to_list(b)))):
        lines = [line.split("  ", 1) for line in files[manifest].decode().splitlines()]
        assert len(lines) == 2 and all(digest(files[name]) == d for d, name in lines), manifest
    assert any(name.startswith("attachments/") and name.endswith(".pcap") for name in files)
    (export_audit,) = audit_docs(es, prefix, action="case.export")
    assert export_audit["actor"] == "auditor-user"
    assert export_audit["details"]["sha256"] == hashlib.sha256(exported.read_bytes()).hexdigest()
    exported.unlink()
    assert es.get(index=f"{prefix}-case", id=case_id)["_source"]["secops"]["case"]["status"] == "in_progress"
