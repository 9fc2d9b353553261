"""Safe loading of Sigma rule files: one bad file is one clear error, never the end of the others.

Hostile YAML is refused before pySigma sees it by the product's one loader (``secops.safe_yaml``:
size limit, no anchors/aliases, core tags only, no duplicate keys, bounded depth and node count).
pySigma then parses each file's documents with errors collected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.rule import SigmaRule

from secops import safe_yaml

BUILTIN_RULES = Path(__file__).parent / "rules"
MAX_FILE_BYTES = safe_yaml.MAX_BYTES


class RuleFileError(Exception):
    """A rule file that cannot be used, with the reason in one line."""


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


def default_rule_dirs(extra: Iterable[Path] = ()) -> list[Path]:
    return [BUILTIN_RULES, *extra]
