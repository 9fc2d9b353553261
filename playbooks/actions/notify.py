"""notify: tell people — webhook POST (allow-listed), SMTP mail or syslog over UDP."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from playbooks.actions.base import Action, ActionContext, Params
from playbooks.delivery import check_webhook, post_json, send_mail, send_syslog
from playbooks.values import Text, Url
from secops.i18n import N_, message

EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")


def _email(v: str) -> str:
    if not EMAIL_RE.match(v):
        raise ValueError(f"not a mail address: {v[:80]!r}")
    return v


class NotifyParams(Params):
    channel: Literal["webhook", "smtp", "syslog"] = "webhook"
    url: Url | None = None
    to: list[Annotated[str, AfterValidator(_email)]] = Field(default_factory=list, max_length=20)
    subject: Text = "secops alert"
    message: Text

    @model_validator(mode="after")
    def _target(self) -> NotifyParams:
        if self.channel == "webhook" and not self.url:
            raise ValueError("channel webhook needs url")
        if self.channel == "smtp" and not self.to:
            raise ValueError("channel smtp needs to")
        return self


class Notify(Action):
    name = "notify"
    uses_alert = True
    Params = NotifyParams

    def plan(self, p: NotifyParams, ctx: ActionContext) -> dict[str, Any]:
        if p.channel == "webhook" and p.url:
            check_webhook(p.url, ctx.settings.playbooks)
        to = p.url or p.to or ctx.settings.playbooks.syslog_address
        return {"would": f"notify via {p.channel}", "to": to, "message": p.message,
                "summary": message(N_("notify %(to)s via %(channel)s"), to=to, channel=p.channel).as_doc()}

    def run(self, p: NotifyParams, ctx: ActionContext) -> dict[str, Any]:
        s = ctx.settings.playbooks
        if p.channel == "webhook" and p.url:
            payload = {"subject": p.subject, "message": p.message, "run_id": ctx.run_id, "step": ctx.step,
                       "alert_id": ctx.alert.get("secops", {}).get("alert", {}).get("id")}
            return post_json(p.url, payload, s, ctx.timeout, ctx.action_key)
        if p.channel == "smtp":
            return send_mail(s, p.to, p.subject, p.message, ctx.timeout)
        return send_syslog(s, f"{p.subject}: {p.message}")
