"""Celery tasks of the detections context (beat calls ``detections.run_due_rules``)."""

from __future__ import annotations

import logging
from typing import Any

from secops.celery_app import app
from secops.config import get_settings
from secops.es.client import make_client

log = logging.getLogger(__name__)


@app.task(name="detections.run_due_rules", acks_late=True)
def run_due_rules() -> dict[str, Any]:
    """Run every rule whose interval elapsed over the data that arrived since its checkpoint."""
    from detections.pack import build_pack
    from detections.scheduler import Scheduler

    settings = get_settings()
    pack = build_pack(settings)
    for where, error in pack.errors():
        log.warning("rule error %s: %s", where, error)
    runs = Scheduler(make_client(settings), settings, pack.runnable).run(only_due=True)
    return {"rules": len(runs), "created": sum(r.created for r in runs), "updated": sum(r.updated for r in runs),
            "failed": [r.rule_id for r in runs if r.error]}
