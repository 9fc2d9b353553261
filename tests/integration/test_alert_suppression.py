"""Per-rule alert suppression (x_secops_suppression) on the real node: N matching events inside the window make
one alert with count N, an event after the window opens a new alert, other field values alert separately, a
re-evaluated ingest window counts nothing twice, a closed alert stops suppression, and the console's alert page
shows the suppression."""

from __future__ import annotations

from pathlib import Path

import pytest

from detections.alerts import AlertStore
from detections.compiler import compile_rules
from detections.loader import load_rules
from detections.scheduler import Scheduler
from tests.integration.detect_support import T0, conn, minutes, write
from tests.support.console import add_users, console_app, http_client, sign_in

pytestmark = pytest.mark.integration
RULE_ID = "5b0c9d8e-0000-4000-8000-0000000005e1"
RULE = f"""title: Telnet Attempt
id: {RULE_ID}
logsource: {{product: secops, service: conn}}
detection: {{sel: {{dst_port: 23}}, condition: sel}}
level: high
x_secops_suppression:
    fields: [source.ip]
    window: 10m
"""


def setup(es, settings, tmp_path: Path) -> tuple[Scheduler, AlertStore]:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "telnet.yml").write_text(RULE)
    (rule,) = compile_rules(load_rules([tmp_path / "rules"]))
    assert rule.suppression is not None and rule.group_by == ["source.ip"]
    store = AlertStore(es, settings.elasticsearch.index_prefix, settings.detections.suppression_seconds,
                       notifier=None)
    settings.detections.lookback_seconds = 600  # every run re-reads the previous run's ingest window
    return Scheduler(es, settings, [rule], alerts=store), store


def by_source(store: AlertStore) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for a in sorted(store.list(rule=RULE_ID), key=lambda a: a["secops"]["alert"]["first_time"]):
        out.setdefault(a["source"]["ip"], []).append(a["secops"]["alert"])
    return out


def telnet(src: str, at_minutes: float, ingested_minutes: float, dst: str = "198.18.40.9") -> dict:
    return conn(src, dst, 23, T0 + minutes(at_minutes), state="SF", ingested=T0 + minutes(ingested_minutes),
                source={"ip": src, "port": 41000 + int(at_minutes * 60) % 20000})


def test_suppression_window_counts_and_splits(es, settings, tmp_path):
    sched, store = setup(es, settings, tmp_path)
    a, b, c = "198.18.40.1", "198.18.40.2", "198.18.40.3"
    # run 1: three events from A inside its window, two from B
    write(es, settings, [telnet(a, 0, 0), telnet(a, 1, 1), telnet(a, 2, 2), telnet(b, 1, 1), telnet(b, 3, 3)])
    [run] = sched.run(now=T0 + minutes(4))
    assert run.error is None and run.created == 2
    # run 2 (its look-back re-reads run 1's window): two more from A, still inside the window
    write(es, settings, [telnet(a, 5, 5), telnet(a, 9.5, 6)])
    [run] = sched.run(now=T0 + minutes(7))
    assert run.error is None and run.created == 0 and run.updated >= 1
    got = by_source(store)
    assert [x["count"] for x in got[a]] == [5] and [x["count"] for x in got[b]] == [2]
    sup = got[a][0]["suppression"]
    assert sup["terms"] == [{"field": "source.ip", "value": a}] and sup["docs_count"] == 4
    assert sup["window_seconds"] == 600 and sup["start"].startswith("2026-11-20T12:00:00")
    assert sup["end"].startswith("2026-11-20T12:10:00")
    assert got[a][0]["first_time"].startswith("2026-11-20T12:00:00")
    assert got[a][0]["last_time"].startswith("2026-11-20T12:09:30")
    assert "suppressed" in [h["action"] for h in got[a][0]["history"]]
    # run 3: A after its window -> a new alert; C's three events, ingested at once, span two windows
    write(es, settings, [telnet(a, 12, 12), telnet(c, 0, 12), telnet(c, 5, 12), telnet(c, 11, 12)])
    [run] = sched.run(now=T0 + minutes(13))
    assert run.error is None and run.created == 3
    got = by_source(store)
    assert [x["count"] for x in got[a]] == [5, 1]
    assert [x["count"] for x in got[c]] == [2, 1]
    assert got[c][1]["suppression"]["start"].startswith("2026-11-20T12:11:00")
    # evaluating everything again (checkpoints reset) changes no count
    sched.reset()
    [run] = sched.run(now=T0 + minutes(13))
    assert run.error is None and run.created == 0
    assert {k: [x["count"] for x in v] for k, v in by_source(store).items()} == {a: [5, 1], b: [2], c: [2, 1]}
    # a closed alert ends its suppression: the next event inside its window opens a new alert
    store.set_status(got[a][1]["id"], "closed", "analyst1")
    write(es, settings, [telnet(a, 14, 14)])
    [run] = sched.run(now=T0 + minutes(15))
    assert run.error is None and run.created == 1
    assert [(x["status"], x["count"]) for x in by_source(store)[a]] == [("open", 5), ("closed", 1), ("open", 1)]


def test_console_alert_page_shows_suppression(es, settings, tmp_path):
    sched, _ = setup(es, settings, tmp_path)
    write(es, settings, [telnet("198.18.41.1", m, m) for m in (0, 1, 2)])
    [run] = sched.run(now=T0 + minutes(3))
    [alert_id] = run.alert_ids
    client = http_client(console_app(settings, es))
    sign_in(client, add_users(es, settings.elasticsearch.index_prefix)["viewer"])
    page = client.get(f"/alerts/{alert_id}").text
    assert 'id="alert-count">3<' in page and 'id="alert-suppressed-count">2<' in page
    assert "source.ip=198.18.41.1" in page and "2026-11-20T12:10:00" in page
    # two more events in the window, evaluated in a later run: the same alert, its reason recounted
    write(es, settings, [telnet("198.18.41.1", m, m) for m in (4, 5)])
    [run] = sched.run(now=T0 + minutes(6))
    assert run.alert_ids == [alert_id] and run.created == 0
    page = client.get(f"/alerts/{alert_id}").text
    assert 'id="alert-count">5<' in page and "5 events matched" in page


CORRELATION = """title: Telnet Attempt
id: 5b0c9d8e-0000-4000-8000-0000000005e2
name: telnet_attempt
logsource: {product: secops, service: conn}
detection: {sel: {dst_port: 23}, condition: sel}
---
title: Repeated Telnet Attempts
id: 5b0c9d8e-0000-4000-8000-0000000005e3
correlation: {type: event_count, rules: [telnet_attempt], group-by: [id.orig_h], timespan: 5m, condition: {gte: 3}}
level: high
x_secops_suppression: {fields: [source.ip], window: 30m}
"""


def test_correlation_rule_bursts_fold_into_one_alert(es, settings, tmp_path):
    """Two bursts of the same host, each a correlation match, inside one 30-minute window: one alert counting the
    member events of both; a burst of another host: its own alert."""
    (tmp_path / "corr.yml").write_text(CORRELATION)
    rules = [r for r in compile_rules(load_rules([tmp_path / "corr.yml"])) if r.runnable]
    store = AlertStore(es, settings.elasticsearch.index_prefix, notifier=None)
    write(es, settings, [telnet("198.18.42.1", m, 1) for m in (0, 1, 2, 10, 11, 12)] +
          [telnet("198.18.42.2", m, 1) for m in (0, 1, 2)] + [telnet("198.18.42.3", m, 1) for m in (0, 20)])
    [run] = Scheduler(es, settings, rules, alerts=store).run(now=T0 + minutes(14))
    assert run.error is None and run.matches == 3 and run.created == 2
    got = {a["source"]["ip"]: a["secops"]["alert"] for a in store.list(rule="5b0c9d8e-0000-4000-8000-0000000005e3")}
    assert {ip: a["count"] for ip, a in got.items()} == {"198.18.42.1": 6, "198.18.42.2": 3}
    assert got["198.18.42.1"]["suppression"]["end"].startswith("2026-11-20T12:30:00")
