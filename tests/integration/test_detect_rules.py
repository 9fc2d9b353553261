"""Rules against a real node: all SigmaHQ rules run without error, correlations, analytics and IOC matching."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from detections.analytics import analytic_rules
from detections.compiler import compile_rules
from detections.engine import (
    SAMPLES_PER_SEARCH,
    _candidate_filter,
    _composite,
    _sample_aggs,
    _sample_search,
    _terms_sources,
    indices_for,
    msearch,
    run_rule,
    sample_events,
    window_filter,
)
from detections.ioc import load_iocs, make_ioc_rule
from detections.loader import BUILTIN_RULES, load_rules
from detections.report import field_report
from secops.ecs import iso
from tests.integration.detect_support import T0, conn, event, minutes, write
from tests.support import TESTDATA

pytestmark = pytest.mark.integration
WINDOW = (iso(T0 - timedelta(days=1)), iso(T0 + timedelta(days=1)))


def builtin(rule_id: str):
    return next(r for r in compile_rules(load_rules([BUILTIN_RULES])) if r.id == rule_id)


def sample_docs() -> list[dict]:
    at = T0
    return [
        # mixed case as DNS 0x20 resolvers send it: Sigma matches strings case-insensitively
        event("secops.dns", "198.18.0.5", "198.18.0.53", at, {"dns.question.name": "api.TeleGram.ORG",
                                                              "dns.question.type": "A"}, ingested=at),
        event("secops.http", "198.18.0.5", "198.18.0.80", at, {"url.original": "/pwndrop/x", "url.domain": "a.test",
                                                               "http.request.method": "GET",
                                                               "user_agent.original": "rclone/v1.6"}, ingested=at),
        # SigmaHQ's (?i)...@... PCRE search: unanchored, case-insensitive, "@" literal (a Lucene operator)
        event("secops.http", "198.18.0.6", "198.18.0.80", at, {
            "url.original": "https://gateway.IPFS.io/ipfs/bafy/login.html#victim@city.example"}, ingested=at),
        event("secops.smb", "198.18.0.5", "198.18.0.7", at, {"secops.dcerpc.endpoint": "spoolss",
                                                             "secops.dcerpc.operation": "RpcAddMonitor"}, ingested=at),
        conn("198.18.0.5", "198.18.0.8", 23, at, state="SF", orig_bytes=10, ingested=at),
    ]


def test_every_sigmahq_rule_runs_against_the_indices(es, settings):
    write(es, settings, sample_docs())
    rules = compile_rules(load_rules([TESTDATA / "sigma" / "rules"]))
    assert len(rules) == 98
    fired = {}
    for rule in rules:
        fired[rule.title] = len(run_rule(es, "secops", rule, *WINDOW))  # raises on any query error
    assert fired["Telegram Bot API Request"] == 1
    assert fired["PwnDrp Access"] == 1
    assert fired["Rclone Activity via Proxy"] == 1
    assert fired["Suspicious Network Communication With IPFS"] == 1
    assert fired["MITRE BZAR Indicators for Persistence"] == 1
    assert fired["Cisco Clear Logs"] == 0  # log source not produced here
    report = field_report(rules, es, "secops")
    assert sum(1 for r in report if r.hits) >= 4


def test_port_scan_and_host_sweep_correlations(es, settings):
    scan = [conn("198.18.3.1", "198.18.3.9", port, T0 + timedelta(seconds=port % 60), state="REJ", ingested=T0)
            for port in range(1, 31)]
    sweep = [conn("198.18.3.2", f"198.18.4.{i}", 445, T0 + timedelta(seconds=i), state="S0", ingested=T0)
             for i in range(1, 26)]
    slow = [conn("198.18.3.3", "198.18.3.9", port, T0 + minutes(10 * port), state="REJ", ingested=T0)
            for port in range(1, 31)]  # 30 ports over 5 hours: not a 5-minute scan
    write(es, settings, scan + sweep + slow)
    port_scan = run_rule(es, "secops", builtin("4fd2cc3a-a833-50ea-86fe-025d642a53c1"), *WINDOW)
    assert [m.group for m in port_scan] == [{"source.ip": "198.18.3.1", "destination.ip": "198.18.3.9"}]
    assert port_scan[0].count == 30 and "30 distinct destination.port" in port_scan[0].reason
    sweep_matches = run_rule(es, "secops", builtin("ec62bd08-434e-5043-93d5-12512d848149"), *WINDOW)
    assert [m.group["source.ip"] for m in sweep_matches] == ["198.18.3.2"]
    # the candidates of a (source, destination) count: the sweeping source's probes all go to distinct hosts, so no
    # pair of it can reach the threshold and it is left out before any pair is counted
    burst = builtin("f238ed5e-f87f-5430-b0f1-5f5dc591ff0f").correlation
    assert _candidate_filter(es, indices_for("secops", ["secops.conn"]),
                             {"bool": {"filter": [window_filter(*WINDOW)]}}, burst) == \
        {"terms": {"source.ip": ["198.18.3.1", "198.18.3.3"]}}
    # window cut on event.ingested: nothing arrived in this window
    assert run_rule(es, "secops", builtin("4fd2cc3a-a833-50ea-86fe-025d642a53c1"),
                    iso(T0 + minutes(1)), iso(T0 + minutes(2))) == []


def test_string_matches_ignore_case_regexes_do_not(es, settings, tmp_path: Path):
    """Sigma semantics: plain (and wildcard) string matches are case-insensitive, |re is case-sensitive."""
    (tmp_path / "ua.yml").write_text("""title: Scanner User Agent On Admin Path
id: 5b0c9d8e-0000-4000-8000-000000000010
logsource: {category: proxy}
detection:
  ua: {c-useragent|contains: sqlmap, cs-method: POST}
  admin: {c-uri|re: '^/Admin/'}  # anchored at the start only, as in PCRE
  condition: ua and admin
level: high
""")
    (rule,) = compile_rules(load_rules([tmp_path]))
    docs = [event("secops.http", f"198.18.6.{i}", "198.18.6.80", T0, {
        "user_agent.original": ua, "http.request.method": method, "url.original": uri}, ingested=T0)
        for i, (ua, method, uri) in enumerate([("SQLMap/1.4", "post", "/Admin/login"),   # match: case ignored
                                              ("sqlmap/1.4", "POST", "/admin/login"),    # no: |re is exact
                                              ("curl/8.0", "POST", "/Admin/login")], 1)]  # no: other agent
    write(es, settings, docs)
    matches = run_rule(es, "secops", rule, *WINDOW)
    assert [m.group["source.ip"] for m in matches] == ["198.18.6.1"]
    # the stored values and aggregations keep their case; only the .ci sub-field is lowercased
    agg = es.search(index="secops-http-*", size=0, aggs={"ua": {"terms": {"field": "user_agent.original"}}})
    assert "SQLMap/1.4" in {b["key"] for b in agg["aggregations"]["ua"]["buckets"]}


def test_temporal_correlation(es, settings, tmp_path: Path):
    (tmp_path / "t.yml").write_text("""title: Lookup
id: 5b0c9d8e-0000-4000-8000-000000000001
name: lookup
logsource: {product: zeek, service: dns}
detection: {sel: {query|endswith: '.evil.test'}, condition: sel}
---
title: Download
id: 5b0c9d8e-0000-4000-8000-000000000002
name: download
logsource: {product: zeek, service: http}
detection: {sel: {c-uri|endswith: '.exe'}, condition: sel}
---
title: Lookup Then Download
id: 5b0c9d8e-0000-4000-8000-000000000003
correlation: {type: temporal_ordered, rules: [lookup, download], group-by: [id.orig_h], timespan: 2m}
level: high
""")
    rules = {r.title: r for r in compile_rules(load_rules([tmp_path]))}
    write(es, settings, [
        event("secops.dns", "198.18.5.1", "198.18.0.53", T0, {"dns.question.name": "x.evil.test"}, ingested=T0),
        event("secops.http", "198.18.5.1", "198.18.5.80", T0 + timedelta(seconds=20), {"url.original": "/a.exe"},
              ingested=T0),
        # wrong order for this host
        event("secops.http", "198.18.5.2", "198.18.5.80", T0, {"url.original": "/b.exe"}, ingested=T0),
        event("secops.dns", "198.18.5.2", "198.18.0.53", T0 + timedelta(seconds=20),
              {"dns.question.name": "y.evil.test"}, ingested=T0),
    ])
    matches = run_rule(es, "secops", rules["Lookup Then Download"], *WINDOW)
    assert [m.group for m in matches] == [{"source.ip": "198.18.5.1"}]


def test_beaconing_dns_tunnel_and_ioc(es, settings, tmp_path: Path):
    beacons = [conn("198.18.6.1", "198.18.6.80", 80, T0 + timedelta(seconds=60 * i + (i % 3)), state="SF",
                    orig_bytes=200, ingested=T0) for i in range(30)]
    noise = [conn("198.18.6.2", "198.18.6.80", 80, T0 + timedelta(seconds=s), state="SF", orig_bytes=200,
                  ingested=T0) for s in (1, 2, 3, 50, 400, 410, 1300, 1301, 1900, 3000, 3001, 3002)]
    tunnel = [event("secops.dns", "198.18.6.3", "198.18.0.53", T0 + timedelta(seconds=i),
                    {"dns.question.name": f"{'ab' * 25}{i:04x}x.t.tunnel.test", "dns.question.type": "NULL"},
                    ingested=T0) for i in range(30)]
    tls = event("secops.tls", "198.18.6.4", "198.18.6.43", T0, {"tls.client.ja3": "e7d705a3286e19ea42f587b344ee6865"},
                ingested=T0)
    write(es, settings, beacons + noise + tunnel + [tls])
    beacon_rule, dns_rule, _dga, _fingerprints = analytic_rules()
    assert [m.group["source.ip"] for m in run_rule(es, "secops", beacon_rule, *WINDOW)] == ["198.18.6.1"]
    [tun] = run_rule(es, "secops", dns_rule, *WINDOW)
    assert tun.group == {"dns.question.registered_domain": "tunnel.test", "source.ip": "198.18.6.3"}
    assert [m.group["source.ip"] for m in run_rule(es, "secops", builtin("e7a17506-4105-55bf-adac-09a18bb95a41"),
                                                   *WINDOW)] == ["198.18.6.3"]
    (tmp_path / "ja3.txt").write_text("e7d705a3286e19ea42f587b344ee6865\n")
    (tmp_path / "ips.csv").write_text("indicator,description\n198.18.6.80,test C2\n")
    ioc = make_ioc_rule(load_iocs([tmp_path]))
    hits = {m.group["source.ip"] for m in run_rule(es, "secops", ioc, *WINDOW)}
    assert hits == {"198.18.6.1", "198.18.6.2", "198.18.6.4"}


def test_sample_events_of_many_buckets_equal_one_search_each(es, settings):
    """The sample events of matched buckets read together (a filters aggregation with top hits per bucket, 50
    buckets a search) are those a search of each bucket alone returns, in the same order: equal-time events told
    apart by the carried fields, a group without a destination, more buckets than one search takes."""
    docs = [conn(f"198.18.5.{i % 60 + 1}", "198.18.6.1" if i % 7 else "198.18.6.2", 1000 + i % 13,
                 T0 + timedelta(seconds=i // 40), ingested=T0) for i in range(2400)]
    docs += [conn("198.18.5.99", "198.18.6.1", 22, T0 + timedelta(seconds=i % 2), ingested=T0, _id=f"no-dst-{i}",
                  source={"ip": "198.18.5.99", "port": 40000 + i}, destination={"port": 22})
             for i in range(60)]  # no destination address, equal times
    write(es, settings, docs)
    index, fields = indices_for("secops", ["secops.conn"]), ["source.ip", "destination.ip"]
    query = {"bool": {"filter": [window_filter(*WINDOW)]}}
    buckets = list(_composite(es, index, query, _terms_sources(fields), _sample_aggs()))
    assert len(buckets) > SAMPLES_PER_SEARCH and any(b["key"]["destination.ip"] is None for b in buckets)
    together = sample_events(es, [(index, query, b, fields) for b in buckets])
    alone = msearch(es, [_sample_search(index, query, b, fields) for b in buckets])

    def hits(resp):
        return [(h["_index"], h["_id"], h["_source"]) for h in resp["hits"]["hits"]]
    assert [hits(r) for r in together] == [hits(r) for r in alone]
    assert sum(len(r["hits"]["hits"]) for r in together) == sum(min(50, b["doc_count"]) for b in buckets)
