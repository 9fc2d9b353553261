"""A property-based run against the console's OpenAPI document (schemathesis' idea with Hypothesis): random
path, query and body values for every operation, as roles that may call them; no answer is a server error."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.support.console import add_users, console_app, http_client, sign_in
from tests.support.playbook_lab import put_alert

pytestmark = pytest.mark.integration
SAMPLES = ["a1", "rule.name", "source.ip", "message", "secops.alert.status", "198.18.0.1", "open", "all", "24h",
           "x" * 600, "*", "../..", "%00", "{{7*7}}", "<script>", "tags", "@timestamp"]
TEXT = st.one_of(st.text(max_size=80), st.sampled_from(SAMPLES))
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)
BODIES = {
    "/api/alerts/actions": st.one_of(JSON, st.fixed_dictionaries(
        {"action": st.sampled_from(["acknowledge", "close", "reopen", "assign", "note", "explode"]), "arg": TEXT},
        optional={"ids": st.lists(TEXT, max_size=3), "group": st.dictionaries(
            st.sampled_from(["status", "severity", "rule", "since", "field", "value"]), TEXT, max_size=4)})),
    "/api/runs/{run_id}/decision": st.one_of(JSON, st.fixed_dictionaries(
        {"decision": st.sampled_from(["approve", "deny", "maybe"]), "reason": TEXT})),
    "/api/kill-switch": st.one_of(JSON, st.fixed_dictionaries({"on": st.booleans()})),
}


def test_no_server_error_anywhere_in_the_api(settings, es):
    prefix = settings.elasticsearch.index_prefix
    app = console_app(settings, es)
    users = add_users(es, prefix)
    put_alert(es, prefix, "a1", source="198.18.0.1", destination="198.18.0.2", port=22)
    clients = {}
    for role in ("admin", "responder"):
        clients[role] = http_client(app)
        clients[role].headers["X-CSRF-Token"] = sign_in(clients[role], users[role])
    doc = clients["admin"].get("/api/openapi.json").json()
    operations = sorted((method.upper(), path, op) for path, item in doc["paths"].items() for method, op in
                        item.items())
    assert len(operations) >= 12
    seen: dict[tuple[str, str], set[int]] = {}

    @hsettings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(data=st.data())
    def run(data):
        method, path, op = data.draw(st.sampled_from(operations))
        url = path
        query = {}
        for param in op.get("parameters", []):
            if param["in"] == "path":
                url = url.replace("{" + param["name"] + "}", quote(data.draw(TEXT.filter(bool)), safe=""))
            elif param["in"] == "query" and data.draw(st.booleans()):
                query[param["name"]] = data.draw(st.one_of(TEXT, st.integers(-5, 5000).map(str)))
        body = data.draw(BODIES.get(path, st.none())) if method == "POST" else None
        role = "responder" if "decision" in path else "admin"
        res = clients[role].request(method, url, params=query, json=body)
        seen.setdefault((method, path), set()).add(res.status_code)
        assert res.status_code < 500, (method, url, query, body, res.status_code, res.text[:500])

    run()
    assert len(seen) == len(operations), set((m, p) for m, p, _ in operations) - set(seen)
    assert any(200 in codes for codes in seen.values())
