"""tag: add tags to the inventory asset with this address (Celery task ``inventory.tag_asset``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from playbooks.actions.base import Action, ActionContext, Params
from playbooks.values import Address, Tag
from secops.i18n import N_, message

TASK = "inventory.tag_asset"


class TagParams(Params):
    address: Address
    tags: list[Tag] = Field(min_length=1, max_length=20)


class TagAsset(Action):
    name = "tag"
    Params = TagParams

    def plan(self, p: TagParams, ctx: ActionContext) -> dict[str, Any]:
        return {"would": f"send {TASK}", "args": [p.address, p.tags, f"playbook:{ctx.run_id}"],
                "summary": message(N_("tag the asset at %(address)s with %(tags)s"), address=p.address,
                                   tags=", ".join(p.tags)).as_doc()}

    def run(self, p: TagParams, ctx: ActionContext) -> dict[str, Any]:
        return {"task": TASK, "task_id": ctx.send_task(TASK, [p.address, p.tags, f"playbook:{ctx.run_id}"])}
