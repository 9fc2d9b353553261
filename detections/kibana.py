"""Kibana saved objects: a data view per secops index, saved searches, SOC dashboards; NDJSON + import API.

The objects are generated from the dataset registry (so every index has a data view) and shipped as
``detections/kibana/secops.ndjson`` (regenerate with ``secops kibana export``). ``validate`` checks
them structurally; ``import_objects`` posts them to ``/api/saved_objects/_import``.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from secops.config import Settings
from secops.es.templates import DATASETS, index_pattern

NDJSON = Path(__file__).parent / "kibana" / "secops.ndjson"
MIGRATION = {"coreMigrationVersion": "8.8.0"}


class KibanaError(Exception):
    """Kibana unreachable or the import refused (one line)."""


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

DASHBOARDS: dict[str, list[str]] = {
    "SOC overview": ["High and critical alerts", "Open alerts", "Asset changes", "Rejected and probe connections"],
    "Alert triage": ["Open alerts", "Acknowledged alerts", "High and critical alerts", "Playbook runs"],
    "Connections": ["Connections", "Rejected and probe connections"],
    "DNS": ["DNS queries", "DNS NULL and TXT queries"],
    "TLS": ["TLS sessions"],
    "ICS": ["Modbus writes", "DNP3 control", "S7 program changes", "IEC 104 commands"],
    "Assets": ["Assets", "Asset changes"],
}


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


def dashboards() -> list[dict[str, Any]]:
    out = []
    for title, searches in DASHBOARDS.items():
        panels, refs = [], []
        for i, name in enumerate(searches):
            ref = f"panel_{i}"
            panels.append({"panelIndex": str(i + 1), "type": "search", "panelRefName": ref, "embeddableConfig": {},
                           "gridData": {"x": 24 * (i % 2), "y": 15 * (i // 2), "w": 24, "h": 15, "i": str(i + 1)}})
            refs.append({"name": ref, "type": "search", "id": _id("search", name)})
        out.append({"id": _id("dashboard", title), "type": "dashboard", **MIGRATION, "typeMigrationVersion": "10.2.0",
                    "attributes": {"title": f"secops: {title}", "description": f"secops {title} dashboard",
                                   "panelsJSON": json.dumps(panels), "timeRestore": False,
                                   "optionsJSON": json.dumps({"useMargins": True, "hidePanelTitles": False}),
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
            for panel in json.loads(attrs.get("panelsJSON", "[]")):
                if panel.get("panelRefName") not in names:
                    problems.append(f"dashboard {oid}: panel {panel.get('panelIndex')} has no reference")
    covered = {o["attributes"]["title"] for o in objects if o.get("type") == "index-pattern"}
    problems += [f"no data view for index pattern {t}" for t in templates if t not in covered]
    return problems


def _multipart(payload: bytes, filename: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/ndjson\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def import_objects(settings: Settings, overwrite: bool = True, timeout: float = 15.0) -> dict[str, Any]:
    """POST the saved objects (built for the configured index prefix) to Kibana's import API."""
    k = settings.kibana
    if not k.url:
        raise KibanaError("kibana.url is not configured (set it in the config file or SECOPS_KIBANA__URL)")
    if not k.url.startswith(("http://", "https://")):
        raise KibanaError(f"kibana.url must be an http(s) URL, got {k.url!r}")
    base = k.url.rstrip("/") + (f"/s/{k.space}" if k.space else "")
    url = f"{base}/api/saved_objects/_import?overwrite={'true' if overwrite else 'false'}"
    body, ctype = _multipart(dump_ndjson(build_objects(settings.elasticsearch.index_prefix)).encode(), "secops.ndjson")
    req = urllib.request.Request(url, data=body, method="POST",  # noqa: S310 - http(s) checked above
                                 headers={"kbn-xsrf": "true", "Content-Type": ctype})
    if k.username and k.password:
        token = base64.b64encode(f"{k.username}:{k.password.get_secret_value()}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - scheme checked above
            result = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise KibanaError(f"Kibana refused the import at {url}: HTTP {exc.code} {exc.read()[:300]!r}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise KibanaError(f"Kibana unreachable at {k.url}: {reason}") from None
    if not result.get("success", False):
        errors = result.get("errors") or []
        raise KibanaError(f"Kibana import reported {len(errors)} error(s): {str(errors)[:300]}")
    return result
