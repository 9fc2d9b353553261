"""Console security on the server, over HTTP against the real store: every endpoint checks its role and
audits refusals, CSRF is required, logins are throttled, cookies are locked down, hostile values are escaped."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from secops.console.roles import PERMISSIONS, Perm, Role
from secops.console.users import LoginThrottle, UserError, UserStore
from tests.support.console import PASSWORD, add_users, audit_docs, console_app, http_client, sign_in
from tests.support.playbook_lab import put_alert

pytestmark = pytest.mark.integration
PUBLIC = {("GET", "/login"), ("POST", "/login")}
HOSTILE = {
    "script": "<script>window.__pwned = 1</script>",
    "img": '"><img src=x onerror="window.__pwned=2">',
    "js_url": "javascript:window.__pwned=3",
    "template": "{{ 7*7 }}{% raw %}${7*7}",
}
# a request body each route accepts from a role that may call it (the role check comes first either way)
BODIES = {
    "/alerts/actions": {"data": {"action": "acknowledge", "ids": "a1"}},
    "/alerts/{alert_id}/actions": {"data": {"action": "acknowledge"}},
    "/runs/{run_id}/decision": {"data": {"decision": "deny", "reason": "test"}},
    "/kill-switch": {"data": {"state": "off"}},
    "/preferences": {"data": {"lang": "en"}},
    "/logout": {"data": {}},
    "/api/alerts/actions": {"json": {"action": "acknowledge", "ids": ["a1"]}},
    "/api/runs/{run_id}/decision": {"json": {"decision": "deny", "reason": "test"}},
    "/api/kill-switch": {"json": {"on": False}},
    "/alerts/{alert_id}/playbooks": {"data": {"name": "no-such-playbook", "mode": "plan"}},
    "/api/alerts/{alert_id}/playbooks": {"json": {"name": "no-such-playbook", "plan_only": True}},
    "/cases": {"data": {"title": "a case"}},
    "/alerts/escalate": {"data": {"ids": "a1", "title": "from a1"}},
    "/cases/{case_id}/comments": {"data": {"text": "note"}},
    "/api/cases": {"json": {"title": "a case"}},
    "/api/cases/escalate": {"json": {"ids": ["a1"]}},
    "/api/cases/{case_id}": {"json": {"status": "in_progress"}},
    "/api/cases/{case_id}/comments": {"json": {"text": "note"}},
    "/exceptions": {"data": {"rule_id": "test-rule", "comment": "c", "field": "source.ip", "op": "is",
                             "value": "198.18.0.10", "use": "0"}},
    "/api/exceptions": {"json": {"rule_id": "test-rule", "comment": "c",
                                 "conditions": [{"field": "source.ip", "value": "198.18.0.10"}]}},
    "/api/exceptions/{exception_id}": {"json": {"comment": "d"}},
}


@pytest.fixture
def console(settings, es):
    prefix = settings.elasticsearch.index_prefix
    app = console_app(settings, es, throttle=LoginThrottle(max_failures=5, window_seconds=60))
    users = add_users(es, prefix)
    put_alert(es, prefix, "a1", source="198.18.0.10", destination="198.18.0.20", port=22)
    return app, users, prefix


def api_routes(routes):
    """Every APIRoute, also inside included routers (newer FastAPI nests them)."""
    for r in routes:
        if isinstance(r, APIRoute):
            yield r
        elif hasattr(r, "original_router"):
            yield from api_routes(r.original_router.routes)


def routes(app) -> list[tuple[str, str, Perm | None]]:
    out = []
    for r in api_routes(app.routes):
        perms = [d.call.perm for d in r.dependant.dependencies if hasattr(d.call, "perm")]
        for method in r.methods:
            out.append((method, r.path, perms[0] if perms else None))
    return out


def test_every_endpoint_names_a_permission(console):
    app, _, _ = console
    missing = [(m, p) for m, p, perm in routes(app) if perm is None and (m, p) not in PUBLIC]
    assert not missing, f"endpoints without a role check: {missing}"
    assert len(routes(app)) >= 25


def test_every_role_on_every_endpoint(console, es):
    """What a role may not do answers 403 and leaves an audit document; what it may do never answers 403/500."""
    app, users, prefix = console
    refused: dict[str, int] = {}
    for role in Role:
        client = http_client(app)
        csrf = sign_in(client, users[role.value])
        refused[role.value] = 0
        for method, path, perm in routes(app):
            if perm is None or path == "/logout":
                continue
            url = path.replace("{alert_id}", "a1").replace("{run_id}", "no-run").replace("{asset_id}", "no-asset") \
                .replace("{case_id}", "no-case").replace("{attachment_id}", "no-attachment") \
                .replace("{exception_id}", "no-exception")
            res = client.request(method, url, headers={"X-CSRF-Token": csrf}, follow_redirects=False,
                                 **BODIES.get(path, {}))
            if perm in PERMISSIONS[role]:
                assert res.status_code not in (401, 403) and res.status_code < 500, (role, method, path, res.text[:300])
            else:
                assert res.status_code == 403, (role, method, path, res.status_code)
                refused[role.value] += 1
        denied = audit_docs(es, prefix, actor=users[role.value], action="console.denied")
        assert len(denied) == refused[role.value], role
        assert all(d["outcome"] == "failure" and d["source_ip"] and d["details"]["role"] == role.value for d in denied)
    assert refused["viewer"] > refused["analyst"] > 0 and refused["admin"] > 0 and refused["auditor"] > 0


def test_signed_out_requests_are_refused(console):
    app, _, _ = console
    client = http_client(app)
    for method, path, perm in routes(app):
        if perm is None:
            continue
        url = path.replace("{alert_id}", "a1").replace("{run_id}", "r").replace("{asset_id}", "x") \
                .replace("{case_id}", "c").replace("{attachment_id}", "t").replace("{exception_id}", "e")
        res = client.request(method, url, follow_redirects=False, **BODIES.get(path, {}))
        assert res.status_code in (401, 303), (method, path, res.status_code)
        if res.status_code == 303:
            assert res.headers["location"].startswith("/login")


def test_state_changes_need_the_csrf_token(console, es):
    app, users, prefix = console
    client = http_client(app)
    csrf = sign_in(client, users["analyst"])
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        res = client.post("/api/alerts/actions", json={"action": "close", "ids": ["a1"]}, headers=headers)
        assert res.status_code == 403
        res = client.post("/alerts/actions", data={"action": "close", "ids": "a1", **({"csrf": "x"} if headers
                                                                                      else {})})
        assert res.status_code == 403
    assert es.get(index=f"{prefix}-alert", id="a1")["_source"]["secops"]["alert"]["status"] == "open"
    assert len(audit_docs(es, prefix, actor=users["analyst"], action="console.csrf_refused")) == 4
    # the login form has its own token (double submit)
    fresh = http_client(app)
    res = fresh.post("/login", data={"name": users["analyst"], "password": PASSWORD}, follow_redirects=False)
    assert res.status_code == 403
    ok = client.post("/api/alerts/actions", json={"action": "close", "ids": ["a1"]}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.json()["done"] == ["a1"]
    audit = audit_docs(es, prefix, actor=users["analyst"], action="alert.close")
    assert audit and audit[0]["object"] == "a1" and audit[0]["source_ip"]


def test_logins_are_throttled_and_audited(console, es):
    app, users, prefix = console
    client = http_client(app)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
    codes = [client.post("/login", data={"name": users["admin"], "password": f"wrong-{i}", "csrf": token},
                         follow_redirects=False).status_code for i in range(8)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429] * 3
    # even the right password is refused while throttled
    res = client.post("/login", data={"name": users["admin"], "password": PASSWORD, "csrf": token},
                      follow_redirects=False)
    assert res.status_code == 429 and int(res.headers["Retry-After"]) > 0
    failures = audit_docs(es, prefix, actor=users["admin"], action="console.login", outcome="failure")
    assert len(failures) == 9
    assert sum(f["details"]["reason"] == "throttled" for f in failures) == 4


def test_session_cookies_are_locked_down(settings, es):
    prefix = settings.elasticsearch.index_prefix
    users = add_users(es, prefix)
    for secure in (False, True):
        client = http_client(console_app(settings, es, secure_cookies=secure))
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
        res = client.post("/login", data={"name": users["viewer"], "password": PASSWORD, "csrf": token},
                          follow_redirects=False)
        cookie = next(c for c in res.headers.get_list("set-cookie") if c.startswith("secops_session="))
        attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
        assert {"httponly", "samesite"} <= attrs and "samesite=strict" in cookie.lower()
        assert ("secure" in attrs) is secure
        assert "default-src 'none'" in res.headers["content-security-policy"]


def test_disabled_users_and_password_changes_end_sessions(console, es):
    app, users, prefix = console
    store = UserStore(es, prefix)
    client = http_client(app)
    sign_in(client, users["analyst"])
    store.set_password(users["analyst"], "another long password")
    assert client.get("/api/me").status_code == 401
    sign_in(client, users["analyst"], "another long password")
    store.set_disabled(users["analyst"])
    assert client.get("/api/me").status_code == 401
    with pytest.raises(UserError):
        store.add("x", "root", PASSWORD)
    with pytest.raises(UserError):
        store.add("shortpw", "viewer", "short")


def test_hostile_alert_values_are_escaped(console, es):
    app, users, prefix = console
    put_alert(es, prefix, "hostile", source="198.18.0.66", rule_id=HOSTILE["script"], extra={
        "rule.name": HOSTILE["script"], "event.reason": HOSTILE["img"], "url.original": HOSTILE["js_url"],
        "secops.alert.kibana_url": HOSTILE["js_url"], "secops.alert.assignee": HOSTILE["template"]})
    client = http_client(app)
    sign_in(client, users["analyst"])
    for page in ("/alerts", "/alerts/hostile", "/alerts?group_by=rule.name", "/alerts?group_by=rule.id"):
        html = client.get(page).text
        assert "<script>window" not in html and "<img src=x" not in html, page
        assert 'href="javascript:' not in html and "49" not in re.findall(r">([^<]*)<", html), page
    html = client.get("/alerts/hostile").text
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "{{ 7*7 }}" in html


def test_openapi_document_describes_the_api(console):
    app, users, _ = console
    client = http_client(app)
    assert client.get("/api/openapi.json").status_code == 401
    sign_in(client, users["viewer"])
    doc = client.get("/api/openapi.json").json()
    assert {"/api/alerts", "/api/alerts/actions", "/api/runs/{run_id}/decision", "/api/assets"} <= set(doc["paths"])
