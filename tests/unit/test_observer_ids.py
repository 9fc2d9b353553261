"""Two sensors that see the same traffic (one flow crossing two sites' span ports) each report it: every
document id includes ``observer.name``, so neither overwrites the other; the same sensor replaying the same
capture still overwrites itself (ids stay deterministic)."""

from __future__ import annotations

from collections import Counter

from collectors.ingest import Pipeline
from tests.support import TESTDATA

TRACE = TESTDATA / "zeek" / "traces" / "http" / "pipelined-requests.pcap"


def run(observer: str | None, *, deep: bool = True) -> list[dict]:
    docs: list[dict] = []
    pipe = Pipeline(docs.append, observer=observer, deep=deep)
    pipe.process_file(TRACE)
    pipe.finish()
    return docs


def test_every_document_of_two_sensors_has_its_own_id_and_observer():
    a, b = run("site-a"), run("site-b")
    kinds = Counter(d["event"]["dataset"] for d in a)
    assert kinds["secops.conn"] >= 1 and kinds["secops.http"] >= 1, kinds
    assert Counter(d["event"]["dataset"] for d in b) == kinds
    assert not {d["_id"] for d in a} & {d["_id"] for d in b}, "one flow seen by two sensors is two documents"
    assert {d["observer"]["name"] for d in a} == {"site-a"} and {d["observer"]["name"] for d in b} == {"site-b"}
    assert len({d["_id"] for d in a}) == len(a), "ids stay unique within one sensor"


def test_the_same_sensor_replaying_a_capture_produces_the_same_ids():
    assert [d["_id"] for d in run("site-a")] == [d["_id"] for d in run("site-a")]
    assert [d["_id"] for d in run(None, deep=False)] == [d["_id"] for d in run(None, deep=False)]
    unnamed = {d["_id"] for d in run(None, deep=False)}
    assert not unnamed & {d["_id"] for d in run("site-a", deep=False)}
