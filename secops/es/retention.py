"""Retention that works on a core node: drop daily indices older than each dataset's budget.

Where the ILM API exists (X-Pack), the same budgets are also published as ILM policies so the
cluster enforces them itself; on the integ-test/core node the daily-index sweep is the mechanism.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from elasticsearch import Elasticsearch
from elasticsearch import exceptions as es_exc

from secops.config import RetentionSettings
from secops.es.templates import DATASETS

DAILY = re.compile(r"^(?P<prefix>[a-z0-9_]+)-(?P<short>[a-z0-9_]+)-(?P<day>\d{4}\.\d{2}\.\d{2})$")


@dataclass(frozen=True)
class RetentionDecision:
    index: str
    dataset: str
    day: date
    keep_days: int
    delete: bool


def days_for(cfg: RetentionSettings, short: str) -> int:
    return cfg.datasets.get(short, cfg.default_days)


def plan(es: Elasticsearch, prefix: str, cfg: RetentionSettings, today: date | None = None) -> list[RetentionDecision]:
    today = today or datetime.now(UTC).date()
    shorts = {ds.short for ds in DATASETS.values() if ds.daily}
    decisions = []
    for name in sorted(es.indices.get(index=f"{prefix}-*", expand_wildcards="open,closed")):
        m = DAILY.match(name)
        if not m or m["prefix"] != prefix or m["short"] not in shorts:
            continue
        day = datetime.strptime(m["day"], "%Y.%m.%d").date()
        keep = days_for(cfg, m["short"])
        decisions.append(RetentionDecision(name, m["short"], day, keep, day < today - timedelta(days=keep)))
    return decisions


def apply(es: Elasticsearch, prefix: str, cfg: RetentionSettings, *, dry_run: bool = False,
          today: date | None = None) -> list[RetentionDecision]:
    decisions = plan(es, prefix, cfg, today)
    doomed = [d.index for d in decisions if d.delete]
    if doomed and not dry_run:
        for start in range(0, len(doomed), 50):
            es.indices.delete(index=",".join(doomed[start:start + 50]))
    return decisions


def publish_ilm_policies(es: Elasticsearch, prefix: str, cfg: RetentionSettings) -> bool:
    """Mirror the budgets as ILM delete policies where X-Pack ILM exists; False on a core node."""
    try:
        es.ilm.get_status()
    except (es_exc.ApiError, es_exc.TransportError):
        return False
    for ds in DATASETS.values():
        if ds.daily:
            es.ilm.put_lifecycle(name=f"{prefix}-{ds.short}", policy={
                "phases": {"delete": {"min_age": f"{days_for(cfg, ds.short)}d", "actions": {"delete": {}}}}})
    return True
