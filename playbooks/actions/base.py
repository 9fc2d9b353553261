"""The one face every action has: a parameter model, ``plan`` (dry-run), ``run`` (act, idempotently), ``revert``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from elasticsearch import Elasticsearch
from pydantic import BaseModel, ConfigDict

from playbooks.errors import ActionError, PermanentError
from playbooks.store import PlaybookRunStore
from secops.config import Settings
from secops.i18n import N_, message

__all__ = ["Action", "ActionContext", "ActionError", "Params", "PermanentError"]


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class ActionContext:
    """What an action may use: settings, the store, the run's identity and alert, its time budget."""

    settings: Settings
    es: Elasticsearch
    run_id: str
    step: str
    action_key: str
    alert: dict[str, Any] = field(default_factory=dict)
    timeout: float = 30.0

    @property
    def prefix(self) -> str:
        return self.settings.elasticsearch.index_prefix

    @property
    def runs(self) -> PlaybookRunStore:
        """Run state, audit and block records of this store."""
        return PlaybookRunStore.on(self.es, self.prefix)

    def send_task(self, name: str, args: list[Any]) -> str:
        """Send another context's Celery task by name; the action key makes the task id stable."""
        from secops.celery_app import app

        result = app.send_task(name, args=args, task_id=f"{self.action_key}-{name}")
        return str(result.id)


class Action:
    name: ClassVar[str]
    Params: ClassVar[type[Params]]
    read_only: ClassVar[bool] = False  # also runs in dry-run (it changes nothing)
    reversible: ClassVar[bool] = False
    uses_alert: ClassVar[bool] = False  # the runner fetches the alert for the context only when needed

    def plan(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        """What ``run`` would do, without doing it."""
        return {"would": self.name, "params": params.model_dump(mode="json"),
                "summary": message(N_("run the %(action)s action"), action=self.name).as_doc()}

    def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        raise NotImplementedError

    def revert(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        raise PermanentError(message(N_("action %(action)s cannot be reverted"), action=self.name))
