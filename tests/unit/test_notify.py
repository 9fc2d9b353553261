"""Notification policy (events and minimum severity per target) and the texts in both languages."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from secops.config import NotificationTarget, load_settings
from secops.devstack.stack import free_port
from secops.i18n import N_, Message
from secops.notify import Notice, Notifier, wanted


def notice(kind: str = "alert.created", severity: str = "high") -> Notice:
    return Notice(kind, severity, "a1", Message(N_("[secops] %(severity)s alert: %(rule)s"),
                                                {"severity": "", "rule": "Port scan"}),
                  Message(N_("New %(severity)s alert %(id)s: %(rule)s\nReason: %(reason)s\nSource: %(source)s, "
                             "destination: %(destination)s\nFirst seen: %(first)s"),
                          {"severity": "", "id": "a1", "rule": "Port scan", "reason": "300 ports",
                           "source": "198.18.0.1", "destination": "-", "first": "t"}),
                  texts={"zh-CN": {"rule": "端口扫描"}}, link="https://soc/alerts/a1")


@pytest.mark.parametrize(("minimum", "severity", "sent"), [
    ("high", "high", True), ("high", "critical", True), ("high", "medium", False), ("low", "informational", True),
    ("critical", "high", False), ("medium", "medium", True)])
def test_per_severity_policy(minimum, severity, sent):
    target = NotificationTarget(name="t", channel="syslog", min_severity=minimum)
    assert wanted(target, notice(severity=severity)) is sent


def test_events_a_target_does_not_list_are_not_sent():
    target = NotificationTarget(name="t", channel="syslog", events=["case.assigned"], min_severity="low")
    assert not wanted(target, notice("alert.created", "critical"))
    assert wanted(target, notice("case.assigned", "low"))


def test_texts_in_english_and_chinese():
    subject, body = notice().render("en")
    assert subject == "[secops] high alert: Port scan"
    assert body.splitlines() == ["New high alert a1: Port scan", "Reason: 300 ports",
                                 "Source: 198.18.0.1, destination: -", "First seen: t", "https://soc/alerts/a1"]
    subject, body = notice().render("zh_CN")
    assert subject == "[secops] 高危告警：端口扫描"  # noqa: RUF001 (Chinese punctuation)
    assert body.startswith("新的高危告警 a1：端口扫描\n原因：300 ports")  # noqa: RUF001


def test_configuration_is_checked():
    with pytest.raises(ValidationError):
        NotificationTarget(name="t", channel="webhook", url="file:///etc/passwd")
    with pytest.raises(ValidationError):
        NotificationTarget(name="t", channel="pager")
    assert Notifier.from_settings(load_settings(None)) is None  # default: notify nobody


def test_a_failed_target_rests_and_others_still_receive(tmp_path):
    """A dead webhook (a closed loopback port) fails once, is then skipped; the syslog target is still served."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(2)
        settings = load_settings(None, notifications={"targets": [
            {"name": "dead", "channel": "webhook", "url": f"http://127.0.0.1:{free_port()}/x", "min_severity": "low"},
            {"name": "siem", "channel": "syslog", "address": f"127.0.0.1:{sink.getsockname()[1]}",
             "min_severity": "low"}]})
        notifier = Notifier.from_settings(settings)
        assert notifier is not None
        first, second = notifier.send(notice()), notifier.send(notice())
        assert [(d.target, d.ok) for d in first] == [("dead", False), ("siem", True)]
        assert "unreachable" in first[0].detail and second[0].detail.startswith("skipped: the target failed")
        assert second[1].ok
        lines = [sink.recv(65535).decode(), sink.recv(65535).decode()]
    assert all("alert.created" in line and "[secops] high alert: Port scan" in line for line in lines)
    assert lines[0].startswith("<131>1 ")  # local0 (16) * 8 + error (3): a high alert
