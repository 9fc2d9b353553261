"""One Celery beat across all hosts: a beat schedules only while it holds the ``celery-beat`` lease.

A second ``secops beat`` waits for the lease (saying who holds it) and starts its scheduler only once the
holder released it or died and its lease expired. The holder renews every third of the lease time; if a
renewal is refused (the lease was taken over, say after the process was paused) or cannot be made before
the lease runs out, the process exits at once, so two schedulers never send the same due tasks.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from types import TracebackType

from elasticsearch import ConflictError

from secops.es.lease import Lease, LeaseTimeout
from secops.es.store import Store

BEAT_LEASE = "celery-beat"
LOST_LEASE_EXIT = 3
log = logging.getLogger("secops.beat")


class BeatLeadership:
    """Hold the beat lease for the lifetime of a ``with`` block (waiting as long as it takes to get it)."""

    def __init__(self, store: Store, lease_seconds: float) -> None:
        self.lease_seconds = lease_seconds
        self.lease: Lease = store.lease(BEAT_LEASE, ttl=lease_seconds, wait=lease_seconds, poll=0.5)
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self) -> None:
        while True:
            try:
                self.lease.acquire()
                break
            except LeaseTimeout as exc:
                log.info("standby: waiting for the beat lease (%s)", exc)
        log.info("holding the beat lease as %s (renewed every %.0fs)", self.lease.holder, self.lease_seconds / 3)
        self._renewer = threading.Thread(target=self._renew_loop, name="beat-lease", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        valid_until = time.monotonic() + self.lease_seconds
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                self.lease.renew()
                valid_until = time.monotonic() + self.lease_seconds
            except ConflictError:
                self._lost("the beat lease was taken over")
            except Exception as exc:  # the store is unreachable: keep trying while the lease is still ours
                if time.monotonic() + self.lease_seconds / 3 >= valid_until:
                    self._lost(f"the beat lease could not be renewed before it expired ({type(exc).__name__})")
                log.warning("beat lease renewal failed, retrying: %s", exc)

    def _lost(self, why: str) -> None:
        log.critical("%s: stopping this beat so that only one schedules", why)
        logging.shutdown()
        os._exit(LOST_LEASE_EXIT)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        self.lease.release()

    def __enter__(self) -> BeatLeadership:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
