"""Rules that went blind or stalled the store (issue 17, items 6, 7, 8, 17), against the real node.

6: keyword values past 4,096 characters were not indexed, so a padded nmap user agent or URL evaded the
   rules; now cut to a searchable prefix at the bulk writer, the cut listed in ``secops.truncated``.
7: Sigma regexes with escapes (``\\/etc\\/passwd``) never matched (the escape was doubled).
8: a regex whose automaton explodes is refused before it reaches the node; every search carries a
   server-side timeout and a slow rule is reported and skipped while the others run.
17: `secops rules test` handed a capture named ``--x.pcap`` to the child ingest as an option.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from detections.alerts import AlertStore
from detections.compiler import compile_rules
from detections.engine import run_rule
from detections.loader import BUILTIN_RULES, load_rules
from detections.scheduler import Scheduler
from secops.ecs import iso
from tests.integration.detect_support import T0, conn, event, write

pytestmark = pytest.mark.integration
WINDOW = (iso(T0 - timedelta(days=1)), iso(T0 + timedelta(days=1)))
NMAP_RULE = "a30e547f-a430-5bb0-b898-46c02b1647d9"
CLI = [sys.executable, "-c", "from secops.cli import main; main()"]


def builtin(rule_id: str):
    return next(r for r in compile_rules(load_rules([BUILTIN_RULES])) if r.id == rule_id)


def rules_from(tmp_path: Path, text: str):
    path = tmp_path / "rules.yml"
    path.write_text(text)
    return compile_rules(load_rules([path]))


# -- item 6 ------------------------------------------------------------------------------------------------
def test_padded_user_agent_and_url_still_match_and_the_cut_shows(es, settings):
    ua = "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)"
    docs = [
        event("secops.http", "198.18.9.1", "198.18.9.80", T0, {"user_agent.original": ua + "A" * (4100 - len(ua)),
                                                               "url.original": "/"}, ingested=T0),
        event("secops.http", "198.18.9.2", "198.18.9.80", T0, {"user_agent.original": "curl/8",
                                                               "url.original": "/nmaplowercheck" + "x" * 5000},
              ingested=T0),
        event("secops.http", "198.18.9.3", "198.18.9.80", T0, {"user_agent.original": "curl/8" + "B" * 5000,
                                                               "url.original": "/index.html"}, ingested=T0),
    ]
    write(es, settings, docs)
    matches = run_rule(es, "secops", builtin(NMAP_RULE), *WINDOW)
    assert sorted(m.group["source.ip"] for m in matches) == ["198.18.9.1", "198.18.9.2"]
    hits = {h["_source"]["source"]["ip"]: h["_source"]
            for h in es.search(index="secops-http-*", size=10)["hits"]["hits"]}
    first = hits["198.18.9.1"]
    assert len(first["user_agent"]["original"]) == 4096 and first["user_agent"]["original"].startswith(ua)
    assert first["secops"]["truncated"] == [{"field": "user_agent.original", "length": 4100,
                                             "sha256": first["secops"]["truncated"][0]["sha256"]}]
    assert hits["198.18.9.2"]["secops"]["truncated"][0]["field"] == "url.original"
    # the cut is searchable, and an analyst can aggregate on the prefix
    found = es.search(index="secops-http-*", query={"term": {"secops.truncated.field": "url.original"}})
    assert found["hits"]["total"]["value"] == 1
    agg = es.search(index="secops-http-*", size=0, aggs={"ua": {"terms": {"field": "user_agent.original"}}})
    assert len(agg["aggregations"]["ua"]["buckets"]) == 3


# -- item 7 ------------------------------------------------------------------------------------------------
REGEX_RULES = """title: Passwd Path
id: 5b0c9d8e-0000-4000-8000-000000000101
logsource: {product: secops, service: http}
detection:
  sel: {url.original|re: '\\/etc\\/passwd$'}
  condition: sel
---
title: Dotted Script With Digits
id: 5b0c9d8e-0000-4000-8000-000000000102
logsource: {product: secops, service: http}
detection:
  sel: {url.original|re: '^/cgi\\-bin/[a-z]+\\d{2}\\.pl\\?'}
  condition: sel
---
title: Backslash Path
id: 5b0c9d8e-0000-4000-8000-000000000103
logsource: {product: secops, service: http}
detection:
  sel: {url.original|re: 'C:\\\\Windows\\\\'}
  condition: sel
---
title: Hex And Class Escapes Ignoring Case
id: 5b0c9d8e-0000-4000-8000-000000000104
logsource: {product: secops, service: http}
detection:
  sel: {user_agent.original|re: '(?i)\\x41gent[\\/\\-]\\w+\\s\\(x\\)'}
  condition: sel
---
title: Operators As Literals
id: 5b0c9d8e-0000-4000-8000-000000000105
logsource: {product: secops, service: http}
detection:
  sel: {url.original|re: '<script>@#~'}
  condition: sel
"""
REGEX_CASES = [  # (url, user agent, titles that must match)
    ("/../../etc/passwd", "x", {"Passwd Path"}),
    ("/etc/passwd.bak", "x", set()),  # $ anchors: not at the end
    ("/cgi-bin/test42.pl?a=1", "x", {"Dotted Script With Digits"}),
    ("/cgi-bin/test4.pl?a=1", "x", set()),  # \d{2}
    ("/cgi-bin/test42xpl?a=1", "x", set()),  # \. is a literal dot
    ("/f?p=C:\\Windows\\system32", "x", {"Backslash Path"}),
    ("/f?p=C:/Windows/system32", "x", set()),
    ("/", "AGENT/smith (x)", {"Hex And Class Escapes Ignoring Case"}),
    ("/", "agent-Smith (x)", {"Hex And Class Escapes Ignoring Case"}),
    ("/", "agent_smith (x)", set()),  # [\/\-] is slash or dash only
    ("/q=<script>@#~", "x", {"Operators As Literals"}),
]


def test_sigma_regex_escapes_match_as_pcre_does(es, settings, tmp_path: Path):
    rules = rules_from(tmp_path, REGEX_RULES)
    assert not [r.error for r in rules if r.error]
    docs = [event("secops.http", f"198.18.10.{i}", "198.18.10.80", T0, {"url.original": url,
                                                                        "user_agent.original": ua}, ingested=T0)
            for i, (url, ua, _) in enumerate(REGEX_CASES, 1)]
    write(es, settings, docs)
    fired: dict[str, set[str]] = {f"198.18.10.{i}": set() for i in range(1, len(REGEX_CASES) + 1)}
    for rule in rules:
        for m in run_rule(es, "secops", rule, *WINDOW):
            fired[m.group["source.ip"]].add(rule.title)
    assert [fired[f"198.18.10.{i}"] for i in range(1, len(REGEX_CASES) + 1)] == [c[2] for c in REGEX_CASES]


# -- item 8 ------------------------------------------------------------------------------------------------
EXPLODING_RULES = """title: Exponential Suffix
id: 5b0c9d8e-0000-4000-8000-000000000201
logsource: {product: secops, service: http}
detection:
  sel: {url.original|re: 'a.{24}$'}
  condition: sel
---
title: Nested Counted Repeats
id: 5b0c9d8e-0000-4000-8000-000000000202
logsource: {product: secops, service: http}
detection:
  sel: {url.original|re: '((a|b){1,200}){1,200}c'}
  condition: sel
---
title: Too Long
id: 5b0c9d8e-0000-4000-8000-000000000203
logsource: {product: secops, service: http}
detection:
  sel: {url.original|re: '(ab|cd)LONG'}
  condition: sel
---
title: Fine
id: 5b0c9d8e-0000-4000-8000-000000000204
logsource: {product: secops, service: http}
detection:
  sel: {url.original|re: '^/(admin|login)/.+\\.php$'}
  condition: sel
""".replace("LONG", "x" * 1000)


def test_rules_check_refuses_regexes_over_lucenes_budget(tmp_path: Path):
    (tmp_path / "r.yml").write_text(EXPLODING_RULES)
    t0 = time.monotonic()
    proc = subprocess.run([*CLI, "rules", "check", str(tmp_path / "r.yml")], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "400"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert time.monotonic() - t0 < 60
    err = " ".join(proc.stderr.split())
    assert "too complex to determinize" in err
    assert "states before determinization" in err
    assert "index.max_regex_length" in err
    assert "1 rules compiled, 3 errors" in " ".join(proc.stdout.split())


def test_slow_rule_is_reported_and_skipped_the_others_alert(es, settings, tmp_path: Path):
    rules = rules_from(tmp_path, EXPLODING_RULES + """---
title: Any Telnet Connection
id: 5b0c9d8e-0000-4000-8000-000000000205
logsource: {product: secops, service: conn}
detection:
  sel: {dst_port: 23}
  condition: sel
level: low
---
title: Every Probe
id: 5b0c9d8e-0000-4000-8000-000000000206
logsource: {product: secops, service: conn}
detection:
  sel: {conn_state: S0}
  condition: sel
level: low
""")
    assert {r.title for r in rules if r.error} == {"Exponential Suffix", "Nested Counted Repeats", "Too Long"}
    # 9,000 probes, each its own group: their sample events (50 groups a search) cannot be read within a 1 s budget
    docs = [conn(f"198.18.{20 + i // 250}.{i % 250 + 1}", "198.18.30.1", 1000 + i % 50,
                 T0 + timedelta(seconds=i % 600), ingested=T0) for i in range(9000)]
    docs.append(conn("198.18.31.1", "198.18.30.2", 23, T0, state="SF", orig_bytes=5, ingested=T0))
    write(es, settings, docs)
    store = AlertStore(es, "secops", 3600, notifier=None)
    slow_first = sorted((r for r in rules if r.runnable), key=lambda r: r.title != "Every Probe")
    t0 = time.monotonic()
    sched = Scheduler(es, settings, slow_first, alerts=store, rule_timeout=1.0)
    runs = {r.rule_id: r for r in sched.run(now=T0 + timedelta(days=1))}
    elapsed = time.monotonic() - t0
    slow, telnet = runs["5b0c9d8e-0000-4000-8000-000000000206"], runs["5b0c9d8e-0000-4000-8000-000000000205"]
    assert slow.timed_out and "slow rule skipped" in slow.error and "1 s budget" in slow.error
    assert telnet.error is None and telnet.created == 1
    assert elapsed < 20
    # the slow rule keeps no checkpoint (it is evaluated again next pass), the other one does
    assert sched.checkpoint(slow.rule_id) is None and sched.checkpoint(telnet.rule_id) is not None


# -- item 17 -----------------------------------------------------------------------------------------------
def test_rules_test_takes_a_capture_named_like_an_option(config_file, testdata, tmp_path: Path):
    shutil.copy(testdata / "attacks" / "bruteforce" / "ftp-bruteforce.pcap", tmp_path / "--evil.pcap")
    env = {**os.environ, "SECOPS_CONFIG": str(config_file)}
    proc = subprocess.run([*CLI, "rules", "test", "FTP Brute Force", "--", "--evil.pcap"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "MATCH" in proc.stdout and "192.168.56.1" in proc.stdout


def test_alert_grouped_by_a_padded_value_is_updated_not_duplicated(es, settings, tmp_path: Path):
    """The same class in alerts: a group key past the keyword limit is stored as its digest, so a second
    match updates the alert instead of missing it."""
    (rule,) = rules_from(tmp_path, """title: Admin Path
id: 5b0c9d8e-0000-4000-8000-000000000301
secops_group_by: [url.original]
logsource: {product: secops, service: http}
detection:
  sel: {url.original|startswith: /admin}
  condition: sel
level: low
""")
    url = "/admin/" + "p" * 5000
    store = AlertStore(es, "secops", 3600, notifier=None)
    for minute in (0, 10):
        write(es, settings, [event("secops.http", "198.18.11.1", "198.18.11.80", T0 + timedelta(minutes=minute),
                                   {"url.original": url}, ingested=T0 + timedelta(minutes=minute))])
        for m in run_rule(es, "secops", rule, iso(T0 + timedelta(minutes=minute)),
                          iso(T0 + timedelta(minutes=minute, seconds=1))):
            store.record(rule, m)
    (alert,) = store.list()
    assert alert["secops"]["alert"]["group_key"].startswith("sha256:") and alert["secops"]["alert"]["count"] == 2
