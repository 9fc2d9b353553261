"""Sigma rules: pipeline mapping, conversion of the SigmaHQ set and the built-in pack, hostile YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from detections.compiler import compile_rules
from detections.loader import BUILTIN_RULES, MAX_FILE_BYTES, load_rules, safe_yaml_documents
from detections.pipeline import UNSUPPORTED
from detections.report import field_report
from tests.support import TESTDATA

SIGMAHQ = TESTDATA / "sigma" / "rules"

GOOD_RULE = """title: Good
id: 0d6b5e7e-4c1e-4a57-9d7b-6a0d2b8f1a01
logsource:
    product: zeek
    service: dns
detection:
    selection:
        query|endswith: '.evil.test'
        id.orig_h: 198.18.0.5
    condition: selection
level: high
"""


def test_all_sigmahq_rules_convert():
    rules = compile_rules(load_rules([SIGMAHQ]))
    assert len(rules) == 98
    assert [r.title for r in rules if r.error] == []
    assert all(r.query for r in rules)


def test_sigmahq_field_report_finds_most_network_rules():
    report = field_report(compile_rules(load_rules([SIGMAHQ])))
    by_status: dict[str, int] = {}
    for r in report:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    assert by_status.get("all-fields", 0) >= 60
    # firewall/cisco/fortigate/... logs are not produced here: routed to a dataset that matches nothing
    assert all(r.rule.dataset == UNSUPPORTED for r in report if r.status == "unsupported-logsource")


def test_zeek_and_generic_fields_are_mapped_to_ecs(tmp_path: Path):
    (tmp_path / "r.yml").write_text(GOOD_RULE)
    [rule] = compile_rules(load_rules([tmp_path]))
    assert rule.error is None
    assert "event.dataset:secops.dns" in rule.query
    assert "dns.question.name.ci:*.evil.test" in rule.query  # case-insensitive, as Sigma matches strings
    assert "source.ip:198.18.0.5" in rule.query
    assert rule.severity == "high" and rule.score == 73


def test_builtin_pack_compiles_with_attack_tags():
    rules = compile_rules(load_rules([BUILTIN_RULES]))
    assert len(rules) >= 25
    assert [r.title for r in rules if r.error] == []
    correlations = [r for r in rules if r.correlation]
    assert {c.correlation.type for c in correlations} >= {"event_count", "value_count"}
    for r in rules:
        if r.generate:
            assert r.techniques, r.title
            assert r.author == "secops project"


def test_temporal_correlation_compiles(tmp_path: Path):
    (tmp_path / "t.yml").write_text(GOOD_RULE.replace("title: Good", "title: Good\nname: good_one") + """---
title: Other
id: 0d6b5e7e-4c1e-4a57-9d7b-6a0d2b8f1a02
name: other_one
logsource:
    product: zeek
    service: http
detection:
    selection:
        c-uri|contains: '/x'
    condition: selection
---
title: Both
id: 0d6b5e7e-4c1e-4a57-9d7b-6a0d2b8f1a03
correlation:
    type: temporal_ordered
    rules:
        - good_one
        - other_one
    group-by:
        - id.orig_h
    timespan: 2m
level: high
""")
    rules = {r.title: r for r in compile_rules(load_rules([tmp_path]))}
    both = rules["Both"]
    assert both.error is None
    assert both.correlation.type == "temporal_ordered"
    assert both.correlation.group_by == ["source.ip"]
    assert both.correlation.timespan == 120


HOSTILE = {
    "bomb.yml": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
    "python.yml": "title: x\ndetection: !!python/object/apply:os.system ['echo pwned']\n",
    "huge.yml": "title: x\n# " + "A" * (MAX_FILE_BYTES + 10) + "\n",
    "modifier.yml": GOOD_RULE.replace("query|endswith", "query|explode").replace("0d6b5e7e-4c1e-4a57-9d7b-6a0d2b8f1a01",
                                                                                "0d6b5e7e-4c1e-4a57-9d7b-6a0d2b8f1a09"),
    "deep.yml": "title: " + "[" * 200 + "]" * 200 + "\n",
    "notamap.yml": "- just\n- a list\n",
    "broken.yml": "title: [unclosed\n",
    "binary.yml": "\x00\x01\x02",
    "nocondition.yml": "title: x\nlogsource: {product: zeek}\ndetection: {sel: {a: 1}}\n",
}


def test_hostile_yaml_gives_one_error_per_file_and_keeps_the_others(tmp_path: Path):
    for name, text in HOSTILE.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "good.yml").write_text(GOOD_RULE)
    (tmp_path / "latin1.yml").write_bytes(b"title: \xff\xfe\n")
    rs = load_rules([tmp_path])
    errors = {f.path.name: f.error for f in rs.errors}
    assert set(errors) == {*HOSTILE, "latin1.yml"}, errors
    assert all(e and "\n" not in e for e in errors.values())
    assert "alias" in errors["bomb.yml"]
    assert "python" in errors["python.yml"]
    assert "larger than" in errors["huge.yml"]
    assert "explode" in errors["modifier.yml"]
    assert [r.title for r in rs.rules] == ["Good"]
    assert [r.title for r in compile_rules(rs)] == ["Good"]


@pytest.mark.parametrize("text", ["a: !!python/name:os.system ''", "a: !custom 1", "x: &anchor 1"])
def test_safe_yaml_refuses_tags_and_anchors(text):
    with pytest.raises(Exception, match="not allowed"):
        safe_yaml_documents(text)


def test_rules_check_and_convert_cli_report_each_bad_file(tmp_path: Path):
    from typer.testing import CliRunner

    from secops.cli import app

    for name, text in HOSTILE.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "good.yml").write_text(GOOD_RULE)
    runner = CliRunner()
    check = runner.invoke(app, ["rules", "check", str(tmp_path)])
    assert check.exit_code == 1
    assert "1 rules compiled, 9 errors" in check.output
    for name in HOSTILE:
        assert name in check.output
    convert = runner.invoke(app, ["rules", "convert", str(tmp_path)])
    assert convert.exit_code == 0
    assert "dns.question.name.ci:*.evil.test" in convert.output
