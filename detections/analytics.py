"""Network analytics Sigma cannot express: RITA-style beaconing, per-domain DNS tunnelling scores, and
algorithmically generated domains (detections.dga's character model).

Beaconing leaves out infrastructure services hosts poll on a schedule (DNS, NTP, DHCP, name services) and
series another rule already explains (a brute-force alert between the same two hosts).

Both look at the groups that received new events in the ingest window, then score each group over
the events' own time (a horizon before the newest event), so an imported capture is scored as a whole.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

from elasticsearch import Elasticsearch, helpers

from detections.compiler import CompiledRule
from detections.dga import looks_generated
from detections.engine import (
    Match,
    _composite,
    _terms_sources,
    composite_by_lead,
    indices_for,
    largest_group_bound,
    msearch,
    spread_aggs,
    window_filter,
)
from detections.fingerprints import FingerprintList, load_fingerprints, make_fingerprint_run
from secops.ecs import iso, parse_time
from secops.es.templates import index_for
from secops.i18n import N_, REASONS, message, translated_texts

BEACON_GROUP = ["source.ip", "destination.ip", "destination.port"]
# Infrastructure every host talks to on a schedule (DNS resolvers, NTP, DHCP, name services): never beaconing.
INFRASTRUCTURE_PORTS = frozenset({53, 67, 68, 123, 137, 138, 5353, 5355})
EXPLAINING_TECHNIQUES = ("T1110",)  # a brute force explains a regular series of logins
BEACON_MIN_CONNS = 10
BEACON_FULL_COUNT = 20  # intervals for a full connection-count score
# score thresholds per severity, highest first (RITA reports scores; the SOC needs a severity)
BEACON_SEVERITIES = (("high", 0.9), ("medium", 0.8), ("low", 0.7))
BEACON_THRESHOLD = BEACON_SEVERITIES[-1][1]
BEACON_HORIZON = 86400
MAX_SIZE = 65535  # RITA's data-size smallness: beacons carry little data
MIN_OBSERVED = 300  # seconds: a series must last five minutes to cover its host's time fully
DNS_MIN_NAMES = 15
DGA_MIN_DOMAINS = 10  # distinct generated-looking domains from one client within the window


def _regularity(values: list[float]) -> tuple[float, float, float, float]:
    """(score, Bowley skew, median absolute deviation, median): 1.0 = every value the same."""
    q1, q2, q3 = statistics.quantiles(values, n=4)
    skew = 0.0 if q3 in (q1, q2) or q2 == q1 else (q3 + q1 - 2 * q2) / (q3 - q1)
    mad = statistics.median(abs(v - q2) for v in values)
    mad_score = max(0.0, 1.0 - mad / q2) if q2 > 0 else float(mad == 0)
    return ((1.0 - abs(skew)) + mad_score) / 2, skew, mad, q2


def beacon_score(times: list[float], sizes: list[float] | None = None,
                 observed: float | None = None) -> tuple[float, dict[str, float]]:
    """RITA's beacon score: the mean of interval regularity (Bowley skew and MAD of the gaps), data-size
    regularity (skew, MAD and smallness of the bytes sent), duration coverage (share of the observed span the
    series covers) and connection count. Components without data (no sizes, no observed span) are left out.
    1.0 = a perfectly periodic, constant, small, always-present series."""
    ts = sorted(times)
    deltas = [b - a for a, b in itertools.pairwise(ts) if b - a > 0]
    if len(deltas) < BEACON_MIN_CONNS - 1:
        return 0.0, {}
    interval, skew, mad, median_interval = _regularity(deltas)
    parts = {"interval": interval, "count": min(1.0, len(deltas) / BEACON_FULL_COUNT)}
    if sizes and len(sizes) >= 4:
        size, _, _, _ = _regularity([float(x) for x in sizes])
        mode = Counter(sizes).most_common(1)[0][0]
        parts["size"] = (2 * size + (1.0 - min(1.0, mode / MAX_SIZE))) / 3
    if observed is not None:
        parts["coverage"] = min(1.0, (ts[-1] - ts[0]) / max(observed, MIN_OBSERVED))
    score = statistics.fmean(parts.values())
    return score, {"skew": round(skew, 3), "mad": round(mad, 3), "median_interval": round(median_interval, 3),
                   "connections": len(ts), **{k: round(v, 3) for k, v in parts.items()}}


def beacon_severity(score: float) -> str | None:
    return next((severity for severity, floor in BEACON_SEVERITIES if score >= floor), None)


def _series_search(index: str, group: dict[str, Any], lo: str, hi: str, fresh: dict) -> dict[str, Any]:
    """The search for one group's events between lo and hi, oldest first (times and bytes the source sent as doc
    values), counting those ingested in the run's window (``fresh``)."""
    filters = [{"term": {k: v}} for k, v in group.items() if v is not None]
    filters.append(window_filter(lo, hi, "@timestamp"))
    missing = [{"exists": {"field": k}} for k, v in group.items() if v is None]
    return {"index": index, "size": 5000, "query": {"bool": {"filter": filters}}, "sort": [{"@timestamp": "asc"}],
            "_source": False, "docvalue_fields": [{"field": "@timestamp", "format": "epoch_millis"}, "source.bytes"],
            "aggs": {"fresh": {"filter": {"bool": {"filter": [fresh], "must_not": missing}}}}}


def _series(resp: dict) -> tuple[list[float], list[float], list[dict], int]:
    """(times, bytes the source sent, hits, how many were ingested in the run's window) of one group's search."""
    hits = resp["hits"]["hits"]
    sizes = [float(h["fields"]["source.bytes"][0]) for h in hits if h.get("fields", {}).get("source.bytes")]
    fresh = int(((resp.get("aggregations") or {}).get("fresh") or {}).get("doc_count") or 0)
    return [float(h["fields"]["@timestamp"][0]) / 1000 for h in hits], sizes, hits, fresh


def _sources(es: Elasticsearch, index: str, query: dict) -> tuple[list[dict], dict[str, float]]:
    """The buckets of the source hosts that may have a group with enough connections to score (for batching those
    groups by source; see engine.largest_group_bound), and the seconds between each host's first and last event in
    the scoring window: how long the host was seen, which a beacon's series covers (RITA's duration coverage, per
    host so that captures or days of other hosts do not dilute it). One aggregation."""
    others = ["destination.ip"]  # a group is part of its (source, destination) pair: the pair's bound covers it
    buckets = list(_composite(es, index, query, _terms_sources(["source.ip"]),
                              {"lo": {"min": {"field": "@timestamp"}}, "hi": {"max": {"field": "@timestamp"}},
                               **spread_aggs(others)}))
    spans = {str(b["key"]["source.ip"]): (b["hi"]["value"] - b["lo"]["value"]) / 1000
             for b in buckets if b["lo"]["value"] is not None}
    return [b for b in buckets if largest_group_bound(b, others) >= BEACON_MIN_CONNS], spans


def _infrastructure(address: Any, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(str(address))
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in networks)


def make_beaconing(infrastructure: list[str] | tuple[str, ...] = ()) -> Any:
    """The beaconing analytic, leaving out destinations in the configured infrastructure networks."""
    networks = tuple(ipaddress.ip_network(n, strict=False) for n in infrastructure)

    def run(es: Elasticsearch, prefix: str, rule: CompiledRule, start: str, end: str) -> list[Match]:
        return run_beaconing(es, prefix, rule, start, end, networks)
    return run


def run_beaconing(es: Elasticsearch, prefix: str, rule: CompiledRule, start: str, end: str,
                  infrastructure: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()) -> list[Match]:
    """Score every (source, destination, port) group that got new connections in the window, over its horizon;
    each match carries the severity its score reaches."""
    out: list[Match] = []
    seen: set[tuple] = set()  # a group found in connections is not scored again from HTTP requests
    for dataset in ("secops.conn", "secops.http"):
        index = indices_for(prefix, [dataset])
        fresh = window_filter(start, end)
        span = es.search(index=index, size=0, query={"bool": {"filter": [fresh]}}, ignore_unavailable=True,
                         allow_no_indices=True, aggs={"lo": {"min": {"field": "@timestamp"}},
                                                      "hi": {"max": {"field": "@timestamp"}}})
        aggs = span.get("aggregations") or {}
        if aggs.get("lo", {}).get("value") is None:
            continue
        lo, hi = aggs["lo"]["value"] / 1000 - BEACON_HORIZON, aggs["hi"]["value"] / 1000 + 1
        query = {"bool": {"filter": [window_filter(iso(lo), iso(hi), "@timestamp")]}}
        leads, observed = _sources(es, index, query)
        # groups with enough connections, in one pass over the batched (source, destination, port) counts of the
        # sources that may have one; whether a group got new connections in this window is counted with its series
        candidates = [group for b in composite_by_lead(es, index, query, BEACON_GROUP, {}, leads=leads)
                      if b["doc_count"] >= BEACON_MIN_CONNS
                      and _scorable(group := {k: b["key"][k] for k in BEACON_GROUP}, infrastructure)]
        answers = msearch(es, [_series_search(index, g, iso(lo), iso(hi), fresh) for g in candidates])
        for group, resp in zip(candidates, answers, strict=True):
            if isinstance(resp, Exception):
                raise resp
            times, sizes, hits, fresh_count = _series(resp)
            key = tuple(group.values())
            if not fresh_count or key in seen:
                continue
            score, stats = beacon_score(times, sizes, observed.get(str(group["source.ip"])))
            severity = beacon_severity(score)
            if severity is None:
                continue
            seen.add(key)
            if _explained(es, prefix, group, times[0], times[-1]):
                continue
            out.append(Match(group=group, first_time=iso(times[0]), last_time=iso(times[-1]), count=len(times),
                             event_ids=[h["_id"] for h in hits[:200]], event_index=hits[0]["_index"],
                             fields=dict(group), severity=severity,
                             reason_message=message(
                                 N_("beacon score %(score)s over %(n)s %(dataset)s events, median interval "
                                    "%(interval)ss"), score=f"{score:.2f}", n=stats["connections"],
                                 dataset=dataset, interval=stats["median_interval"])))
    return out


def _scorable(group: dict[str, Any], infrastructure: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
              ) -> bool:
    """A group with a destination that is not an infrastructure service or network."""
    return (group["destination.ip"] is not None and group["destination.port"] not in INFRASTRUCTURE_PORTS
            and not _infrastructure(group["destination.ip"], infrastructure))


def _explained(es: Elasticsearch, prefix: str, group: dict[str, Any], first: float, last: float) -> bool:
    """Another rule already raised an alert that explains this series (a brute force between the same hosts)."""
    resp = es.search(index=index_for(prefix, "secops.alert"), size=0, ignore_unavailable=True, allow_no_indices=True,
                     query={"bool": {"filter": [
                         {"term": {"source.ip": group["source.ip"]}},
                         {"term": {"destination.ip": group["destination.ip"]}},
                         {"bool": {"should": [{"prefix": {"threat.technique.id": t}} for t in EXPLAINING_TECHNIQUES]}},
                         {"range": {"secops.alert.first_time": {"lte": iso(last + BEACON_HORIZON)}}},
                         {"range": {"secops.alert.last_time": {"gte": iso(first - BEACON_HORIZON)}}}]}})
    return resp["hits"]["total"]["value"] > 0


def entropy(text: str) -> float:
    if not text:
        return 0.0
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def registered_domain(name: str) -> str:
    labels = [x for x in name.rstrip(".").lower().split(".") if x]
    return ".".join(labels[-2:]) if len(labels) >= 2 else ".".join(labels)


def _dns_questions(es: Elasticsearch, prefix: str, start: str, end: str) -> Iterator[tuple[dict, str, dict]]:
    """(hit, question name, source document) of every DNS event ingested in the window that has a name."""
    query = {"bool": {"filter": [window_filter(start, end)]}}
    for hit in helpers.scan(es, index=indices_for(prefix, ["secops.dns"]), query={"query": query}, size=2000,
                            ignore_unavailable=True,
                            _source=["dns.question.name", "dns.question.type", "source.ip", "@timestamp"]):
        src = hit["_source"]
        name = ((src.get("dns") or {}).get("question") or {}).get("name")
        if name:
            yield hit, name, src


def run_dns_tunnel(es: Elasticsearch, prefix: str, rule: CompiledRule, start: str, end: str) -> list[Match]:
    """Per registered domain: many distinct subdomains with long or high-entropy labels, or NULL/TXT volume."""
    per: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: {"names": set(), "ids": [], "times": [],
                                                                       "nulltxt": 0, "long": 0, "ent": []})
    index_name = ""
    for hit, name, src in _dns_questions(es, prefix, start, end):
        qtype = str(((src.get("dns") or {}).get("question") or {}).get("type") or "").upper()
        domain = registered_domain(name)
        sub = name.rstrip(".")[: -len(domain) - 1] if len(name.rstrip(".")) > len(domain) else ""
        g = per[(domain, str((src.get("source") or {}).get("ip")))]
        g["names"].add(name.lower())
        if len(g["ids"]) < 200:
            g["ids"].append(hit["_id"])
        g["times"].append(src.get("@timestamp"))
        g["nulltxt"] += qtype in ("NULL", "TXT", "10", "16")
        longest = max((len(x) for x in sub.split(".")), default=0)
        g["long"] += longest >= 40
        g["ent"].append(entropy(sub.replace(".", "")))
        index_name = hit["_index"]
    out = []
    for (domain, src_ip), g in per.items():
        distinct = len(g["names"])
        mean_ent = statistics.fmean(g["ent"]) if g["ent"] else 0.0
        volume = g["nulltxt"] >= 20
        encoded = distinct >= DNS_MIN_NAMES and (g["long"] >= DNS_MIN_NAMES or mean_ent >= 4.0)
        if not (volume or encoded):
            continue
        times = sorted(t for t in g["times"] if t)
        out.append(Match(group={"dns.question.registered_domain": domain, "source.ip": src_ip},
                         first_time=iso(parse_time(times[0])), last_time=iso(parse_time(times[-1])),
                         count=len(times), event_ids=g["ids"], event_index=index_name,
                         fields={"source.ip": src_ip},
                         reason_message=message(
                             N_("%(n)s distinct names under %(domain)s, %(long)s with 40+ char labels, mean entropy "
                                "%(entropy)s, %(nulltxt)s NULL/TXT queries"), n=distinct, domain=domain,
                             long=g["long"], entropy=f"{mean_ent:.2f}", nulltxt=g["nulltxt"])))
    return out


def run_dga(es: Elasticsearch, prefix: str, rule: CompiledRule, start: str, end: str) -> list[Match]:
    """Per client: many distinct domains whose registrable label the character model finds generated."""
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"domains": set(), "ids": [], "times": [], "index": ""})
    for hit, name, src in _dns_questions(es, prefix, start, end):
        if not looks_generated(name):
            continue
        g = per[str((src.get("source") or {}).get("ip"))]
        g["domains"].add(registered_domain(name))
        if len(g["ids"]) < 200:
            g["ids"].append(hit["_id"])
        g["times"].append(src.get("@timestamp"))
        g["index"] = hit["_index"]
    out = []
    for src_ip, g in per.items():
        if len(g["domains"]) < DGA_MIN_DOMAINS:
            continue
        times = sorted(t for t in g["times"] if t)
        sample = ", ".join(sorted(g["domains"])[:5])
        out.append(Match(group={"source.ip": src_ip}, first_time=iso(parse_time(times[0])),
                         last_time=iso(parse_time(times[-1])), count=len(times), event_ids=g["ids"],
                         event_index=g["index"], fields={"source.ip": src_ip},
                         reason_message=message(N_("%(n)s distinct generated-looking domains (%(sample)s, ...)"),
                                                n=len(g["domains"]), sample=sample)))
    return out


def analytic(rule_id: str, title: str, severity: str, techniques: list[str], tactics: list[str],
             description: str, fn: Any, group_by: list[str], dataset: str,
             after_techniques: tuple[str, ...] = ()) -> CompiledRule:
    return CompiledRule(id=rule_id, title=title, kind="analytic", dataset=dataset, severity=severity, level=severity,
                        after_techniques=after_techniques,
                        author="secops project", description=description, license="Apache-2.0",
                        i18n=translated_texts(REASONS, title=title, description=description),
                        techniques=techniques, tactics=tactics,
                        tags=[f"attack.{t.lower()}" for t in techniques], group_by=group_by, analytic=fn)


def analytic_rules(infrastructure: list[str] | tuple[str, ...] = (),
                   fingerprints: FingerprintList | None = None) -> list[CompiledRule]:
    """The analytics; ``infrastructure``: networks whose hosts are never reported as beaconing destinations;
    ``fingerprints``: the C2 TLS fingerprint list (default: the shipped one)."""
    listed = fingerprints if fingerprints is not None else load_fingerprints()
    return [
        analytic("secops-analytic-beaconing", N_("Beaconing (Periodic Connections)"), "high", ["T1071.001", "T1573"],
                  ["Command and Control"], N_("RITA-style score: interval and data-size regularity, duration "
                  "coverage and connection count from one host to one service; score 0.9 high, 0.8 medium, 0.7 "
                  "low."), make_beaconing(infrastructure), BEACON_GROUP,
                 "secops.conn,secops.http", after_techniques=EXPLAINING_TECHNIQUES),
        analytic("secops-analytic-dns-tunnel", N_("DNS Tunnelling (Per-Domain Label Analysis)"), "high",
                  ["T1071.004", "T1048.003"], ["Command and Control", "Exfiltration"],
                  N_("Many distinct subdomains of one domain with long/high-entropy labels, or NULL/TXT volume."),
                 run_dns_tunnel, ["dns.question.registered_domain", "source.ip"], "secops.dns"),
        analytic("secops-analytic-dga", N_("Algorithmically Generated Domains (DGA)"), "high", ["T1568.002"],
                 ["Command and Control"], N_("One client looked up many distinct domains whose names an offline "
                 "character model (English bigrams) scores as random: a domain generation algorithm."),
                 run_dga, ["source.ip"], "secops.dns"),
        analytic("secops-analytic-c2-fingerprint", N_("Known C2 TLS Client Fingerprint (JA3/JA4)"), "high",
                 ["T1071.001", "T1573.002"], ["Command and Control"],
                 N_("A TLS or QUIC client's JA3/JA4 fingerprint is on the offline list of well-known C2 and "
                    "malware fingerprints (shipped, extended by configured files); each alert takes its entry's "
                    "severity (low when a common TLS library shares the fingerprint)."),
                 make_fingerprint_run(listed), ["source.ip", "destination.ip"], "secops.tls"),
    ]
