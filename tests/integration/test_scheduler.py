"""Scheduler: late data within the look-back, backfill after downtime, idempotent reruns and suppression."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from detections.alerts import AlertStore
from detections.compiler import CompiledRule, compile_rules
from detections.engine import Match
from detections.loader import BUILTIN_RULES, load_rules
from detections.scheduler import Scheduler
from secops.ecs import iso
from tests.integration.detect_support import T0, minutes, svcctl, write

pytestmark = pytest.mark.integration
SVC_RULE = "24e688c5-144e-5c29-9d44-a52e73cd78c6"


def scheduler(es, settings, rule_ids=(SVC_RULE,)) -> Scheduler:
    rules = [r for r in compile_rules(load_rules([BUILTIN_RULES])) if r.id in rule_ids]
    assert len(rules) == len(rule_ids)
    store = AlertStore(es, settings.elasticsearch.index_prefix, settings.detections.suppression_seconds,
                       notifier=None)
    return Scheduler(es, settings, rules, alerts=store)


def alerts(es, settings) -> list[dict]:
    return AlertStore(es, settings.elasticsearch.index_prefix, notifier=None).list(size=100)


def test_late_data_within_lookback_is_caught(es, settings):
    settings.detections.lookback_seconds = 300
    s = scheduler(es, settings)
    write(es, settings, [svcctl("198.18.0.1", "198.18.0.9", T0 - minutes(2), ingested=T0 - minutes(2))])
    [run] = s.run(now=T0)
    assert run.created == 1 and run.error is None
    # arrived late: stamped 2 and 20 minutes before the checkpoint, visible only after the run
    write(es, settings, [svcctl("198.18.0.2", "198.18.0.9", T0 - minutes(3), ingested=T0 - minutes(2)),
                         svcctl("198.18.0.3", "198.18.0.9", T0 - minutes(30), ingested=T0 - minutes(20))])
    [run] = s.run(now=T0 + minutes(1))
    assert run.created == 1
    sources = {a["source"]["ip"] for a in alerts(es, settings)}
    assert sources == {"198.18.0.1", "198.18.0.2"}  # 20 minutes late is beyond the 5-minute look-back


def test_stopped_scheduler_backfills_on_restart(es, settings):
    settings.detections.max_window_seconds = 6 * 3600
    s = scheduler(es, settings)
    write(es, settings, [svcctl("198.18.1.1", "198.18.1.9", T0, ingested=T0)])
    assert s.run(now=T0 + minutes(1))[0].created == 1
    # scheduler down for 30 hours while data keeps arriving
    later = [svcctl(f"198.18.1.{i}", "198.18.1.9", T0 + timedelta(hours=h), ingested=T0 + timedelta(hours=h))
             for i, h in ((2, 2), (3, 11), (4, 29))]
    write(es, settings, later)
    [run] = s.run(now=T0 + timedelta(hours=30))
    assert run.windows == 6  # [T0+1m-5m look-back, T0+30h): 30h04m in 6-hour windows
    assert run.created == 3
    state = s.checkpoint(SVC_RULE)
    assert state["checkpoint"].startswith("2026-11-21T18:00:00")


def test_same_window_twice_gives_same_alerts_and_suppression_updates_one(es, settings):
    s = scheduler(es, settings)
    write(es, settings, [svcctl("198.18.2.1", "198.18.2.9", T0 + minutes(i), ingested=T0 + minutes(5))
                         for i in range(3)])
    first = s.run(now=T0 + minutes(6))[0]
    before = alerts(es, settings)
    s.reset()
    second = s.run(now=T0 + minutes(6))[0]
    after = alerts(es, settings)
    assert first.created == 1 and second.created == 0 and second.updated == 0
    assert first.alert_ids == second.alert_ids
    assert [a["_id"] for a in before] == [a["_id"] for a in after]
    assert after[0]["secops"]["alert"]["count"] == 3
    # the same group matches again 20 minutes later (suppression 1 h): the alert is updated, not duplicated
    write(es, settings, [svcctl("198.18.2.1", "198.18.2.9", T0 + minutes(25), ingested=T0 + minutes(26))])
    third = s.run(now=T0 + minutes(27))[0]
    assert third.created == 0 and third.updated == 1
    [alert] = alerts(es, settings)
    assert alert["secops"]["alert"]["count"] == 4
    assert alert["secops"]["alert"]["last_time"].startswith("2026-11-20T12:25:00")
    assert [h["action"] for h in alert["secops"]["alert"]["history"]] == ["created", "updated"]
    # beyond the suppression window (and the look-back of a later run): a new alert
    assert s.run(now=T0 + minutes(60))[0].created == 0
    write(es, settings, [svcctl("198.18.2.1", "198.18.2.9", T0 + minutes(150), ingested=T0 + minutes(151))])
    assert s.run(now=T0 + minutes(152))[0].created == 1
    assert len(alerts(es, settings)) == 2


def test_rules_searched_at_once_recorded_in_order(es, settings):
    """A pass evaluates rules beside each other (a fast rule is done while a slow one before it still searches)
    but records them in the rules' order, and a rule that reads other rules' alerts (beaconing reads brute-force
    alerts) is evaluated only once the rules before it that it reads are recorded."""
    write(es, settings, [svcctl("198.18.2.1", "198.18.2.9", T0, ingested=T0)])
    store = AlertStore(es, settings.elasticsearch.index_prefix, notifier=None)
    slow, fast, reader = (CompiledRule(id=f"5b0c9d8e-0000-4000-8000-00000000040{i}", title=title, kind="analytic",
                                       dataset="secops.smb", **extra)
                          for i, (title, extra) in enumerate([("Slow Brute Force", {"techniques": ["T1110.001"]}),
                                                              ("Fast", {}),
                                                              ("Reader", {"after_techniques": ("T1110",)})]))
    evaluated: list[str] = []
    read: list[int] = []

    def runner(client, prefix, rule, start, end):
        if rule.id == slow.id:
            time.sleep(1.0)
        if rule.id == reader.id:
            read.append(len(store.list(rule=slow.id, size=10)))
        evaluated.append(rule.title)
        return [Match(group={"source.ip": "198.18.2.1"}, first_time=iso(T0), last_time=iso(T0), count=1)]
    runs = Scheduler(es, settings, [slow, fast, reader], alerts=store, runner=runner).run(now=T0 + minutes(1))
    assert [r.rule_id for r in runs] == [slow.id, fast.id, reader.id]
    assert all(r.created == 1 and r.error is None and r.windows == 1 for r in runs)
    assert evaluated == ["Fast", "Slow Brute Force", "Reader"] and read == [1]
