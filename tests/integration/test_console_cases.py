"""Cases over HTTP and the CLI against the real store and spool: escalate alerts (one, a group) into new and
existing cases, observables, safe markdown comments, the pcap attached and hashed, the zip export and its
SHA-256 + SM3 manifests checked by independent code, role checks, and an audit document for every change."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from gmssl import func, sm3

from collectors.pcapio import read_capture
from detections.cases import CaseError, CaseStore, extract_observables
from tests.support.console import add_users, audit_docs, console_app, http_client, sign_in, spool_capture
from tests.support.playbook_lab import put_alert

pytestmark = pytest.mark.integration
JA3 = "e7d705a3286e19ea42f587b344ee6865"
SHA = "a" * 64


def gm_sm3(data: bytes) -> str:
    """SM3 by gmssl's pure-Python implementation: an oracle independent of OpenSSL's, which the export uses."""
    return sm3.sm3_hash(func.bytes_to_list(data))


@pytest.fixture
def lab(settings, es, testdata):
    prefix = settings.elasticsearch.index_prefix
    cids, first, last = spool_capture(settings.paths.pcaps(), testdata / "zeek" / "traces" / "ftp" / "ipv4.pcap")
    put_alert(es, prefix, "ftp-1", source="198.18.1.1", destination="198.18.2.2", port=21, rule_id="ftp", extra={
        "network.community_id": cids, "secops.alert.first_time": first, "secops.alert.last_time": last,
        "tls.client.ja3": JA3, "file.hash.sha256": SHA, "dns.question.name": "Evil.Example.org"})
    for i in range(3):
        put_alert(es, prefix, f"scan-{i}", source=f"198.18.3.{i + 1}", destination="198.18.2.2", rule_id="scan",
                  extra={"dns.question.name": "=cmd|' /C calc'!A0"})
    app = console_app(settings, es)
    users = add_users(es, prefix)
    return app, users, prefix, cids


def client_for(app, user):
    client = http_client(app)
    return client, {"X-CSRF-Token": sign_in(client, user)}


def test_observables_are_validated_and_kept_once():
    ja4 = "t13d1516h2_8daaf6152771_b0da82dd1658"
    docs = [{"source": {"ip": "198.18.0.1"}, "destination": {"ip": "not-an-ip"},
             "dns": {"question": {"name": "=HYPERLINK(\"http://x\")"}},
             "tls": {"client": {"ja3": JA3, "ja4": ja4}, "server": {"hash": {"sha1": "b" * 40}}}},
            {"source": {"ip": "198.18.0.1"}, "url": {"domain": "WWW.Example.COM"},
             "network": {"community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg="}}]
    got = {(o.type, o.value) for o in extract_observables(docs)}
    assert got == {("ip", "198.18.0.1"), ("ja3", JA3), ("ja4", ja4),
                   ("hash", "b" * 40), ("domain", "www.example.com"),
                   ("community_id", "1:LQU9qZlK+B5F3KDmev6m5PMibrg=")}


def test_escalate_comment_attach_export(lab, es, settings, tmp_path):
    app, users, prefix, cids = lab
    client, h = client_for(app, users["analyst"])
    # one alert into a new case
    res = client.post("/api/cases/escalate", json={"ids": ["ftp-1"], "title": "FTP exfil =SUM(1,2)"}, headers=h)
    assert res.status_code == 200, res.text
    case = res.json()
    case_id, c = case["_id"], case["secops"]["case"]
    assert c["alert_ids"] == ["ftp-1"] and c["severity"] == "high" and c["status"] == "open"
    kinds = {(o["type"], o["value"]) for o in c["observables"]}
    assert {("ip", "198.18.1.1"), ("ip", "198.18.2.2"), ("ja3", JA3), ("hash", SHA),
            ("domain", "evil.example.org")} <= kinds
    assert {("community_id", cid) for cid in cids} <= kinds
    # a group (by rule) into the same case, from the page form
    res = client.post("/alerts/escalate", data={"csrf": h["X-CSRF-Token"], "scope": "group", "f_status": "open",
                                                "f_field": "rule.id", "f_value": "scan", "case_id": case_id},
                      follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"].startswith(f"/cases/{case_id}")
    c = client.get(f"/api/cases/{case_id}").json()["secops"]["case"]
    assert sorted(c["alert_ids"]) == ["ftp-1", "scan-0", "scan-1", "scan-2"]
    assert not any(o["value"].startswith("=") for o in c["observables"])  # not a domain: not an observable
    listed = client.get("/cases", params={"status": "open"})
    assert listed.status_code == 200 and f'href="/cases/{case_id}"' in listed.text
    assert client.get("/cases", params={"status": "bogus"}).status_code == 400
    # edit, comment (hostile markdown)
    res = client.post(f"/api/cases/{case_id}", json={"status": "in_progress", "assignee": "responder-user",
                                                     "tags": ["exfil", "@SUM(A1)"]}, headers=h)
    assert res.status_code == 200, res.text
    hostile = ("Found **it**.\n\n<script>window.__pwned=1</script> [click](javascript:alert(1)) "
               "<img src=x onerror=alert(2)> [ok](https://intel.example/x)")
    assert client.post(f"/api/cases/{case_id}/comments", json={"text": hostile}, headers=h).status_code == 200
    page = client.get(f"/cases/{case_id}").text
    body = page[page.index('id="comments"'):page.index('id="case-comment"')]
    assert "<strong>it</strong>" in body and "&lt;script&gt;" in body and "<script" not in body
    assert "javascript:" not in body.replace("(javascript:alert(1))", "") and "<img" not in body
    assert 'href="https://intel.example/x" rel="noopener noreferrer nofollow"' in body
    # the pcap of its connections, hashed when attached
    res = client.post(f"/api/cases/{case_id}/pcap", headers=h)
    assert res.status_code == 200, res.text
    att = res.json()
    got = client.get(f"/cases/{case_id}/attachments/{att['id']}")
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == att["sha256"]
    (tmp_path / "a.pcap").write_bytes(got.content)
    assert len(list(read_capture(tmp_path / "a.pcap"))) > 10
    # export: the zip's manifests agree with independent digests of every file
    res = client.get(f"/cases/{case_id}/export")
    assert res.status_code == 200 and hashlib.sha256(res.content).hexdigest() == res.headers["x-content-sha256"]
    (tmp_path / "case.zip").write_bytes(res.content)
    with zipfile.ZipFile(tmp_path / "case.zip") as zf:
        files = {n.split("/", 1)[1]: zf.read(n) for n in zf.namelist()}
    for manifest, digest in (("MANIFEST.sha256", lambda b: hashlib.sha256(b).hexdigest()), ("MANIFEST.sm3", gm_sm3)):
        lines = [line.split("  ", 1) for line in files[manifest].decode().splitlines()]
        assert {name for _d, name in lines} == set(files) - {"MANIFEST.sha256", "MANIFEST.sm3"}
        assert all(digest(files[name]) == d for d, name in lines), manifest
    exported = json.loads(files["case.json"])
    assert files[f"attachments/{att['id']}-{att['name']}"] == got.content
    ec = exported["secops"]["case"]
    assert ec["title"] == "FTP exfil =SUM(1,2)"  # not formula-like: kept
    assert "'@SUM(A1)" in ec["tags"]  # a formula-like value arrives as inert text
    assert ec["comments"][0]["text"] == hostile  # text is not a formula: kept exactly
    # the history and the audit trail
    actions = [x["action"] for x in ec["history"]]
    assert actions[0] == "created" and actions.count("alert_added") == 4 and "status" in actions
    assert {"commented", "attached", "assignee", "tags", "observables_added"} <= set(actions)
    audited = [d["action"] for d in audit_docs(es, prefix, actor=users["analyst"]) if d["action"].startswith("case.")]
    assert sorted(set(audited)) == ["case.attach_pcap", "case.attachment.download", "case.comment", "case.escalate",
                                    "case.export", "case.update"]
    assert audited.count("case.escalate") == 2


def test_roles_on_cases(lab, es):
    app, users, prefix, _cids = lab
    analyst, ha = client_for(app, users["analyst"])
    case_id = analyst.post("/api/cases", json={"title": "t"}, headers=ha).json()["_id"]
    auditor, hu = client_for(app, users["auditor"])
    viewer, hv = client_for(app, users["viewer"])
    assert auditor.get(f"/cases/{case_id}").status_code == 200
    assert auditor.post(f"/api/cases/{case_id}", json={"status": "closed"}, headers=hu).status_code == 403
    assert auditor.post(f"/api/cases/{case_id}/comments", json={"text": "x"}, headers=hu).status_code == 403
    assert auditor.get(f"/cases/{case_id}/export").status_code == 200
    assert viewer.post("/api/cases", json={"title": "v"}, headers=hv).status_code == 403
    assert viewer.post("/api/cases/escalate", json={"ids": ["ftp-1"]}, headers=hv).status_code == 403
    assert viewer.get(f"/cases/{case_id}/export").status_code == 403
    assert "case-edit" not in auditor.get(f"/cases/{case_id}").text
    denied = audit_docs(es, prefix, action="console.denied")
    assert {d["actor"] for d in denied} == {users["auditor"], users["viewer"]} and len(denied) == 5
    assert analyst.get(f"/api/cases/{case_id}").json()["secops"]["case"]["status"] == "open"
    # bad values: a clear 4xx, nothing changed
    assert analyst.post(f"/api/cases/{case_id}", json={"status": "gone"}, headers=ha).status_code == 422
    res = analyst.post(f"/cases/{case_id}/update", data={"csrf": ha["X-CSRF-Token"], "assignee": "<b>x</b>"})
    assert res.status_code == 400 and "assignee" in res.text
    assert analyst.post("/api/cases/escalate", json={"ids": ["no-such-alert"]}, headers=ha).status_code == 404


def test_concurrent_changes_are_not_lost(es, settings, tmp_path):
    store = CaseStore(es, settings.elasticsearch.index_prefix, tmp_path)
    case_id = store.create("race", "a")["_id"]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: store.comment(case_id, f"user{i}", f"comment {i}"), range(12)))
    c = store.get(case_id)["secops"]["case"]
    assert sorted(m["text"] for m in c["comments"]) == sorted(f"comment {i}" for i in range(12))
    with pytest.raises(CaseError):
        store.update(case_id, "a", status="gone")
    with pytest.raises(CaseError):
        store.comment(case_id, "a", "   ")


def cli(config, *args):
    return subprocess.run([sys.executable, "-m", "secops", *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "SECOPS_CONFIG": str(config), "SECOPS_ACTOR": "ops-analyst",
                               "COLUMNS": "200", "PYTHONPATH": sys.path[0] if sys.path[0] else "."}, check=False)


def test_cases_cli(lab, es, config_file, tmp_path):
    _app, _users, prefix, _cids = lab
    out = cli(config_file, "cases", "add", "ftp-1", "scan-0", "--title", "from the shell")
    assert out.returncode == 0, out.stderr
    case_id = out.stdout.strip()
    assert cli(config_file, "cases", "comment", case_id, "**checked** <script>").returncode == 0
    out = cli(config_file, "cases", "attach-pcap", case_id)
    assert out.returncode == 0 and "sha256=" in out.stdout, out.stderr
    assert cli(config_file, "cases", "close", case_id).returncode == 0
    out = cli(config_file, "cases", "export", case_id, "--out", str(tmp_path / "x"))
    assert out.returncode == 0, out.stderr
    path, sha = out.stdout.split()
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == sha.split("=")[1]
    shown = json.loads(cli(config_file, "cases", "show", case_id).stdout)["secops"]["case"]
    assert shown["status"] == "closed" and shown["alert_ids"] == ["ftp-1", "scan-0"]
    assert case_id in cli(config_file, "cases", "list", "--status", "closed").stdout
    bad = cli(config_file, "cases", "add", "nope")
    assert bad.returncode == 2 and "no alert" in bad.stderr
    actions = sorted({d["action"] for d in audit_docs(es, prefix, actor="ops-analyst")})
    assert actions == ["case.attach_pcap", "case.comment", "case.escalate", "case.export", "case.update"]
