"""Kernel Celery tasks: retention and spool replay."""

from __future__ import annotations

from secops.celery_app import app
from secops.config import get_settings
from secops.es import retention
from secops.es.client import make_client
from secops.es.store import Store


@app.task(name="secops.retention_apply")
def retention_apply() -> list[str]:
    s = get_settings()
    decisions = retention.apply(make_client(s), s.elasticsearch.index_prefix, s.retention)
    return [d.index for d in decisions if d.delete]


@app.task(name="secops.spool_replay")
def spool_replay() -> int:
    s = get_settings()
    return Store.from_settings(make_client(s), s).writer().replay()
