"""Hunt: query any dataset with a Lucene query string over a time range; group by up to three fields with counts,
most or least frequent first (the rare view: the long tail where intrusions hide); a time histogram; pivot from
any value (an address, a Community ID, anything) to every dataset; a Sigma rule skeleton from a query."""

from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from elasticsearch import BadRequestError, Elasticsearch

from secops.console.alerts import QueryError, check_field
from secops.ecs import utcnow
from secops.es.templates import DATASETS, index_pattern
from secops.i18n import N_, Message, message

SINCE = {"15m": "now-15m", "1h": "now-1h", "24h": "now-24h", "7d": "now-7d", "30d": "now-30d", "all": None}
MAX_GROUP_FIELDS = 3
CID_RE = re.compile(r"^1:[A-Za-z0-9+/=]{20,60}$")
SIMPLE_TERM = re.compile(r'^\s*([A-Za-z0-9_@][A-Za-z0-9_.@-]*)\s*:\s*("(?:[^"\\]|\\.)*"|[^\s()"]+)\s*$')


class TimeInputError(QueryError):
    """A From/To value that is not a date and time, or a range that ends before it starts; ``message`` is the
    reason as a console message, rendered in the reader's language on the page (the API answers in English)."""

    def __init__(self, why: Message) -> None:
        super().__init__(why.english())
        self.message = why


def bound(value: str | None, zone: str, bad: str) -> datetime | None:
    """A range bound from the hunt form: a date and time without an offset (``2026-11-29T19:30``, what a
    datetime-local input sends) is in the reader's zone ``zone``; one with an offset (``Z``, ``+08:00``) is taken
    as given. ``bad`` is the message id that names the field when the value is not a date and time."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "Zz" else text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(zone))
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise TimeInputError(message(bad, value=text[:60])) from None


def bounds(start: str | None, end: str | None, zone: str) -> tuple[str | None, str | None]:
    """The hunt's From and To (see :func:`bound`) as UTC ISO for the store; From must come before To."""
    lo = bound(start, zone, N_("From: %(value)s is not a date and time (for example 2026-11-29T19:30)"))
    hi = bound(end, zone, N_("To: %(value)s is not a date and time (for example 2026-11-29T19:30)"))
    if lo and hi and lo >= hi:
        raise TimeInputError(message(N_("From must be earlier than To")))
    return _utc_iso(lo), _utc_iso(hi)


def _utc_iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def local_input(value: str | None, zone: str) -> str:
    """A UTC bound as the form shows it: the datetime-local value in the reader's zone, seconds only when set (the
    shortest valid form, as browsers write it); empty when unset."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(ZoneInfo(zone))
    return moment.replace(tzinfo=None).isoformat(timespec="seconds" if moment.second else "minutes")


def datasets() -> list[str]:
    return sorted(DATASETS)


@dataclass(frozen=True)
class HuntQuery:
    dataset: str = "secops.conn"  # a dataset name, or "all"
    q: str = "*"
    since: str = "24h"
    start: str | None = None  # an absolute range overrides ``since``
    end: str | None = None
    group_by: tuple[str, ...] = ()
    rare: bool = False
    size: int = 50

    def __post_init__(self) -> None:
        if self.dataset != "all" and self.dataset not in DATASETS:
            raise QueryError(f"dataset must be 'all' or one of {', '.join(datasets())}")
        if self.since not in SINCE:
            raise QueryError(f"since must be one of {', '.join(SINCE)}")
        if len(self.group_by) > MAX_GROUP_FIELDS:
            raise QueryError(f"group by at most {MAX_GROUP_FIELDS} fields")
        for f in self.group_by:
            check_field(f)
        if len(self.q) > 4000:
            raise QueryError("a query holds at most 4000 characters")

    def index(self, prefix: str) -> str:
        return f"{prefix}-*" if self.dataset == "all" else index_pattern(prefix, self.dataset)

    def query(self) -> dict[str, Any]:
        filters: list[dict[str, Any]] = [{"query_string": {"query": self.q.strip() or "*", "lenient": True,
                                                           "analyze_wildcard": True,
                                                           "allow_leading_wildcard": True}}]
        if self.start or self.end:
            rng = {k: v for k, v in (("gte", self.start), ("lt", self.end)) if v}
            filters.append({"range": {"@timestamp": rng}})
        elif SINCE[self.since]:
            filters.append({"range": {"@timestamp": {"gte": SINCE[self.since]}}})
        return {"bool": {"filter": filters}}


@dataclass
class HuntResult:
    total: int
    took_ms: int
    hits: list[dict[str, Any]]
    histogram: list[tuple[str, int]]
    groups: list[tuple[list[str], int]] = field(default_factory=list)
    other: int = 0


def run_hunt(es: Elasticsearch, prefix: str, hq: HuntQuery) -> HuntResult:
    aggs: dict[str, Any] = {"lo": {"min": {"field": "@timestamp"}}, "hi": {"max": {"field": "@timestamp"}}}
    order = {"_count": "asc" if hq.rare else "desc"}
    if len(hq.group_by) == 1:
        aggs["g"] = {"terms": {"field": hq.group_by[0], "size": 100, "order": [order, {"_key": "asc"}],
                               "shard_size": 100000 if hq.rare else 1000}}
    try:
        res = es.search(index=hq.index(prefix), query=hq.query(), size=hq.size, aggs=aggs, track_total_hits=True,
                        sort=[{"@timestamp": {"order": "desc", "unmapped_type": "date"}}], ignore_unavailable=True,
                        allow_no_indices=True, request_timeout=60)
    except BadRequestError as exc:
        cause = (exc.body or {}).get("error", {}).get("root_cause", [{}])[0].get("reason", "") \
            if isinstance(exc.body, dict) else ""
        raise QueryError(f"the store cannot answer this query ({exc.message}: {cause[:300]})") from None
    a = res.get("aggregations", {})
    out = HuntResult(int(res["hits"]["total"]["value"]), int(res.get("took", 0)),
                     [{"_id": h["_id"], "_index": h["_index"], **h["_source"]} for h in res["hits"]["hits"]],
                     _histogram(es, prefix, hq, a.get("lo", {}).get("value"), a.get("hi", {}).get("value")))
    if len(hq.group_by) == 1:
        g = a.get("g", {})
        out.groups = [([str(b.get("key_as_string", b["key"]))], int(b["doc_count"])) for b in g.get("buckets", [])]
        out.other = int(g.get("sum_other_doc_count", 0))
    elif hq.group_by:
        out.groups, out.other = _combinations(es, prefix, hq)
    return out


def _combinations(es: Elasticsearch, prefix: str, hq: HuntQuery, limit: int = 100, pages: int = 5,
                  page_size: int = 10000) -> tuple[list[tuple[list[str], int]], int]:
    """Counts of value combinations of several fields (a paged composite aggregation: exact, core node only),
    most or least frequent first; the second item counts documents in combinations not listed. Pages are large
    because each page runs the query again (benchmarks/hunt_views.py)."""
    combos: list[tuple[list[str], int]] = []
    after = None
    for _page in range(pages):
        comp: dict[str, Any] = {"size": page_size, "sources": [{f: {"terms": {"field": f}}} for f in hq.group_by]}
        if after:
            comp["after"] = after
        res = es.search(index=hq.index(prefix), query=hq.query(), size=0, ignore_unavailable=True,
                        allow_no_indices=True, request_timeout=60, aggs={"c": {"composite": comp}})
        agg = res.get("aggregations", {}).get("c", {})
        combos += [([str(b["key"][f]) for f in hq.group_by], int(b["doc_count"])) for b in agg.get("buckets", [])]
        after = agg.get("after_key")
        if not after or len(agg.get("buckets", [])) < page_size:
            break
    combos.sort(key=lambda c: (c[1] if hq.rare else -c[1], c[0]))
    return combos[:limit], sum(n for _v, n in combos[limit:])


def _histogram(es: Elasticsearch, prefix: str, hq: HuntQuery, lo: float | None, hi: float | None) -> \
        list[tuple[str, int]]:
    """Counts over time in about 48 buckets of a round width covering the documents found."""
    if lo is None or hi is None:
        return []
    span = max(1.0, (hi - lo) / 1000 / 48)
    step = next((s for s in (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200, 86400) if s >= span),
                int(span // 86400 + 1) * 86400)
    res = es.search(index=hq.index(prefix), query=hq.query(), size=0, ignore_unavailable=True,
                    allow_no_indices=True, request_timeout=60,
                    aggs={"t": {"date_histogram": {"field": "@timestamp", "fixed_interval": f"{step}s"}}})
    return [(b.get("key_as_string", str(b["key"])), int(b["doc_count"]))
            for b in res.get("aggregations", {}).get("t", {}).get("buckets", [])]


def pivot_query(value: str) -> tuple[str, str]:
    """(kind, Lucene query) finding ``value`` wherever it can be: addresses in every address field, a Community
    ID in ``network.community_id``, anything else as a phrase in any field."""
    value = value.strip()
    if not value or len(value) > 500:
        raise QueryError("a pivot value is 1-500 characters")
    try:
        ip = ipaddress.ip_address(value)
        fields = ("source.ip", "destination.ip", "client.ip", "server.ip", "host.ip", "related.ip")
        return "address", " OR ".join(f'{f}:"{ip}"' for f in fields)
    except ValueError:
        pass
    quoted = value.replace("\\", "\\\\").replace('"', '\\"')
    if CID_RE.match(value):
        return "community_id", f'network.community_id:"{quoted}"'
    return "value", f'"{quoted}"'


def pivot(es: Elasticsearch, prefix: str, value: str, since: str = "all") -> tuple[str, str, list[tuple[str, int]]]:
    """Counts per dataset of the documents holding ``value``."""
    kind, q = pivot_query(value)
    hq = HuntQuery(dataset="all", q=q, since=since)
    res = es.search(index=hq.index(prefix), query=hq.query(), size=0, ignore_unavailable=True,
                    allow_no_indices=True, aggs={"d": {"terms": {"field": "event.dataset", "size": 100}}})
    return kind, q, [(b["key"], int(b["doc_count"])) for b in res["aggregations"]["d"]["buckets"]]


def rule_skeleton(hq: HuntQuery, author: str) -> tuple[str, str]:
    """A Sigma rule skeleton (status experimental) from a hunt query, and its regression-test stub (info.yml).
    A query of ``field:value`` terms joined by AND becomes a selection; anything else is left for the author,
    with the query in the description."""
    if hq.dataset == "all":
        raise QueryError("choose one dataset to make a rule from")
    # the same query gives the same id, so the rule and its test stub (two downloads) name each other
    rule_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"secops-hunt:{hq.dataset}:{hq.q.strip()}"))
    selection: dict[str, Any] = {}
    for part in re.split(r"\s+AND\s+", hq.q.strip()):
        m = SIMPLE_TERM.match(part)
        if not m or hq.q.strip() in ("", "*"):
            selection = {}
            break
        raw = m.group(2)
        selection[m.group(1)] = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
    rule = {
        "title": f"Hunt: {hq.q.strip()[:80]}",
        "id": rule_id,
        "status": "experimental",
        "description": f"Made from the hunt query {hq.q.strip()!r} over {hq.dataset}. Review before enabling.",
        "author": author,
        "date": utcnow().strftime("%Y-%m-%d"),
        "logsource": {"product": "secops", "service": hq.dataset.split(".", 1)[1]},
        "detection": {"selection": selection or {"TODO.field": "express the hunt query here"},
                      "condition": "selection"},
        "falsepositives": ["Unknown"],
        "level": "medium",
        "regression_tests_path": f"regression/hunt_{rule_id[:8]}/info.yml",
    }
    title = rule["title"]
    info = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"secops-hunt-test:{rule_id}")),
            "description": f"Regression tests of {title!r} on labelled captures.",
            "date": utcnow().strftime("%Y-%m-%d"), "author": author,
            "rule_metadata": [{"id": rule_id, "title": title}],
            "regression_tests_info": [{"name": "TODO: a labelled capture the query found", "type": "pcap",
                                       "path": "TODO: path under the shared test data", "match_count": 1}]}
    dump = {"sort_keys": False, "allow_unicode": True, "default_flow_style": False}
    return yaml.safe_dump(rule, **dump), yaml.safe_dump(info, **dump)
