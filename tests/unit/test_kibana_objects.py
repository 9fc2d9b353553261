"""Kibana saved objects: structural validation of the shipped NDJSON."""

from __future__ import annotations

import json

from detections.kibana import DASHBOARDS, NDJSON, build_objects, dump_ndjson, load_ndjson, validate
from secops.es.templates import DATASETS, index_pattern


def test_shipped_ndjson_is_current_and_valid():
    objects = load_ndjson(NDJSON)
    assert NDJSON.read_text() == dump_ndjson(build_objects("secops")), "regenerate: secops kibana export"
    assert validate(objects) == []


def test_ids_unique_and_every_index_has_a_data_view():
    objects = load_ndjson(NDJSON)
    keys = [(o["type"], o["id"]) for o in objects]
    assert len(keys) == len(set(keys))
    titles = {o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}
    assert titles == {index_pattern("secops", d) for d in DATASETS}
    dashboards = {o["attributes"]["title"] for o in objects if o["type"] == "dashboard"}
    assert dashboards == {f"secops: {t}" for t in DASHBOARDS}
    for o in objects:
        if o["type"] == "dashboard":
            panels = json.loads(o["attributes"]["panelsJSON"])
            assert {p["panelRefName"] for p in panels} == {r["name"] for r in o["references"]}


def test_validator_catches_broken_objects():
    objects = build_objects("secops")
    objects.append(dict(objects[0]))  # duplicate id
    search = next(o for o in objects if o["type"] == "search")
    search["references"][0]["id"] = "missing-view"
    objects.append({"type": "index-pattern", "id": "x", "attributes": {"title": "logs-*"}, "references": []})
    problems = validate(objects)
    assert any("duplicate id" in p for p in problems)
    assert any("does not resolve" in p for p in problems)
    assert any("matches no secops index template" in p for p in problems)
