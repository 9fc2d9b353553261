"""Sandboxed parameters: only lookups, hostile alert values refused, values typed before any action sees them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from playbooks.actions import ACTIONS
from playbooks.blocking import Blocker, protected_reason
from playbooks.template import TemplateError, lookups, render
from playbooks.values import HostileValue, url_allowed
from secops.config import PlaybookSettings

ALERT = {"source": {"ip": "198.18.0.10"}, "destination": {"port": 22}, "rule": {"name": "SSH brute force"},
         "tags": ["a", "b"]}

# '1.2.3.4; rm -rf /' is refused by type (it is no address), see test_values_are_validated_by_type_before_any_action
HOSTILE = ["$(id)", "`id`", "${IFS}", "{{ ''.__class__ }}", "{% raw %}", "a\nb",
           "x\r\nInjected: 1", "\x00", "A" * 5000]


def test_lookups_keep_type_and_embed_as_text():
    assert render("{{ alert.destination.port }}", {"alert": ALERT}) == 22
    assert render("{{alert.source.ip}}", {"alert": ALERT}) == "198.18.0.10"
    assert render("rule {{ alert.rule.name }} on {{ alert.source.ip }}", {"alert": ALERT}) == \
        "rule SSH brute force on 198.18.0.10"
    assert render({"t": ["{{ alert.tags }}", 3]}, {"alert": ALERT}) == {"t": [["a", "b"], 3]}
    assert lookups("{{ alert.a.b }} and {{ run.id }}") == ["alert.a.b", "run.id"]


def test_template_code_is_not_a_lookup():
    for tpl in ["{{ ''.__class__.__mro__ }}", "{{ alert.x() }}", "{{ lipsum }}", "{%print(1)%}", "{{ 1+1 }}"]:
        with pytest.raises(TemplateError):
            render(tpl, {"alert": ALERT})


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_alert_values_are_refused(value):
    alert = {"source": {"address": value}}
    with pytest.raises(HostileValue):
        render("{{ alert.source.address }}", {"alert": alert})
    with pytest.raises(HostileValue):
        render("block {{ alert.source.address }} now", {"alert": alert})


def test_missing_field_is_refused():
    with pytest.raises(HostileValue, match="missing"):
        render("{{ alert.source.nothing }}", {"alert": ALERT})


@pytest.mark.parametrize("action, params", [
    ("contain", {"address": "1.2.3.4; rm -rf /"}),
    ("contain", {"address": "198.18.0.0/24"}),
    ("contain", {"address": "0.0.0.0"}),
    ("contain", {"address": "198.18.0.10", "ttl_seconds": "1; reboot"}),
    ("rescan", {"targets": ["-sS --script=evil"]}),
    ("rescan", {"targets": ["host name"]}),
    ("tag", {"address": "198.18.0.10", "tags": ["ok", "bad tag; id"]}),
    ("notify", {"channel": "webhook", "url": "file:///etc/passwd", "message": "x"}),
    ("notify", {"channel": "webhook", "url": "http://user:pw@127.0.0.1/", "message": "x"}),
    ("notify", {"channel": "smtp", "to": ["a@b.example\nBcc: x@y.example"], "message": "x"}),
    ("ticket", {"url": "http://127.0.0.1:1/x", "title": "t\nInjected-Header: 1"}),
    ("pcap", {"address": "198.18.0.10", "port": 70000}),
])
def test_values_are_validated_by_type_before_any_action(action, params):
    with pytest.raises(ValidationError):
        ACTIONS[action].Params(**params)


def test_good_values_normalise():
    p = ACTIONS["contain"].Params(address=" 198.18.0.10 ", ttl_seconds=6)
    assert p.address == "198.18.0.10"
    assert ACTIONS["rescan"].Params(targets=["Web-1.Example."]).targets == ["web-1.example"]
    assert ACTIONS["pcap"].Params(address="::ffff:1.2.3.4", port="443").port == 443


def test_webhook_allow_list_compares_parsed_urls():
    allow = ["http://127.0.0.1:8080/hooks/"]
    assert url_allowed("http://127.0.0.1:8080/hooks/soc", allow)
    assert not url_allowed("http://127.0.0.1:8080/hooksx", allow)
    assert not url_allowed("http://127.0.0.1:8081/hooks/soc", allow)
    assert not url_allowed("https://127.0.0.1:8080/hooks/soc", allow)
    assert not url_allowed("http://127.0.0.1.evil.example:8080/hooks/soc", allow)
    assert not url_allowed("http://evil.example/?u=http://127.0.0.1:8080/hooks/", allow)


def test_protected_addresses_and_loopback():
    assert protected_reason("127.0.0.5", [])
    assert protected_reason("::1", [])
    assert protected_reason("198.18.0.1", ["198.18.0.1"])
    assert protected_reason("198.18.0.53", ["198.18.0.48/28"])
    assert protected_reason("198.18.0.10", ["198.18.0.1", "dns.example"]) is None


def test_nft_commands_are_argument_lists_of_validated_values():
    cmds = Blocker(PlaybookSettings(block_netns="victim-ns")).commands("198.18.0.10", 6)
    assert cmds[-1] == ["ip", "netns", "exec", "victim-ns", "nft", "add", "element", "inet", "secops", "blocked4",
                        "{", "198.18.0.10", "timeout", "6s", "}"]
    v6 = Blocker(PlaybookSettings()).commands("2001:db8::1", 60)[-1]
    assert "blocked6" in v6 and v6[0] == "nft"
