"""Kibana's HTTP API for the secops saved objects: import (per-object outcome), export, Security app indices.

- :func:`import_objects` posts the NDJSON to ``/api/saved_objects/_import?overwrite=true`` (idempotent: the
  ids are fixed, so a second import overwrites) and reports what Kibana answered for every object sent.
- :func:`export_objects` asks ``/api/saved_objects/_export`` for the secops objects as the Kibana holds them
  (with an operator's edits), so they can be kept.
- :func:`add_security_indices` adds the secops indices to the ``securitySolution:defaultIndex`` advanced
  setting, keeping every pattern already there (Kibana's default list when nobody set it).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from detections.kibana import build_objects, dump_ndjson
from secops.config import Settings
from secops.es.templates import index_pattern

SECURITY_DEFAULT_INDEX = "securitySolution:defaultIndex"
# Kibana's own default for that setting (x-pack security_solution DEFAULT_INDEX_PATTERN), which is in force while
# the setting has no user value: adding ours must not drop these.
KIBANA_DEFAULT_SECURITY_INDICES = ["apm-*-transaction*", "auditbeat-*", "endgame-*", "filebeat-*", "logs-*",
                                   "packetbeat-*", "traces-apm*", "winlogbeat-*", "-*elastic-cloud-logs-*"]
# secops indices the Security app should read: alerts (external alerts views) and the network event datasets
SECURITY_DATASETS = ["secops.alert", "secops.conn", "secops.dns", "secops.http", "secops.tls"]


class KibanaError(Exception):
    """Kibana unreachable or the request refused (one line)."""


@dataclass(frozen=True)
class ObjectOutcome:
    """What Kibana answered for one object of an import."""

    type: str
    id: str
    title: str
    outcome: str  # created, overwritten, error, not reported
    detail: str = ""


class KibanaClient:
    """The few Kibana HTTP calls secops makes (basic auth, kbn-xsrf, the configured space)."""

    def __init__(self, settings: Settings, timeout: float = 15.0) -> None:
        k = settings.kibana
        if not k.url:
            raise KibanaError("kibana.url is not configured (set it in the config file or SECOPS_KIBANA__URL)")
        if not k.url.startswith(("http://", "https://")):
            raise KibanaError(f"kibana.url must be an http(s) URL, got {k.url!r}")
        self.url = k.url.rstrip("/")
        self.base = self.url + (f"/s/{k.space}" if k.space else "")
        self.auth = None
        if k.username and k.password:
            self.auth = "Basic " + base64.b64encode(f"{k.username}:{k.password.get_secret_value()}".encode()).decode()
        self.timeout = timeout

    def call(self, method: str, path: str, body: bytes | None = None, ctype: str = "application/json") -> bytes:
        url = self.base + path
        req = urllib.request.Request(url, data=body, method=method,  # noqa: S310 - http(s) checked in __init__
                                     headers={"kbn-xsrf": "secops", "Content-Type": ctype})
        if self.auth:
            req.add_header("Authorization", self.auth)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - scheme checked
                return resp.read()
        except urllib.error.HTTPError as exc:
            raise KibanaError(f"Kibana refused {method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise KibanaError(f"Kibana unreachable at {self.url}: {getattr(exc, 'reason', exc)}") from None

    def json(self, method: str, path: str, payload: Any = None) -> Any:
        raw = self.call(method, path, None if payload is None else json.dumps(payload).encode())
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise KibanaError(f"Kibana answered {method} {path} with something that is not JSON: {raw[:200]!r}") \
                from None


def _multipart(payload: bytes, filename: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/ndjson\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def import_objects(settings: Settings, overwrite: bool = True, client: KibanaClient | None = None,
                   lang: str = "en") -> list[ObjectOutcome]:
    """Import the saved objects built for the configured index prefix, in ``lang`` (en, zh); one outcome per
    object sent."""
    client = client or KibanaClient(settings)
    objects = build_objects(settings.elasticsearch.index_prefix, lang)
    body, ctype = _multipart(dump_ndjson(objects).encode(), "secops.ndjson")
    raw = client.call("POST", f"/api/saved_objects/_import?overwrite={'true' if overwrite else 'false'}", body, ctype)
    try:
        result = json.loads(raw or b"{}")
    except ValueError:
        raise KibanaError(f"Kibana's import answer is not JSON: {raw[:200]!r}") from None
    done = {(r.get("type"), r.get("id")): r for r in result.get("successResults") or []}
    failed = {(e.get("type"), e.get("id")): e for e in result.get("errors") or []}
    out = []
    for o in objects:
        key, title = (o["type"], o["id"]), o["attributes"].get("title", "")
        if key in failed:
            err = failed[key].get("error", {})
            detail = err.get("type", "error") + (f": {err['message']}" if err.get("message") else "")
            if err.get("references"):
                detail += " " + ", ".join(f"{r.get('type')}:{r.get('id')}" for r in err["references"])
            out.append(ObjectOutcome(*key, title, "error", detail))
        elif key in done:
            out.append(ObjectOutcome(*key, title, "overwritten" if done[key].get("overwrite") else "created"))
        else:
            out.append(ObjectOutcome(*key, title, "not reported", "Kibana's answer does not mention it"))
    return out


def export_objects(settings: Settings, client: KibanaClient | None = None, lang: str = "en"
                   ) -> tuple[list[dict[str, Any]], dict]:
    """The secops objects of the ``lang`` set as the Kibana holds them, and Kibana's export details (missing
    objects, counts)."""
    client = client or KibanaClient(settings)
    wanted = [{"type": o["type"], "id": o["id"]} for o in build_objects(settings.elasticsearch.index_prefix, lang)]
    raw = client.call("POST", "/api/saved_objects/_export",
                      json.dumps({"objects": wanted, "includeReferencesDeep": False}).encode())
    lines = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
    details = lines.pop() if lines and "exportedCount" in lines[-1] else {}
    return lines, details


def add_security_indices(settings: Settings, client: KibanaClient | None = None) -> tuple[list[str], list[str]]:
    """Make the Security app read the secops indices; returns (patterns before, patterns after)."""
    client = client or KibanaClient(settings)
    current = client.json("GET", "/api/kibana/settings").get("settings", {}).get(SECURITY_DEFAULT_INDEX, {})
    before = list(current.get("userValue") or KIBANA_DEFAULT_SECURITY_INDICES)
    ours = [index_pattern(settings.elasticsearch.index_prefix, d) for d in SECURITY_DATASETS]
    after = before + [p for p in ours if p not in before]
    if after != before or "userValue" not in current:
        client.json("POST", "/api/kibana/settings", {"changes": {SECURITY_DEFAULT_INDEX: after}})
    return before, after
