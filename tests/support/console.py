"""Helpers for the console tests: one account per role, the app served by uvicorn on loopback, sign-in."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from elasticsearch import Elasticsearch
from fastapi import FastAPI
from fastapi.testclient import TestClient

from secops.config import Settings
from secops.console.app import create_app
from secops.console.roles import Role
from secops.console.users import UserStore

PASSWORD = "correct horse battery staple"
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "console"


def add_users(es: Elasticsearch, prefix: str) -> dict[str, str]:
    """One account per role, named after it; returns role -> user name."""
    store = UserStore(es, prefix)
    for role in Role:
        store.add(f"{role.value}-user", role.value, PASSWORD)
    return {role.value: f"{role.value}-user" for role in Role}


def console_app(settings: Settings, es: Elasticsearch, **kw: Any) -> FastAPI:
    return create_app(settings, es, **kw)


def http_client(app: FastAPI) -> TestClient:
    """An HTTP client for the app in process, from a fixed client address (audited as 'from where')."""
    return TestClient(app, base_url="https://testserver", client=("198.18.7.7", 50000))


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> str:
    """Sign a TestClient in; returns the session's CSRF token."""
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    res = client.post("/login", data={"name": name, "password": password, "csrf": token}, follow_redirects=False)
    assert res.status_code == 303, res.text[:500]
    return client.get("/api/me").json()["csrf"]


def audit_docs(es: Elasticsearch, prefix: str, **terms: str) -> list[dict[str, Any]]:
    es.indices.refresh(index=f"{prefix}-audit-*", allow_no_indices=True)
    filters = [{"term": {f"secops.audit.{k}": v}} for k, v in terms.items()]
    res = es.search(index=f"{prefix}-audit-*", allow_no_indices=True, ignore_unavailable=True, size=1000,
                    query={"bool": {"filter": filters}})
    out = []
    for h in res["hits"]["hits"]:
        src = h["_source"]
        out.append({**src["secops"]["audit"], "details": json.loads(src["secops"]["audit"]["details"]),
                    "source_ip": src.get("source", {}).get("ip"), "at": src["@timestamp"]})
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ConsoleServer:
    """The console app under a real uvicorn server on 127.0.0.1 (in a thread), optionally with TLS."""

    def __init__(self, app: FastAPI, certfile: Path | None = None, keyfile: Path | None = None) -> None:
        self.port = free_port()
        self.scheme = "https" if certfile else "http"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                ssl_certfile=str(certfile) if certfile else None,
                                ssl_keyfile=str(keyfile) if keyfile else None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> ConsoleServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("console server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def spool_capture(pcap_dir: Path, capture: Path, connections: int = 2) -> tuple[list[str], str, str]:
    """Put a capture into the rotating spool as one sealed chunk (as the capture engine would); returns the
    Community IDs of its ``connections`` busiest connections and the capture's first and last packet times."""
    from collections import Counter

    from collectors.community_id import community_id
    from collectors.decode import DPORT, DST, ONEWAY, PROTO, SPORT, SRC, Decoder
    from collectors.pcap_spool import Spool
    from collectors.pcapio import read_capture
    from secops.ecs import iso

    spool = Spool(pcap_dir)
    times = [ts for ts, *_ in read_capture(capture)]
    chunk = spool.new_chunk_path(times[0], 1)
    chunk.write_bytes(capture.read_bytes())
    Spool.seal(chunk)
    dec, counts = Decoder(), Counter()
    for ts, linktype, buf, off, caplen, _wirelen in read_capture(capture):
        for p in dec.decode(linktype, buf, off, caplen, ts):
            counts[community_id(p[PROTO], p[SRC], p[DST], p[SPORT], p[DPORT], one_way=p[ONEWAY])] += 1
            break
    return [cid for cid, _n in counts.most_common(connections)], iso(times[0] / 1e9), iso(times[-1] / 1e9)
