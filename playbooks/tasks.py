"""Celery tasks of the playbooks context.

``playbooks.on_alert(alert_id)`` starts the matching playbooks (the detections context sends it);
``playbooks.execute_step(run_id, index)`` runs one step; ``playbooks.housekeeping`` (beat, and once
at worker start with ``recover=True``) expires approvals, re-dispatches steps whose message was lost
(worker SIGKILL, broker restart) and books expired blocks. Run state lives in Elasticsearch, so the
broker only carries wake-ups: a lost or duplicated message never loses or repeats an action.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from celery.signals import worker_ready
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout
from kombu.exceptions import OperationalError

from playbooks.ratelimit import RateLimiter
from playbooks.runner import Runner
from secops.celery_app import app
from secops.config import get_settings
from secops.contracts.alert import ON_ALERT_TASK
from secops.es.client import make_client, redis_url

log = logging.getLogger(__name__)
SOFT_LIMIT_MARGIN = 5
PUBLISH_RETRY = {"max_retries": 90, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0}
STORE_ERRORS = (TransportConnectionError, ConnectionTimeout)


class BrokerUnavailable(RuntimeError):
    """The Celery broker (Redis) cannot be reached; the message names it (password masked) and why."""


def check_broker() -> None:
    """Fail fast, in one line, when the broker is down (instead of publishing retries for minutes)."""
    with app.connection_for_write() as conn:
        try:
            conn.ensure_connection(max_retries=1, interval_start=0.2, interval_step=0.2, timeout=5)
        except (OperationalError, OSError) as exc:
            raise BrokerUnavailable(f"Celery broker unreachable at {conn.as_uri()}: {exc}; "
                                    "nothing was started (is redis running? `secops stack status`)") from None


def dispatch(run_id: str, index: int, countdown: float = 0.0, timeout: float | None = None) -> None:
    """Send the step task; publishing retries for about three minutes so a broker restart does not drop it."""
    execute_step.apply_async((run_id, index), countdown=countdown or None,
                             soft_time_limit=(timeout + SOFT_LIMIT_MARGIN) if timeout else None,
                             retry=True, retry_policy=PUBLISH_RETRY)


@lru_cache(maxsize=1)
def runner() -> Runner:
    s = get_settings()
    return Runner(s, make_client(s, max_retries=2, retry_on_timeout=True), dispatch, RateLimiter(redis_url(s)))


@app.task(name=ON_ALERT_TASK, bind=True, autoretry_for=STORE_ERRORS, retry_backoff=True, max_retries=10)
def on_alert(self: Any, alert_id: str) -> list[str]:
    """Start every playbook whose trigger matches this alert (idempotent per playbook and alert)."""
    if not isinstance(alert_id, str) or not alert_id or len(alert_id) > 512:
        raise ValueError("alert_id must be a non-empty string")
    try:
        return runner().on_alert(alert_id)
    except LookupError:
        # the alert may still be on its way to the index: try a few times, then give up loudly
        raise self.retry(countdown=2, max_retries=3) from None


@app.task(name="playbooks.execute_step", bind=True, autoretry_for=STORE_ERRORS, retry_backoff=True,
          max_retries=None)
def execute_step(self: Any, run_id: str, index: int) -> str:
    outcome, countdown = runner().execute(run_id, int(index))
    if outcome.resend:
        raise self.retry(countdown=countdown, max_retries=None)
    return str(outcome)


@app.task(name="playbooks.housekeeping", autoretry_for=STORE_ERRORS, max_retries=3)
def housekeeping(recover: bool = False) -> dict[str, int]:
    return runner().housekeeping(recover=recover)


@worker_ready.connect
def _recover_on_start(sender: Any = None, **_: Any) -> None:
    """A worker (re)started: pick up runs whose step message died with a previous worker."""
    try:
        housekeeping.apply_async(kwargs={"recover": True}, countdown=1, retry=True, retry_policy=PUBLISH_RETRY)
    except Exception:  # the worker must start even if recovery cannot be queued; beat repeats it
        log.exception("could not queue playbook recovery")
