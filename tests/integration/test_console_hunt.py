"""Hunt against the real node: query with a time range, group by with counts (most and least frequent first), a
time histogram, pivot from an address or a Community ID to every dataset, and a Sigma rule made from a query that
the project's own loader compiles and the engine runs."""

from __future__ import annotations

import pytest
import yaml

from detections.compiler import compile_rules
from detections.engine import run_rule
from detections.loader import load_rules
from secops.ecs import iso
from tests.integration.detect_support import T0, conn, event, minutes, write
from tests.support.console import add_users, audit_docs, console_app, http_client, sign_in
from tests.support.playbook_lab import put_alert

pytestmark = pytest.mark.integration
CID = "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
RANGE = {"start": iso(T0 - minutes(60)), "end": iso(T0 + minutes(60))}


@pytest.fixture
def hunt(es, settings):
    prefix = settings.elasticsearch.index_prefix
    docs = []
    for i in range(40):  # common ports, and one rare port used once
        port = (443, 443, 80, 53)[i % 4]
        docs.append(conn(f"198.18.9.{i % 5 + 1}", "198.18.10.1", port, T0 + minutes(i), ingested=T0))
    docs.append(conn("198.18.9.66", "198.18.10.1", 4444, T0 + minutes(3), ingested=T0,
                     network={"transport": "tcp", "community_id": CID}))
    docs.append(event("secops.dns", "198.18.9.66", "198.18.10.53", T0 + minutes(3),
                      {"dns.question.name": "c2.example.org", "network.community_id": CID}, ingested=T0))
    docs.append(event("secops.http", "198.18.9.66", "198.18.10.1", T0 + minutes(3),
                      {"url.original": "/<script>x</script>", "network.community_id": CID}, ingested=T0))
    write(es, settings, docs)
    put_alert(es, prefix, "c2", source="198.18.9.66", destination="198.18.10.1", port=4444,
              extra={"network.community_id": CID})
    app = console_app(settings, es)
    users = add_users(es, prefix)
    client = http_client(app)
    sign_in(client, users["analyst"])
    return client, app, users, prefix


def test_group_by_rare_histogram_and_range(hunt, es):
    client, app, users, prefix = hunt
    res = client.get("/api/hunt", params={"dataset": "secops.conn", "q": "network.transport:tcp",
                                          "group_by": "destination.port", "rare": "1", **RANGE})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["total"] == 41
    assert [(g["values"], g["count"]) for g in body["groups"]] == [
        (["4444"], 1), (["53"], 10), (["80"], 10), (["443"], 20)]
    assert sum(n for _t, n in body["histogram"]) == 41
    common = client.get("/api/hunt", params={"dataset": "secops.conn", "q": "*", "group_by":
                                             "destination.port,source.ip", **RANGE}).json()
    assert common["groups"][0]["count"] >= common["groups"][-1]["count"] and len(common["groups"][0]["values"]) == 2
    # a narrower absolute range
    narrow = client.get("/api/hunt", params={"dataset": "secops.conn", "q": "*", "start": iso(T0),
                                             "end": iso(T0 + minutes(10))}).json()
    assert narrow["total"] == 11  # minutes 0-9, plus the rare one at minute 3
    # the page: rare view, escaped values, pivot links
    page = client.get("/hunt", params={"dataset": "all", "q": "network.community_id:\"" + CID + "\"",
                                       "since": "all"}).text
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x" not in page
    assert "/hunt/pivot?value=198.18.9.66" in page
    bad = client.get("/api/hunt", params={"dataset": "secops.conn", "group_by": "a,b,c,d"})
    assert bad.status_code == 400
    assert client.get("/api/hunt", params={"dataset": "nope"}).status_code == 400
    assert len(audit_docs(es, prefix, action="console.hunt")) >= 4
    viewer = http_client(app)
    sign_in(viewer, users["viewer"])
    assert viewer.get("/api/hunt", params={"q": "*"}).status_code == 403


def test_pivot_by_community_id_and_address(hunt):
    client, *_ = hunt
    by_cid = client.get("/api/hunt/pivot", params={"value": CID}).json()
    assert by_cid["kind"] == "community_id"
    assert by_cid["datasets"] == {"secops.conn": 1, "secops.dns": 1, "secops.http": 1, "secops.alert": 1}
    by_ip = client.get("/api/hunt/pivot", params={"value": "198.18.9.66"}).json()
    assert by_ip["kind"] == "address"
    assert by_ip["datasets"]["secops.conn"] == 1 and by_ip["datasets"]["secops.alert"] == 1
    page = client.get("/hunt/pivot", params={"value": CID}).text
    assert page.count('class="pivot-row"') == 4
    hostile = client.get("/api/hunt/pivot", params={"value": '" OR *:* OR "'}).json()
    assert hostile["datasets"] == {}


def test_make_a_rule_from_a_query(hunt, es, settings, tmp_path):
    client, *_ = hunt
    q = 'destination.port:4444 AND network.transport:"tcp"'
    res = client.get("/hunt/rule", params={"dataset": "secops.conn", "q": q})
    assert res.status_code == 200 and "attachment" in res.headers["content-disposition"]
    rule = yaml.safe_load(res.text)
    assert rule["detection"]["selection"] == {"destination.port": "4444", "network.transport": "tcp"}
    assert rule["logsource"] == {"product": "secops", "service": "conn"} and rule["status"] == "experimental"
    info = yaml.safe_load(client.get("/hunt/rule", params={"dataset": "secops.conn", "q": q, "part": "info"}).text)
    assert info["rule_metadata"][0]["id"] == rule["id"] and info["regression_tests_info"][0]["match_count"] == 1
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "hunt.yml").write_text(res.text)
    (compiled,) = compile_rules(load_rules([folder]))
    assert compiled.error is None, compiled.error
    matches = run_rule(es, settings.elasticsearch.index_prefix, compiled, iso(T0 - minutes(1)), iso(T0 + minutes(1)))
    assert [m.group.get("source.ip") for m in matches] == ["198.18.9.66"]
    # a query that is not plain field:value terms still yields a skeleton to finish by hand
    rough = yaml.safe_load(client.get("/hunt/rule", params={"dataset": "secops.conn", "q": "a:b OR c:d"}).text)
    assert "TODO.field" in rough["detection"]["selection"]
    assert client.get("/hunt/rule", params={"dataset": "all", "q": "x:y"}).status_code == 400
