"""rescan: ask the collectors to scan the asset again (Celery task ``collectors.scan_targets``, scope-checked there)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from playbooks.actions.base import Action, ActionContext, Params
from playbooks.values import Hostname, Text
from secops.i18n import N_, message

TASK = "collectors.scan_targets"


class RescanParams(Params):
    targets: list[Hostname] = Field(min_length=1, max_length=16)
    profile: Literal["discovery", "standard", "deep"] = "standard"
    reason: Text = "playbook rescan"


class Rescan(Action):
    name = "rescan"
    Params = RescanParams

    def plan(self, p: RescanParams, ctx: ActionContext) -> dict[str, Any]:
        return {"would": f"send {TASK}", "args": [p.targets, p.profile, p.reason],
                "summary": message(N_("rescan %(targets)s with the %(profile)s profile"),
                                   targets=", ".join(p.targets), profile=p.profile).as_doc()}

    def run(self, p: RescanParams, ctx: ActionContext) -> dict[str, Any]:
        reason = f"{p.reason} (playbook run {ctx.run_id})"
        return {"task": TASK, "task_id": ctx.send_task(TASK, [p.targets, p.profile, reason]), "targets": p.targets}
