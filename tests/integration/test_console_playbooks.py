"""Starting a playbook on an alert by hand from the console: the plan changes nothing; a start honours dry-run
(asked for, or forced by the configuration); only the responder may; every step is audited."""

from __future__ import annotations

import re

import pytest

from secops.console.app import create_app
from tests.integration.test_playbook_containment import CONTAIN
from tests.support.console import add_users, audit_docs, http_client, sign_in
from tests.support.playbook_lab import playbook_settings, put_alert, run_for_alert

pytestmark = pytest.mark.integration


def test_plan_and_dry_run_start_from_the_alert_page(settings, redis_server, es, tmp_path):
    s = playbook_settings(settings, tmp_path, {"contain": CONTAIN}, dry_run=False)
    prefix = s.elasticsearch.index_prefix
    app = create_app(s, es)
    users = add_users(es, prefix)
    put_alert(es, prefix, "a1", source="198.18.5.5", destination="198.18.5.6", port=8080)
    client = http_client(app)
    csrf = sign_in(client, users["responder"])
    page = client.get("/alerts/a1").text
    assert 'id="playbook-form"' in page and ">contain-test<" in page

    plan = client.post("/alerts/a1/playbooks", data={"name": "contain-test", "mode": "plan", "csrf": csrf})
    assert plan.status_code == 200 and "block 198.18.5.5" in plan.text.replace("&#34;", '"')
    assert run_for_alert(es, prefix, "a1") is None

    res = client.post("/alerts/a1/playbooks", data={"name": "contain-test", "mode": "start", "dry_run": "on",
                                                    "csrf": csrf}, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"].startswith("/runs/")
    run = run_for_alert(es, prefix, "a1")
    assert run["dry_run"] is True and run["actor"] == "responder-user" and run["name"] == "contain-test"
    assert client.get(res.headers["location"]).status_code == 200
    (started,) = audit_docs(es, prefix, actor="responder-user", action="console.playbook.start")
    assert started["details"]["dry_run"] is True and started["details"]["run_id"] == run["run_id"]
    assert audit_docs(es, prefix, actor="responder-user", action="console.playbook.plan")

    # the configuration's dry-run wins over a start without it
    forced = playbook_settings(settings, tmp_path, {"contain": CONTAIN}, dry_run=True)
    client2 = http_client(create_app(forced, es))
    csrf2 = sign_in(client2, users["responder"])
    put_alert(es, prefix, "a2", source="198.18.5.7")
    out = client2.post("/api/alerts/a2/playbooks", json={"name": "contain-test", "dry_run": False},
                       headers={"X-CSRF-Token": csrf2})
    assert out.status_code == 200 and out.json()["secops"]["playbook"]["dry_run"] is True

    # an analyst may not start or plan, and sees no form
    analyst = http_client(app)
    token = sign_in(analyst, users["analyst"])
    assert 'id="playbook-form"' not in analyst.get("/alerts/a1").text
    refused = analyst.post("/alerts/a1/playbooks", data={"name": "contain-test", "mode": "start", "csrf": token})
    assert refused.status_code == 403
    assert re.search("may not playbooks.start", refused.text)
    unknown = client.post("/api/alerts/a1/playbooks", json={"name": "nope", "plan_only": True},
                          headers={"X-CSRF-Token": csrf})
    assert unknown.status_code == 404
