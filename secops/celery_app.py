"""The Celery application: Redis broker and result backend, reliability settings, beat schedule.

A composition root: it names the task modules of every context. Tasks are registered under
explicit names so the beat schedule and other contexts can refer to them by signature only.
"""

from __future__ import annotations

from datetime import timedelta

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, worker_init

from secops.config import Settings, get_settings, install_log_redaction
from secops.es.client import redis_url

# How long a worker that lost its link waits for the broker before giving a message up (1 + 2 + ... capped at
# 5 s per attempt: about 10 minutes). A chain's next step (a scan chunk's merge) is published by the worker that
# ran the step before it: with Celery's default (3 tries within a second) a link cut just as a chunk finished
# marked the chunk failed and its result was never merged.
WORKER_LINK_PATIENCE = {"max_retries": 120, "interval_start": 1, "interval_step": 1, "interval_max": 5}

TASK_MODULES = ["collectors.tasks", "inventory.tasks", "detections.tasks", "playbooks.tasks", "secops.tasks"]

app = Celery("secops")


def _forget_connections(app: Celery) -> None:
    """Drop the cached producer pool and result backend, which Celery builds once from the first URL:
    without this, a reconfigured app keeps sending to (and waiting on) the previous broker."""
    app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None
    app._backend_cache = None
    app._local.__dict__.pop("backend", None)


def configure(app: Celery, settings: Settings) -> Celery:
    url = redis_url(settings)
    if app.conf.get("broker_url") not in (None, url):
        _forget_connections(app)
    longest_countdown = max(settings.playbooks.approval_timeout_seconds, 86400)
    app.conf.update(
        broker_url=url,
        result_backend=url,
        include=TASK_MODULES,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        # At-least-once: a task is acknowledged after it ran, and requeued if its worker died.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        result_expires=7 * 86400,
        # Must exceed any countdown/ETA, or Redis redelivers the message while it is still waiting.
        broker_transport_options={"visibility_timeout": longest_countdown + 3600},
        result_backend_transport_options={"visibility_timeout": longest_countdown + 3600},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "detections-run-due-rules": {"task": "detections.run_due_rules",
                                         "schedule": timedelta(seconds=settings.detections.interval_seconds)},
            "collectors-scan-due-policies": {"task": "collectors.scan_due_policies", "schedule": timedelta(minutes=1)},
            "inventory-mark-stale": {"task": "inventory.mark_stale", "schedule": timedelta(hours=1)},
            # resumes from its checkpoint in secops-state, so passing no argument is correct
            "inventory-merge-observations": {"task": "inventory.merge_observations",
                                             "schedule": timedelta(minutes=1)},
            "playbooks-housekeeping": {"task": "playbooks.housekeeping", "schedule": timedelta(seconds=15)},
            "secops-retention": {"task": "secops.retention_apply", "schedule": timedelta(hours=6)},
            "secops-spool-replay": {"task": "secops.spool_replay", "schedule": timedelta(minutes=1)},
        },
    )
    return app


configure(app, get_settings())


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redact_logs(logger, **_kw) -> None:
    """Worker and beat logs never show URL credentials (broker errors, task exceptions)."""
    install_log_redaction(logger)


@worker_init.connect
def _patient_worker(sender=None, **_kw) -> None:
    """Workers ride out a cut link: results and chained steps wait for the broker to return
    (clients such as the CLI keep Celery's quick failure, so a command with no broker fails in one line)."""
    app.conf.update(task_publish_retry_policy=WORKER_LINK_PATIENCE, result_backend_always_retry=True,
                    result_backend_max_retries=WORKER_LINK_PATIENCE["max_retries"])
