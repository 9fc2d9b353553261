"""Kibana saved objects: structural validation of the shipped NDJSON, Lens columns against the index templates,
and the shapes against objects Kibana itself exported."""

from __future__ import annotations

import json
import re

import pytest

from detections import kibana_lens as lens
from detections.kibana import (
    CORE_MIGRATION_VERSION,
    DASHBOARDS,
    LANGUAGES,
    NDJSON,
    TYPE_MIGRATION_VERSIONS,
    build_objects,
    dump_ndjson,
    load_ndjson,
    ndjson_path,
    validate,
)
from secops import i18n
from secops.es.templates import DATASETS, index_pattern


def dashboards() -> list[dict]:
    return [o for o in load_ndjson(NDJSON) if o["type"] == "dashboard"]


def lens_panels() -> list[tuple[str, dict]]:
    return [(d["attributes"]["title"], p) for d in dashboards() for p in json.loads(d["attributes"]["panelsJSON"])
            if p["type"] == "lens"]


@pytest.mark.parametrize("lang", list(LANGUAGES))
def test_shipped_ndjson_is_current_and_valid(lang):
    path = ndjson_path(lang)
    objects = load_ndjson(path)
    assert path.read_text(encoding="utf-8") == dump_ndjson(build_objects("secops", lang)), \
        f"regenerate: secops kibana build --lang {lang} {path}"
    assert validate(objects) == []


def test_ids_unique_every_index_has_a_data_view_every_panel_resolves():
    objects = load_ndjson(NDJSON)
    keys = [(o["type"], o["id"]) for o in objects]
    assert len(keys) == len(set(keys))
    titles = {o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}
    assert titles == {index_pattern("secops", d) for d in DATASETS}
    assert {d["attributes"]["title"] for d in dashboards()} == {f"secops: {b.title}" for b in DASHBOARDS}
    by_key = {(o["type"], o["id"]) for o in objects}
    for d in dashboards():
        panels = json.loads(d["attributes"]["panelsJSON"])
        refs = {r["name"]: r for r in d["references"]}
        assert all((r["type"], r["id"]) in by_key for r in d["references"])
        assert any(p["type"] == "lens" for p in panels), f"{d['attributes']['title']} has no chart"
        for p in panels:
            if p["type"] == "search":
                assert f"{p['panelIndex']}:{p['panelRefName']}" in refs
            else:
                for ref in p["embeddableConfig"]["attributes"]["references"]:
                    assert refs[f"{p['panelIndex']}:{ref['name']}"]["id"] == ref["id"]
        grids = [p["gridData"] for p in panels]
        cells = {(x, y) for g in grids for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert len(cells) == sum(g["w"] * g["h"] for g in grids), "panels overlap"
        assert all(g["x"] + g["w"] <= 48 for g in grids)


def test_soc_overview_has_the_charts_analysts_expect():
    soc = next(b for b in DASHBOARDS if b.title == "SOC overview")
    fields = {(c.dataset, col.operation, col.source_field) for c in soc.charts for col in c.columns()}
    for want in [("secops.alert", "terms", "rule.severity"), ("secops.alert", "terms", "rule.name"),
                 ("secops.conn", "terms", "source.ip"), ("secops.conn", "terms", "destination.ip"),
                 ("secops.conn", "terms", "network.protocol"), ("secops.conn", "terms", "secops.conn.state"),
                 ("secops.conn", "sum", "source.bytes"), ("secops.sensor", "max", "secops.sensor.packets_captured"),
                 ("secops.sensor", "max", "secops.sensor.packets_dropped"),
                 ("secops.sensor", "max", "secops.sensor.lag_seconds"), ("secops.sensor", "terms", "observer.name")]:
        assert want in fields
    assert ("secops.sensor", "max", "secops.sensor.packets_processed") not in fields  # lag is its own measure now


def test_tls_dashboard_charts_self_signed_and_expired_certificates():
    tls = next(b for b in DASHBOARDS if b.title == "TLS")
    fields = {(col.operation, col.source_field) for c in tls.charts for col in c.columns()}
    assert {("terms", "secops.tls.self_signed"), ("terms", "secops.tls.cert_expired"),
            ("max", "tls.server.not_after")} <= fields
    assert any(cond.field == "secops.tls.self_signed" for c in tls.charts for cond in c.where)


@pytest.mark.parametrize(("board", "chart"), [(b.title, c) for b in DASHBOARDS for c in b.charts],
                         ids=lambda v: v if isinstance(v, str) else v.title)
def test_every_lens_column_and_filter_names_a_template_field_of_the_right_type(board, chart):
    types = lens.field_types(chart.dataset)
    for col in chart.columns():
        assert lens.field_problem(col.operation, col.source_field, chart.dataset) == ""
        if col.operation == "date_histogram":
            assert types[col.source_field] == "date"
        elif col.operation == "terms":
            assert types[col.source_field] in {"keyword", "ip", "long", "boolean"}
        elif col.operation == "sum":
            assert types[col.source_field] in {"long", "float"}
    for cond in chart.where:
        assert cond.field in types, f"{board}/{chart.title}: filter on unmapped {cond.field}"
        if cond.op:
            assert types[cond.field] in {"long", "float", "date"}


def test_validator_catches_broken_objects_and_wrong_field_types():
    objects = build_objects("secops")
    objects.append(dict(objects[0]))  # duplicate id
    search = next(o for o in objects if o["type"] == "search")
    search["references"][0]["id"] = "missing-view"
    objects.append({"type": "index-pattern", "id": "x", "attributes": {"title": "logs-*"}, "references": []})
    board = next(o for o in objects if o["type"] == "dashboard")
    panels = json.loads(board["attributes"]["panelsJSON"])
    layer = next(iter(panels[0]["embeddableConfig"]["attributes"]["state"]["datasourceStates"]["formBased"]
                      ["layers"].values()))
    cols = list(layer["columns"].values())
    cols[0]["sourceField"] = "message"  # a text field: neither a date histogram nor terms can use it
    panels[-1]["panelRefName"] = "panel_gone"
    board["attributes"]["panelsJSON"] = json.dumps(panels)
    problems = validate(objects)
    assert any("duplicate id" in p for p in problems)
    assert any("does not resolve" in p for p in problems)
    assert any("matches no secops index template" in p for p in problems)
    assert any("'message': it is text" in p for p in problems)
    assert any("has no reference" in p for p in problems)
    assert "it is keyword, needs float or long" in lens.field_problem("sum", "rule.name", "secops.alert")
    assert "it is keyword, needs date" in lens.field_problem("date_histogram", "rule.name", "secops.alert")
    assert "no such field" in lens.field_problem("terms", "rule.nope", "secops.alert")
    assert lens.field_problem("terms", "source.ip", "secops.conn") == ""


# -- shapes against Kibana's own exports --------------------------------------------------------------------
# Key sets of objects Kibana exported, from elastic/kibana's functional-test archives (kbn_archiver):
# x-pack/test/functional/fixtures/kbn_archiver/dashboard/with_by_value_visualizations.json (Kibana 8.6 export: a
# dashboard with a by-value lnsXY panel) and a 9.x by-value lnsPie panel export (shape, layers[...]).
# Only key names are kept here (no fixture is copied).
FIXTURE_KEYS = {
    "object": {"attributes", "coreMigrationVersion", "id", "migrationVersion", "references", "type", "updated_at",
               "version"},
    "dashboard.attributes": {"description", "kibanaSavedObjectMeta", "optionsJSON", "panelsJSON", "timeRestore",
                             "title", "version"},
    "optionsJSON": {"useMargins", "syncColors", "syncTooltips", "hidePanelTitles"},
    "panel": {"version", "type", "gridData", "panelIndex", "embeddableConfig", "title"},
    "gridData": {"x", "y", "w", "h", "i"},
    "embeddableConfig": {"attributes", "enhancements", "hidePanelTitles"},
    "lens.attributes": {"title", "visualizationType", "type", "references", "state"},
    "state": {"visualization", "query", "filters", "datasourceStates", "internalReferences", "adHocDataViews"},
    "datasourceStates": {"formBased", "textBased"},
    "layer": {"columns", "columnOrder", "incompleteColumns"},
    "column.date_histogram": {"label", "dataType", "operationType", "sourceField", "isBucketed", "scale", "params"},
    "column.date_histogram.params": {"interval", "includeEmptyRows", "dropPartials"},
    "column.count": {"label", "customLabel", "dataType", "operationType", "isBucketed", "scale", "sourceField",
                     "params"},
    "lnsXY": {"legend", "valueLabels", "fittingFunction", "axisTitlesVisibilitySettings",
              "tickLabelsVisibilitySettings", "labelsOrientation", "gridlinesVisibilitySettings",
              "preferredSeriesType", "layers"},
    "lnsXY.layer": {"layerId", "accessors", "position", "seriesType", "showGridlines", "layerType", "xAccessor"},
    "lnsPie": {"shape", "layers"},
    "lnsPie.layer": {"layerId", "primaryGroups", "metrics", "numberDisplay", "categoryDisplay", "legendDisplay",
                     "nestedLegend", "layerType", "colorMapping"},
}

# (part, key) -> why ours differs. "+" = we have a key the export lacks, "-" = the export has a key we leave out.
DIFFERENCES = {
    ("object", "-migrationVersion"): "8.8+ replaced it with typeMigrationVersion; 9.2 exports carry that",
    ("object", "+typeMigrationVersion"): "the 8.8+ form of migrationVersion (dashboard 10.3.0 = model version 3)",
    ("object", "-updated_at"): "set by Kibana when it saves the object; import assigns it",
    ("object", "-version"): "Elasticsearch's seq_no/primary_term of the stored object; import assigns it",
    ("optionsJSON", "+syncCursor"): "dashboard option added after 8.6 (cursor synced across time charts)",
    ("panel", "-version"): "9.x panels no longer carry the Kibana version that saved them",
    ("panel", "-title"): "panel titles live in embeddableConfig.title (the embeddable's serialized state)",
    ("embeddableConfig", "+title"): "the panel title (see panel -title)",
    ("embeddableConfig", "-hidePanelTitles"): "optional; absent means titles are shown",
    ("lnsXY.layer", "+splitAccessor"): "the breakdown column of a split series (absent in the fixture's unsplit "
                                       "chart)",
    ("lnsPie.layer", "-colorMapping"): "optional; absent means Kibana's default palette",
}


def _our_keys() -> dict[str, set[str]]:
    d = dashboards()[0]
    panel = next(p for _, p in lens_panels() if p["embeddableConfig"]["attributes"]["visualizationType"] == "lnsXY"
                 and "splitAccessor" in p["embeddableConfig"]["attributes"]["state"]["visualization"]["layers"][0])
    pie = next(p for _, p in lens_panels() if p["embeddableConfig"]["attributes"]["visualizationType"] == "lnsPie")
    attrs = panel["embeddableConfig"]["attributes"]
    layer = next(iter(attrs["state"]["datasourceStates"]["formBased"]["layers"].values()))
    cols = {c["operationType"]: c for c in layer["columns"].values()}
    pie_vis = pie["embeddableConfig"]["attributes"]["state"]["visualization"]
    return {
        "object": set(d), "dashboard.attributes": set(d["attributes"]),
        "optionsJSON": set(json.loads(d["attributes"]["optionsJSON"])), "panel": set(panel),
        "gridData": set(panel["gridData"]), "embeddableConfig": set(panel["embeddableConfig"]),
        "lens.attributes": set(attrs), "state": set(attrs["state"]),
        "datasourceStates": set(attrs["state"]["datasourceStates"]), "layer": set(layer),
        "column.date_histogram": set(cols["date_histogram"]),
        "column.date_histogram.params": set(cols["date_histogram"]["params"]), "column.count": set(cols["count"]),
        "lnsXY": set(attrs["state"]["visualization"]), "lnsXY.layer": set(attrs["state"]["visualization"]["layers"][0]),
        "lnsPie": set(pie_vis), "lnsPie.layer": set(pie_vis["layers"][0]),
    }


def test_shapes_match_kibana_exports_key_by_key_with_listed_differences():
    ours = _our_keys()
    found = {}
    for part, theirs in FIXTURE_KEYS.items():
        found |= {(part, f"+{k}"): "" for k in ours[part] - theirs}
        found |= {(part, f"-{k}"): "" for k in theirs - ours[part]}
    assert set(found) == set(DIFFERENCES), (
        f"unlisted differences: {sorted(set(found) - set(DIFFERENCES))}; "
        f"listed but gone: {sorted(set(DIFFERENCES) - set(found))}")


def test_reference_names_follow_kibanas_panel_prefix_form():
    for d in dashboards():
        panels = {p["panelIndex"]: p for p in json.loads(d["attributes"]["panelsJSON"])}
        for ref in d["references"]:
            pid, _, inner = ref["name"].partition(":")
            assert pid in panels
            assert inner.startswith(("indexpattern-datasource-layer-", "panel_"))



# The migration versions Kibana 9.2 (docker-compose.yml) gives these types; derived in detections/kibana.py from
# elastic/kibana: dashboard_saved_object.ts (model versions 1-3 in 9.2; 4, accessControl, from 9.3),
# saved_search/server/saved_objects/search.ts + schema_legacy.ts (our flat searches are model version 5; 9.2
# backfills the tabs of version 6 on import), data_views/server/saved_objects/data_views.ts (no model versions;
# convertToMultiNamespaceTypeVersion 8.0.0), document_migrator/migrations/index.ts (core transforms end at 8.8.0).
KIBANA_9_2 = {"index-pattern": "8.0.0", "search": "10.5.0", "dashboard": "10.3.0"}


@pytest.mark.parametrize("lang", list(LANGUAGES))
def test_every_object_carries_the_migration_versions_of_kibana_9_2(lang):
    assert TYPE_MIGRATION_VERSIONS == KIBANA_9_2 and CORE_MIGRATION_VERSION == "8.8.0"
    objects = load_ndjson(ndjson_path(lang))
    assert {o["type"] for o in objects} == set(KIBANA_9_2)
    for o in objects:
        assert o["typeMigrationVersion"] == KIBANA_9_2[o["type"]], o["id"]
        assert o["coreMigrationVersion"] == "8.8.0"
        assert "migrationVersion" not in o  # the pre-8.8 form: Kibana would run every legacy migration on it
    compose = (NDJSON.parents[2] / "docker-compose.yml").read_text()
    assert "kibana:${STACK_VERSION:-9.2.0}" in compose  # the versions above are for this Kibana


# -- the two language sets ------------------------------------------------------------------------------------
def _texts(objects: list[dict]) -> list[tuple[str, str]]:
    """(where, text) of every title, description, data-view name and column label an analyst reads."""
    out: list[tuple[str, str]] = []
    for o in objects:
        a = o["attributes"]
        if o["type"] == "index-pattern":
            out.append((f"data view {o['id']} name", a["name"]))
            continue
        out.append((f"{o['type']} {o['id']} title", a["title"].removeprefix("secops: ")))
        if o["type"] != "dashboard":
            continue
        out.append((f"dashboard {o['id']} description", a["description"]))
        for p in json.loads(a["panelsJSON"]):
            if p["type"] != "lens":
                continue
            attrs = p["embeddableConfig"]["attributes"]
            out += [(f"panel {p['panelIndex']} title", p["embeddableConfig"]["title"]),
                    (f"panel {p['panelIndex']} chart title", attrs["title"])]
            for layer in attrs["state"]["datasourceStates"]["formBased"]["layers"].values():
                out += [(f"panel {p['panelIndex']} column {cid}", col["label"]) for cid, col in layer["columns"].items()
                        if col["label"] != col["sourceField"]]  # a field name (the time axis) is not translated
    return out


def test_chinese_set_takes_every_text_from_the_zh_catalogue_and_keeps_no_english():
    catalog = i18n.KIBANA.read("zh_CN")
    english = {m.id for m in catalog if m.id}
    chinese = {m.string for m in catalog if m.id}
    patterns = [re.compile("^" + re.sub(r"%\\\((\w+)\\\)s", ".+", re.escape(m.string)) + "$")
                for m in catalog if m.id and "%(" in m.id]
    texts = _texts(build_objects("secops", "zh"))
    assert len(texts) > 150
    for where, text in texts:
        assert text not in english, f"{where}: English left in the zh set: {text!r}"
        assert text in chinese or any(p.match(text) for p in patterns), f"{where}: {text!r} not from the catalogue"
        assert re.search(r"[\u4e00-\u9fff]", text), f"{where}: no Chinese in {text!r}"


def test_english_set_is_the_catalogues_message_ids_and_its_ids_are_unchanged():
    catalog = i18n.KIBANA.read("zh_CN")
    english = {m.id for m in catalog if m.id}
    patterns = [re.compile("^" + re.sub(r"%\\\((\w+)\\\)s", ".+", re.escape(m.id)) + "$")
                for m in catalog if m.id and "%(" in m.id]
    en, zh = build_objects("secops", "en"), build_objects("secops", "zh")
    for where, text in _texts(en):
        assert text in english or any(p.match(text) for p in patterns), f"{where}: {text!r} is no message id"
    assert [o["id"] for o in en][:3] == ["secops-conn", "secops-dns", "secops-http"]  # ids of earlier releases
    assert not {o["id"] for o in en} & {o["id"] for o in zh}  # the sets coexist in one space
    assert len(en) == len(zh) and [o["type"] for o in en] == [o["type"] for o in zh]
    assert validate(en + zh) == []  # together too: every reference stays inside its own language's set
