"""Kibana saved objects: a data view per secops index, saved searches, SOC dashboards; NDJSON + import API.

The objects are generated from the dataset registry (so every index has a data view) and shipped as
``detections/kibana/secops.ndjson`` (regenerate with ``secops kibana build``). ``validate`` checks
them structurally; :mod:`detections.kibana_api` imports them into a Kibana and exports what a Kibana holds.
Dashboards hold Lens charts by value (:mod:`detections.kibana_lens`) and saved searches to drill down into.
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

NDJSON = Path(__file__).parent / "kibana" / "secops.ndjson"
MIGRATION = {"coreMigrationVersion": "8.8.0"}
# Kibana 9.2's dashboard type is at model version 3 (collapsible sections): saved objects carry "10.3.0".
DASHBOARD_MIGRATION = "10.3.0"


def _id(kind: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"secops:kibana:{kind}:{name}"))


def data_view_id(dataset: str) -> str:
    return f"secops-{DATASETS[dataset].short}"


def data_views(prefix: str) -> list[dict[str, Any]]:
    return [{"id": data_view_id(name), "type": "index-pattern", "references": [], **MIGRATION,
             "typeMigrationVersion": "8.0.0",
             "attributes": {"title": index_pattern(prefix, name), "name": f"secops {ds.short}",
                            "timeFieldName": "@timestamp"}} for name, ds in DATASETS.items()]


# (name, dataset, KQL query, columns)
SEARCHES: list[tuple[str, str, str, list[str]]] = [
    ("Open alerts", "secops.alert", "secops.alert.status : open",
     ["rule.severity", "rule.name", "source.ip", "destination.ip", "secops.alert.count", "secops.alert.assignee"]),
    ("High and critical alerts", "secops.alert", "rule.severity : (high or critical)",
     ["rule.severity", "rule.name", "secops.alert.status", "source.ip", "destination.ip", "threat.technique.id"]),
    ("Acknowledged alerts", "secops.alert", "secops.alert.status : acknowledged",
     ["rule.name", "secops.alert.assignee", "secops.alert.last_time"]),
    ("Connections", "secops.conn", "", ["source.ip", "destination.ip", "destination.port", "network.protocol",
                                        "secops.conn.state", "source.bytes", "destination.bytes"]),
    ("Rejected and probe connections", "secops.conn",
     "secops.conn.state : (S0 or REJ or RSTO or RSTOS0 or SH or OTH) and secops.conn.orig_bytes : 0",
     ["source.ip", "destination.ip", "destination.port", "secops.conn.state"]),
    ("DNS queries", "secops.dns", "", ["source.ip", "dns.question.name", "dns.question.type", "dns.response_code"]),
    ("DNS NULL and TXT queries", "secops.dns", "dns.question.type : (NULL or TXT)",
     ["source.ip", "dns.question.name", "dns.question.type"]),
    ("HTTP requests", "secops.http", "", ["source.ip", "http.request.method", "url.domain", "url.original",
                                          "user_agent.original", "http.response.status_code"]),
    ("TLS sessions", "secops.tls", "", ["source.ip", "destination.ip", "tls.version", "tls.client.server_name",
                                        "tls.client.ja3", "tls.client.ja4"]),
    ("Modbus writes", "secops.modbus", "secops.modbus.is_write : true",
     ["source.ip", "destination.ip", "secops.modbus.function", "secops.modbus.unit_id"]),
    ("DNP3 control", "secops.dnp3", "secops.dnp3.is_control : true", ["source.ip", "destination.ip",
                                                                      "secops.dnp3.function"]),
    ("S7 program changes", "secops.s7comm", "secops.s7comm.is_program_change : true",
     ["source.ip", "destination.ip", "secops.s7comm.function"]),
    ("IEC 104 commands", "secops.iec104", "secops.iec104.is_command : true",
     ["source.ip", "destination.ip", "secops.iec104.type"]),
    ("Assets", "secops.asset", "", ["host.ip", "host.hostname", "host.os.name", "secops.asset.zone",
                                    "secops.asset.criticality", "secops.asset.last_seen"]),
    ("Asset changes", "secops.asset_change", "", ["host.ip", "secops.asset_change.change", "secops.asset_change.port",
                                                  "secops.asset_change.old", "secops.asset_change.new"]),
    ("Playbook runs", "secops.playbook_run", "", ["secops.playbook.name", "secops.playbook.status",
                                                  "secops.playbook.alert_id"]),
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
SENSOR_MEASURES = [("max", "secops.sensor.packets_captured", "Captured"),
                   ("max", "secops.sensor.packets_processed", "Processed"),
                   ("max", "secops.sensor.packets_dropped", "Dropped")]
BLOCKS = (_is("secops.state.key", "playbooks.block"), _is("secops.state.status", "active"))

DASHBOARDS: list[Dashboard] = [
    Dashboard("SOC overview", "Where to look first: alert load by severity, the open alerts' rules, the busiest "
              "addresses, what the network carries and whether the sensors keep up.", (
                  lens.time_bars("Alerts by severity over time", ALERT, breakdown="rule.severity"),
                  lens.top_bars("Open alerts by rule", ALERT, "rule.name", where=OPEN),
                  lens.top_bars("Top source addresses", CONN, "source.ip"),
                  lens.top_bars("Top destination addresses", CONN, "destination.ip"),
                  lens.donut("Connections by service", CONN, "network.protocol"),
                  lens.donut("Connections by state", CONN, "secops.conn.state"),
                  lens.time_lines("Bytes over time", CONN, [("sum", "source.bytes", "Bytes sent by originators"),
                                                             ("sum", "destination.bytes", "Bytes sent by responders")]),
                  lens.time_lines("Sensor health: packets captured, processed (the gap is the lag) and dropped",
                                  SENSOR, SENSOR_MEASURES),
              ), ("High and critical alerts", "Open alerts", "Asset changes", "Rejected and probe connections")),
    Dashboard("Alert triage", "The alert queue: status and assignee of every alert, acknowledged work, playbook "
              "runs started from alerts.", (
                  lens.donut("Alerts by status", ALERT, "secops.alert.status"),
                  lens.top_bars("Open alerts by assignee", ALERT, "secops.alert.assignee", where=OPEN),
              ), ("Open alerts", "Acknowledged alerts", "High and critical alerts", "Playbook runs")),
    Dashboard("Connections", "Flow records: volume by transport, rejected and probing connections, top talkers.", (
        lens.time_bars("Connections over time by transport", CONN, breakdown="network.transport"),
        lens.top_bars("Top destination ports", CONN, "destination.port"),
    ), ("Connections", "Rejected and probe connections")),
    Dashboard("DNS", "Name resolution: what is looked up, how it is answered, and tunnelling signs (long labels, "
              "NULL/TXT queries).", (
                  lens.top_bars("Top queried domains", DNS, "dns.question.name"),
                  lens.donut("Response codes", DNS, "dns.response_code"),
                  lens.donut("Query types", DNS, "dns.question.type"),
                  lens.time_bars("Queries with labels of 40+ characters", DNS, breakdown="source.ip",
                                 where=(Condition("secops.dns.label_max_len", (40,), ">="),)),
                  lens.time_bars("NULL and TXT queries", DNS, breakdown="dns.question.type",
                                 where=(_is("dns.question.type", "NULL", "TXT"),)),
              ), ("DNS queries", "DNS NULL and TXT queries")),
    Dashboard("TLS", "Encrypted sessions: protocol versions, server names, client fingerprints, and certificates "
              "seen (certificate details await the TLS analyzer's x509 fields).", (
                  lens.donut("TLS versions", TLS, "tls.version"),
                  lens.top_bars("Top SNI", TLS, "tls.client.server_name"),
                  lens.table("JA3 and JA4 client fingerprints", TLS, ["tls.client.ja4", "tls.client.ja3"]),
                  lens.table("Server certificates seen (leaf SHA-256)", TLS,
                             ["tls.server.hash.sha256", "destination.ip"]),
              ), ("TLS sessions",)),
    Dashboard("ICS", "Industrial protocols: which function codes each device receives, and writes, control "
              "operations and program changes over time.", (
                  lens.top_bars("Modbus function codes by device", "secops.modbus", "destination.ip",
                                breakdown="secops.modbus.function"),
                  lens.time_bars("Modbus writes over time", "secops.modbus", breakdown="destination.ip",
                                 where=(_is("secops.modbus.is_write", True),)),
                  lens.top_bars("DNP3 function codes by device", "secops.dnp3", "destination.ip",
                                breakdown="secops.dnp3.function"),
                  lens.time_bars("DNP3 control operations over time", "secops.dnp3", breakdown="secops.dnp3.function",
                                 where=(_is("secops.dnp3.is_control", True),)),
                  lens.top_bars("S7comm functions by device", "secops.s7comm", "destination.ip",
                                breakdown="secops.s7comm.function"),
                  lens.time_bars("S7 program operations over time", "secops.s7comm",
                                 breakdown="secops.s7comm.subfunction",
                                 where=(_is("secops.s7comm.is_program_change", True),)),
              ), ("Modbus writes", "DNP3 control", "S7 program changes", "IEC 104 commands")),
    Dashboard("Assets", "The inventory: assets by zone, operating system and open service, findings, and "
              "changes over time.", (
                  lens.donut("Assets by zone", ASSET, "secops.asset.zone"),
                  lens.donut("Assets by OS", ASSET, "host.os.name"),
                  lens.top_bars("Assets by open service", ASSET, "secops.asset.services.name"),
                  lens.top_bars("Findings", ASSET, "secops.asset.findings"),
                  lens.time_bars("Asset changes over time", "secops.asset_change",
                                 breakdown="secops.asset_change.change"),
              ), ("Assets", "Asset changes")),
    Dashboard("Playbooks", "Automated response: runs by outcome, approvals waiting for a person, and the "
              "address blocks in force with their expiry.", (
                  lens.donut("Playbook runs by outcome", RUN, "secops.playbook.status"),
                  lens.time_bars("Playbook runs over time", RUN, breakdown="secops.playbook.name"),
                  lens.table("Pending approvals", RUN, ["secops.playbook.name", "secops.playbook.approval.step"],
                             measures=[("min", "secops.playbook.approval.deadline", "Deadline")],
                             where=(_is("secops.playbook.approval.status", "waiting"),)),
                  lens.table("Blocks in force", "secops.state", ["secops.state.address"],
                             measures=[("max", "secops.state.checkpoint", "Expires")], where=BLOCKS),
              ), ("Playbook runs",)),
]

def saved_searches() -> list[dict[str, Any]]:
    out = []
    for name, dataset, kql, columns in SEARCHES:
        source = {"query": {"query": kql, "language": "kuery"}, "filter": [],
                  "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}
        out.append({"id": _id("search", name), "type": "search", **MIGRATION, "typeMigrationVersion": "10.0.0",
                    "attributes": {"title": f"secops: {name}", "columns": columns, "sort": [["@timestamp", "desc"]],
                                   "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source)}},
                    "references": [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern",
                                    "id": data_view_id(dataset)}]})
    return out


CHART_GRID = (24, 12)  # width, height of a chart panel (the dashboard grid is 48 wide)
SEARCH_GRID = (24, 15)


def dashboards() -> list[dict[str, Any]]:
    out = []
    for board in DASHBOARDS:
        panels, refs = [], []
        for i, chart in enumerate(board.charts):
            w, h = CHART_GRID
            pid = lens.lens_id("dashboard", board.title, "panel", chart.title)
            panel, panel_refs = lens.lens_panel(chart, pid, (w * (i % 2), h * (i // 2), w, h),
                                                data_view_id(chart.dataset))
            panels.append(panel)
            refs += panel_refs
        top = CHART_GRID[1] * ((len(board.charts) + 1) // 2)
        for i, name in enumerate(board.searches):
            w, h = SEARCH_GRID
            pid = lens.lens_id("dashboard", board.title, "panel", "search", name)
            panels.append({"type": "search", "gridData": {"x": w * (i % 2), "y": top + h * (i // 2), "w": w, "h": h,
                                                          "i": pid},
                           "panelIndex": pid, "embeddableConfig": {"enhancements": {}}, "panelRefName": f"panel_{pid}"})
            refs.append({"name": f"{pid}:panel_{pid}", "type": "search", "id": _id("search", name)})
        out.append({"id": _id("dashboard", board.title), "type": "dashboard", **MIGRATION,
                    "typeMigrationVersion": DASHBOARD_MIGRATION,
                    "attributes": {"title": f"secops: {board.title}", "description": board.purpose,
                                   "panelsJSON": json.dumps(panels), "timeRestore": False, "version": 1,
                                   "optionsJSON": json.dumps({"useMargins": True, "syncColors": False,
                                                              "syncCursor": True, "syncTooltips": False,
                                                              "hidePanelTitles": False}),
                                   "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(
                                       {"query": {"query": "", "language": "kuery"}, "filter": []})}},
                    "references": refs})
    return out


def build_objects(prefix: str = "secops") -> list[dict[str, Any]]:
    return data_views(prefix) + saved_searches() + dashboards()


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
    views = {data_view_id(d): d for d in DATASETS}
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
