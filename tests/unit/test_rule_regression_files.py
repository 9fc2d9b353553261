"""Every shipped rule names a SigmaHQ-style regression test file (info.yml) that is complete and consistent."""

from __future__ import annotations

from detections.analytics import analytic_rules
from detections.compiler import compile_rules
from detections.loader import BUILTIN_RULES, load_rules
from detections.regression import collect, find_test_file, load_test_file
from tests.support import TESTDATA


def test_every_rule_has_a_regression_test_file_that_names_it():
    rules = compile_rules(load_rules([BUILTIN_RULES])) + analytic_rules()
    files, problems = collect(rules, TESTDATA)
    assert not problems, problems
    covered = {i for f in files for i in f.rule_ids}
    assert covered == {r.id for r in rules}
    for rule in rules:
        if rule.kind == "analytic":
            continue
        assert rule.regression_tests_path, rule.title
        path = find_test_file(rule, rule.regression_tests_path)
        assert path is not None and rule.id in load_test_file(path, TESTDATA).rule_ids
    positives = [f for f in files if f.has_positive]
    assert len(positives) >= 24  # the rest say why no shared capture shows them (missing_positive)
    assert all(f.missing_positive for f in files if not f.has_positive)
