# ruff: noqa: RUF001  (Chinese text uses full-width punctuation, as GB/T 15834 prescribes)
"""Chinese and English throughout: `secops i18n check` is clean (this is CI's gate), finds a gap when there is one,
every pack rule carries its zh-CN texts in x_secops_i18n (validated by the loader), alerts store both languages,
and alert reasons, plan steps, audit summaries and the compliance export render per reader."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detections.alerts import new_alert
from detections.analytics import analytic_rules
from detections.compiler import compile_rules
from detections.engine import Match, _reason
from detections.loader import BUILTIN_RULES, I18N_FIELD, load_rules, missing_translations, parse_file
from inventory.export import export_assets, finding_text, headers
from secops import i18n
from secops.audit import SUMMARIES, audit_doc, summary
from secops.cli import app
from secops.config import InventorySettings
from secops.console.i18n import Texts

ROOT = Path(__file__).resolve().parents[2]
RULE = """title: Test Rule
id: 5d6f0b7c-1111-4222-8333-944455556666
status: test
description: A test.
{extra}
logsource:
    product: secops
    service: conn
detection:
    selection:
        destination.port: 23
    condition: selection
level: low
"""


def test_i18n_check_is_clean():
    """The CI gate: every catalogue and the rule pack translated."""
    result = CliRunner().invoke(app, ["i18n", "check"])
    assert result.exit_code == 0, result.output
    assert "0 gap(s) in console, audit, reasons, kibana, playbooks, export, notify, rules" in result.output


def test_check_lists_a_missing_message_and_fails(tmp_path):
    src = tmp_path / "pkg"
    src.mkdir()
    (src / "mod.py").write_text('from secops.i18n import N_\nA = N_("Known")\nB = N_("Brand new %(n)s")\n')
    cfg = tmp_path / "babel.cfg"
    cfg.write_text("[python: **.py]\n")
    cat = i18n.Catalogue("demo", src, cfg, tmp_path / "locale", "demo")
    assert {str(g) for g in i18n.check([cat])} == {"demo [zh_CN] missing: 'Brand new %(n)s'",
                                                    "demo [zh_CN] missing: 'Known'"}
    cat.update("zh_CN")  # regenerated from the source: entries present, sorted, still untranslated
    po = cat.po("zh_CN").read_text()
    assert po.index('msgid "Brand new %(n)s"') < po.index('msgid "Known"')
    assert [g.problem for g in i18n.check([cat])] == ["untranslated", "untranslated"]
    po = po.replace('msgid "Known"\nmsgstr ""', 'msgid "Known"\nmsgstr "已知"')
    po = po.replace('msgid "Brand new %(n)s"\nmsgstr ""', 'msgid "Brand new %(n)s"\nmsgstr "全新"')
    cat.po("zh_CN").write_text(po)
    assert [str(g) for g in i18n.check([cat])] == ["demo [zh_CN] placeholders: 'Brand new %(n)s'"]
    cat.po("zh_CN").write_text(po.replace('"全新"', '"全新 %(n)s"'))
    (src / "mod.py").write_text('from secops.i18n import N_\nB = N_("Brand new %(n)s")\n')
    assert [str(g) for g in i18n.check([cat])] == ["demo [zh_CN] stale: 'Known'"]
    cat.update("zh_CN")
    assert i18n.check([cat]) == []
    i18n.translations.cache_clear()
    assert i18n.Message("Brand new %(n)s", {"n": 3}).render(i18n.translations(cat, "zh_CN")) == "全新 3"


def test_i18n_check_command_exits_non_zero_on_a_gap(tmp_path):
    """The real command in a copy of the tree where a rule lost its Chinese text: listed, exit 1."""
    tree = tmp_path / "tree"
    subprocess.run(["cp", "-r", str(ROOT / "detections"), str(ROOT / "secops"), str(ROOT / "inventory"),
                    str(ROOT / "playbooks"), str(ROOT / "collectors"), str(tree.mkdir() or tree)], check=True)
    rule = tree / "detections/rules/network/nmap_http_probes.yml"
    text = rule.read_text(encoding="utf-8")
    start = text.index(I18N_FIELD)
    end = text.index("\n", text.index("description:", start + 40))
    rule.write_text(text[:start] + text[end + 1:], encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "secops", "i18n", "check"], cwd=tree, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "300"}, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "'Nmap Service Detection Or NSE HTTP Probes' lacks x_secops_i18n.zh-CN.title/description" in out.stdout
    assert "1 gap(s)" in out.stdout


def test_every_pack_rule_has_chinese_title_and_description():
    rules = load_rules([BUILTIN_RULES])
    assert not rules.errors and len(rules.rules) >= 33
    assert missing_translations(rules, ["zh-CN"]) == []
    for rule in rules.rules:
        zh = rule.custom_attributes[I18N_FIELD]["zh-CN"]
        assert zh["title"] != rule.title and any("\u4e00" <= ch <= "\u9fff" for ch in zh["title"] + zh["description"])
    compiled = {r.title: r for r in compile_rules(rules)}
    assert compiled["SSH Brute Force"].i18n["zh-CN"]["title"] == "SSH 暴力破解"


@pytest.mark.parametrize("extra, error", [
    (f"{I18N_FIELD}: just text", "must map language tags"),
    (f"{I18N_FIELD}:\n    Chinese!: {{title: x}}", "is not a language tag"),
    (f"{I18N_FIELD}:\n    zh-CN: {{title: x, summary: y}}", "unknown key 'summary'"),
    (f"{I18N_FIELD}:\n    zh-CN: {{title: ''}}", "must be text of 1-256 characters"),
    (f"{I18N_FIELD}:\n    zh-CN: {{title: [1, 2]}}", "must be text"),
    (f"{I18N_FIELD}:\n    zh-CN: {{title: {'x' * 300}}}", "must be text of 1-256"),
])
def test_loader_refuses_a_malformed_translation_field(tmp_path, extra, error):
    path = tmp_path / "r.yml"
    path.write_text(RULE.format(extra=extra), encoding="utf-8")
    _docs, result = parse_file(path)
    assert result.error and error in result.error, result.error
    path.write_text(RULE.format(extra=f"{I18N_FIELD}:\n    zh-CN: {{title: 测试规则, description: 测试。}}"))
    assert parse_file(path)[1].error is None


def _match(**kw) -> Match:
    return Match(group={"source.ip": "198.18.0.1"}, first_time="2026-11-29T00:00:00Z",
                 last_time="2026-11-29T00:01:00Z", count=12, **kw)


def test_alert_stores_both_languages_and_the_reason_as_a_message():
    rules = {r.title: r for r in compile_rules(load_rules([BUILTIN_RULES]))}
    rule = rules["SSH Brute Force"]
    reason = _reason(rule.correlation, 12)
    doc = new_alert(rule, _match(reason_message=reason), "k", "a1", None)
    assert doc["rule"]["name"] == "SSH Brute Force"
    assert doc["secops"]["alert"]["i18n"]["zh-CN"]["name"] == "SSH 暴力破解"
    assert doc["secops"]["alert"]["i18n"]["zh-CN"]["description"].startswith("同一客户端在五分钟内")
    assert doc["event"]["reason"] == "12 events within 300s (gte 20)"
    assert doc["secops"]["alert"]["reason_message"] == {"id": "%(n)s events within %(seconds)ss (%(op)s "
                                                        "%(threshold)s)", "params": {"n": 12, "seconds": 300,
                                                                                     "op": "gte", "threshold": 20}}
    zh, en = Texts("zh_CN"), Texts("en")
    assert zh.rule(doc) == "SSH 暴力破解" and en.rule(doc) == "SSH Brute Force"
    msg = doc["secops"]["alert"]["reason_message"]
    assert zh.message(msg, "reasons") == "300 秒内 12 条事件（gte 20）"
    assert en.message(msg, "reasons") == doc["event"]["reason"]
    assert zh.message(None, "reasons", "fallback") == "fallback"
    # an alert written before translations existed (no i18n): the English name
    assert zh.rule({"rule": {"name": "Old"}}) == "Old"


def test_analytic_rules_carry_chinese_texts_from_the_reasons_catalogue():
    texts = {r.id: r.i18n["zh-CN"] for r in analytic_rules()}
    assert texts["secops-analytic-dga"]["title"] == "算法生成域名（DGA）"
    assert all(t["title"] and t["description"] for t in texts.values())


def test_audit_summary_is_stored_and_rendered_per_reader():
    doc = audit_doc("console.login", "alice", "success", actor="alice")
    record = doc["secops"]["audit"]
    assert record["summary"] == {"id": "Signed in as %(object)s", "params": {"object": "alice"}}
    assert Texts("zh_CN").audit(record) == "以 alice 身份登录"
    assert Texts("en").audit(record) == "Signed in as alice"
    old = {"action": "playbook.step.acted", "object": "run-1/block"}  # written before summaries were stored
    assert Texts("zh_CN").audit(old) == "执行了步骤 run-1/block"
    assert summary("some.new_action", "x").english() == "some.new_action on x"
    assert all("%(object)s" in m or "kill switch" in m for m in SUMMARIES.values())


def test_export_vocabulary_follows_mlps(tmp_path):
    zh = headers("zh")
    assert zh[:1] == ["资产编号"] and "责任部门" in zh and "所处位置" in zh and "重要程度" in zh and "网络区域" in zh
    assert headers("en")[0] == "Asset ID"
    with pytest.raises(ValueError):
        headers("fr")
    assert finding_text("forbidden_service:telnet:23/tcp", "zh") == "开放了禁用服务 telnet（23/tcp）"
    assert finding_text("no_owner", "zh") == "未指定责任人" and finding_text("no_owner", "en") == "no_owner"
    po = i18n.EXPORT.po("zh_CN").read_text(encoding="utf-8")
    assert po.count("# GB/T 22239-2019") >= 15  # translator comments name the standard's clause for each term
    asset = {"host": {"ip": ["198.18.0.5"]}, "secops": {"asset": {"id": "a1", "services": [
        {"port": 23, "transport": "tcp", "name": "telnet"}]}}}
    export_assets([asset], tmp_path / "a.csv", "csv", InventorySettings(), datetime.now(UTC), lang="zh")
    with (tmp_path / "a.csv").open(encoding="utf-8-sig", newline="") as fh:
        head, row = list(csv.reader(fh))
    findings = row[head.index("合规问题")]
    # export cells are NFKC-normalised (secops.cells): the full-width parentheses arrive as ASCII
    assert "未指定责任人" in findings and "开放了禁用服务 telnet(23/tcp)" in findings


def test_plan_summaries_are_messages():
    from playbooks.actions.contain import Contain  # noqa: F401  (the module marks its messages)

    tr = i18n.translations(i18n.PLAYBOOKS, "zh_CN")
    msg = i18n.Message("block %(address)s for %(seconds)s seconds, then lift the block",
                       {"address": "198.18.0.9", "seconds": 60})
    assert msg.render(tr) == "封禁 198.18.0.9 60 秒，到期后自动解除"


def test_cli_help_names_the_chinese_interface():
    out = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "300"}).output
    assert "The Chinese (zh-CN) interface is the web console" in out and "简体中文" in out


def test_step_errors_are_messages_with_the_raw_text_kept():
    """An action's failure renders in the reader's language; str() keeps the exact English for operators; a plan
    summary that wraps an error renders both in the same language."""
    from playbooks.actions.base import ActionContext
    from playbooks.actions.contain import Contain, ContainParams
    from playbooks.errors import ActionError, PermanentError, error_message
    from secops.config import Settings

    tr = i18n.translations(i18n.PLAYBOOKS, "zh_CN")
    settings = Settings(playbooks={"protected": ["198.18.0.0/24"]})
    ctx = ActionContext(settings, None, "run", "block", "key", {}, 5.0)
    with pytest.raises(PermanentError) as caught:
        Contain().plan(ContainParams(address="198.18.0.9"), ctx)
    raw = str(caught.value)
    assert raw == ("refused: 198.18.0.9 is protected (198.18.0.0/24); containment never touches protected assets")
    why = error_message(caught.value)
    assert why.render(tr) == "已拒绝：198.18.0.9 受保护（198.18.0.0/24）；遏制动作从不触及受保护资产"
    doc = i18n.message("cannot plan this step: %(error)s", error=why).as_doc()
    assert doc["params"]["error"]["params"]["reason"]["id"] == "%(address)s is protected (%(entry)s)"
    assert i18n.render(doc, i18n.PLAYBOOKS, "zh_CN") == ("无法为此步骤生成计划：已拒绝：198.18.0.9 受保护"
                                                         "（198.18.0.0/24）；遏制动作从不触及受保护资产")
    assert i18n.render(doc, i18n.PLAYBOOKS, "en") == f"cannot plan this step: {raw}"
    # an exception that is not an action's own: its kind and text, inside a translated frame
    assert error_message(OSError("disk full")).render(tr) == "意外错误 OSError：disk full"
    assert str(ActionError("plain text")) == "plain text" and error_message(ActionError("plain text")).params == {
        "kind": "ActionError", "error": "plain text"}


def test_cli_plan_table_shows_the_summary_in_english():
    from playbooks.cli import plan_text

    summary = i18n.message("cannot plan this step: %(error)s",
                           error=i18n.message("webhook answered %(status)s", status=503)).as_doc()
    text = plan_text({"error": "webhook answered 503", "error_message": {"id": "x", "params": {}},
                      "summary": summary})
    assert text == 'cannot plan this step: webhook answered 503  {"error": "webhook answered 503"}'
    assert plan_text({"would": "block"}) == '{"would": "block"}'
