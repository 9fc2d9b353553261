"""Rule regression tests in SigmaHQ's convention: each rule names an ``info.yml`` (``regression_tests_path``).

An ``info.yml`` lists labelled captures (``type: pcap``, ``path`` relative to the shared test data
directory), how many matches the rule must return on each (``match_count``) and field values at least one
match must carry (``match_fields``), plus, for the false-positive baseline, why the rule may fire on benign
traffic (``known_false_positives``). ``run_cases`` ingests each capture once into a fresh index prefix,
runs every rule that lists it over exactly that prefix, compares, and removes the prefix again.

    id: <uuid of this test file>
    rule_metadata:
        - id: <rule id>
          title: <rule title>
    regression_tests_info:
        - name: FTP password guessing
          type: pcap
          path: attacks/bruteforce/ftp-bruteforce.pcap
          match_count: 1
          match_fields:
              source.ip: 192.168.56.1
    known_false_positives:
        - zeek/traces/...: why
    missing_positive: why no capture shows it firing yet (only with no positive test)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from detections.compiler import CompiledRule
from detections.deadline import DeadlineClient, RuleTimeout
from detections.engine import Match, run_rule
from detections.loader import BUILTIN_RULES, RuleFileError, safe_yaml_documents
from secops.es.templates import install_templates

REGRESSION_DIR = BUILTIN_RULES.parent / "regression"
TESTDATA_ENV = "SECOPS_TESTDATA"
RULE_SECONDS = 60.0
Ingest = Callable[[Path, str], None]  # (capture, index prefix) -> documents in that prefix, refreshed


def default_testdata() -> Path:
    """$SECOPS_TESTDATA, else the shared test data beside the project checkout (``../shared/testdata``)."""
    if env := os.environ.get(TESTDATA_ENV):
        return Path(env)
    return BUILTIN_RULES.parent.parent.parent / "shared" / "testdata"


@dataclass(frozen=True)
class Case:
    """One capture a rule is tested on."""

    rule_id: str
    name: str
    capture: Path
    match_count: int
    match_fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class TestFile:
    path: Path
    rule_ids: list[str]
    cases: list[Case]
    known_false_positives: dict[str, str]  # capture path (under the test data) -> why the rule may fire there
    missing_positive: str | None = None  # why no capture shows the rule firing yet

    @property
    def has_positive(self) -> bool:
        return any(c.match_count > 0 for c in self.cases)


@dataclass
class Result:
    case: Case
    matches: list[Match] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def find_test_file(rule: CompiledRule, relative: str) -> Path | None:
    """``regression_tests_path`` resolved like SigmaHQ's (against the repository root, here any ancestor of the
    rule file), or against the rule file's own folder."""
    rel = Path(relative)
    if rel.is_absolute():
        return rel if rel.is_file() else None
    base = Path(rule.source) if rule.source else BUILTIN_RULES
    for folder in [base.parent, *base.parents]:
        if (folder / rel).is_file():
            return folder / rel
    return None


def load_test_file(path: Path, testdata: Path) -> TestFile:
    """Parse one info.yml (safe loader); RuleFileError with the reason when it is unusable."""
    docs = safe_yaml_documents(path.read_text(encoding="utf-8"))
    if len(docs) != 1:
        raise RuleFileError(f"{path}: expected one YAML document")
    doc = docs[0]
    ids = [str(m.get("id")) for m in doc.get("rule_metadata") or [] if isinstance(m, dict) and m.get("id")]
    if not ids:
        raise RuleFileError(f"{path}: rule_metadata names no rule id")
    cases = []
    for item in doc.get("regression_tests_info") or []:
        if not isinstance(item, dict) or item.get("type") != "pcap" or not item.get("path"):
            raise RuleFileError(f"{path}: every regression test needs type: pcap and a path")
        count = item.get("match_count")
        if not isinstance(count, int) or count < 0:
            raise RuleFileError(f"{path}: {item.get('name')!r} needs a match_count >= 0")
        fields = item.get("match_fields") or {}
        if not isinstance(fields, dict):
            raise RuleFileError(f"{path}: match_fields must be a mapping")
        for rule_id in ids:
            cases.append(Case(rule_id, str(item.get("name") or item["path"]), testdata / str(item["path"]), count,
                              fields))
    fps = {}
    for entry in doc.get("known_false_positives") or []:
        if isinstance(entry, dict):
            fps.update({str(k): str(v) for k, v in entry.items()})
    missing = doc.get("missing_positive")
    return TestFile(path, ids, cases, fps, str(missing) if missing else None)


def collect(rules: list[CompiledRule], testdata: Path) -> tuple[list[TestFile], list[str]]:
    """Every test file the rules name plus those in detections/regression (analytics); problems as lines."""
    problems: list[str] = []
    paths: dict[Path, None] = {}
    for rule in rules:
        if rule.regression_tests_path is None:
            continue
        found = find_test_file(rule, rule.regression_tests_path)
        if found is None:
            problems.append(f"{rule.id} {rule.title}: regression_tests_path {rule.regression_tests_path} not found")
        else:
            paths[found.resolve()] = None
    if REGRESSION_DIR.is_dir():
        for p in sorted(REGRESSION_DIR.rglob("info.yml")):
            paths[p.resolve()] = None
    files = []
    known = {r.id for r in rules}
    for p in paths:
        try:
            tf = load_test_file(p, testdata)
        except (OSError, RuleFileError) as exc:
            problems.append(str(exc))
            continue
        problems += [f"{p}: unknown rule {i}" for i in tf.rule_ids if i not in known]
        problems += [f"{p}: capture {c.capture} missing" for c in tf.cases if not c.capture.is_file()]
        if not tf.has_positive and not tf.missing_positive:
            problems.append(f"{p}: no positive capture (match_count > 0) and no missing_positive reason")
        files.append(tf)
    return files, problems


def _value(match: Match, name: str) -> Any:
    return match.group.get(name, match.fields.get(name))


def compare(case: Case, matches: list[Match]) -> list[str]:
    problems = []
    if len(matches) != case.match_count:
        problems.append(f"expected {case.match_count} match(es), got {len(matches)}")
    if case.match_fields and case.match_count and not any(
            all(str(_value(m, k)) == str(v) for k, v in case.match_fields.items()) for m in matches):
        problems.append(f"no match with {case.match_fields}")
    return problems


def remove_prefix(es: Elasticsearch, prefix: str) -> None:
    es.indices.delete(index=f"{prefix}-*", allow_no_indices=True, expand_wildcards="all")
    es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-*")


def run_cases(es: Elasticsearch, rules: list[CompiledRule], cases: list[Case], ingest: Ingest,
              base_prefix: str = "secops_rt", keep: bool = False) -> list[Result]:
    """Each distinct capture ingested once into its own prefix; every case on it evaluated there."""
    by_id = {r.id: r for r in rules}
    captures = sorted({c.capture for c in cases})
    results = []
    for n, capture in enumerate(captures):
        prefix = f"{base_prefix}{n}"
        remove_prefix(es, prefix)
        install_templates(es, prefix)
        try:
            ingest(capture, prefix)
            for case in (c for c in cases if c.capture == capture):
                results.append(_run_case(es, by_id[case.rule_id], case, prefix))
        finally:
            if not keep:
                remove_prefix(es, prefix)
    return results


def _run_case(es: Elasticsearch, rule: CompiledRule, case: Case, prefix: str) -> Result:
    result = Result(case)
    if rule.error:
        result.problems.append(f"rule does not compile: {rule.error}")
        return result
    client = DeadlineClient(es, RULE_SECONDS, f"secops-regression:{rule.id}")
    try:
        result.matches = run_rule(client, prefix, rule, "1970-01-01T00:00:00Z", "2999-01-01T00:00:00Z")
    except RuleTimeout as exc:
        result.problems.append(f"slow rule: {exc}")
        return result
    result.problems = compare(case, result.matches)
    return result
