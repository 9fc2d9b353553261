"""ticket: open a ticket in the ticketing system's webhook (allow-listed URL), carrying the alert's identity."""

from __future__ import annotations

from typing import Any, Literal

from playbooks.actions.base import Action, ActionContext, Params
from playbooks.delivery import check_webhook, post_json
from playbooks.values import Text, Url
from secops.ecs import get
from secops.i18n import N_, message


class TicketParams(Params):
    url: Url
    title: Text
    description: Text = ""
    priority: Literal["low", "medium", "high", "critical"] = "medium"


class Ticket(Action):
    name = "ticket"
    uses_alert = True
    Params = TicketParams

    def _payload(self, p: TicketParams, ctx: ActionContext) -> dict[str, Any]:
        return {"title": p.title, "description": p.description, "priority": p.priority,
                "alert_id": get(ctx.alert, "secops.alert.id"), "rule": get(ctx.alert, "rule.name"),
                "kibana_url": get(ctx.alert, "secops.alert.kibana_url"), "run_id": ctx.run_id,
                "external_id": ctx.action_key}

    def plan(self, p: TicketParams, ctx: ActionContext) -> dict[str, Any]:
        check_webhook(p.url, ctx.settings.playbooks)
        return {"would": f"POST ticket to {p.url}", "payload": self._payload(p, ctx),
                "summary": message(N_("open a ticket at %(url)s"), url=p.url).as_doc()}

    def run(self, p: TicketParams, ctx: ActionContext) -> dict[str, Any]:
        return post_json(p.url, self._payload(p, ctx), ctx.settings.playbooks, ctx.timeout, ctx.action_key)
