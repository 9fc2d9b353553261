"""Safe loading of Sigma rule files: one bad file is one clear error, never the end of the others.

Hostile YAML is refused before pySigma sees it by the product's one loader (``secops.safe_yaml``:
size limit, no anchors/aliases, core tags only, no duplicate keys, bounded depth and node count).
pySigma then parses each file's documents with errors collected.

Translations of a rule's title and description live in the Sigma custom field ``x_secops_i18n`` (Sigma lets a
rule carry fields the specification does not define; the ``x_`` prefix follows STIX 2.1's custom-property
convention so it can never collide with a future Sigma field, ``secops`` names the owner). Keys are BCP 47
language tags, values have Sigma's own field names, so a translator sees what each text translates::

    x_secops_i18n:
        zh-CN:
            title: "SSH 暴力破解"
            description: "..."

The loader refuses a malformed field (the file's error); ``missing_translations`` lists rules without one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.rule import SigmaRule

from detections.suppression import SuppressionError, rule_suppression
from secops import safe_yaml

BUILTIN_RULES = Path(__file__).parent / "rules"
MAX_FILE_BYTES = safe_yaml.MAX_BYTES


I18N_FIELD = "x_secops_i18n"
I18N_KEYS = {"title": 256, "description": 4000}  # translated field -> longest accepted text
LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")


class RuleFileError(Exception):
    """A rule file that cannot be used, with the reason in one line."""


def rule_i18n(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    """A rule document's translations ({language tag: {title, description}}), or RuleFileError when malformed."""
    value = doc.get(I18N_FIELD)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RuleFileError(f"{I18N_FIELD} must map language tags to {{title, description}}")
    out: dict[str, dict[str, str]] = {}
    for lang, texts in value.items():
        if not isinstance(lang, str) or not LANGUAGE_TAG.match(lang):
            raise RuleFileError(f"{I18N_FIELD}: {str(lang)[:40]!r} is not a language tag such as zh-CN")
        if not isinstance(texts, dict) or not texts:
            raise RuleFileError(f"{I18N_FIELD}.{lang} must be a mapping with title and/or description")
        for key, text in texts.items():
            if key not in I18N_KEYS:
                raise RuleFileError(f"{I18N_FIELD}.{lang}: unknown key {str(key)[:40]!r} (title, description)")
            if not isinstance(text, str) or not text.strip() or len(text) > I18N_KEYS[key]:
                raise RuleFileError(f"{I18N_FIELD}.{lang}.{key} must be text of 1-{I18N_KEYS[key]} characters")
        out[lang] = dict(texts)
    return out


def safe_yaml_documents(text: str) -> list[dict[str, Any]]:
    """Parse a multi-document YAML text through the product's one safe loader; every document a mapping."""
    try:
        docs = safe_yaml.load_all(text)
    except safe_yaml.UnsafeYaml as exc:
        raise RuleFileError(exc.reason) from None
    for doc in docs:
        if not isinstance(doc, dict):
            raise RuleFileError(f"a rule document must be a mapping, got {type(doc).__name__}")
    return docs


@dataclass
class RuleFile:
    path: Path
    rules: list[SigmaRule | SigmaCorrelationRule] = field(default_factory=list)
    error: str | None = None


def parse_file(path: Path) -> tuple[list[dict[str, Any]], RuleFile]:
    """A file's documents and its parse result; errors are recorded, never raised."""
    result = RuleFile(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise RuleFileError(f"file larger than {MAX_FILE_BYTES} bytes")
        docs = safe_yaml_documents(path.read_text(encoding="utf-8"))
        if not docs:
            raise RuleFileError("no rule in file")
        for doc in docs:
            rule_i18n(doc)
            try:
                rule_suppression(doc)
            except SuppressionError as exc:
                raise RuleFileError(str(exc)) from None
        collection = SigmaCollection.from_dicts(docs, collect_errors=True, resolve_references=False)
        errors = list(collection.errors) + [e for r in collection.rules for e in r.errors]
        if errors:
            raise RuleFileError("; ".join(str(e) for e in errors[:3]))
        return docs, result
    except (OSError, UnicodeDecodeError, RuleFileError, SigmaError, ValueError, TypeError, KeyError) as exc:
        result.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RuleFileError) else str(exc)
        return [], result


def rule_files(dirs: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        d = Path(d)
        if d.is_file():
            out.append(d)
        elif d.is_dir():
            out += sorted(p for p in d.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
    return out


@dataclass
class RuleSet:
    """All usable rules (correlations resolved across files) plus one error per unusable file."""

    files: list[RuleFile]
    rules: list[SigmaRule | SigmaCorrelationRule]

    @property
    def errors(self) -> list[RuleFile]:
        return [f for f in self.files if f.error]

    def by_id(self, rule_id: str) -> SigmaRule | SigmaCorrelationRule | None:
        return next((r for r in self.rules if str(r.id) == rule_id or r.name == rule_id), None)


def load_rules(paths: Iterable[Path]) -> RuleSet:
    files: list[RuleFile] = []
    good: list[tuple[RuleFile, list[dict[str, Any]]]] = []
    for path in rule_files(paths):
        docs, result = parse_file(path)
        files.append(result)
        if not result.error:
            good.append((result, docs))
    all_docs = [d for _, docs in good for d in docs]
    collection = SigmaCollection.from_dicts(all_docs, collect_errors=True)
    # map rules back to their files (documents are in order)
    idx = 0
    for result, docs in good:
        result.rules = collection.rules[idx:idx + len(docs)]
        for rule in result.rules:
            rule.source = SigmaRuleLocation(result.path)
        idx += len(docs)
    for err in collection.errors:
        for result, _ in good:  # a correlation referencing a missing rule: blame the file(s) that failed
            if any(str(r.id) in str(err) for r in result.rules):
                result.error = str(err)
    rules = [r for result, _ in good if not result.error for r in result.rules]
    return RuleSet(files=files, rules=rules)


def missing_translations(rules: RuleSet, langs: Iterable[str]) -> list[str]:
    """One line per rule of the set without a title and description in each of ``langs`` (BCP 47 tags)."""
    out = []
    for rule in rules.rules:
        have = rule_i18n(rule.custom_attributes or {})
        for lang in langs:
            lacking = [k for k in I18N_KEYS if not have.get(lang, {}).get(k)]
            if lacking:
                where = rule.source.path if rule.source else "?"
                out.append(f"{where}: {rule.title!r} lacks {I18N_FIELD}.{lang}.{'/'.join(lacking)}")
    return out


def default_rule_dirs(extra: Iterable[Path] = ()) -> list[Path]:
    return [BUILTIN_RULES, *extra]
