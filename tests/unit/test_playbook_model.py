"""Playbook definitions: validation of structure, actions, parameters, templates and conditions."""

from __future__ import annotations

import pytest

from playbooks.model import BUILTIN_DIR, DefinitionError, load_file, matching, parse

GOOD = """
name: contain-test
trigger: {tags: [secops.contain], min_severity: high,
          conditions: [{field: alert.destination.port, op: in, value: [22, 3389]}]}
steps:
  - name: enrich
    action: enrich
    params: {address: "{{ alert.source.ip }}"}
  - name: block
    action: contain
    params: {address: "{{ alert.source.ip }}", ttl_seconds: 60}
    approval: true
    retries: 2
    when: [{field: steps.enrich.asset.criticality, op: ne, value: critical}]
"""

ALERT = {"rule": {"id": "r1", "severity": "high"}, "tags": ["secops.contain"], "source": {"ip": "198.18.0.10"},
         "destination": {"ip": "198.18.0.11", "port": 22}}


def test_good_definition_parses_and_matches():
    book = parse(GOOD)
    assert [s.name for s in book.steps] == ["enrich", "block"]
    assert book.steps[1].approval and book.steps[1].retries == 2
    assert matching([book], ALERT) == [book]
    assert matching([book], {**ALERT, "rule": {"severity": "medium"}}) == []
    assert matching([book], {**ALERT, "tags": ["other"]}) == []
    assert matching([book], {**ALERT, "destination": {"port": 80}}) == []


@pytest.mark.parametrize("mutation, message", [
    (("action: contain", "action: launch_missiles"), "unknown action"),
    (("ttl_seconds: 60", "ttl_seconds: 60, shell: 'rm -rf /'"), "takes no parameter"),
    (("ttl_seconds: 60", "ttl_seconds: sixty"), "ttl_seconds"),
    (('"{{ alert.source.ip }}", ttl', '"{{ alert.source.ip.__class__ | attr(1) }}", ttl'), "only"),
    (("name: block", "name: enrich"), "duplicate step"),
    (("steps.enrich.asset", "steps.block.asset"), "not an earlier step"),
    (("min_severity: high", "min_severity: extreme"), "min_severity"),
    (("retries: 2", "retries: 2\n    surprise: 1"), "unknown key"),
    (("op: in, value: [22, 3389]", "op: in, value: 22"), "needs a list"),
])
def test_bad_definitions_are_refused_with_a_reason(mutation, message):
    old, new = mutation
    assert old in GOOD
    with pytest.raises(DefinitionError, match=message):
        parse(GOOD.replace(old, new, 1), "test.yaml")


def test_jinja_statements_and_expressions_are_definition_errors():
    for tpl in ["{% for x in y %}x{% endfor %}", "{{ 7*7 }}", "{{ ''.__class__ }}", "{{ alert.source.ip }}{#c#}",
                "{{ config }}", "{{ alert['source'] }}"]:
        text = GOOD.replace('"{{ alert.source.ip }}"}\n  - name: block', f'"{tpl}"}}\n  - name: block')
        with pytest.raises(DefinitionError):
            parse(text)


def test_literal_values_are_type_checked_at_definition_time():
    with pytest.raises(DefinitionError, match="address"):
        parse(GOOD.replace('{address: "{{ alert.source.ip }}", ttl', '{address: "1.2.3.4; rm -rf /", ttl'))
    with pytest.raises(DefinitionError, match="needs parameter"):
        parse(GOOD.replace('{address: "{{ alert.source.ip }}", ttl_seconds: 60}', "{ttl_seconds: 60}"))


def test_not_yaml_and_not_a_mapping():
    with pytest.raises(DefinitionError, match="not valid YAML"):
        parse("name: [unclosed", "x.yaml")
    with pytest.raises(DefinitionError, match="mapping"):
        parse("- a\n- b")


def test_shipped_playbooks_are_valid():
    files = sorted(BUILTIN_DIR.glob("*.yaml"))
    assert len(files) >= 3
    for f in files:
        load_file(f)


def test_cidr_and_numeric_conditions():
    book = parse(GOOD.replace("alert.destination.port, op: in, value: [22, 3389]",
                              "alert.destination.ip, op: in_cidr, value: [198.18.0.0/24]"))
    assert matching([book], ALERT)
    assert not matching([book], {**ALERT, "destination": {"ip": "10.0.0.1"}})
    book = parse(GOOD.replace("field: alert.destination.port, op: in, value: [22, 3389]",
                              "field: alert.destination.port, op: gte, value: 1024"))
    assert not matching([book], ALERT)


def test_cli_validate_reports_bad_files(tmp_path):
    from typer.testing import CliRunner

    from secops.cli import app
    from secops.cli_support import CliError, state

    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(GOOD.replace("action: contain", "action: rm"))
    state.config_path, state._settings = None, None
    result = CliRunner().invoke(app, ["playbooks", "validate", str(good), str(bad)])
    assert isinstance(result.exception, CliError) and "1 of 2 playbook files invalid" in str(result.exception)
    assert "ok" in result.output and "unknown action" in result.output
