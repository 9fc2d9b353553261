"""A time budget for one rule's evaluation, enforced on every search it makes.

Each search carries the time left as Elasticsearch's server-side ``timeout`` (the node stops collecting and
reports ``timed_out``) and as the client's request timeout, and an ``X-Opaque-Id`` naming the rule. When
the budget is spent, a search that is still running on the node is cancelled through the task API (found
by that id) and :class:`RuleTimeout` is raised: the scheduler reports the rule as slow and goes on with
the others.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from elasticsearch import ConnectionTimeout, Elasticsearch

log = logging.getLogger(__name__)

MIN_SEARCH_SECONDS = 0.05


class RuleTimeout(Exception):
    """A rule's searches did not finish within its time budget."""


def cancel_searches(es: Elasticsearch, opaque_id: str) -> int:
    """Cancel every search task on the cluster started under ``opaque_id``; returns how many were cancelled."""
    cancelled = 0
    try:
        tasks = es.options(request_timeout=10).tasks.list(actions="*search*", detailed=True)
        for node in (tasks.get("nodes") or {}).values():
            for task_id, task in (node.get("tasks") or {}).items():
                if (task.get("headers") or {}).get("X-Opaque-Id") == opaque_id and task.get("cancellable"):
                    es.options(request_timeout=10, ignore_status=404).tasks.cancel(task_id=task_id)
                    cancelled += 1
    except Exception as exc:  # cancellation is best effort: the client timeout already freed the caller
        log.warning("could not cancel searches of %s: %s", opaque_id, exc)
    return cancelled


class DeadlineClient:
    """An Elasticsearch client whose searches share one deadline (everything else passes through)."""

    def __init__(self, es: Elasticsearch, seconds: float, opaque_id: str, deadline: float | None = None):
        self._es = es.options(opaque_id=opaque_id)
        self._root = es
        self.seconds = seconds
        self.opaque_id = opaque_id
        self.deadline = deadline if deadline is not None else time.monotonic() + seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._es, name)

    def options(self, **kwargs: Any) -> DeadlineClient:
        kwargs.pop("request_timeout", None)  # the deadline decides
        clone = DeadlineClient(self._root, self.seconds, self.opaque_id, self.deadline)
        clone._es = self._es.options(**kwargs) if kwargs else self._es
        return clone

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left < MIN_SEARCH_SECONDS:
            raise RuleTimeout(f"exceeded its {self.seconds:g} s budget")
        return left

    def _call(self, method: str, **kwargs: Any) -> Any:
        left = self.remaining()
        timeout = f"{int(left * 1000)}ms"
        if method == "search":
            kwargs["timeout"] = timeout
        elif method == "msearch":  # (header, body) pairs: every body carries the server-side timeout
            kwargs["searches"] = [dict(b, timeout=timeout) if i % 2 else b for i, b in enumerate(kwargs["searches"])]
        try:
            resp = getattr(self._es.options(request_timeout=left + 1.0), method)(**kwargs)
        except ConnectionTimeout:
            n = cancel_searches(self._root, self.opaque_id)
            raise RuleTimeout(f"exceeded its {self.seconds:g} s budget ({n} search task(s) cancelled)") from None
        if resp.get("timed_out") or any(r.get("timed_out") for r in resp.get("responses") or []):
            raise RuleTimeout(f"exceeded its {self.seconds:g} s budget (server-side search timeout)")
        return resp

    def search(self, **kwargs: Any) -> Any:
        return self._call("search", **kwargs)

    def msearch(self, **kwargs: Any) -> Any:
        return self._call("msearch", **kwargs)

    def scroll(self, **kwargs: Any) -> Any:
        return self._call("scroll", **kwargs)
