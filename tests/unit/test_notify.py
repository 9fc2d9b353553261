"""Notification policy (events and minimum severity per target) and the texts in both languages."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from secops.config import NotificationTarget, load_settings
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
