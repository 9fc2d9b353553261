"""Beaconing scored as RITA scores it (issue 12), on the real node: a steady one-minute beacon is high, the same
series to a configured infrastructure network is not reported, and a short regular burst inside an hour of
traffic (a near miss) stays quiet; each alert carries the severity its score reached."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from detections.alerts import new_alert
from detections.analytics import BEACON_GROUP, BEACON_MIN_CONNS, _sources, analytic_rules
from detections.engine import _composite, _terms_sources, composite_by_lead, indices_for, run_rule, window_filter
from tests.integration.detect_support import T0, conn, write
from tests.integration.test_detect_hardening import WINDOW

pytestmark = pytest.mark.integration


def series(src: str, dst: str, port: int, seconds: list[float], size: float) -> list[dict]:
    return [conn(src, dst, port, T0 + timedelta(seconds=s), state="SF", ingested=T0,
                 source={"ip": src, "port": 50000 + n, "bytes": int(size)}) for n, s in enumerate(seconds)]


def test_rita_score_severity_infrastructure_and_short_burst(es, settings):
    rng = random.Random(3)
    hour = [i * 60.0 + rng.uniform(-1, 1) for i in range(60)]
    docs = series("198.18.70.1", "198.18.71.9", 443, hour, 420)  # a beacon
    docs += series("198.18.70.2", "198.18.72.5", 8080, hour, 420)  # the same, to the update proxy
    docs += series("198.18.70.3", "198.18.71.9", 443, [1800 + 2.0 * i for i in range(12)], 300)  # a burst
    write(es, settings, docs)
    rule = next(r for r in analytic_rules(["198.18.72.0/24"]) if r.id == "secops-analytic-beaconing")
    matches = run_rule(es, "secops", rule, *WINDOW)
    assert [(m.group["source.ip"], m.severity) for m in matches] == [("198.18.70.1", "high")]
    alert = new_alert(rule, matches[0], "k", "a", None)
    assert alert["rule"]["severity"] == "high" and alert["event"]["severity"] == 73
    unconfigured = next(r for r in analytic_rules() if r.id == "secops-analytic-beaconing")
    assert sorted(m.group["source.ip"] for m in run_rule(es, "secops", unconfigured, *WINDOW)) == \
        ["198.18.70.1", "198.18.70.2"]


def test_batched_composite_gives_the_plain_composite_buckets(es, settings):
    """Beaconing's groups aggregated in batches of source addresses (one page of documents each): the same
    buckets, counts and order as one composite aggregation, including a source larger than a page and
    documents without a source address."""
    rng = random.Random(5)
    docs = [conn(f"198.18.80.{rng.randint(1, 9)}", f"198.18.81.{rng.randint(1, 4)}", rng.choice([22, 443]),
                 T0 + timedelta(seconds=i), state="SF", ingested=T0) for i in range(60)]
    docs += [conn("198.18.80.50", "198.18.81.1", 443, T0 + timedelta(seconds=100 + i), ingested=T0)
             for i in range(7)]  # more documents than a page
    docs += [conn("198.18.80.1", "198.18.81.1", 443, T0 + timedelta(seconds=200 + i), ingested=T0,
                  source={"port": 1}) for i in range(2)]  # no source address
    write(es, settings, docs)
    query = {"bool": {"filter": [window_filter(*WINDOW, "@timestamp")]}}
    subaggs = {"fresh": {"filter": window_filter(*WINDOW)}}
    index = indices_for("secops", ["secops.conn"])

    def flat(buckets):
        return [(b["key"], b["doc_count"], b["fresh"]["doc_count"]) for b in buckets]
    plain = flat(_composite(es, index, query, _terms_sources(BEACON_GROUP), subaggs, page=1000))
    batched = flat(composite_by_lead(es, index, query, BEACON_GROUP, subaggs, page=5))
    assert batched == plain and sum(n for _, n, _ in plain) == len(docs)
    assert any(k["source.ip"] is None for k, _, _ in plain)


def test_sources_left_out_have_no_group_large_enough(es, settings):
    """The source hosts beaconing batches its groups by: every source with a (source, destination, port) group of
    BEACON_MIN_CONNS connections is kept, while a source whose connections mostly go to distinct destinations is
    left out (its largest group cannot reach BEACON_MIN_CONNS), as is one with too few connections; spans of all."""
    n = BEACON_MIN_CONNS
    at = iter(range(10_000))

    def c(src, dst, port=443, **kw):
        return conn(src, dst, port, T0 + timedelta(seconds=next(at)), ingested=T0, **kw)
    docs = [c("198.18.82.1", "198.18.83.1") for _ in range(n)]  # exactly enough, plus n singletons
    docs += [c("198.18.82.1", f"198.18.84.{i}") for i in range(1, n + 1)]
    docs += [c("198.18.82.2", "198.18.83.1") for _ in range(n - 1)]  # one short of enough, plus singletons
    docs += [c("198.18.82.2", f"198.18.84.{i}") for i in range(1, 30)]
    docs += [c("198.18.82.3", "198.18.83.1", port=p) for p in range(1, n)] + \
        [c("198.18.82.3", "198.18.83.1", port=1)]  # one destination, many ports: kept (destinations bound it)
    docs += [c("198.18.82.4", "198.18.83.1", destination={"port": 443}) for _ in range(n)]  # no destination
    docs += [c("198.18.82.5", f"198.18.84.{i}") for i in range(1, 200)]  # a sweep: no group at all
    write(es, settings, docs)
    query = {"bool": {"filter": [window_filter(*WINDOW, "@timestamp")]}}
    index = indices_for("secops", ["secops.conn"])
    leads, spans = _sources(es, index, query)
    kept = {b["key"]["source.ip"] for b in leads}
    large = {b["key"]["source.ip"] for b in _composite(es, index, query, _terms_sources(BEACON_GROUP), {}, page=1000)
             if b["doc_count"] >= n}
    assert large == {"198.18.82.1", "198.18.82.4"} and large <= kept
    assert kept == {"198.18.82.1", "198.18.82.3", "198.18.82.4"}
    assert set(spans) == {f"198.18.82.{i}" for i in range(1, 6)}
