"""Run compiled rules over an ingest window with Elasticsearch queries and aggregations (core node only).

Query rules: a ``query_string`` filter plus ``event.ingested`` range, grouped by the rule's group-by
fields with a composite aggregation (so a million matching events cost one paged aggregation, not a
million hits). Correlation rules: the window only decides *which* groups to look at; counting uses
the events' own ``@timestamp`` in buckets of the rule's timespan (two offsets, half a span apart,
approximate a sliding window).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import Elasticsearch

from detections.compiler import CompiledRule, Correlation
from detections.deadline import RuleTimeout
from detections.pipeline import UNSUPPORTED
from secops.ecs import iso, parse_time
from secops.es.templates import index_pattern
from secops.i18n import N_, Message, message

log = logging.getLogger(__name__)

SAMPLE_IDS = 50
MAX_CANDIDATES = 10000
PAGE = 20000  # composite buckets per request: each page runs the query over every document again
BUCKET_BUDGET = 60000  # below search.max_buckets (65,536): a page's buckets and their bucketed sub-aggregations
DEFAULT_FIELD = {"secops.http": "url.original", "secops.dns": "dns.question.name"}
CARRY = ["source.ip", "destination.ip", "destination.port", "source.port", "network.transport"]
CARRY_TYPES = {"source.ip": "ip", "destination.ip": "ip", "destination.port": "long", "source.port": "long",
               "network.transport": "keyword"}  # as the index templates map them (for indices that lack one)
SAMPLE_SORT = [{"@timestamp": "asc"}, *({f: {"order": "asc", "unmapped_type": CARRY_TYPES[f]}} for f in CARRY)]


@dataclass
class Match:
    """One group of events that satisfied a rule."""

    group: dict[str, Any]
    first_time: str
    last_time: str
    count: int
    event_ids: list[str] = field(default_factory=list)
    event_index: str = ""
    fields: dict[str, Any] = field(default_factory=dict)  # source/destination of a sample event
    reason: str = ""  # English, as stored in event.reason
    reason_message: Message | None = None  # the same, translatable (message id + parameters)
    severity: str | None = None  # this match's own severity (scored analytics), else the rule's

    def __post_init__(self) -> None:
        if self.reason_message is not None and not self.reason:
            self.reason = self.reason_message.english()


def indices_for(prefix: str, datasets: list[str]) -> str:
    pats = {f"{prefix}-*" if d == UNSUPPORTED else index_pattern(prefix, d) for d in datasets if d}
    return ",".join(sorted(pats)) or f"{prefix}-*"


def query_filter(rule: CompiledRule) -> dict[str, Any]:
    return {"query_string": {"query": rule.query, "default_field": DEFAULT_FIELD.get(rule.dataset, "message"),
                             "analyze_wildcard": True, "lenient": True, "allow_leading_wildcard": True}}


def window_filter(start: str, end: str, field_name: str = "event.ingested") -> dict[str, Any]:
    return {"range": {field_name: {"gte": start, "lt": end, "format": "strict_date_optional_time"}}}


def _page_size(subaggs: dict[str, Any]) -> int:
    """The largest page the bucket budget allows: every filter sub-aggregation adds one bucket per bucket."""
    bucketed = sum(1 for agg in subaggs.values() if "filter" in agg or "filters" in agg or "terms" in agg)
    return min(PAGE, BUCKET_BUDGET // (1 + bucketed))


def _composite(es: Elasticsearch, index: str, query: dict, sources: list[dict], subaggs: dict,
               page: int | None = None, after: dict | None = None) -> Iterator[dict]:
    """Every bucket of a composite aggregation (after ``after``), in pages as large as the bucket budget allows
    (pages are the cost: each one evaluates the query over the whole window again)."""
    page = page or _page_size(subaggs)
    while True:
        comp: dict[str, Any] = {"size": page, "sources": sources}
        if after:
            comp["after"] = after
        resp = es.search(index=index, size=0, query=query, aggs={"g": {"composite": comp, "aggs": subaggs}},
                         ignore_unavailable=True, allow_no_indices=True)
        agg = resp.get("aggregations", {}).get("g")
        if not agg:
            return
        yield from agg["buckets"]
        after = agg.get("after_key")
        if not after or len(agg["buckets"]) < page:
            return


def composite_by_lead(es: Elasticsearch, index: str, query: dict, fields: list[str], subaggs: dict,
                      page: int | None = None, leads: Iterable[dict] | None = None) -> Iterator[dict]:
    """The buckets of a composite aggregation over ``fields``, in the same order, for high-cardinality groups:
    the values of the leading field are batched so that each batch holds about one page of documents, and
    each batch is aggregated on its own. Every page of a plain composite evaluates the query over the whole
    window again (quadratic in the documents); a batch touches only its own documents (linear). ``leads``: the
    buckets of the leading field's own composite over the same query, when the caller has them already."""
    lead, page = fields[0], page or _page_size(subaggs)
    batch: list[Any] = []
    docs = 0

    def run(values: list[Any]) -> Iterator[dict]:
        if values == [None]:
            narrowed = {"bool": {"filter": [query], "must_not": [{"exists": {"field": lead}}]}}
        else:
            narrowed = {"bool": {"filter": [query, {"terms": {lead: values}}]}}
        yield from _composite(es, index, narrowed, _terms_sources(fields), subaggs, page)

    for b in leads if leads is not None else _composite(es, index, query, _terms_sources([lead]), {}, page):
        value = b["key"][lead]
        if value is None or (batch and docs + b["doc_count"] > page):
            if batch:
                yield from run(batch)
            batch, docs = [], 0
            if value is None:
                yield from run([None])
                continue
        batch.append(value)
        docs += b["doc_count"]
    if batch:
        yield from run(batch)


def _terms_sources(fields: list[str]) -> list[dict]:
    return [{f: {"terms": {"field": f, "missing_bucket": True}}} for f in fields]


# Below its precision threshold a cardinality aggregation counts distinct value hashes (linear counting): never more
# values than there are, so a bound computed from it never falls below the true one.
SPREAD_PRECISION = 500


def spread_aggs(fields: list[str]) -> dict[str, Any]:
    """Sub-aggregations of a leading field's bucket that bound its largest group over the other group ``fields``
    (see :func:`largest_group_bound`)."""
    return {f"spread{i}": {"cardinality": {"field": f, "precision_threshold": SPREAD_PRECISION}}
            for i, f in enumerate(fields)}


def largest_group_bound(bucket: dict[str, Any], fields: list[str]) -> int:
    """At most how many events the largest group (the bucket's lead value and one value of each of ``fields``) of a
    leading field's bucket holds: every other distinct value of a field takes at least one event, so the largest
    group has at most the bucket's events less the distinct values (but one) of its most varied field. Events that
    lack the field form one more group, which the bound still covers. Exact-or-above: over the precision threshold
    (where distinct counts are estimates) the bound is the bucket's events. Prunes, in one aggregation over the
    leading field, the values whose groups are all too small (most sources talk to many hosts once or twice)."""
    events = int(bucket["doc_count"])
    if not fields or events > SPREAD_PRECISION:
        return events
    distinct = max(int(bucket[f"spread{i}"].get("value") or 0) for i in range(len(fields)))
    return events - max(distinct, 1) + 1


def _sample_aggs() -> dict[str, Any]:
    return {"first": {"min": {"field": "@timestamp"}}, "last": {"max": {"field": "@timestamp"}}}


def _bucket_filter(bucket: dict, group_fields: list[str]) -> dict[str, Any]:
    """One bucket's events: its group (a missing value as a missing field), between its first and last event."""
    first, last = _bucket_times(bucket)
    filters: list[dict[str, Any]] = [{"range": {"@timestamp": {"gte": first, "lte": last}}}]
    must_not = []
    for f in group_fields:
        v = bucket["key"].get(f)
        if v is None:
            must_not.append({"exists": {"field": f}})
        else:
            filters.append({"term": {f: v}})
    return {"bool": {"filter": filters, "must_not": must_not}}


def _sample_search(index: str, query: dict, bucket: dict, group_fields: list[str]) -> dict[str, Any]:
    """The search for one bucket's sample events (its group, between its first and last event), as keyword
    arguments of ``search``; sample event ids are fetched only for buckets that matched (top_hits inside every
    composite bucket costs far more on large windows)."""
    # ties on @timestamp are broken by the carried fields, so the sample (and the alert's addresses) is the same
    # on one node and on a cluster with replicas, whose copies may list equal-time events in another order
    return {"index": index, "size": SAMPLE_IDS, "sort": SAMPLE_SORT, "_source": {"includes": CARRY},
            "query": {"bool": {"filter": [query, _bucket_filter(bucket, group_fields)]}}}


SAMPLES_PER_SEARCH = 50  # matched buckets whose sample events one search collects


def _buckets_cover(query: dict, buckets: list[dict], group_fields: list[str]) -> dict[str, Any]:
    """A cheap query for the events of several buckets and some more: between the first bucket's first event and
    the last one's last, with one of the buckets' values of each group field none of them lacks."""
    times = [_bucket_times(b) for b in buckets]
    filters: list[dict[str, Any]] = [query, {"range": {"@timestamp": {
        "gte": min(parse_time(first) for first, _ in times).isoformat(),
        "lte": max(parse_time(last) for _, last in times).isoformat()}}}]
    for f in group_fields:
        values = [b["key"].get(f) for b in buckets]
        if None not in values:
            filters.append({"terms": {f: sorted(set(values), key=str)}})
    return {"bool": {"filter": filters}}


def sample_events(es: Elasticsearch, wanted: list[tuple[str, dict, dict, list[str]]]
                  ) -> list[dict[str, Any] | SearchFailed]:
    """The sample events of each matched (index, query, bucket, group fields), each as the response of its own
    :func:`_sample_search` would hold them (``hits.hits``). The buckets of one index and query are collected by
    searches of up to SAMPLES_PER_SEARCH buckets: a filters aggregation with each bucket's first events as top hits
    in the same order (the rule's query evaluated once over the buckets' events, not once per bucket); those
    searches go in multi-searches. A failed search is the SearchFailed of each of its buckets."""
    chunks: dict[tuple[str, str, tuple[str, ...]], list[list[int]]] = {}
    for i, (index, query, _, fields) in enumerate(wanted):
        chunk = chunks.setdefault((index, json.dumps(query, sort_keys=True, default=str), tuple(fields)), [[]])
        if len(chunk[-1]) >= SAMPLES_PER_SEARCH:
            chunk.append([])
        chunk[-1].append(i)
    plan = [members for chunk in chunks.values() for members in chunk]
    searches = []
    for members in plan:
        index, query, _, fields = wanted[members[0]]
        buckets = [wanted[i][2] for i in members]
        filters = {str(n): _bucket_filter(b, fields) for n, b in enumerate(buckets)}
        searches.append({"index": index, "size": 0, "query": _buckets_cover(query, buckets, fields),
            "aggs": {"b": {"filters": {"filters": filters}, "aggs": {"top": {"top_hits": {
                "size": SAMPLE_IDS, "sort": SAMPLE_SORT, "_source": {"includes": CARRY}}}}}}})
    out: list[dict[str, Any] | SearchFailed] = [SearchFailed("no answer")] * len(wanted)
    for members, resp in zip(plan, msearch(es, searches), strict=True):
        for n, i in enumerate(members):
            out[i] = resp if isinstance(resp, SearchFailed) else {"hits": {"hits": (
                resp.get("aggregations") or {})["b"]["buckets"][str(n)]["top"]["hits"]["hits"]}}
    return out


def _bucket_times(bucket: dict) -> tuple[str, str]:
    first = bucket["first"].get("value_as_string") or iso(bucket["first"]["value"] / 1000)
    last = bucket["last"].get("value_as_string") or iso(bucket["last"]["value"] / 1000)
    return first, last


def _match_from_sample(bucket: dict, group_fields: list[str], reason: Message, resp: dict) -> Match:
    first, last = _bucket_times(bucket)
    hits = resp["hits"]["hits"]
    sample = hits[0]["_source"] if hits else {}
    flat = {k: _dig(sample, k) for k in CARRY}
    return Match(group={f: bucket["key"].get(f) for f in group_fields}, first_time=first, last_time=last,
                 count=int(bucket["doc_count"]), event_ids=[h["_id"] for h in hits],
                 event_index=hits[0]["_index"] if hits else "",
                 fields={k: v for k, v in flat.items() if v is not None}, reason_message=reason)


def _match_from_bucket(es: Elasticsearch, index: str, query: dict, bucket: dict, group_fields: list[str],
                       reason: Message) -> Match:
    """A match for one aggregation bucket, with its sample events."""
    body = _sample_search(index, query, bucket, group_fields)
    body["source_includes"] = body.pop("_source")["includes"]
    resp = es.search(**body, ignore_unavailable=True, allow_no_indices=True)
    return _match_from_sample(bucket, group_fields, reason, resp)


def _dig(doc: dict, dotted: str) -> Any:
    cur: Any = doc
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _query_rule_search(prefix: str, rule: CompiledRule, start: str, end: str) -> tuple[str, dict, list[dict]]:
    """(index, query, composite sources) of a query rule over the ingest window [start, end)."""
    query = {"bool": {"filter": [query_filter(rule), window_filter(start, end)]}}
    return indices_for(prefix, [rule.dataset]), query, _terms_sources(rule.group_by)


def _events_matched(bucket: dict) -> Message:
    return message(N_("%(n)s events matched"), n=bucket["doc_count"])


def run_query_rule(es: Elasticsearch, prefix: str, rule: CompiledRule, start: str, end: str) -> list[Match]:
    [found] = run_query_rules(es, prefix, [rule], start, end)
    if isinstance(found, Exception):
        raise found
    return found


class SearchFailed(RuntimeError):
    """One search of a multi-search failed (its error as Elasticsearch reported it)."""


MSEARCH_CHUNK = 100  # searches per multi-search request


def msearch(es: Elasticsearch, searches: list[dict[str, Any]]) -> list[dict[str, Any] | SearchFailed]:
    """Run searches (``search`` keyword arguments with ``index``) as multi-search requests of at most
    MSEARCH_CHUNK; each answer is its response or the SearchFailed of its own error (a missing index is no
    data, as with ``ignore_unavailable``)."""
    out: list[dict[str, Any] | SearchFailed] = []
    for i in range(0, len(searches), MSEARCH_CHUNK):
        body: list[dict[str, Any]] = []
        for search in searches[i:i + MSEARCH_CHUNK]:
            search = dict(search)
            body += [{"index": search.pop("index"), "ignore_unavailable": True, "allow_no_indices": True}, search]
        for resp in es.msearch(searches=body)["responses"]:
            error = resp.get("error")
            out.append(SearchFailed(f"{error.get('type')}: {error.get('reason')}"
                                    if isinstance(error, dict) else str(error)) if error else resp)
    return out


def run_query_rules(es: Elasticsearch, prefix: str, rules: list[CompiledRule], start: str, end: str
                    ) -> list[list[Match] | Exception]:
    """:func:`run_query_rule` for several query rules over one ingest window, sharing requests: the first page of
    every rule's composite aggregation in one multi-search (each keeps its own index and query), further pages
    per rule, then the sample events of every matched bucket in another. Each rule gets its own matches, equal
    to running it alone, or the error of its own searches."""
    plans = [_query_rule_search(prefix, rule, start, end) for rule in rules]
    page = _page_size(_sample_aggs())
    first_pages = msearch(es, [{"index": index, "size": 0, "query": query, "aggs": {
        "g": {"composite": {"size": page, "sources": sources}, "aggs": _sample_aggs()}}}
        for index, query, sources in plans])
    buckets: list[list[dict] | Exception] = []
    for (index, query, sources), resp in zip(plans, first_pages, strict=True):
        if isinstance(resp, Exception):
            buckets.append(resp)
            continue
        agg = (resp.get("aggregations") or {}).get("g") or {"buckets": []}
        found = list(agg["buckets"])
        if agg.get("after_key") and len(found) >= page:
            try:
                found += _composite(es, index, query, sources, _sample_aggs(), page, agg["after_key"])
            except RuleTimeout:
                raise
            except Exception as exc:  # the rule's own error, as when it runs alone
                buckets.append(exc)
                continue
        buckets.append(found)
    wanted = [(r, b) for r, found in enumerate(buckets) if not isinstance(found, Exception) for b in found]
    samples = sample_events(es, [(plans[r][0], plans[r][1], b, rules[r].group_by) for r, b in wanted])
    out: list[list[Match] | Exception] = [found if isinstance(found, Exception) else [] for found in buckets]
    for (r, bucket), resp in zip(wanted, samples, strict=True):
        matches = out[r]
        if isinstance(matches, Exception):
            continue
        if isinstance(resp, Exception):
            out[r] = resp
            continue
        matches.append(_match_from_sample(bucket, rules[r].group_by, _events_matched(bucket), resp))
    return out


OPS = {"gte": lambda a, b: a >= b, "gt": lambda a, b: a > b, "lte": lambda a, b: a <= b,
       "lt": lambda a, b: a < b, "eq": lambda a, b: a == b, "neq": lambda a, b: a != b}


def _member_query(m: CompiledRule) -> dict[str, Any]:
    return query_filter(m)


def run_correlation(es: Elasticsearch, prefix: str, rule: CompiledRule, start: str, end: str) -> list[Match]:
    corr: Correlation = rule.correlation  # type: ignore[assignment]
    index = indices_for(prefix, [m.dataset for m in corr.members])
    any_member = {"bool": {"should": [_member_query(m) for m in corr.members], "minimum_should_match": 1}}
    # 1. which groups received new matching events in this ingest window, and when did those events happen
    fresh = es.search(index=index, size=0, query={"bool": {"filter": [any_member, window_filter(start, end)]}},
                      aggs={"first": {"min": {"field": "@timestamp"}}, "last": {"max": {"field": "@timestamp"}}},
                      ignore_unavailable=True, allow_no_indices=True)
    aggs = fresh.get("aggregations") or {}
    if not fresh["hits"]["total"]["value"] or aggs.get("first", {}).get("value") is None:
        return []
    span = max(1, corr.timespan)
    lo = parse_time(aggs["first"]["value_as_string"]).timestamp() - span
    hi = parse_time(aggs["last"]["value_as_string"]).timestamp() + span
    time_filter = window_filter(iso(lo), iso(hi), "@timestamp")
    subaggs = _sample_aggs()
    if corr.type == "value_count" and corr.count_field:
        subaggs["distinct"] = {"cardinality": {"field": corr.count_field, "precision_threshold": 3000}}
    if corr.type.startswith("temporal"):
        for i, m in enumerate(corr.members):
            subaggs[f"m{i}"] = {"filter": _member_query(m), "aggs": {"t": {"min": {"field": "@timestamp"}}}}
    base = {"bool": {"filter": [any_member, time_filter]}}
    prefilter = _candidate_filter(es, index, base, corr)
    if prefilter is False:
        return []
    if prefilter:
        base["bool"]["filter"].append(prefilter)
    matches: dict[tuple, Match] = {}
    for offset in (0, span // 2):
        histogram = {"field": "@timestamp", "fixed_interval": f"{span}s", "offset": f"{offset}s"}
        sources = [*_terms_sources(corr.group_by), {"_bucket": {"date_histogram": histogram}}]
        query = base
        hits = [(b, value) for b in _composite(es, index, query, sources, subaggs)
                if (value := _correlation_value(corr, b)) is not None
                and OPS.get(corr.op, OPS["gte"])(value, corr.threshold)]
        samples = sample_events(es, [(index, query, b, corr.group_by) for b, _ in hits])
        for (b, value), resp in zip(hits, samples, strict=True):
            if isinstance(resp, Exception):
                raise resp
            m = _match_from_sample(b, corr.group_by, _reason(corr, value), resp)
            # one match per group and burst; the half-span offset finds the same burst again (kept once)
            key = (*sorted((k, str(v)) for k, v in m.group.items()), m.first_time)
            prev = matches.get(key)
            if prev is None or m.count > prev.count:
                matches[key] = m
    return sorted(matches.values(), key=lambda m: m.first_time)


def _candidate_filter(es: Elasticsearch, index: str, query: dict, corr: Correlation) -> dict | bool | None:
    """For count thresholds: only first group-by values whose largest group (over the other group-by fields) may
    hold ``threshold`` events in the whole span can satisfy the rule (a group in a time bucket is part of its group
    over the span, a distinct count never exceeds the event count); see :func:`largest_group_bound`. One
    aggregation over the first group-by field. False = no candidate at all."""
    if corr.type not in ("event_count", "value_count") or corr.op not in ("gte", "gt", "eq") or not corr.group_by:
        return None
    need = int(corr.threshold) + (1 if corr.op == "gt" else 0)
    if need <= 1:
        return None
    field_name, others = corr.group_by[0], corr.group_by[1:]
    values = [b["key"][field_name] for b in _composite(es, index, query, _terms_sources([field_name]),
                                                       spread_aggs(others))
              if b["key"][field_name] is not None and largest_group_bound(b, others) >= need]
    if not values:
        return False
    if len(values) >= MAX_CANDIDATES:
        return None  # too many to list: scan every group
    return {"terms": {field_name: values}}


def _correlation_value(corr: Correlation, bucket: dict) -> float | None:
    if corr.type == "event_count":
        return float(bucket["doc_count"])
    if corr.type == "value_count":
        return float(bucket["distinct"]["value"]) if "distinct" in bucket else None
    times = [bucket[f"m{i}"]["t"].get("value") for i in range(len(corr.members))]
    if any(bucket[f"m{i}"]["doc_count"] == 0 for i in range(len(corr.members))):
        return None
    if corr.type == "temporal_ordered" and times != sorted(times):
        return None
    return float(len(corr.members))


def _reason(corr: Correlation, value: float) -> Message:
    params = {"n": int(value), "seconds": corr.timespan, "op": corr.op, "threshold": int(corr.threshold)}
    if corr.type == "event_count":
        return message(N_("%(n)s events within %(seconds)ss (%(op)s %(threshold)s)"), **params)
    if corr.type == "value_count":
        return message(N_("%(n)s distinct %(field)s within %(seconds)ss (%(op)s %(threshold)s)"),
                       field=corr.count_field, **params)
    return message(N_("%(n)s rules matched within %(seconds)ss (%(op)s %(threshold)s)"), **params)


def run_rule(es: Elasticsearch, prefix: str, rule: CompiledRule, start: str, end: str) -> list[Match]:
    """Evaluate one compiled rule over the ingest window [start, end)."""
    if rule.kind == "analytic" and rule.analytic is not None:
        return rule.analytic(es, prefix, rule, start, end)
    if rule.kind == "correlation":
        return run_correlation(es, prefix, rule, start, end)
    return run_query_rule(es, prefix, rule, start, end)
