"""Notifications on alert, case and approval events to the configured targets (``notifications.targets``).

Events: ``alert.created`` (a new alert, by its rule's severity), ``case.assigned`` (a case given to someone, by the
case's severity) and ``approval.pending`` (a playbook step waiting for a person, by its alert's severity). Each
target takes the events it lists at or above its ``min_severity`` (the per-severity policy), over a webhook (JSON
with the rendered text and the event's fields), SMTP mail or a syslog line, in its own language (the ``notify``
catalogue). Targets are the operator's own hosts (offline: a local mail relay, a chat bridge on the LAN). A
target that fails is logged and audited (``notify.failed``), rests for a minute (later notices to it are audited as
skipped), and never fails the detection, the case change or the playbook that raised the event. Notices are not
queued for a later retry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import Elasticsearch

from secops import delivery
from secops.audit import write_audit
from secops.config import NotificationTarget, Settings
from secops.i18n import N_, NOTIFY, REASONS, Message, language_tag, render, translations

log = logging.getLogger(__name__)

SEVERITY_RANK = {"informational": 0, "low": 0, "medium": 1, "high": 2, "critical": 3}
SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "informational": 6}
SEVERITY_WORDS = (N_("low"), N_("medium"), N_("high"), N_("critical"), N_("informational"))
SERVICE_ACTOR = "secops-notify"
RETRY_SECONDS = 60  # a target that failed is not tried again by the same notifier before this


@dataclass(frozen=True)
class Notice:
    """One event to tell people about: its kind, severity, the object it is about and its words."""

    kind: str  # alert.created | case.assigned | approval.pending
    severity: str
    object_id: str
    subject: Message
    body: Message
    fields: dict[str, Any] = field(default_factory=dict)  # the event's values, for webhook receivers
    texts: dict[str, dict[str, str]] = field(default_factory=dict)  # {language tag: {param: translated value}}
    link: str | None = None

    def render(self, lang: str) -> tuple[str, str]:
        """(subject, body) in ``lang``; parameters with translations (rule names, severities) use them."""
        tr = translations(NOTIFY, lang)
        params = {**self.subject.params, **self.body.params}
        params["severity"] = tr.gettext(self.severity)
        params.update(self.texts.get(language_tag(lang), {}))
        subject = Message(self.subject.id, {k: params.get(k, v) for k, v in self.subject.params.items()}).render(tr)
        body = Message(self.body.id, {k: params.get(k, v) for k, v in self.body.params.items()}).render(tr)
        if self.link:
            body = f"{body}\n{self.link}"
        return subject, body


@dataclass(frozen=True)
class Delivery:
    target: str
    channel: str
    ok: bool
    detail: str


def wanted(target: NotificationTarget, notice: Notice) -> bool:
    """The per-severity policy: the target lists the event and the event is at least its minimum severity."""
    return notice.kind in target.events and \
        SEVERITY_RANK.get(notice.severity, 1) >= SEVERITY_RANK[target.min_severity]


class Notifier:
    """Sends notices to the configured targets (and audits each delivery when it has a store)."""

    def __init__(self, settings: Settings, es: Elasticsearch | None = None):
        self.settings = settings
        self.cfg = settings.notifications
        self.es = es
        self.prefix = settings.elasticsearch.index_prefix
        self._down_until: dict[str, float] = {}  # target name -> monotonic time: a failed target rests

    @classmethod
    def from_settings(cls, settings: Settings, es: Elasticsearch | None = None) -> Notifier | None:
        """A notifier, or None when no target is configured (the default: notify nobody)."""
        return cls(settings, es) if settings.notifications.targets else None

    def _link(self, path: str) -> str | None:
        base = self.cfg.console_url
        return f"{base.rstrip('/')}{path}" if base else None

    # -- events ------------------------------------------------------------------------------------
    def alert_created(self, alert: dict[str, Any]) -> list[Delivery]:
        rule, a = alert.get("rule") or {}, (alert.get("secops") or {}).get("alert") or {}
        alert_id = str(a.get("id") or alert.get("_id") or "")
        reason = a.get("reason_message")
        params = {"id": alert_id, "rule": rule.get("name") or rule.get("id") or "?",
                  "reason": (alert.get("event") or {}).get("reason") or "-",
                  "source": (alert.get("source") or {}).get("ip") or "-",
                  "destination": (alert.get("destination") or {}).get("ip") or "-",
                  "first": a.get("first_time") or alert.get("@timestamp") or "-", "severity": ""}
        texts: dict[str, dict[str, str]] = {}
        for tag, t in (a.get("i18n") or {}).items():
            texts.setdefault(tag, {})["rule"] = t.get("name") or params["rule"]
        for lang in ("zh_CN",):
            text = render(reason, REASONS, lang) if reason else None
            if text:
                texts.setdefault(language_tag(lang), {})["reason"] = text
        notice = Notice(
            "alert.created", str(rule.get("severity") or "medium"), alert_id,
            Message(N_("[secops] %(severity)s alert: %(rule)s"), {"severity": "", "rule": params["rule"]}),
            Message(N_("New %(severity)s alert %(id)s: %(rule)s\nReason: %(reason)s\nSource: %(source)s, "
                       "destination: %(destination)s\nFirst seen: %(first)s"), params),
            fields={"alert_id": alert_id, "rule_id": rule.get("id"), "rule_name": params["rule"],
                    "source_ip": params["source"], "destination_ip": params["destination"],
                    "first_time": params["first"]},
            texts=texts, link=self._link(f"/alerts/{alert_id}"))
        return self.send(notice)

    def case_assigned(self, case: dict[str, Any], actor: str) -> list[Delivery]:
        c = (case.get("secops") or {}).get("case") or {}
        case_id = str(c.get("id") or case.get("_id") or "")
        params = {"id": case_id, "title": c.get("title") or "", "assignee": c.get("assignee") or "-",
                  "actor": actor, "severity": ""}
        notice = Notice(
            "case.assigned", str(c.get("severity") or "medium"), case_id,
            Message(N_("[secops] case %(id)s assigned to %(assignee)s"), {"id": case_id,
                                                                          "assignee": params["assignee"]}),
            Message(N_("Case %(id)s \"%(title)s\" (%(severity)s) was assigned to %(assignee)s by %(actor)s."),
                    params),
            fields={"case_id": case_id, "title": params["title"], "assignee": params["assignee"], "actor": actor},
            link=self._link(f"/cases/{case_id}"))
        return self.send(notice)

    def approval_pending(self, run_id: str, playbook: str, alert_id: str, step: str, deadline: str,
                         severity: str) -> list[Delivery]:
        params = {"run": run_id, "playbook": playbook, "alert": alert_id, "step": step, "deadline": deadline}
        notice = Notice(
            "approval.pending", severity, run_id,
            Message(N_("[secops] approval needed: %(playbook)s, step %(step)s"), {"playbook": playbook,
                                                                                   "step": step}),
            Message(N_("Playbook run %(run)s (%(playbook)s) on alert %(alert)s waits for an approval of step "
                       "%(step)s until %(deadline)s."), params),
            fields={"run_id": run_id, "playbook": playbook, "alert_id": alert_id, "step": step,
                    "deadline": deadline},
            link=self._link("/approvals"))
        return self.send(notice)

    # -- delivery ----------------------------------------------------------------------------------
    def send(self, notice: Notice) -> list[Delivery]:
        out = []
        for target in self.cfg.targets:
            if not wanted(target, notice):
                continue
            resting = self._down_until.get(target.name, 0.0) - time.monotonic()
            if resting > 0:  # one slow or dead target must not hold up a detection pass alert after alert
                out.append(Delivery(target.name, target.channel, False,
                                    f"skipped: the target failed less than {RETRY_SECONDS} s ago"))
                self._audit(notice, out[-1])
                continue
            try:
                detail = self._deliver(target, notice)
                out.append(Delivery(target.name, target.channel, True, detail))
                self._down_until.pop(target.name, None)
            except delivery.DeliveryError as exc:
                log.warning("notification %s of %s to %s failed: %s", notice.kind, notice.object_id, target.name,
                            exc)
                out.append(Delivery(target.name, target.channel, False, str(exc)))
                if not exc.permanent:
                    self._down_until[target.name] = time.monotonic() + RETRY_SECONDS
            self._audit(notice, out[-1])
        return out

    def _deliver(self, target: NotificationTarget, notice: Notice) -> str:
        subject, body = notice.render(target.language)
        timeout = self.cfg.timeout_seconds
        pb = self.settings.playbooks
        if target.channel == "webhook":
            res = delivery.post_json(target.url or "", {
                "event": notice.kind, "severity": notice.severity, "object_id": notice.object_id,
                "language": language_tag(target.language), "subject": subject, "text": body, "link": notice.link,
                "fields": notice.fields}, timeout, user_agent="secops-notify")
            return f"HTTP {res['status']}"
        if target.channel == "smtp":
            res = delivery.send_mail(pb.smtp_host, pb.smtp_port, pb.mail_from, target.to, subject, body, timeout)
            return f"mailed {', '.join(res['mailed'])}"
        res = delivery.send_syslog(target.address or pb.syslog_address, f"{subject}: {body}".replace("\n", " | "),
                                   SYSLOG_SEVERITY.get(notice.severity, 4), msgid=notice.kind)
        return f"syslog {res['syslog']}"

    def _audit(self, notice: Notice, result: Delivery) -> None:
        if self.es is None:
            return
        try:
            write_audit(self.es, self.prefix, "notify.sent" if result.ok else "notify.failed",
                        f"{notice.kind}:{notice.object_id}", "success" if result.ok else "failure",
                        actor=SERVICE_ACTOR, refresh=False,
                        details={"target": result.target, "channel": result.channel, "detail": result.detail[:500]})
        except Exception as exc:  # the audit store down must not stop the event that raised the notice
            log.warning("could not audit notification to %s: %s", result.target, exc)
