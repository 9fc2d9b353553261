"""A detection pass shares searches between Sigma query rules (multi-search per ingest window) and writes
alerts in bulk, with the same alerts as evaluating the rules one by one and far fewer search requests."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from detections.alerts import AlertStore
from detections.compiler import compile_rules
from detections.incidents import incident_index
from detections.loader import BUILTIN_RULES, load_rules
from detections.scheduler import Scheduler
from tests.integration.detect_support import T0, conn, event, minutes, svcctl, write
from tests.support import TESTDATA

pytestmark = pytest.mark.integration
VOLATILE = {"created", "ingested", "at"}  # wall-clock times of writing


class SearchCounter:
    """Counts the search and multi-search requests every clone of the client sends (one shared transport)."""

    def __init__(self, es: Any) -> None:
        self.transport, self.counts = es._transport, Counter()
        self.inner = self.transport.perform_request

    def __enter__(self) -> Counter:
        def counted(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            api = next((p for p in path.split("?")[0].split("/") if p.startswith("_")), "")
            self.counts[api] += 1
            return self.inner(method, path, *args, **kwargs)
        self.transport.perform_request = counted
        return self.counts

    def __exit__(self, *exc: object) -> None:
        self.transport.perform_request = self.inner


def stable(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: stable(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [stable(v) for v in doc]
    return doc


def stored(es, prefix: str) -> dict[str, Any]:
    es.indices.refresh(index=f"{prefix}-*")
    out = {}
    for index in (AlertStore(es, prefix).index, incident_index(prefix)):
        for h in es.search(index=index, size=1000, ignore_unavailable=True)["hits"]["hits"]:
            out[h["_id"]] = stable(h["_source"])
    return out


def docs() -> list[dict]:
    at = T0
    out = [svcctl("198.18.40.1", "198.18.40.9", at + minutes(i), ingested=at) for i in range(3)]  # one group
    out += [svcctl("198.18.40.2", "198.18.40.9", at + minutes(90), ingested=at)]  # same rule, other group
    out += [conn("198.18.40.3", "198.18.40.8", 23, at, state="SF", orig_bytes=12, ingested=at),
            event("secops.dns", "198.18.40.4", "198.18.40.53", at, {"dns.question.name": "api.telegram.org",
                                                                   "dns.question.type": "A"}, ingested=at),
            event("secops.http", "198.18.40.4", "198.18.40.80", at + minutes(2),
                  {"url.original": "/pwndrop/x", "http.request.method": "GET", "user_agent.original": "rclone/v1"},
                  ingested=at)]
    # late data a day later: a second ingest window for every rule
    out += [svcctl("198.18.40.1", "198.18.40.9", at + minutes(30), ingested=at + timedelta(hours=7))]
    return out


def test_shared_pass_gives_the_alerts_of_rule_by_rule_with_fewer_searches(es, settings):
    settings.detections.max_window_seconds = 6 * 3600  # two ingest windows
    prefix = settings.elasticsearch.index_prefix
    rules = compile_rules(load_rules([BUILTIN_RULES, TESTDATA / "sigma" / "rules"]))
    query_rules = [r for r in rules if r.runnable and r.kind == "query"]
    assert len(query_rules) > 100
    write(es, settings, docs())
    now = T0 + timedelta(hours=8)

    def scheduler() -> Scheduler:
        return Scheduler(es, settings, query_rules, alerts=AlertStore(es, prefix, 3600, notifier=None))

    with SearchCounter(es) as shared_requests:
        shared = scheduler().run(now=now)
    shared_alerts = stored(es, prefix)
    es.indices.delete(index=f"{prefix}-alert*,{prefix}-incident*,{prefix}-state*", allow_no_indices=True)

    one_by_one = scheduler()
    with SearchCounter(es) as single_requests:
        single = [one_by_one.run_rule(r, now) for r in one_by_one.rules]
    single_alerts = stored(es, prefix)

    assert all(r.error is None for r in shared + single)
    assert [(r.rule_id, r.windows, r.matches, r.created, r.updated, sorted(r.alert_ids)) for r in shared] == \
        [(r.rule_id, r.windows, r.matches, r.created, r.updated, sorted(r.alert_ids)) for r in single]
    assert sum(r.created for r in shared) >= 4 and sum(r.updated for r in shared) >= 1  # late event folds in
    assert shared_alerts == single_alerts and len(shared_alerts) >= 6  # alerts and their incidents
    searches_shared = shared_requests["_search"] + shared_requests["_msearch"]
    searches_single = single_requests["_search"] + single_requests["_msearch"]
    # rule by rule: at least a checkpoint search, an exceptions search and a multi-search per rule (and window);
    # shared: one exceptions search, one oldest-event multi-search, the multi-searches of each window, and the
    # alert and incident look-ups of the rules that matched
    assert searches_single >= 3 * len(query_rules) and searches_shared * 10 < searches_single
    # one bulk write per rule and window with matches, one for all the checkpoints
    assert shared_requests["_bulk"] <= sum(r.windows for r in shared if r.matches) + 1
