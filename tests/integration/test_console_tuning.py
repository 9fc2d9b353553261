"""Tuning from the alert against the real node: an exception made from an alert's values closes the open alerts
it covers; the scheduler's next run over new matching traffic raises nothing while other traffic still alerts;
once expired the alert comes back. Conditions (exact, domain suffix, CIDR) as Lucene on real documents; roles,
audit and the `secops rules exceptions` CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from detections.alerts import AlertStore
from detections.compiler import compile_rules
from detections.exceptions import Condition, ExceptionError, ExceptionStore, conditions_from
from detections.loader import BUILTIN_RULES, load_rules
from detections.scheduler import Scheduler
from secops.ecs import iso
from tests.integration.detect_support import T0, event, minutes, svcctl, write
from tests.support.console import add_users, audit_docs, console_app, http_client, sign_in

pytestmark = pytest.mark.integration
SVC_RULE = "24e688c5-144e-5c29-9d44-a52e73cd78c6"


def scheduler(es, settings) -> Scheduler:
    rules = [r for r in compile_rules(load_rules([BUILTIN_RULES])) if r.id == SVC_RULE]
    return Scheduler(es, settings, rules, alerts=AlertStore(es, settings.elasticsearch.index_prefix,
                                                            settings.detections.suppression_seconds, notifier=None))


def alerts_by_source(es, settings) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a in AlertStore(es, settings.elasticsearch.index_prefix, notifier=None).list(size=100):
        out.setdefault(a["source"]["ip"], []).append(a["secops"]["alert"]["status"])
    return out


def test_exception_from_an_alert_then_expiry(es, settings):
    prefix = settings.elasticsearch.index_prefix
    settings.detections.lookback_seconds = 60  # each run sees only the traffic that arrived since the last
    s = scheduler(es, settings)
    write(es, settings, [svcctl("198.18.0.1", "198.18.0.9", T0 - minutes(2), ingested=T0 - minutes(2)),
                         svcctl("198.18.0.2", "198.18.0.9", T0 - minutes(2), ingested=T0 - minutes(2))])
    assert s.run(now=T0)[0].created == 2
    app = console_app(settings, es)
    users = add_users(es, prefix)
    client = http_client(app)
    h = {"X-CSRF-Token": sign_in(client, users["analyst"])}
    alert_id = next(a["_id"] for a in AlertStore(es, prefix, notifier=None).list() if a["source"]["ip"] == "198.18.0.1")
    # the tune page offers the alert's values
    page = client.get(f"/alerts/{alert_id}/tune").text
    assert 'value="198.18.0.1"' in page and 'value="198.18.0.9"' in page
    # viewer and auditor may not create one
    for role in ("viewer", "auditor"):
        other = http_client(app)
        hh = {"X-CSRF-Token": sign_in(other, users[role])}
        body = {"rule_id": SVC_RULE, "conditions": [{"field": "source.ip", "value": "198.18.0.1"}], "comment": "x"}
        assert other.post("/api/exceptions", json=body, headers=hh).status_code == 403
    # from the page form: source.ip (checked) + destination.ip (not checked), closing the alert it covers
    form = {"csrf": h["X-CSRF-Token"], "rule_id": SVC_RULE, "alert_id": alert_id, "use": ["0"],
            "field": ["source.ip", "destination.ip"], "op": ["is", "is"], "value": ["198.18.0.1", "198.18.0.9"],
            "expires": "30d", "comment": "admin jump host runs service installs", "close_matching": "on"}
    res = client.post("/exceptions", data=form, follow_redirects=False)
    assert res.status_code == 303, res.text
    (exc,) = ExceptionStore(es, prefix).list()
    assert [c.as_doc() for c in exc.conditions] == [{"field": "source.ip", "op": "is", "value": "198.18.0.1"}]
    assert exc.author == users["analyst"] and exc.expires
    assert alerts_by_source(es, settings) == {"198.18.0.1": ["closed"], "198.18.0.2": ["open"]}
    # the next run over new matching traffic raises nothing for the excepted host; others still alert
    write(es, settings, [svcctl("198.18.0.1", "198.18.0.9", T0 + minutes(1), ingested=T0 + minutes(1)),
                         svcctl("198.18.0.3", "198.18.0.9", T0 + minutes(1), ingested=T0 + minutes(1))])
    [run] = s.run(now=T0 + minutes(2))
    assert run.created == 1 and run.error is None
    got = alerts_by_source(es, settings)
    assert got["198.18.0.1"] == ["closed"] and got["198.18.0.3"] == ["open"]
    # expire it (edit through the API), new traffic from the host: the alert comes back
    res = client.post(f"/api/exceptions/{exc.id}", json={"expires": iso(T0 + minutes(3))}, headers=h)
    assert res.status_code == 200 and res.json()["expires"].startswith(iso(T0 + minutes(3))[:19])
    write(es, settings, [svcctl("198.18.0.1", "198.18.0.9", T0 + minutes(4), ingested=T0 + minutes(4))])
    [run] = s.run(now=T0 + minutes(5))
    assert run.created == 1
    assert sorted(alerts_by_source(es, settings)["198.18.0.1"]) == ["closed", "open"]
    # removal, and the audit trail of every change
    assert client.post(f"/api/exceptions/{exc.id}/delete", headers=h).status_code == 200
    assert ExceptionStore(es, prefix).list() == []
    actions = [d["action"] for d in audit_docs(es, prefix, actor=users["analyst"])
               if d["action"].startswith("exception.")]
    assert sorted(actions) == ["exception.create", "exception.edit", "exception.remove"]
    (created,) = audit_docs(es, prefix, action="exception.create")
    assert created["details"]["closed_alerts"] == [alert_id] and created["details"]["from_alert"] == alert_id
    assert len(audit_docs(es, prefix, action="console.denied")) == 2


def test_conditions_as_lucene_on_real_documents(es, settings):
    names = ["updates.example.com", "Example.COM", "notexample.com", "example.com.evil.org", "a.b.example.com"]
    write(es, settings, [event("secops.dns", f"198.18.5.{i}", "198.18.5.250", T0, {"dns.question.name": n},
                               ingested=T0) for i, n in enumerate(names)])
    index = f"{settings.elasticsearch.index_prefix}-dns-*"

    stored = [h["_source"] for h in es.search(index=index, size=50)["hits"]["hits"]]
    assert len(stored) == len(names)

    def hits(cond: Condition) -> set[str]:
        res = es.search(index=index, size=50, query={"query_string": {"query": cond.lucene(), "lenient": True,
                                                                      "allow_leading_wildcard": True}})
        got = {h["_source"]["dns"]["question"]["name"] for h in res["hits"]["hits"]}
        expected = {d["dns"]["question"]["name"] for d in stored if cond.holds(d)}
        assert got == expected, (cond, got, expected)  # the store and the Python check agree
        return got

    assert hits(Condition("dns.question.name", "suffix", "example.com")) == {
        "updates.example.com", "Example.COM", "a.b.example.com"}
    assert hits(Condition("dns.question.name", "is", "notexample.com")) == {"notexample.com"}
    assert hits(Condition("source.ip", "cidr", "198.18.5.0/30")) == set(names[:4])
    # hostile values stay values: quotes, wildcards and Lucene operators are escaped
    hostile = Condition("dns.question.name", "suffix", 'com" OR *:* OR "x')
    assert hits(hostile) == set()
    for bad in (("source.ip", "cidr", "not-a-net"), ("a b", "is", "x"), ("source.ip", "regex", "x"),
                ("source.ip", "is", "")):
        with pytest.raises(ExceptionError):
            Condition(*bad)
    with pytest.raises(ExceptionError):
        conditions_from([])


def cli(config, *args):
    return subprocess.run([sys.executable, "-m", "secops", *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "SECOPS_CONFIG": str(config), "SECOPS_ACTOR": "ops-analyst",
                               "COLUMNS": "200", "PYTHONPATH": sys.path[0] if sys.path[0] else "."}, check=False)


def test_rules_exceptions_cli(es, settings, config_file):
    prefix = settings.elasticsearch.index_prefix
    s = scheduler(es, settings)
    write(es, settings, [svcctl("198.18.0.1", "198.18.0.9", T0 - minutes(2), ingested=T0 - minutes(2))])
    assert s.run(now=T0)[0].created == 1
    out = cli(config_file, "rules", "exceptions", "add", SVC_RULE, "--when", "source.ip@198.18.0.0/24",
              "--comment", "lab", "--expires", "12h", "--close-matching")
    assert out.returncode == 0, out.stderr
    exc_id = out.stdout.split()[0]
    assert "closed 1 alerts" in out.stdout
    assert exc_id in cli(config_file, "rules", "exceptions", "list").stdout
    assert cli(config_file, "rules", "exceptions", "edit", exc_id, "--expires", "never").returncode == 0
    assert ExceptionStore(es, prefix).get(exc_id).expires is None
    bad = cli(config_file, "rules", "exceptions", "add", SVC_RULE, "--when", "source.ip@nope", "--comment", "x")
    assert bad.returncode == 2 and "not an address" in bad.stderr
    assert cli(config_file, "rules", "exceptions", "remove", exc_id).returncode == 0
    actions = sorted(d["action"] for d in audit_docs(es, prefix, actor="ops-analyst"))
    assert actions == ["exception.create", "exception.edit", "exception.remove"]
