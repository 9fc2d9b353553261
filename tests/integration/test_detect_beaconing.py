"""Beaconing scored as RITA scores it (issue 12), on the real node: a steady one-minute beacon is high, the same
series to a configured infrastructure network is not reported, and a short regular burst inside an hour of
traffic (a near miss) stays quiet; each alert carries the severity its score reached."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from detections.alerts import new_alert
from detections.analytics import analytic_rules
from detections.engine import run_rule
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
