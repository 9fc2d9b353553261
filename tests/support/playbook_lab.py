"""Helpers for the playbook integration tests: alerts in the real store, a playbook config, a webhook receiver."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from celery import Celery
from elasticsearch import ApiError, Elasticsearch

from secops.celery_app import configure
from secops.config import Settings, load_settings
from secops.ecs import iso
from secops.es.templates import index_for
from tests.support.services import write_config

SEVERITY = {"low": 21, "medium": 47, "high": 73, "critical": 99}


def put_alert(es: Elasticsearch, prefix: str, alert_id: str, *, source: str | None, destination: str | None = None,
              port: int | None = None, severity: str = "high", tags: list[str] | None = None,
              rule_id: str = "test-rule", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """An alert document per the shared contract (secops-alert), written straight into the real index."""
    now = iso()
    doc: dict[str, Any] = {
        "@timestamp": now, "event": {"dataset": "secops.alert", "kind": "alert", "severity": SEVERITY[severity],
                                     "ingested": now},
        "rule": {"id": rule_id, "name": f"Test rule {rule_id}", "severity": severity, "author": "tests"},
        "tags": tags or ["secops.contain"],
        "secops": {"alert": {"id": alert_id, "status": "open", "count": 1, "first_time": now, "last_time": now}},
    }
    if source:
        doc["source"] = {"ip": source}
    if destination:
        doc["destination"] = {"ip": destination, **({"port": port} if port else {})}
    for key, value in (extra or {}).items():
        cur = doc
        *parents, leaf = key.split(".")
        for p in parents:
            cur = cur.setdefault(p, {})
        cur[leaf] = value
    es.index(index=index_for(prefix, "secops.alert"), id=alert_id, document=doc, refresh="wait_for")
    return doc


def playbook_settings(settings: Settings, tmp_path: Path, books: dict[str, str], **playbooks: Any) -> Settings:
    """The test settings plus a folder with these playbooks (built-in ones off) and playbook overrides."""
    folder = tmp_path / "playbooks"
    folder.mkdir(exist_ok=True)
    for name, text in books.items():
        (folder / f"{name}.yaml").write_text(text)
    data = settings.model_dump(mode="json", exclude_none=True)
    data["playbooks"].update({"dirs": [str(folder)], "builtin": False, **playbooks})
    return load_settings(None, **data)


def config_for(settings: Settings, tmp_path: Path) -> Path:
    return write_config(settings, tmp_path / "secops.yaml")


def celery_client(settings: Settings) -> Celery:
    return configure(Celery("playbook-tests"), settings)


def secops_cli(config: Path, *args: str, actor: str = "analyst-alice", timeout: float = 60) -> \
        subprocess.CompletedProcess:
    exe = shutil.which("secops")
    assert exe, "the secops console script is not installed (pip install -e .)"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SECOPS_CONFIG": str(config), "SECOPS_ACTOR": actor,
           "HOME": str(config.parent), "COLUMNS": "200"}
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def run_for_alert(es: Elasticsearch, prefix: str, alert_id: str) -> dict[str, Any] | None:
    try:
        es.indices.refresh(index=index_for(prefix, "secops.playbook_run"), ignore_unavailable=True)
        res = es.search(index=index_for(prefix, "secops.playbook_run"), ignore_unavailable=True,
                        query={"term": {"secops.playbook.alert_id": alert_id}}, size=1)
    except ApiError as exc:
        if exc.meta.status == 503:  # the worker created the index a moment ago; its shard is still starting
            return None
        raise
    hits = res["hits"]["hits"]
    return hits[0]["_source"]["secops"]["playbook"] if hits else None


def audit_actions(es: Elasticsearch, prefix: str, run_id: str) -> list[dict[str, Any]]:
    es.indices.refresh(index=f"{prefix}-audit-*", allow_no_indices=True)
    res = es.search(index=f"{prefix}-audit-*", allow_no_indices=True, ignore_unavailable=True, size=1000,
                    query={"term": {"secops.audit.run_id": run_id}}, sort=[{"@timestamp": "asc"}])
    out = []
    for h in res["hits"]["hits"]:
        a = h["_source"]["secops"]["audit"]
        out.append({**a, "details": json.loads(a["details"]), "at": h["_source"]["@timestamp"]})
    return out


class WebhookReceiver:
    """A real HTTP server on ``host`` (127.0.0.1, or a lab gateway that namespace hosts reach) recording every
    POST; ``delay`` makes it a slow receiver."""

    def __init__(self, delay: float = 0.0, slow_marker: str = "", host: str = "127.0.0.1"):
        self.delay, self.slow_marker = delay, slow_marker
        self.requests: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "key": self.headers.get("Idempotency-Key"),
                                          "body": json.loads(body or b"{}"), "at": time.time()})
                receiver.arrived.set()
                if receiver.slow_marker in self.path:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b'{"ok": true}')
                except OSError:
                    pass  # the client died mid-request (the crash tests do that on purpose)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def count(self, marker: str) -> int:
        return sum(marker in r["path"] for r in self.requests)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
