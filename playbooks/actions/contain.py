"""contain: drop traffic from an address for a TTL that expires by itself; ``revert`` lifts it early."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from playbooks.actions.base import Action, ActionContext, Params, PermanentError
from playbooks.blocking import Blocker, protected_reason
from playbooks.values import Address
from secops.i18n import N_, message


class ContainParams(Params):
    address: Address
    ttl_seconds: int = Field(3600, ge=1)


class Contain(Action):
    name = "contain"
    Params = ContainParams
    reversible = True

    def _check(self, p: ContainParams, ctx: ActionContext) -> Blocker:
        reason = protected_reason(p.address, ctx.settings.playbooks.protected)
        if reason:
            raise PermanentError(message(N_("refused: %(reason)s; containment never touches protected assets"),
                                         reason=reason))
        if p.ttl_seconds > ctx.settings.playbooks.block_ttl_max_seconds:
            raise PermanentError(message(N_("ttl %(ttl)ss above playbooks.block_ttl_max_seconds"),
                                         ttl=p.ttl_seconds))
        return Blocker(ctx.settings.playbooks, timeout=ctx.timeout)

    def plan(self, p: ContainParams, ctx: ActionContext) -> dict[str, Any]:
        blocker = self._check(p, ctx)
        return {"would": f"block {p.address} for {p.ttl_seconds}s",
                "summary": message(N_("block %(address)s for %(seconds)s seconds, then lift the block"),
                                   address=p.address, seconds=p.ttl_seconds).as_doc(),
                "commands": blocker.commands(p.address, p.ttl_seconds)}

    def run(self, p: ContainParams, ctx: ActionContext) -> dict[str, Any]:
        result = self._check(p, ctx).block(p.address, p.ttl_seconds)
        expires = ctx.runs.record_block(p.address, p.ttl_seconds, ctx.run_id, result["backend"])
        return {"blocked": p.address, "ttl_seconds": p.ttl_seconds, "expires": expires,
                "netns": ctx.settings.playbooks.block_netns, **result}

    def revert(self, p: ContainParams, ctx: ActionContext) -> dict[str, Any]:
        result = Blocker(ctx.settings.playbooks, timeout=ctx.timeout).unblock(p.address)
        ctx.runs.record_block(p.address, 0, ctx.run_id, result["backend"], status="reverted")
        return {"unblocked": p.address, **result}
