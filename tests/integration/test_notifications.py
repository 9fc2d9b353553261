"""Notifications to real receivers on loopback (an HTTP server, aiosmtpd, a UDP syslog socket): a new high alert
reaches the webhook in Simplified Chinese, a case assignment and a pending approval reach the mailbox in English,
the per-severity policy holds back what is below a target's minimum, and a dead target fails alone (audited)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from detections.alerts import AlertStore
from detections.compiler import compile_rules
from detections.loader import BUILTIN_RULES, load_rules
from detections.scheduler import Scheduler
from secops.config import NotificationTarget
from secops.devstack.stack import free_port
from secops.notify import Notifier
from tests.integration.detect_support import T0, minutes, svcctl, write
from tests.integration.test_playbook_runner import make
from tests.support.console import add_users, audit_docs, console_app, http_client, sign_in
from tests.support.playbook_lab import put_alert
from tests.unit.test_playbook_delivery import Inbox

pytestmark = pytest.mark.integration
SVC_RULE = "24e688c5-144e-5c29-9d44-a52e73cd78c6"  # high: service installed over SMB (svcctl CreateServiceW)


@pytest.fixture
def receivers():
    posts: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append({"path": self.path, "agent": self.headers["User-Agent"], "json": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    syslog = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    syslog.bind(("127.0.0.1", 0))
    syslog.settimeout(0.5)
    yield {"webhook": f"http://127.0.0.1:{http.server_address[1]}/soc", "posts": posts, "smtp": smtp,
           "inbox": inbox, "syslog": syslog}
    http.shutdown()
    smtp.stop()
    syslog.close()


def configure(settings, r) -> None:
    settings.playbooks.smtp_host, settings.playbooks.smtp_port = "127.0.0.1", r["smtp"].port
    settings.notifications.console_url = "https://soc.city.example:8443"
    settings.notifications.targets = [
        NotificationTarget(name="chat", channel="webhook", url=r["webhook"], events=["alert.created"],
                           min_severity="high", language="zh_CN"),
        NotificationTarget(name="duty-mail", channel="smtp", to=["duty@city.example"],
                           events=["case.assigned", "approval.pending"], min_severity="medium"),
        NotificationTarget(name="siem", channel="syslog", address=f"127.0.0.1:{r['syslog'].getsockname()[1]}",
                           min_severity="critical"),
    ]


def syslog_lines(sock: socket.socket) -> list[str]:
    out = []
    try:
        while True:
            out.append(sock.recv(65535).decode())
    except TimeoutError:
        return out


def test_new_high_alert_reaches_the_webhook_in_chinese(es, settings, receivers):
    configure(settings, receivers)
    rules = [r for r in compile_rules(load_rules([BUILTIN_RULES])) if r.id == SVC_RULE]
    store = AlertStore(es, settings.elasticsearch.index_prefix, notifier=None,
                       announce=Notifier.from_settings(settings, es))
    write(es, settings, [svcctl("198.18.9.1", "198.18.9.9", T0, ingested=T0)])
    [run] = Scheduler(es, settings, rules, alerts=store).run(now=T0 + minutes(5))
    [alert_id] = run.alert_ids
    [post] = receivers["posts"]
    body = post["json"]
    assert post["path"] == "/soc" and post["agent"] == "secops-notify"
    assert body["event"] == "alert.created" and body["severity"] == "high" and body["language"] == "zh-CN"
    assert body["fields"]["alert_id"] == alert_id and body["fields"]["source_ip"] == "198.18.9.1"
    zh_title = rules[0].i18n["zh-CN"]["title"]
    assert body["subject"] == f"[secops] 高危告警：{zh_title}"  # noqa: RUF001 (Chinese punctuation)
    assert "源地址：198.18.9.1" in body["text"] and f"/alerts/{alert_id}" in body["link"]  # noqa: RUF001
    # the syslog target takes critical only, the mail target no alerts: nothing there
    assert syslog_lines(receivers["syslog"]) == [] and receivers["inbox"].messages == []
    # the same window again updates nothing and announces nothing
    Scheduler(es, settings, rules, alerts=store).run(now=T0 + minutes(6))
    assert len(receivers["posts"]) == 1
    [sent] = audit_docs(es, settings.elasticsearch.index_prefix, action="notify.sent")
    assert sent["object"] == f"alert.created:{alert_id}" and sent["actor"] == "secops-notify"


def test_case_assignment_mail_and_a_dead_target_fails_alone(es, settings, receivers):
    configure(settings, receivers)
    settings.notifications.targets.append(NotificationTarget(
        name="dead", channel="webhook", url=f"http://127.0.0.1:{free_port()}/x", events=["case.assigned"],
        min_severity="low"))
    prefix = settings.elasticsearch.index_prefix
    users = add_users(es, prefix)
    client = http_client(console_app(settings, es))
    h = {"X-CSRF-Token": sign_in(client, users["analyst"])}
    low = client.post("/api/cases", json={"title": "printer noise", "severity": "low"}, headers=h).json()
    client.post(f"/api/cases/{low['_id']}", json={"assignee": "bob"}, headers=h).raise_for_status()
    assert receivers["inbox"].messages == []  # below the mail target's minimum (medium)
    case = client.post("/api/cases", json={"title": "SMB lateral movement", "severity": "high"}, headers=h).json()
    res = client.post(f"/api/cases/{case['_id']}", json={"assignee": "alice"}, headers=h)
    assert res.status_code == 200 and res.json()["secops"]["case"]["assignee"] == "alice"
    [mail] = receivers["inbox"].messages
    assert mail["To"] == "duty@city.example"
    assert mail["Subject"] == f"[secops] case {case['_id']} assigned to alice"
    text = mail.get_payload(decode=True).decode()
    assert f'"SMB lateral movement" (high) was assigned to alice by {users["analyst"]}' in text
    assert f"https://soc.city.example:8443/cases/{case['_id']}" in text
    failed = audit_docs(es, prefix, action="notify.failed")
    assert {d["outcome"] for d in failed} == {"failure"} and len(failed) == 2  # both assignments, dead target
    assert "unreachable" in json.dumps([d["details"] for d in failed])


def test_pending_approval_mail(settings, redis_server, tmp_path, receivers):
    r, inline = make(settings, tmp_path, redis_server, block_netns="secops-no-such-netns")
    configure(r.settings, receivers)
    put_alert(r.es, r.prefix, "n1", source="198.18.0.50", tags=["t.gated"], severity="medium")
    run_id = r.on_alert("n1")[0]
    assert inline.drain(r) == ["waiting"]
    [mail] = receivers["inbox"].messages
    assert mail["Subject"] == "[secops] approval needed: gated, step block"
    text = mail.get_payload(decode=True).decode()
    assert f"Playbook run {run_id} (gated) on alert n1 waits for an approval of step block" in text
