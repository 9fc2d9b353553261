"""The x_secops_suppression rule setting: parsed into a typed record, malformed settings refused as the file's
error (other rules still load), a query rule groups by the suppression fields, missing-field policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from detections.compiler import compile_rules
from detections.engine import Match
from detections.loader import load_rules
from detections.suppression import Suppression, SuppressionError, rule_suppression, suppression_key, terms_of

RULE = """title: Telnet {n}
id: 5b0c9d8e-0000-4000-8000-00000000070{n}
logsource: {{product: secops, service: conn}}
detection: {{sel: {{dst_port: 23}}, condition: sel}}
{setting}
"""


@pytest.mark.parametrize(("value", "expected"), [
    ({"fields": ["source.ip"], "window": "10m"}, Suppression(("source.ip",), 600)),
    ({"fields": "source.ip", "window": 90}, Suppression(("source.ip",), 90)),
    ({"fields": ["source.ip", "destination.ip", "destination.port"], "window": "2d", "missing": "separate"},
     Suppression(("source.ip", "destination.ip", "destination.port"), 172800, "separate")),
])
def test_valid_settings(value, expected):
    assert rule_suppression({"x_secops_suppression": value}) == expected


@pytest.mark.parametrize(("value", "error"), [
    ("source.ip", "must be a mapping"),
    ({"fields": [], "window": "1h"}, "1-3 fields"),
    ({"fields": ["a", "b", "c", "d"], "window": "1h"}, "1-3 fields"),
    ({"fields": ["source.ip"]}, "window is required"),
    ({"fields": ["source.ip"], "window": "1w"}, "duration"),
    ({"fields": ["source.ip"], "window": "31d"}, "1 s to 30 days"),
    ({"fields": ["source.ip"], "window": 0}, "1 s to 30 days"),
    ({"fields": ["source.ip"], "window": True}, "duration"),
    ({"fields": ["source ip"], "window": "1h"}, "not a field name"),
    ({"fields": ["a", "a"], "window": "1h"}, "twice"),
    ({"fields": ["a"], "window": "1h", "missing": "drop"}, "missing is one of"),
    ({"fields": ["a"], "window": "1h", "per": "execution"}, "unknown key"),
])
def test_malformed_settings_are_refused(value, error):
    with pytest.raises(SuppressionError, match=error):
        rule_suppression({"x_secops_suppression": value})


def test_loader_refuses_the_file_and_keeps_the_others(tmp_path: Path):
    (tmp_path / "good.yml").write_text(RULE.format(n=1, setting="x_secops_suppression: {fields: [source.ip], "
                                                                "window: 15m}"))
    (tmp_path / "bad.yml").write_text(RULE.format(n=2, setting="x_secops_suppression: {fields: [source.ip]}"))
    rules = load_rules([tmp_path])
    [bad] = rules.errors
    assert bad.path.name == "bad.yml" and "window is required" in (bad.error or "")
    [rule] = compile_rules(rules)
    assert rule.suppression == Suppression(("source.ip",), 900) and rule.group_by == ["source.ip"]


def test_terms_and_missing_policy():
    match = Match(group={"source.ip": "198.18.0.1"}, first_time="t", last_time="t", count=1,
                  fields={"destination.port": 23})
    both = Suppression(("source.ip", "destination.port"), 60)
    assert terms_of(both, match) == [("source.ip", "198.18.0.1"), ("destination.port", 23)]
    assert suppression_key(terms_of(both, match) or []) == "source.ip=198.18.0.1|destination.port=23"
    absent = Suppression(("source.ip", "user.name"), 60)
    assert terms_of(absent, match) == [("source.ip", "198.18.0.1"), ("user.name", None)]
    assert terms_of(Suppression(("user.name",), 60, "separate"), match) is None
    assert suppression_key([("url.original", "x" * 2000)]).startswith("sha256:")
