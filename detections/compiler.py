"""Sigma rules -> executable detections: Lucene queries (pySigma Elasticsearch backend) and correlation specs.

Every rule is converted once with the project's pipeline. A conversion failure is recorded on that
rule (``error``) and never stops the others. Correlation rules (event_count, value_count, temporal,
temporal_ordered) keep the Lucene query of every rule they reference; the engine runs them with
Elasticsearch aggregations (no EQL/ES|QL).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sigma.backends.elasticsearch import LuceneBackend
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.rule import SigmaDetection, SigmaRule

from detections.loader import RuleSet, rule_i18n
from detections.pipeline import CI_SUFFIX, UNSUPPORTED, route_for, secops_pipeline
from detections.suppression import Suppression, rule_suppression

SEVERITY = {"informational": "low", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
SEVERITY_SCORE = {"low": 21, "medium": 47, "high": 73, "critical": 99}
DEFAULT_GROUP_BY = ["source.ip", "destination.ip"]
# ATT&CK tactics (enterprise + ICS) by Sigma tag name; offline, pySigma's ATT&CK data would be downloaded.
TACTICS = {
    "reconnaissance": "Reconnaissance", "resource-development": "Resource Development",
    "initial-access": "Initial Access", "execution": "Execution", "persistence": "Persistence",
    "privilege-escalation": "Privilege Escalation", "defense-evasion": "Defense Evasion",
    "credential-access": "Credential Access", "discovery": "Discovery", "lateral-movement": "Lateral Movement",
    "collection": "Collection", "command-and-control": "Command and Control", "exfiltration": "Exfiltration",
    "impact": "Impact", "inhibit-response-function": "Inhibit Response Function",
    "impair-process-control": "Impair Process Control", "evasion": "Evasion",
}
SIGMAHQ = "https://github.com/SigmaHQ/sigma"


@dataclass
class Correlation:
    type: str  # event_count | value_count | temporal | temporal_ordered
    timespan: int  # seconds, on @timestamp
    group_by: list[str]
    members: list[CompiledRule]
    op: str = "gte"
    threshold: float = 1
    count_field: str | None = None


@dataclass
class CompiledRule:
    id: str
    title: str
    kind: str  # query | correlation
    dataset: str
    query: str = ""
    severity: str = "medium"
    level: str = "medium"  # the Sigma level as written (informational alerts carry severity low)
    author: str = ""
    description: str = ""
    references: list[str] = field(default_factory=list)
    license: str = "DRL-1.1"
    techniques: list[str] = field(default_factory=list)
    tactics: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    group_by: list[str] = field(default_factory=lambda: list(DEFAULT_GROUP_BY))
    fields: list[str] = field(default_factory=list)
    correlation: Correlation | None = None
    generate: bool = True  # False: only feeds a correlation
    source: str = ""
    error: str | None = None
    analytic: Callable[..., list[Any]] | None = None  # kind "analytic": fn(es, prefix, rule, start, end)
    regression_tests_path: str | None = None  # SigmaHQ convention: the rule's info.yml (detections.regression)
    i18n: dict[str, dict[str, str]] = field(default_factory=dict)  # {BCP 47 tag: {title, description}}
    suppression: Suppression | None = None  # x_secops_suppression (detections.suppression)
    # technique id prefixes of the rules whose alerts this rule reads: a pass evaluates it after recording those
    after_techniques: tuple[str, ...] = ()

    @property
    def score(self) -> int:
        return SEVERITY_SCORE[self.severity]

    @property
    def runnable(self) -> bool:
        return self.error is None and self.generate


def _attack(tags: list[str]) -> tuple[list[str], list[str]]:
    techniques, tactics = [], []
    for tag in tags:
        ns, _, name = tag.partition(".")
        if ns != "attack":
            continue
        if name[:1] in "tT" and name[1:2].isdigit():
            techniques.append(name.upper())
        else:
            key = name.replace("_", "-").lower()
            if key in TACTICS:
                tactics.append(TACTICS[key])
    return techniques, tactics


def _fields(detection_items: list[Any]) -> set[str]:
    """The ECS fields a rule reads (a case-insensitive ``.ci`` sub-field counts as its field)."""
    out: set[str] = set()
    for item in detection_items:
        if isinstance(item, SigmaDetection):
            out |= _fields(item.detection_items)
        elif item.field:
            out.add(item.field.removesuffix(CI_SUFFIX))
    return out


def _base(rule: SigmaRule | SigmaCorrelationRule, kind: str, dataset: str) -> CompiledRule:
    tags = [str(t) for t in rule.tags]
    techniques, tactics = _attack(tags)
    custom = rule.custom_attributes or {}
    group_by = custom.get("secops_group_by") or (list(rule.group_by) if kind == "correlation" and
                                                  getattr(rule, "group_by", None) else DEFAULT_GROUP_BY)
    level = str(rule.level.name).lower() if rule.level else "medium"
    references = list(rule.references or [])
    is_sigmahq = "secops" not in str(rule.author or "").lower()
    if is_sigmahq and SIGMAHQ not in references:
        references.append(SIGMAHQ)
    return CompiledRule(
        id=str(rule.id or rule.name or rule.title), title=rule.title, kind=kind, dataset=dataset,
        severity=SEVERITY.get(level, "medium"), level=level, author=str(rule.author or "unknown"),
        description=str(rule.description or ""), references=references,
        license=str(rule.license or ("DRL-1.1" if is_sigmahq else "Apache-2.0")), techniques=techniques,
        tactics=tactics, tags=tags, group_by=[str(g) for g in group_by],
        source=str(rule.source.path) if rule.source and getattr(rule.source, "path", None) else "",
        regression_tests_path=str(custom["regression_tests_path"]) if custom.get("regression_tests_path") else None,
        i18n=rule_i18n(custom),
        suppression=rule_suppression(custom),
    )


def compile_query_rule(rule: SigmaRule) -> CompiledRule:
    route = route_for(rule.logsource)
    out = _base(rule, "query", route.dataset)
    if out.suppression is not None:  # one match per suppression key: the store folds it into that key's alert
        out.group_by = list(out.suppression.fields)
    try:
        backend = LuceneBackend(secops_pipeline())
        # rules feeding a correlation return [] but keep their conversion result
        query = (backend.convert_rule(rule) or rule.get_conversion_result())[0]
    except (SigmaError, ValueError, TypeError, KeyError, AttributeError, NotImplementedError, IndexError) as exc:
        out.error = f"conversion failed: {type(exc).__name__}: {exc}"
        return out
    out.fields = sorted(_fields([d for det in rule.detection.detections.values() for d in det.detection_items])
                        - {"event.dataset"})
    if route.dataset == UNSUPPORTED:
        query = f'event.dataset:"{UNSUPPORTED}" AND ({query})'
    out.query = query
    return out


def _condition(rule: SigmaCorrelationRule) -> tuple[str, float, str | None]:
    cond = rule.condition
    op = getattr(cond, "op", None)
    op_name = str(op.name).lower() if op is not None else "gte"
    return op_name, float(getattr(cond, "count", 1) or 1), getattr(cond, "fieldref", None)


def compile_rules(rules: RuleSet) -> list[CompiledRule]:
    """Compile every rule of the set; correlation members are shared compiled rules."""
    compiled: dict[str, CompiledRule] = {}
    by_obj: dict[int, CompiledRule] = {}
    for rule in rules.rules:
        if isinstance(rule, SigmaRule):
            c = compile_query_rule(rule)
            compiled[c.id] = c
            by_obj[id(rule)] = c
    for rule in rules.rules:
        if not isinstance(rule, SigmaCorrelationRule):
            continue
        members = [by_obj.get(id(ref.rule)) for ref in rule.rules]
        out = _base(rule, "correlation", "")
        if any(m is None for m in members):
            out.error = "correlation references a rule that is not a plain Sigma rule"
        else:
            bad = [m for m in members if m.error]
            if bad:
                out.error = f"referenced rule {bad[0].id} failed: {bad[0].error}"
            op, threshold, count_field = _condition(rule)
            ctype = str(getattr(rule.type, "name", rule.type)).lower()
            out.group_by = [_map_field(g, members) or g for g in out.group_by]
            out.correlation = Correlation(type=ctype, timespan=int(rule.timespan.seconds), group_by=out.group_by,
                                          members=members, op=op, threshold=threshold,
                                          count_field=_map_field(count_field, members))
            out.dataset = ",".join(sorted({m.dataset for m in members}))
            out.fields = sorted({f for m in members for f in m.fields} | set(out.group_by))
            if not rule.generate:
                for m in members:
                    m.generate = False
        compiled[out.id] = out
    return list(compiled.values())


def _map_field(name: str | None, members: list[CompiledRule | None]) -> str | None:
    """group-by and value_count fields may use Zeek/generic names; map them like the members' fields."""
    if name is None:
        return None
    from detections.pipeline import mapped_fields

    for m in members:
        if m is not None:
            mapped = mapped_fields(m.dataset).get(name)
            if isinstance(mapped, str):
                return mapped
    return name
