# ruff: noqa: RUF001  (Chinese text uses full-width punctuation, as GB/T 15834 prescribes)
"""Hunt against the real node: query with a time range, group by with counts (most and least frequent first), a
time histogram, pivot from an address or a Community ID to every dataset, and a Sigma rule made from a query that
the project's own loader compiles and the engine runs; From/To as date-time inputs in the user's time zone."""

from __future__ import annotations

import pytest
import yaml

from detections.compiler import compile_rules
from detections.engine import run_rule
from detections.loader import load_rules
from secops.console.users import UserStore
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


def test_from_and_to_are_date_time_inputs_in_the_users_zone(hunt, es):
    """The form's From/To are datetime-local inputs read in the user's zone: the same wall-clock range finds the
    docs for a user in Asia/Shanghai and nothing for one in UTC (8 hours off); a bad value or an empty range keeps
    the form, says why in the user's language (400) and runs nothing; the API reads an offset-less time the same
    way."""
    client, app, users, prefix = hunt
    store = UserStore(es, prefix)
    store.set_timezone(users["analyst"], "Asia/Shanghai")
    store.set_lang(users["responder"], "zh_CN")
    store.set_timezone(users["responder"], "UTC")
    sign_in(client, users["analyst"])  # the session reads the zone at sign-in
    local = {"start": "2026-11-20T20:00", "end": "2026-11-20T20:10"}  # 12:00-12:10 UTC in Asia/Shanghai
    page = client.get("/hunt", params={"dataset": "secops.conn", "q": "*", **local})
    assert page.status_code == 200, page.text
    assert '<p id="hunt-total">11 documents' in page.text  # minutes 0-9, plus the rare one at minute 3
    assert 'type="datetime-local" step="1" name="start" id="h-start" value="2026-11-20T20:00"' in page.text
    assert '<span id="h-zone"' in page.text and ">Asia/Shanghai</span>" in page.text
    (audited,) = [d for d in audit_docs(es, prefix, action="console.hunt") if d["details"].get("start")]
    assert (audited["details"]["start"], audited["details"]["end"]) == ("2026-11-20T12:00:00Z",
                                                                        "2026-11-20T12:10:00Z")
    api = client.get("/api/hunt", params={"dataset": "secops.conn", "q": "*", **local}).json()
    assert api["total"] == 11

    bad = client.get("/hunt", params={"dataset": "secops.conn", "q": "*", "start": "yesterday noon",
                                      "end": local["end"]})
    assert bad.status_code == 400
    assert ('<p class="error" id="hunt-error">From: yesterday noon is not a date and time (for example '
            '2026-11-29T19:30)</p>') in bad.text
    assert 'id="h-start" value="yesterday noon"' in bad.text and 'id="hunt-total"' not in bad.text
    backwards = client.get("/hunt", params={"dataset": "secops.conn", "q": "*", "start": local["end"],
                                            "end": local["start"]})
    assert backwards.status_code == 400 and "From must be earlier than To" in backwards.text
    refused = client.get("/api/hunt", params={"dataset": "secops.conn", "end": "2026-13-40T99:00"})
    assert refused.status_code == 400
    assert refused.json()["detail"] == "To: 2026-13-40T99:00 is not a date and time (for example 2026-11-29T19:30)"

    other = http_client(app)
    sign_in(other, users["responder"])  # zh-CN, UTC: the same wall-clock range is 8 hours later
    page = other.get("/hunt", params={"dataset": "secops.conn", "q": "*", **local}).text
    assert '<p id="hunt-total">0 个文档' in page
    assert ">起始时间 <input" in page and ">结束时间 <input" in page
    bad = other.get("/hunt", params={"dataset": "secops.conn", "q": "*", "end": "明天"})
    assert bad.status_code == 400
    assert '<p class="error" id="hunt-error">结束时间：明天 不是有效的日期时间（例如 2026-11-29T19:30）</p>' in bad.text
