"""The console in real headless Chromium, as each role: triage a group, refusals, hostile values stay inert,
approve/deny containment in a namespace lab, download an alert's pcap, open an asset page and export."""

from __future__ import annotations

import hashlib
import re

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from collectors.pcap_spool import Spool
from collectors.pcapio import read_capture
from detections.alerts import AlertStore, new_alert
from detections.compiler import compile_rules
from detections.engine import Match, _reason
from detections.loader import BUILTIN_RULES, load_rules
from secops.console.app import create_app
from secops.console.i18n import format_time
from secops.console.pages import zone_choices
from secops.console.users import UserStore
from secops.ecs import iso, parse_time
from tests.integration.test_playbook_containment import CONTAIN
from tests.support.browser import post_json, screenshot, sign_in, submit_and_wait, wait_download
from tests.support.console import ConsoleServer, add_users, audit_docs, spool_capture
from tests.support.playbook_lab import playbook_settings, put_alert

pytestmark = pytest.mark.integration
HOSTILE_SCRIPT = "<script>window.__pwned = 1</script>"
HOSTILE_IMG = '"><img src=x onerror="window.__pwned=2">'
HOSTILE_URL = "javascript:window.__pwned=3"


def statuses(es, prefix, ids):
    es.indices.refresh(index=f"{prefix}-alert")
    return {i: es.get(index=f"{prefix}-alert", id=i)["_source"]["secops"]["alert"] for i in ids}


def group_row(driver, value):
    for row in driver.find_elements(By.CSS_SELECTOR, "#groups tr.group"):
        if row.find_element(By.CSS_SELECTOR, ".group-value").text == value:
            return row
    raise AssertionError(f"no group {value!r} in {driver.find_element(By.ID, 'groups').text}")


def act_on_group(driver, value, action, arg=""):
    row = group_row(driver, value)
    Select(row.find_element(By.CSS_SELECTOR, "select[name=action]")).select_by_value(action)
    if arg:
        row.find_element(By.CSS_SELECTOR, "input[name=arg]").send_keys(arg)
    submit_and_wait(driver, row.find_element(By.CSS_SELECTOR, "button"), accept_confirm=True)


def test_analyst_acknowledges_assigns_and_closes_a_group(browser, console_url, es, settings):
    prefix = settings.elasticsearch.index_prefix
    scan = [f"scan-{i}" for i in range(4)]
    for i, alert_id in enumerate(scan):
        put_alert(es, prefix, alert_id, source=f"198.18.1.{i + 1}", destination="198.18.2.1", rule_id="scan")
    put_alert(es, prefix, "dns-1", source="198.18.1.9", rule_id="dns")
    sign_in(browser, console_url, "analyst-user")
    browser.get(f"{console_url}/alerts?status=open&group_by=rule.name")
    assert group_row(browser, "Test rule scan").find_element(By.CSS_SELECTOR, ".group-count").text == "4"
    screenshot(browser, "alerts-grouped-analyst")

    act_on_group(browser, "Test rule scan", "acknowledge")
    assert {a["status"] for a in statuses(es, prefix, scan).values()} == {"acknowledged"}
    browser.get(f"{console_url}/alerts?status=acknowledged&group_by=rule.name")
    act_on_group(browser, "Test rule scan", "assign", "responder-user")
    act_on_group(browser, "Test rule scan", "close")
    after = statuses(es, prefix, [*scan, "dns-1"])
    assert all(after[i]["status"] == "closed" and after[i]["assignee"] == "responder-user" for i in scan)
    assert after["dns-1"]["status"] == "open" and not after["dns-1"].get("assignee")
    assert [h["action"] for h in after["scan-0"]["history"]][-3:] == ["acknowledged", "assigned", "closed"]
    assert all(h["by"] == "analyst-user" for h in after["scan-0"]["history"][-3:])

    # the queue's own selection: one alert by checkbox
    browser.get(f"{console_url}/alerts?status=open")
    browser.find_element(By.CSS_SELECTOR, "tr[data-id='dns-1'] input.pick").click()
    Select(browser.find_element(By.ID, "bulk-action")).select_by_value("note")
    browser.find_element(By.ID, "bulk-arg").send_keys("looked at it")
    submit_and_wait(browser, browser.find_element(By.ID, "bulk-apply"))
    assert statuses(es, prefix, ["dns-1"])["dns-1"]["notes"][0]["text"] == "looked at it"
    for action in ("alert.acknowledge", "alert.assign", "alert.close"):
        (doc,) = audit_docs(es, prefix, actor="analyst-user", action=action)
        assert doc["details"]["done"] == 4 and doc["details"]["group"]["field"] == "rule.name"


def test_viewer_and_auditor_are_refused_on_the_server(browser, console_url, es, settings):
    prefix = settings.elasticsearch.index_prefix
    put_alert(es, prefix, "a1", source="198.18.1.1", rule_id="scan")
    sign_in(browser, console_url, "viewer-user")
    browser.get(f"{console_url}/alerts")
    assert browser.find_elements(By.CSS_SELECTOR, "tr.alert-row") and not browser.find_elements(By.CSS_SELECTOR,
                                                                                              "input.pick")
    assert post_json(browser, "/api/alerts/actions", {"action": "close", "ids": ["a1"]}) == 403
    browser.get(f"{console_url}/audit")
    assert browser.find_element(By.ID, "error-status").text == "403"
    screenshot(browser, "viewer-refused")
    denied = audit_docs(es, prefix, actor="viewer-user", action="console.denied")
    assert {d["object"] for d in denied} == {"POST /api/alerts/actions", "GET /audit"}
    assert all(d["source_ip"] == "127.0.0.1" for d in denied)

    sign_in(browser, console_url, "auditor-user")
    assert post_json(browser, "/api/kill-switch", {"on": True}) == 403
    assert post_json(browser, "/api/alerts/actions", {"action": "close", "ids": ["a1"]}) == 403
    assert statuses(es, prefix, ["a1"])["a1"]["status"] == "open"
    assert len(audit_docs(es, prefix, actor="auditor-user", action="console.denied")) == 2


def test_hostile_alert_values_render_as_inert_text(browser, console_url, es, settings):
    prefix = settings.elasticsearch.index_prefix
    put_alert(es, prefix, "hostile", source="198.18.0.66", rule_id="r1", extra={
        "rule.name": HOSTILE_SCRIPT, "event.reason": HOSTILE_IMG, "url.original": HOSTILE_URL,
        "secops.alert.kibana_url": HOSTILE_URL, "user_agent.original": "{{ 7*7 }} ${7*7}"})
    sign_in(browser, console_url, "analyst-user")
    for page in ("/alerts", "/alerts?group_by=rule.name", "/alerts?group_by=event.reason", "/alerts/hostile"):
        browser.get(console_url + page)
        assert browser.execute_script("return window.__pwned") is None, page
        assert not browser.find_elements(By.CSS_SELECTOR, "main script, main img"), page
    assert browser.find_element(By.ID, "alert-title").text == HOSTILE_SCRIPT
    assert browser.find_element(By.ID, "alert-reason").text == HOSTILE_IMG
    values = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#fields td.field-value")]
    assert HOSTILE_URL in values and "{{ 7*7 }} ${7*7}" in values
    assert not [a for a in browser.find_elements(By.TAG_NAME, "a")
                if (a.get_attribute("href") or "").lower().startswith("javascript")]
    # a hostile note typed in the console is text too
    Select(browser.find_element(By.ID, "one-action")).select_by_value("note")
    browser.find_element(By.ID, "one-arg").send_keys('<img src=x onerror="window.__pwned=4">')
    submit_and_wait(browser, browser.find_element(By.ID, "one-apply"))
    assert browser.find_element(By.CSS_SELECTOR, "#notes .note-text").text == '<img src=x onerror="window.__pwned=4">'
    assert browser.execute_script("return window.__pwned") is None
    screenshot(browser, "alert-hostile-values")


def test_analyst_downloads_an_alerts_pcap(browser, console_url, es, settings, testdata, tmp_path):
    prefix = settings.elasticsearch.index_prefix
    spool = Spool(settings.paths.pcaps())
    cids, first, last = spool_capture(settings.paths.pcaps(), testdata / "zeek" / "traces" / "ftp" / "ipv4.pcap")
    put_alert(es, prefix, "ftp-alert", source="198.18.1.1", rule_id="ftp", extra={
        "network.community_id": cids, "secops.alert.first_time": first, "secops.alert.last_time": last})
    expected = []
    for i, cid in enumerate(cids):
        spool.extract(tmp_path / f"{i}.pcap", cid=cid)
        expected += [(ts, bytes(buf[off:off + caplen])) for ts, _lt, buf, off, caplen, _w in
                     read_capture(tmp_path / f"{i}.pcap")]
    expected.sort(key=lambda r: r[0])

    sign_in(browser, console_url, "analyst-user")
    browser.get(f"{console_url}/alerts/ftp-alert")
    browser.find_element(By.ID, "pcap-link").click()
    got_path = wait_download(browser.downloads, ".pcap")
    got = [(ts, bytes(buf[off:off + caplen])) for ts, _lt, buf, off, caplen, _w in read_capture(got_path)]
    assert got == expected and len(got) > 10
    (doc,) = audit_docs(es, prefix, actor="analyst-user", action="console.pcap.download")
    assert doc["details"]["sha256"] == hashlib.sha256(got_path.read_bytes()).hexdigest()
    assert doc["details"]["packets"] == len(expected)
    got_path.unlink()
    browser.get(f"{console_url}/alerts/ftp-alert/transcript")
    text = "\n".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, "section.stream pre"))
    assert "220 " in text and "USER " in text and "\\r" in text
    assert browser.find_element(By.ID, "pcap-sha256").text == doc["details"]["sha256"]
    screenshot(browser, "pcap-transcript")
    # a viewer may not pull packets
    sign_in(browser, console_url, "viewer-user")
    browser.get(f"{console_url}/alerts/ftp-alert/pcap")
    assert browser.find_element(By.ID, "error-status").text == "403"


def test_auditor_opens_an_asset_and_exports_the_inventory(browser, console_url, es, settings):
    prefix = settings.elasticsearch.index_prefix
    now = iso()
    es.index(index=f"{prefix}-asset", id="asset-1", refresh="wait_for", document={
        "@timestamp": now, "event": {"dataset": "secops.asset", "kind": "state"},
        "host": {"ip": ["198.18.3.4"], "mac": ["02:00:00:00:03:04"], "hostname": "scada-hmi-1"},
        "secops": {"asset": {"id": "asset-1", "zone": "scada", "owner": "Water Bureau <ops@example.org>",
                             "criticality": "high", "first_seen": now, "last_seen": now, "last_scan": now,
                             "services": [{"port": 502, "transport": "tcp", "name": "modbus"}]}}})
    put_alert(es, prefix, "modbus-write", source="198.18.9.9", destination="198.18.3.4", rule_id="modbus")
    sign_in(browser, console_url, "auditor-user")
    browser.get(f"{console_url}/assets?q=scada-hmi")
    assert browser.find_element(By.ID, "asset-total").text.startswith("1 ")
    submit_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "a.asset-link"))
    assert browser.find_element(By.ID, "asset-owner").text == "Water Bureau <ops@example.org>"
    assert "502/tcp" in browser.find_element(By.ID, "services").text
    assert "Test rule modbus" in browser.find_element(By.ID, "asset-alerts").text
    screenshot(browser, "asset-page-auditor")
    browser.get(f"{console_url}/assets")
    submit_and_wait_download = browser.find_element(By.ID, "export")
    submit_and_wait_download.click()
    csv_path = wait_download(browser.downloads, ".csv")
    assert "scada-hmi-1" in csv_path.read_text(encoding="utf-8-sig")
    (doc,) = audit_docs(es, prefix, actor="auditor-user", action="inventory.export")
    assert doc["details"]["sha256"] == hashlib.sha256(csv_path.read_bytes()).hexdigest()
    assert doc["details"]["rows"] == 1
    csv_path.unlink()
    # the alert page shows the destination's owner from the inventory
    browser.get(f"{console_url}/alerts/modbus-write")
    assert browser.find_element(By.CSS_SELECTOR, "#asset-destination .owner").text == "Water Bureau <ops@example.org>"


def test_alert_store_and_console_agree_on_triage(browser, console_url, es, settings):
    """A change made with the detections context's AlertStore (the CLI's path) shows in the console."""
    prefix = settings.elasticsearch.index_prefix
    put_alert(es, prefix, "cli-1", source="198.18.1.1", rule_id="x")
    AlertStore(es, prefix, notifier=None).assign("cli-1", "someone", "cli-user")
    sign_in(browser, console_url, "viewer-user")
    browser.get(f"{console_url}/alerts/cli-1")
    assert browser.find_element(By.ID, "alert-assignee").text == "someone"
    assert "cli-user" in browser.find_element(By.ID, "history").text


TEXT_NODES = """
const out = [], walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {  // raw document values (field tables, code) are data, not interface text
  const t = walker.currentNode.nodeValue.trim();
  if (t && !walker.currentNode.parentElement.closest('table.kv, code, noscript, script, style, time')) out.push(t);
}
for (const el of document.querySelectorAll('[placeholder], [aria-label], [data-confirm]'))
  out.push((el.getAttribute('placeholder') || el.getAttribute('aria-label') || el.getAttribute('data-confirm')).trim());
return out;
"""
TIMES = "return [...document.querySelectorAll('main time')].map(t => [t.dateTime, t.title, t.textContent]);"
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:?\d{2})?)?")
NOT_TRANSLATED = {"secops", "English", "简体中文", "中文", "CSV", "XLSX", "JSON"}  # names, shown as themselves


def user_catalogue(lang: str) -> set[str]:
    """Every text the user's language has: each gettext catalogue (msgstr, or msgid for English; split at the
    placeholders) and the rule pack's x_secops_i18n texts (or the rules' own English)."""
    from detections.loader import BUILTIN_RULES, load_rules, rule_i18n
    from secops import i18n

    texts: set[str] = set()
    for cat in i18n.CATALOGUES:
        for m in cat.read("zh_CN"):
            if m.id:
                strings = (m.id if isinstance(m.id, tuple) else (m.id,)) if lang == "en" else (
                    m.string if isinstance(m.string, tuple) else (m.string,))
                texts.update(f for s in strings for f in i18n.PLACEHOLDER.split(s) if f and f.strip())
    for rule in load_rules([BUILTIN_RULES]).rules:
        zh = rule_i18n(rule.custom_attributes or {}).get("zh-CN", {})
        texts.update([rule.title, rule.description or ""] if lang == "en" else zh.values())
    return texts


def untranslated(strings: list[str], allowed: set[str]) -> list[str]:
    """The strings that keep letters (Latin or Chinese) once every allowed text, time and number is taken out."""
    patterns = []
    for text in sorted(allowed - {""}, key=len, reverse=True):
        left = r"(?<![A-Za-z])" if text[0].isascii() and text[0].isalpha() else ""
        right = r"(?![A-Za-z])" if text[-1].isascii() and text[-1].isalpha() else ""
        patterns.append(left + re.escape(text) + right)
    allowed_re = re.compile("|".join(patterns))
    out = []
    for s in strings:
        rest = allowed_re.sub(" ", ISO_TIME.sub(" ", s))
        if re.sub(r"[\W\d_]+", "", rest):
            out.append(s)
    return out


def _leaves(doc, out: set[str]) -> set[str]:
    """Every scalar value of a document (inside lists of objects too), as text."""
    if isinstance(doc, dict):
        for v in doc.values():
            _leaves(v, out)
    elif isinstance(doc, list):
        for v in doc:
            _leaves(v, out)
    elif isinstance(doc, str | int):
        out.add(str(doc))
    return out


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_each_user_sees_every_page_in_their_language(browser, es, settings, tmp_path, lang):
    """The same pages and actions as a zh-CN user and as an en user: no visible interface string that is not in
    the user's catalogue; the pack rule's name, its reason and a playbook plan in the user's language."""
    prefix = settings.elasticsearch.index_prefix
    rules = {r.title: r for r in compile_rules(load_rules([BUILTIN_RULES]))}
    rule = rules["SSH Brute Force"]
    match = Match(group={"source.ip": "198.18.3.4", "destination.ip": "198.18.3.5"}, first_time=iso(),
                  last_time=iso(), count=12, fields={"destination.port": 22},
                  reason_message=_reason(rule.correlation, 12))
    alert = new_alert(rule, match, "k", "a1", None)
    alert["secops"]["alert"]["count"] = 1234567  # a large count: grouped the locale's way
    es.index(index=f"{prefix}-alert", id="a1", document=alert, refresh="wait_for")
    now = iso()
    asset = {"@timestamp": now, "host": {"ip": ["198.18.3.4"]}, "secops": {"asset": {
        "id": "asset-1", "zone": "office", "owner": "IT", "first_seen": now, "last_seen": now,
        "services": [{"port": 22, "transport": "tcp", "name": "ssh"}]}}}
    es.index(index=f"{prefix}-asset", id="asset-1", refresh="wait_for", document=asset)
    catalogue = user_catalogue(lang)
    names = {"admin-user", "responder-user", "a1", "contain-test", "enrich", "block",  # accounts, ids, the book
             *zone_choices()}  # time zones by their IANA names (the header link, the preferences page)
    data = _leaves(asset, _leaves(alert, set(names))) | NOT_TRANSLATED
    if lang != "en":  # what has a translation must not show in English (stored statuses, the rule's texts)
        data -= user_catalogue("en") | {alert["event"]["reason"], alert["message"]}
        data |= names  # the playbook's step names (chosen by its author) are data too
    html_lang = "zh-CN" if lang == "zh_CN" else "en"
    # the block step's address is protected: its plan fails, and the plan's error shows in the user's language
    lab = playbook_settings(settings, tmp_path, {"contain": CONTAIN}, protected=["198.18.3.4"])
    with ConsoleServer(create_app(lab, es)) as server:
        add_users(es, prefix)
        _walk_as(browser, server.url, es, prefix, lang, html_lang, catalogue, data, rule)


def _choose_language(browser, es, prefix, user, lang, html_lang):
    """The user picks the language in the header (the select submits itself; stored per user)."""
    Select(browser.find_element(By.CSS_SELECTOR, "select[name=lang]")).select_by_value(
        "en" if lang == "zh_CN" else "zh_CN")  # the other one first, so the switch under test is a real change
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") != html_lang)
    Select(browser.find_element(By.CSS_SELECTOR, "select[name=lang]")).select_by_value(lang)
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == html_lang)
    assert UserStore(es, prefix).get(user).lang == lang


def _walk_as(browser, console_url, es, prefix, lang, html_lang, catalogue, data, rule):
    sign_in(browser, console_url, "admin-user")
    _choose_language(browser, es, prefix, "admin-user", lang, html_lang)

    def walk(page: str, extra: set[str] = frozenset(), zone: str = "Asia/Shanghai") -> None:
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == html_lang, page
        shown = browser.execute_script(TEXT_NODES)
        assert shown, page
        bad = untranslated(shown, catalogue | data | extra)
        assert not bad, (lang, page, bad)
        # every date: the stored UTC moment, shown in the user's zone (the console default until they choose
        # one) in their locale's format, with the zone
        for utc, shown_zone, text in browser.execute_script(TIMES):
            assert shown_zone == zone and text == format_time(parse_time(utc), lang, zone), (page, utc, text)

    name = {"zh_CN": "SSH 暴力破解", "en": "SSH Brute Force"}[lang]
    for page in ("/", "/alerts", "/alerts/a1", "/approvals", "/assets", "/assets/asset-1", "/audit", "/preferences"):
        browser.get(console_url + page)
        walk(page)
        if page in ("/", "/alerts", "/assets/asset-1"):  # open alerts by rule, the queue, the asset's alerts
            assert name in browser.find_element(By.TAG_NAME, "main").text, page
        if page in ("/alerts", "/assets/asset-1"):
            screenshot(browser, f"{html_lang}{page.replace('/', '-')}")
    browser.get(console_url + "/alerts?group_by=rule.name&status=")
    walk("group by rule.name", {rule.title, "rule.name"})  # the field and its stored values are data

    # the same actions: acknowledge with a note, then a playbook plan, each page in the user's language
    # dates in local time with the zone shown, a large count grouped, in both languages
    browser.get(f"{console_url}/alerts")
    row = browser.find_element(By.CSS_SELECTOR, "tr.alert-row[data-id=a1]")
    assert row.find_element(By.CSS_SELECTOR, ".alert-count").text == "1,234,567"
    last_seen = row.find_element(By.CSS_SELECTOR, ".last-seen time").text
    assert last_seen.endswith(" GMT+08:00"), last_seen
    assert ("年" in last_seen) == (lang == "zh_CN") and ("AM" in last_seen or "PM" in last_seen) == (lang == "en")
    browser.get(f"{console_url}/alerts/a1")
    assert browser.find_element(By.ID, "alert-count").text == "1,234,567"
    reason = {"zh_CN": "300 秒内 12 条事件（gte 20）", "en": "12 events within 300s (gte 20)"}[lang]  # noqa: RUF001
    assert browser.find_element(By.ID, "alert-title").text == name
    assert browser.find_element(By.ID, "alert-reason").text == reason
    Select(browser.find_element(By.ID, "one-action")).select_by_value("acknowledge")
    submit_and_wait(browser, browser.find_element(By.ID, "one-apply"))
    walk("after acknowledge")
    assert browser.find_element(By.ID, "flash").text.endswith({"zh_CN": "确认", "en": "acknowledge"}[lang])
    assert browser.find_element(By.ID, "alert-status").text == {"zh_CN": "已确认", "en": "acknowledged"}[lang]
    sign_in(browser, console_url, "responder-user")  # hand-started playbooks are the responder's
    _choose_language(browser, es, prefix, "responder-user", lang, html_lang)
    browser.get(f"{console_url}/alerts/a1")
    Select(browser.find_element(By.ID, "playbook-name")).select_by_value("contain-test")
    submit_and_wait(browser, browser.find_element(By.ID, "playbook-plan"))
    walk("plan")
    summaries = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#plan .plan-summary")]
    assert summaries and all(summaries), summaries
    assert summaries[0] == {"zh_CN": "执行 enrich 动作", "en": "run the enrich action"}[lang]
    assert summaries[1] == {  # the step error inside the plan, translated; the raw text stays in the plan's JSON
        "zh_CN": "无法为此步骤生成计划：已拒绝：198.18.3.4 受保护（198.18.3.4）；遏制动作从不触及受保护资产",  # noqa: RUF001
        "en": "cannot plan this step: refused: 198.18.3.4 is protected (198.18.3.4); containment never touches "
              "protected assets"}[lang]
    assert "refused: 198.18.3.4 is protected" in browser.find_element(By.ID, "plan").text
    sign_in(browser, console_url, "admin-user")  # the language stays the user's choice
    browser.get(f"{console_url}/audit")
    walk("audit after actions")
    texts = " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, "#audit .summary"))
    assert {"zh_CN": "以 admin-user 身份登录", "en": "Signed in as admin-user"}[lang] in texts
    # a time zone of one's own (the preferences page): the same moments, in that zone
    browser.get(f"{console_url}/preferences")
    Select(browser.find_element(By.ID, "pref-timezone")).select_by_value("Europe/Berlin")
    submit_and_wait(browser, browser.find_element(By.ID, "pref-save"))
    assert UserStore(es, prefix).get("admin-user").timezone == "Europe/Berlin"
    browser.get(f"{console_url}/alerts/a1")
    walk("alert in Europe/Berlin", zone="Europe/Berlin")
    assert browser.find_element(By.ID, "preferences-link").text == "Europe/Berlin"
    browser.get(f"{console_url}/alerts")
    screenshot(browser, f"{html_lang}-alerts-after-triage")
    assert {"zh_CN": "告警", "en": "Alerts"}[lang] in browser.find_element(By.TAG_NAME, "nav").text
