"""Which rules find their fields in this project's documents (index template mappings, plus live data)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch

from detections.compiler import CompiledRule
from detections.pipeline import UNSUPPORTED
from secops.es.templates import DATASETS, index_pattern, mappings_for


def _paths(props: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, spec in props.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            out |= _paths(spec["properties"], path + ".")
        else:
            out.add(path)
    return out


def declared_fields(dataset: str) -> set[str]:
    return _paths(mappings_for(DATASETS[dataset])["properties"]) if dataset in DATASETS else set()


@dataclass
class FieldReport:
    rule: CompiledRule
    status: str  # all-fields | partial | no-fields | unsupported-logsource | keyword-only | error
    missing: list[str]
    hits: int | None = None


def field_report(rules: list[CompiledRule], es: Elasticsearch | None = None,
                 prefix: str = "secops") -> list[FieldReport]:
    out = []
    for rule in rules:
        if rule.kind != "query":
            continue
        if rule.error:
            out.append(FieldReport(rule, "error", []))
            continue
        if rule.dataset == UNSUPPORTED:
            out.append(FieldReport(rule, "unsupported-logsource", rule.fields))
            continue
        known = declared_fields(rule.dataset)
        missing = [f for f in rule.fields if f not in known]
        if not rule.fields:
            status = "keyword-only"
        elif not missing:
            status = "all-fields"
        else:
            status = "partial" if len(missing) < len(rule.fields) else "no-fields"
        out.append(FieldReport(rule, status, missing))
    if es is not None:
        for r in out:
            if r.status != "error":
                r.hits = count_hits(es, prefix, r.rule)
    return out


def count_hits(es: Elasticsearch, prefix: str, rule: CompiledRule) -> int:
    from detections.engine import indices_for, query_filter

    resp = es.count(index=indices_for(prefix, [rule.dataset]), query=query_filter(rule), ignore_unavailable=True,
                    allow_no_indices=True)
    return int(resp["count"])


__all__ = ["FieldReport", "declared_fields", "field_report", "index_pattern"]
