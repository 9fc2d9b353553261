"""`secops kibana import|export` against a small local HTTP server that records the requests and answers as
Kibana's saved-objects and advanced-settings APIs document. This is NOT a Kibana test: Kibana cannot be
installed from the registries this project reaches, so this only checks the HTTP contract secops keeps
(paths, headers, multipart body, the settings merge, and how each answer is reported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from detections.kibana import build_objects, load_ndjson
from detections.kibana_api import KIBANA_DEFAULT_SECURITY_INDICES, SECURITY_DEFAULT_INDEX
from secops.config import load_settings
from tests.support.services import write_config


class Recorder(BaseHTTPRequestHandler):
    """Answers like Kibana for the three APIs; state (stored objects, settings) lives on the server."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self, code: int, payload: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append(("GET", self.path, dict(self.headers), b""))
        if self.path.endswith("/api/kibana/settings"):
            settings = {k: {"userValue": v} for k, v in srv.settings.items()}
            return self._answer(200, json.dumps({"settings": settings}).encode())
        return self._answer(404, b"{}")

    def do_POST(self) -> None:
        srv = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        srv.requests.append(("POST", self.path, dict(self.headers), body))
        if self.headers.get("kbn-xsrf") is None:
            return self._answer(400, b'{"message":"Request must contain a kbn-xsrf header."}')
        if "/api/saved_objects/_import" in self.path:
            ndjson = body.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
            results, errors = [], []
            for line in ndjson.decode().splitlines():
                o = json.loads(line)
                if o["id"] in srv.refuse:
                    errors.append({"type": o["type"], "id": o["id"], "meta": {"title": o["attributes"]["title"]},
                                   "error": {"type": "unknown", "message": "refused by the test"}})
                    continue
                existed = (o["type"], o["id"]) in srv.objects
                srv.objects[(o["type"], o["id"])] = o
                results.append({"type": o["type"], "id": o["id"], "meta": {"title": o["attributes"]["title"]},
                                **({"overwrite": True} if existed else {})})
            return self._answer(200, json.dumps({"success": not errors, "successCount": len(results),
                                                 "successResults": results, "errors": errors}).encode())
        if self.path.endswith("/api/saved_objects/_export"):
            wanted = json.loads(body)["objects"]
            held = [srv.objects[(w["type"], w["id"])] for w in wanted if (w["type"], w["id"]) in srv.objects]
            missing = [w for w in wanted if (w["type"], w["id"]) not in srv.objects]
            lines = [json.dumps(o) for o in held] + [json.dumps({"exportedCount": len(held), "missingRefCount":
                                                                 len(missing), "missingReferences": missing})]
            return self._answer(200, "\n".join(lines).encode(), "application/ndjson")
        if self.path.endswith("/api/kibana/settings"):
            srv.settings.update(json.loads(body)["changes"])
            return self._answer(200, json.dumps({"settings": srv.settings}).encode())
        return self._answer(404, b"{}")


@pytest.fixture
def kibana():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    srv.requests, srv.objects, srv.settings, srv.refuse = [], {}, {}, set()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def cli(tmp_path, kibana, *args: str) -> subprocess.CompletedProcess:
    s = load_settings(None, kibana={"url": f"http://127.0.0.1:{kibana.server_port}", "username": "elastic",
                                    "password": "pw", "space": "soc"},
                      paths={"state_dir": str(tmp_path / "state")})
    config = write_config(s, tmp_path / "secops.yaml")
    data = config.read_text().replace("password: '**********'", "password: pw")
    config.write_text(data)
    env = dict(os.environ, SECOPS_CONFIG=str(config), COLUMNS="250")
    return subprocess.run([sys.executable, "-m", "secops", "kibana", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_import_reports_each_object_is_idempotent_and_keeps_security_indices(tmp_path, kibana):
    kibana.settings[SECURITY_DEFAULT_INDEX] = ["logs-*", "my-ids-*"]
    first = cli(tmp_path, kibana, "import")
    assert first.returncode == 0, first.stderr
    objects = build_objects("secops")
    assert f"{len(objects)} of {len(objects)} saved objects imported" in first.stdout
    assert first.stdout.count("created") == len(objects)
    post = next(r for r in kibana.requests if "_import" in r[1])
    assert post[1] == "/s/soc/api/saved_objects/_import?overwrite=true"
    assert post[2]["Authorization"].startswith("Basic ") and post[2]["Content-Type"].startswith("multipart/form-data")
    assert kibana.settings[SECURITY_DEFAULT_INDEX][:2] == ["logs-*", "my-ids-*"]
    assert "secops-alert" in kibana.settings[SECURITY_DEFAULT_INDEX]
    again = cli(tmp_path, kibana, "import")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("overwritten") == len(objects)
    assert "(unchanged)" in again.stdout
    assert len(kibana.objects) == len(objects)
    assert kibana.settings[SECURITY_DEFAULT_INDEX].count("secops-alert") == 1


def test_unset_security_setting_keeps_kibanas_default_patterns(tmp_path, kibana):
    assert cli(tmp_path, kibana, "import").returncode == 0
    after = kibana.settings[SECURITY_DEFAULT_INDEX]
    assert after[:len(KIBANA_DEFAULT_SECURITY_INDICES)] == KIBANA_DEFAULT_SECURITY_INDICES
    assert "secops-conn-*" in after


def test_import_names_the_objects_kibana_refused(tmp_path, kibana):
    board = next(o for o in build_objects("secops") if o["type"] == "dashboard")
    kibana.refuse.add(board["id"])
    res = cli(tmp_path, kibana, "import")
    assert res.returncode == 1
    assert "refused by the test" in res.stdout and board["id"] in res.stdout


def test_export_writes_what_kibana_holds(tmp_path, kibana):
    assert cli(tmp_path, kibana, "import", "--no-security").returncode == 0
    edited = next(o for o in kibana.objects.values() if o["type"] == "dashboard")
    edited["attributes"]["description"] = "edited by the SOC"
    out = tmp_path / "held.ndjson"
    res = cli(tmp_path, kibana, "export", str(out))
    assert res.returncode == 0, res.stderr
    held = load_ndjson(out)
    assert len(held) == len(build_objects("secops"))
    assert any(o["attributes"].get("description") == "edited by the SOC" for o in held)
    assert not any("/api/kibana/settings" in r[1] for r in kibana.requests)


def test_unreachable_kibana_is_one_clear_line(tmp_path, kibana):
    port = kibana.server_port
    kibana.shutdown()
    kibana.server_close()
    kibana.server_port = port
    res = cli(tmp_path, kibana, "import")
    assert res.returncode != 0
    assert "Kibana unreachable" in res.stderr + res.stdout


def test_both_language_sets_share_a_space_and_export_by_language(tmp_path, kibana):
    assert cli(tmp_path, kibana, "import", "--no-security").returncode == 0
    zh = cli(tmp_path, kibana, "import", "--no-security", "--lang", "zh")
    assert zh.returncode == 0, zh.stderr
    en_set, zh_set = build_objects("secops", "en"), build_objects("secops", "zh")
    assert zh.stdout.count("created") == len(zh_set)  # its own ids: nothing of the English set overwritten
    assert len(kibana.objects) == len(en_set) + len(zh_set)
    out = tmp_path / "zh.ndjson"
    assert cli(tmp_path, kibana, "export", "--lang", "zh", str(out)).returncode == 0
    held = load_ndjson(out)
    assert {o["id"] for o in held} == {o["id"] for o in zh_set}
    assert {o["attributes"]["title"] for o in held if o["type"] == "dashboard"} >= {"secops: 安全运营中心总览"}
    bad = cli(tmp_path, kibana, "import", "--lang", "fr")
    assert bad.returncode != 0 and "--lang must be en or zh" in bad.stdout + bad.stderr
