"""Kibana saved objects: a data view per secops index, saved searches, SOC dashboards; NDJSON + import API.

The objects are generated from the dataset registry (so every index has a data view) and shipped as
``detections/kibana/secops.ndjson`` (regenerate with ``secops kibana build``). ``validate`` checks
them structurally; :mod:`detections.kibana_api` imports them into a Kibana and exports what a Kibana holds.
Dashboards hold Lens charts by value (:mod:`detections.kibana_lens`) and saved searches to drill down into.

Two sets ship, English and Simplified Chinese (``secops kibana build|import|export --lang en|zh``): every
title, description, data-view name and column label is an English message id translated through the ``kibana``
gettext catalogue (``detections/locale/<lang>/LC_MESSAGES/kibana.po``). The Chinese set has its own ids, so
both sets can live in one Kibana space and each analyst opens the dashboards in their language.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detections import kibana_lens as lens
from detections.kibana_lens import Chart, Condition
from secops.es.templates import DATASETS, index_pattern
from secops.i18n import KIBANA, N_, SOURCE_LANGUAGE, language_tag, message, translations

# --lang value -> gettext language of the catalogue
LANGUAGES = {"en": SOURCE_LANGUAGE, "zh": "zh_CN"}
NDJSON = Path(__file__).parent / "kibana" / "secops.ndjson"


def ndjson_path(lang: str = "en") -> Path:
    """The shipped NDJSON of a language set (English: secops.ndjson, Chinese: secops.zh-CN.ndjson)."""
    gettext_lang = LANGUAGES[lang]
    return NDJSON if gettext_lang == SOURCE_LANGUAGE else NDJSON.with_suffix(f".{language_tag(gettext_lang)}.ndjson")


def _suffix(lang: str) -> str:
    """What a non-English set's ids carry after the English ids ('' for English: its ids never change)."""
    gettext_lang = LANGUAGES[lang]
    return "" if gettext_lang == SOURCE_LANGUAGE else f"-{language_tag(gettext_lang)}"
# Migration versions for the pinned Kibana (docker-compose.yml: 9.2.0), from elastic/kibana's sources.
# coreMigrationVersion: the last core transform of every type, '8.8.0' (src/core/packages/saved-objects/
#   migration-server-internal/src/document_migrator/migrations/index.ts: transformMigrationVersion +
#   transformSetManagedDefault).
# typeMigrationVersion: the schema the object is written in. Model version N is the virtual version "10.N.0"
#   (modelVersionVirtualMajor = 10, src/core/packages/saved-objects/base-server-internal/src/model_version/
#   constants.ts); a type without model versions carries its latest legacy migration, the conversion to a
#   multi-namespace type included (document_migrator/internal_transforms.ts getConversionTransforms). Kibana
#   migrates an older version forward on import and refuses a newer one, so each is the version our objects'
#   attributes follow, never above what 9.2 knows:
#   - index-pattern: migrations 6.5.0/7.6.0/7.11.0 and convertToMultiNamespaceTypeVersion 8.0.0, no model
#     versions (src/platform/plugins/shared/data_views/server/saved_objects/data_views.ts,
#     index_pattern_migrations.ts) -> "8.0.0".
#   - search: model versions 1-5 keep the flat attributes we write; 6 adds Discover tabs with a data_backfill
#     that builds them from the flat attributes (src/platform/plugins/shared/saved_search/server/saved_objects/
#     search.ts, schema_legacy.ts). Our searches follow model version 5 -> "10.5.0": 9.2 backfills the tabs.
#   - dashboard: model versions 1, 2 (controlGroupInput.showApplySelections) and 3 (collapsible sections,
#     elastic/kibana#222450, in 8.19/9.1); 4 (accessControl, write-restricted dashboards, elastic/kibana#224552)
#     came with 9.3 (src/platform/plugins/shared/dashboard/server/dashboard_saved_object/
#     dashboard_saved_object.ts) -> "10.3.0".
CORE_MIGRATION_VERSION = "8.8.0"
TYPE_MIGRATION_VERSIONS = {"index-pattern": "8.0.0", "search": "10.5.0", "dashboard": "10.3.0"}


def _versions(kind: str) -> dict[str, str]:
    return {"coreMigrationVersion": CORE_MIGRATION_VERSION, "typeMigrationVersion": TYPE_MIGRATION_VERSIONS[kind]}


def _id(kind: str, name: str, lang: str = "en") -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"secops:kibana:{kind}:{name}{_suffix(lang)}"))


def data_view_id(dataset: str, lang: str = "en") -> str:
    return f"secops-{DATASETS[dataset].short}{_suffix(lang)}"


# The prefix every object's title carries (a product name, not translated) and the data views' display name.
TITLE = "secops: %s"
DATA_VIEW_NAME = N_("secops %(dataset)s data")


def data_views(prefix: str, lang: str = "en") -> list[dict[str, Any]]:
    tr = translations(KIBANA, LANGUAGES[lang])
    return [{"id": data_view_id(name, lang), "type": "index-pattern", "references": [], **_versions("index-pattern"),
             "attributes": {"title": index_pattern(prefix, name),
                            "name": message(DATA_VIEW_NAME, dataset=ds.short).render(tr),
                            "timeFieldName": "@timestamp"}} for name, ds in DATASETS.items()]


# (name, dataset, KQL query, columns)
SEARCHES: list[tuple[str, str, str, list[str]]] = [
    (N_("Open alerts"), "secops.alert", "secops.alert.status : open",
     ["rule.severity", "rule.name", "source.ip", "destination.ip", "secops.alert.count", "secops.alert.assignee"]),
    (N_("High and critical alerts"), "secops.alert", "rule.severity : (high or critical)",
     ["rule.severity", "rule.name", "secops.alert.status", "source.ip", "destination.ip", "threat.technique.id"]),
    (N_("Acknowledged alerts"), "secops.alert", "secops.alert.status : acknowledged",
     ["rule.name", "secops.alert.assignee", "secops.alert.last_time"]),
    (N_("Connections"), "secops.conn", "",
     ["source.ip", "destination.ip", "destination.port", "network.protocol", "secops.conn.state", "source.bytes",
      "destination.bytes"]),
    (N_("Rejected and probe connections"), "secops.conn",
     "secops.conn.state : (S0 or REJ or RSTO or RSTOS0 or SH or OTH) and secops.conn.orig_bytes : 0",
     ["source.ip", "destination.ip", "destination.port", "secops.conn.state"]),
    (N_("DNS queries"), "secops.dns", "",
     ["source.ip", "dns.question.name", "dns.question.type", "dns.response_code"]),
    (N_("DNS NULL and TXT queries"), "secops.dns", "dns.question.type : (NULL or TXT)",
     ["source.ip", "dns.question.name", "dns.question.type"]),
    (N_("HTTP requests"), "secops.http", "",
     ["source.ip", "http.request.method", "url.domain", "url.original", "user_agent.original",
      "http.response.status_code"]),
    (N_("TLS sessions"), "secops.tls", "",
     ["source.ip", "destination.ip", "tls.version", "tls.client.server_name", "tls.client.ja3", "tls.client.ja4"]),
    (N_("Modbus writes"), "secops.modbus", "secops.modbus.is_write : true",
     ["source.ip", "destination.ip", "secops.modbus.function", "secops.modbus.unit_id"]),
    (N_("DNP3 control"), "secops.dnp3", "secops.dnp3.is_control : true",
     ["source.ip", "destination.ip", "secops.dnp3.function"]),
    (N_("S7 program changes"), "secops.s7comm", "secops.s7comm.is_program_change : true",
     ["source.ip", "destination.ip", "secops.s7comm.function"]),
    (N_("IEC 104 commands"), "secops.iec104", "secops.iec104.is_command : true",
     ["source.ip", "destination.ip", "secops.iec104.type"]),
    (N_("Assets"), "secops.asset", "",
     ["host.ip", "host.hostname", "host.os.name", "secops.asset.zone", "secops.asset.criticality",
      "secops.asset.last_seen"]),
    (N_("Asset changes"), "secops.asset_change", "",
     ["host.ip", "secops.asset_change.change", "secops.asset_change.port", "secops.asset_change.old",
      "secops.asset_change.new"]),
    (N_("Playbook runs"), "secops.playbook_run", "",
     ["secops.playbook.name", "secops.playbook.status", "secops.playbook.alert_id"]),
]

@dataclass(frozen=True)
class Dashboard:
    """A dashboard: what it is for, its Lens charts (by value) and the saved searches to drill down into."""

    title: str
    purpose: str
    charts: tuple[Chart, ...]
    searches: tuple[str, ...]


def _is(field: str, *values: str | int | bool) -> Condition:
    return Condition(field, values)


ALERT, CONN, DNS, TLS, SENSOR = "secops.alert", "secops.conn", "secops.dns", "secops.tls", "secops.sensor"
ASSET, RUN = "secops.asset", "secops.playbook_run"
OPEN = (_is("secops.alert.status", "open"),)
SENSOR_PACKETS = [("max", "secops.sensor.packets_captured", N_("Captured")),
                  ("max", "secops.sensor.packets_dropped", N_("Dropped"))]
# lag_seconds: age of the oldest chunk captured but not yet processed (collectors/sensor.py), per sensor
SENSOR_LAG = [("max", "secops.sensor.lag_seconds", N_("Lag (seconds)"))]
BLOCKS = (_is("secops.state.key", "playbooks.block"), _is("secops.state.status", "active"))

DASHBOARDS: list[Dashboard] = [
    Dashboard(N_("SOC overview"), N_(
        "Where to look first: alert load by severity, the open alerts' rules, the busiest addresses, what the "
        "network carries and whether the sensors keep up."), (
        lens.time_bars(N_("Alerts by severity over time"), ALERT, breakdown="rule.severity"),
        lens.top_bars(N_("Open alerts by rule"), ALERT, "rule.name", where=OPEN),
        lens.top_bars(N_("Top source addresses"), CONN, "source.ip"),
        lens.top_bars(N_("Top destination addresses"), CONN, "destination.ip"),
        lens.donut(N_("Connections by service"), CONN, "network.protocol"),
        lens.donut(N_("Connections by state"), CONN, "secops.conn.state"),
        lens.time_lines(N_("Bytes over time"), CONN, [("sum", "source.bytes", N_("Bytes sent by originators")),
                                                      ("sum", "destination.bytes", N_("Bytes sent by responders"))]),
        lens.time_lines(N_("Sensor health: packets captured and dropped"), SENSOR, SENSOR_PACKETS),
        lens.time_lines(N_("Sensor lag: age of the oldest unprocessed capture (seconds)"), SENSOR, SENSOR_LAG,
                        breakdown="observer.name"),
    ), ("High and critical alerts", "Open alerts", "Asset changes", "Rejected and probe connections")),
    Dashboard(N_("Alert triage"), N_(
        "The alert queue: status and assignee of every alert, acknowledged work, playbook runs started from "
        "alerts."), (
        lens.donut(N_("Alerts by status"), ALERT, "secops.alert.status"),
        lens.top_bars(N_("Open alerts by assignee"), ALERT, "secops.alert.assignee", where=OPEN),
    ), ("Open alerts", "Acknowledged alerts", "High and critical alerts", "Playbook runs")),
    Dashboard(N_("Connections"), N_(
        "Flow records: volume by transport, rejected and probing connections, top talkers."), (
        lens.time_bars(N_("Connections over time by transport"), CONN, breakdown="network.transport"),
        lens.top_bars(N_("Top destination ports"), CONN, "destination.port"),
    ), ("Connections", "Rejected and probe connections")),
    Dashboard(N_("DNS"), N_(
        "Name resolution: what is looked up, how it is answered, and tunnelling signs (long labels, NULL/TXT "
        "queries)."), (
        lens.top_bars(N_("Top queried domains"), DNS, "dns.question.name"),
        lens.donut(N_("Response codes"), DNS, "dns.response_code"),
        lens.donut(N_("Query types"), DNS, "dns.question.type"),
        lens.time_bars(N_("Queries with labels of 40+ characters"), DNS, breakdown="source.ip",
                       where=(Condition("secops.dns.label_max_len", (40,), ">="),)),
        lens.time_bars(N_("NULL and TXT queries"), DNS, breakdown="dns.question.type",
                       where=(_is("dns.question.type", "NULL", "TXT"),)),
    ), ("DNS queries", "DNS NULL and TXT queries")),
    Dashboard(N_("TLS"), N_(
        "Encrypted sessions: protocol versions, server names, client fingerprints, and the server certificates: "
        "self-signed or expired at the time of the session, and until when they are valid."), (
        lens.donut(N_("TLS versions"), TLS, "tls.version"),
        lens.top_bars(N_("Top SNI"), TLS, "tls.client.server_name"),
        lens.table(N_("JA3 and JA4 client fingerprints"), TLS, ["tls.client.ja4", "tls.client.ja3"]),
        lens.table(N_("Server certificates: self-signed and expired"), TLS,
                   ["tls.server.x509.subject.common_name", "secops.tls.self_signed", "secops.tls.cert_expired"],
                   measures=[("max", "tls.server.not_after", N_("Valid until"))]),
        lens.time_bars(N_("Sessions with a self-signed server certificate"), TLS,
                       breakdown="tls.server.x509.subject.common_name",
                       where=(_is("secops.tls.self_signed", True),)),
    ), ("TLS sessions",)),
    Dashboard(N_("ICS"), N_(
        "Industrial protocols: which function codes each device receives, and writes, control operations and "
        "program changes over time."), (
        lens.top_bars(N_("Modbus function codes by device"), "secops.modbus", "destination.ip",
                      breakdown="secops.modbus.function"),
        lens.time_bars(N_("Modbus writes over time"), "secops.modbus", breakdown="destination.ip",
                       where=(_is("secops.modbus.is_write", True),)),
        lens.top_bars(N_("DNP3 function codes by device"), "secops.dnp3", "destination.ip",
                      breakdown="secops.dnp3.function"),
        lens.time_bars(N_("DNP3 control operations over time"), "secops.dnp3", breakdown="secops.dnp3.function",
                       where=(_is("secops.dnp3.is_control", True),)),
        lens.top_bars(N_("S7comm functions by device"), "secops.s7comm", "destination.ip",
                      breakdown="secops.s7comm.function"),
        lens.time_bars(N_("S7 program operations over time"), "secops.s7comm", breakdown="secops.s7comm.subfunction",
                       where=(_is("secops.s7comm.is_program_change", True),)),
    ), ("Modbus writes", "DNP3 control", "S7 program changes", "IEC 104 commands")),
    Dashboard(N_("Assets"), N_(
        "The inventory: assets by zone, operating system and open service, findings, and changes over time."), (
        lens.donut(N_("Assets by zone"), ASSET, "secops.asset.zone"),
        lens.donut(N_("Assets by OS"), ASSET, "host.os.name"),
        lens.top_bars(N_("Assets by open service"), ASSET, "secops.asset.services.name"),
        lens.top_bars(N_("Findings"), ASSET, "secops.asset.findings"),
        lens.time_bars(N_("Asset changes over time"), "secops.asset_change", breakdown="secops.asset_change.change"),
    ), ("Assets", "Asset changes")),
    Dashboard(N_("Playbooks"), N_(
        "Automated response: runs by outcome, approvals waiting for a person, and the address blocks in force "
        "with their expiry."), (
        lens.donut(N_("Playbook runs by outcome"), RUN, "secops.playbook.status"),
        lens.time_bars(N_("Playbook runs over time"), RUN, breakdown="secops.playbook.name"),
        lens.table(N_("Pending approvals"), RUN, ["secops.playbook.name", "secops.playbook.approval.step"],
                   measures=[("min", "secops.playbook.approval.deadline", N_("Deadline"))],
                   where=(_is("secops.playbook.approval.status", "waiting"),)),
        lens.table(N_("Blocks in force"), "secops.state", ["secops.state.address"],
                   measures=[("max", "secops.state.checkpoint", N_("Expires"))], where=BLOCKS),
    ), ("Playbook runs",)),
]

def saved_searches(lang: str = "en") -> list[dict[str, Any]]:
    tr = translations(KIBANA, LANGUAGES[lang])
    out = []
    for name, dataset, kql, columns in SEARCHES:
        source = {"query": {"query": kql, "language": "kuery"}, "filter": [],
                  "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}
        out.append({"id": _id("search", name, lang), "type": "search", **_versions("search"),
                    "attributes": {"title": TITLE % tr.gettext(name), "columns": columns,
                                   "sort": [["@timestamp", "desc"]],
                                   "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source)}},
                    "references": [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern",
                                    "id": data_view_id(dataset, lang)}]})
    return out


CHART_GRID = (24, 12)  # width, height of a chart panel (the dashboard grid is 48 wide)
SEARCH_GRID = (24, 15)


def dashboards(lang: str = "en") -> list[dict[str, Any]]:
    tr = translations(KIBANA, LANGUAGES[lang])
    out = []
    for board in DASHBOARDS:
        panels, refs = [], []
        for i, chart in enumerate(board.charts):
            w, h = CHART_GRID
            pid = lens.lens_id("dashboard", board.title, "panel", chart.title)
            panel, panel_refs = lens.lens_panel(chart, pid, (w * (i % 2), h * (i // 2), w, h),
                                                data_view_id(chart.dataset, lang), tr)
            panels.append(panel)
            refs += panel_refs
        top = CHART_GRID[1] * ((len(board.charts) + 1) // 2)
        for i, name in enumerate(board.searches):
            w, h = SEARCH_GRID
            pid = lens.lens_id("dashboard", board.title, "panel", "search", name)
            panels.append({"type": "search", "gridData": {"x": w * (i % 2), "y": top + h * (i // 2), "w": w, "h": h,
                                                          "i": pid},
                           "panelIndex": pid, "embeddableConfig": {"enhancements": {}}, "panelRefName": f"panel_{pid}"})
            refs.append({"name": f"{pid}:panel_{pid}", "type": "search", "id": _id("search", name, lang)})
        out.append({"id": _id("dashboard", board.title, lang), "type": "dashboard", **_versions("dashboard"),
                    "attributes": {"title": TITLE % tr.gettext(board.title), "description": tr.gettext(board.purpose),
                                   "panelsJSON": json.dumps(panels), "timeRestore": False, "version": 1,
                                   "optionsJSON": json.dumps({"useMargins": True, "syncColors": False,
                                                              "syncCursor": True, "syncTooltips": False,
                                                              "hidePanelTitles": False}),
                                   "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(
                                       {"query": {"query": "", "language": "kuery"}, "filter": []})}},
                    "references": refs})
    return out


def build_objects(prefix: str = "secops", lang: str = "en") -> list[dict[str, Any]]:
    """Every saved object secops ships, in ``lang`` (en or zh)."""
    if lang not in LANGUAGES:
        raise ValueError(f"no Kibana object set for language {lang!r} (choose {' or '.join(LANGUAGES)})")
    return data_views(prefix, lang) + saved_searches(lang) + dashboards(lang)


def dump_ndjson(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(o, sort_keys=True) + "\n" for o in objects)


def load_ndjson(path: Path) -> list[dict[str, Any]]:
    # Lines end at "\n" only: a raw U+2028 is legal inside a JSON string (Kibana's own exports keep it).
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def validate(objects: list[dict[str, Any]], prefix: str = "secops") -> list[str]:
    """Problems found: duplicate ids, dangling references, panels without reference, unknown index patterns."""
    problems: list[str] = []
    seen: dict[tuple[str, str], dict] = {}
    for o in objects:
        key = (o.get("type", ""), o.get("id", ""))
        if not all(key) or "attributes" not in o:
            problems.append(f"object without type/id/attributes: {str(o)[:80]}")
        if key in seen:
            problems.append(f"duplicate id {key}")
        seen[key] = o
    templates = [index_pattern(prefix, d) for d in DATASETS]
    for (kind, oid), o in seen.items():
        names = set()
        for ref in o.get("references", []):
            names.add(ref.get("name"))
            if (ref.get("type"), ref.get("id")) not in seen:
                problems.append(f"{kind} {oid}: reference {ref.get('name')} -> {ref.get('type')}:{ref.get('id')} "
                                "does not resolve")
        attrs = o.get("attributes", {})
        if kind == "index-pattern":
            title = attrs.get("title", "")
            if title not in templates:
                problems.append(f"data view {oid}: index pattern {title!r} matches no secops index template")
        if kind == "search":
            src = json.loads(attrs.get("kibanaSavedObjectMeta", {}).get("searchSourceJSON", "{}"))
            if src.get("indexRefName") and src["indexRefName"] not in names:
                problems.append(f"search {oid}: indexRefName {src['indexRefName']} has no reference")
        if kind == "dashboard":
            problems += _panel_problems(oid, json.loads(attrs.get("panelsJSON", "[]")), o.get("references", []))
    covered = {o["attributes"]["title"] for o in objects if o.get("type") == "index-pattern"}
    problems += [f"no data view for index pattern {t}" for t in templates if t not in covered]
    return problems


def _panel_problems(oid: str, panels: list[dict[str, Any]], refs: list[dict[str, Any]]) -> list[str]:
    """A by-reference panel needs ``<panelIndex>:<panelRefName>``; a Lens layer ``<panelIndex>:<layer ref>``
    pointing at the same data view; every Lens column must name a field of its dataset's template."""
    problems = []
    by_name = {r.get("name"): r for r in refs}
    views = {data_view_id(d, lang): d for d in DATASETS for lang in LANGUAGES}
    for panel in panels:
        pid = panel.get("panelIndex")
        if panel.get("type") == "lens":
            attrs = panel.get("embeddableConfig", {}).get("attributes", {})
            for ref in attrs.get("references", []):
                outer = by_name.get(f"{pid}:{ref.get('name')}")
                if outer is None or outer.get("id") != ref.get("id"):
                    problems.append(f"dashboard {oid}: lens panel {pid} layer {ref.get('name')} has no dashboard "
                                    "reference to the same data view")
                elif ref.get("id") in views:
                    problems += [f"dashboard {oid}: lens panel {pid}: {p}"
                                 for p in lens.column_problems(attrs, views[ref["id"]])]
        elif f"{pid}:{panel.get('panelRefName')}" not in by_name:
            problems.append(f"dashboard {oid}: panel {pid} has no reference")
    return problems
