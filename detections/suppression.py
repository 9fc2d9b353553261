"""Per-rule alert suppression (Elastic's "suppress alerts by" fields, per time period), set on the rule.

A Sigma rule carries the setting in the custom field ``x_secops_suppression`` (the ``x_secops_`` convention of
``x_secops_i18n``)::

    x_secops_suppression:
        fields: [source.ip]          # 1-3 ECS fields
        window: 1h                   # 30s, 15m, 1h, 2d (or seconds), at most 30 days
        missing: suppress            # suppress (default) | separate: events without a field alert as usual

While a window is open, every matching event with the same values of those fields updates one alert
instead of raising a new one. The window starts at the first matching event's ``@timestamp`` (the alert's
``secops.alert.suppression.start``) and lasts ``window``; the first matching event after it opens a new alert,
and so does any event once the alert was closed. The counts are exact and idempotent: they are recounted from
the events themselves (the rule's query, with its live exceptions, and the field values, over the window), so
re-evaluating an overlapping ingest window never counts an event twice. A query rule with suppression groups
its matches by the suppression fields; a correlation rule takes the values from its group-by (list the
suppression fields among them) and counts its member events.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from elasticsearch import Elasticsearch

from secops.ecs import iso, parse_time

if TYPE_CHECKING:  # the engine imports the compiler, which reads this module's setting
    from detections.engine import Match

FIELD = "x_secops_suppression"
MAX_FIELDS = 3
MAX_WINDOW_SECONDS = 30 * 86400
MISSING = ("suppress", "separate")
FIELD_NAME = re.compile(r"^[A-Za-z0-9_@][A-Za-z0-9_.@-]{0,127}$")
DURATION = re.compile(r"^(\d{1,7})([smhd]?)$")
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_KEY = 1024
SAMPLE_IDS = 50


class SuppressionError(ValueError):
    """A malformed ``x_secops_suppression`` setting."""


@dataclass(frozen=True)
class Suppression:
    fields: tuple[str, ...]
    window_seconds: int
    missing: str = "suppress"

    def as_doc(self) -> dict[str, Any]:
        return {"fields": list(self.fields), "window_seconds": self.window_seconds, "missing": self.missing}


@dataclass(frozen=True)
class WindowStats:
    """The matching events of one suppression key over one window, counted in Elasticsearch."""

    count: int
    first_time: str | None
    last_time: str | None
    event_ids: list[str]
    event_index: str


def window_seconds(value: Any) -> int:
    m = DURATION.match(str(value).strip()) if isinstance(value, int | str) and not isinstance(value, bool) else None
    if not m:
        raise SuppressionError(f"{FIELD}.window is a duration such as 30s, 15m, 1h or 2d")
    seconds = int(m.group(1)) * UNIT_SECONDS[m.group(2)]
    if not 1 <= seconds <= MAX_WINDOW_SECONDS:
        raise SuppressionError(f"{FIELD}.window must be 1 s to {MAX_WINDOW_SECONDS // 86400} days")
    return seconds


def rule_suppression(doc: dict[str, Any]) -> Suppression | None:
    """A rule document's suppression setting, None without one, SuppressionError when malformed."""
    value = doc.get(FIELD)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SuppressionError(f"{FIELD} must be a mapping with fields, window and optionally missing")
    unknown = set(value) - {"fields", "window", "missing"}
    if unknown:
        raise SuppressionError(f"{FIELD}: unknown key {str(sorted(unknown)[0])[:40]!r} (fields, window, missing)")
    fields = value.get("fields")
    if isinstance(fields, str):
        fields = [fields]
    if not isinstance(fields, list) or not 1 <= len(fields) <= MAX_FIELDS:
        raise SuppressionError(f"{FIELD}.fields lists 1-{MAX_FIELDS} fields")
    for f in fields:
        if not isinstance(f, str) or not FIELD_NAME.match(f):
            raise SuppressionError(f"{FIELD}.fields: {str(f)[:60]!r} is not a field name")
    if len(set(fields)) != len(fields):
        raise SuppressionError(f"{FIELD}.fields names a field twice")
    if "window" not in value:
        raise SuppressionError(f"{FIELD}.window is required")
    missing = value.get("missing", "suppress")
    if missing not in MISSING:
        raise SuppressionError(f"{FIELD}.missing is one of {', '.join(MISSING)}")
    return Suppression(tuple(fields), window_seconds(value["window"]), missing)


def terms_of(sup: Suppression, match: Match) -> list[tuple[str, Any]] | None:
    """The match's values of the suppression fields (None for a missing one), or None when a field is missing
    and the rule alerts separately on such events."""
    out = []
    for f in sup.fields:
        value = match.group.get(f) if f in match.group else match.fields.get(f)
        if value is None and sup.missing == "separate":
            return None
        out.append((f, value))
    return out


def suppression_key(terms: list[tuple[str, Any]]) -> str:
    """The terms as one keyword (a long one becomes its digest, so the term lookup never misses)."""
    key = "|".join(f"{f}={'' if v is None else v}" for f, v in terms)
    if len(key) > MAX_KEY:
        return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return key


def window_end(start: str, sup: Suppression) -> str:
    return iso(parse_time(start) + timedelta(seconds=sup.window_seconds))


def _event_query(rule: Any, terms: list[tuple[str, Any]], lo: str, hi: str, hi_inclusive: bool,
                 lo_exclusive: bool) -> dict[str, Any]:
    from detections.engine import query_filter

    members = rule.correlation.members if rule.correlation is not None else [rule]
    filters: list[dict[str, Any]] = [
        {"bool": {"should": [query_filter(m) for m in members], "minimum_should_match": 1}},
        {"range": {"@timestamp": {("gt" if lo_exclusive else "gte"): lo, ("lte" if hi_inclusive else "lt"): hi}}}]
    must_not = []
    for f, v in terms:
        if v is None:
            must_not.append({"exists": {"field": f}})
        else:
            filters.append({"term": {f: v}})
    return {"bool": {"filter": filters, "must_not": must_not}}


def count_events(es: Elasticsearch, prefix: str, rule: Any, terms: list[tuple[str, Any]], lo: str, hi: str,
                 hi_inclusive: bool = False, lo_exclusive: bool = False) -> WindowStats:
    """Matching events of ``rule`` (a query or correlation rule, its exceptions applied) with the terms'
    values and ``@timestamp`` in [lo, hi) (``lo_exclusive``: (lo, ``hi_inclusive``: hi]): exact count, first/last
    time, sample ids."""
    from detections.engine import indices_for

    datasets = [m.dataset for m in rule.correlation.members] if rule.correlation is not None else [rule.dataset]
    resp = es.search(index=indices_for(prefix, datasets), size=SAMPLE_IDS, track_total_hits=True,
                     query=_event_query(rule, terms, lo, hi, hi_inclusive, lo_exclusive), sort=[{"@timestamp": "asc"}],
                     source=False, aggs={"first": {"min": {"field": "@timestamp"}},
                                         "last": {"max": {"field": "@timestamp"}}},
                     ignore_unavailable=True, allow_no_indices=True)
    hits = resp["hits"]["hits"]
    aggs = resp.get("aggregations") or {}
    total = int(resp["hits"]["total"]["value"])
    return WindowStats(total, aggs.get("first", {}).get("value_as_string") if total else None,
                       aggs.get("last", {}).get("value_as_string") if total else None,
                       [h["_id"] for h in hits], hits[0]["_index"] if hits else "")


def countable(rule: Any) -> bool:
    """Rules whose events the store can recount (Sigma query and correlation rules; analytics compute theirs)."""
    return rule.kind in ("query", "correlation") and (bool(rule.query) or rule.correlation is not None)
