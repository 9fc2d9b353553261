"""Named mutual-exclusion leases kept in the secops-state index (Elasticsearch is the one store every
process shares, Redis is not always configured for CLI runs).

Taking a lease is an ``op_type=create`` of its document: exactly one caller succeeds. A lease whose holder
died expires after ``ttl`` and is taken over with optimistic concurrency (``if_seq_no``/``if_primary_term``),
so two waiters cannot both take it. Holders doing long work call :meth:`Lease.renew`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from datetime import timedelta
from types import TracebackType

from elasticsearch import ConflictError, Elasticsearch, NotFoundError

from secops.ecs import doc_id, iso, parse_time, utcnow
from secops.es.templates import index_for


class LeaseTimeout(Exception):
    """Waited ``wait`` seconds and another holder still has the lease."""


class Lease:
    def __init__(self, es: Elasticsearch, prefix: str, name: str, *, ttl: float = 900.0, wait: float = 600.0,
                 poll: float = 0.25, holder: str | None = None) -> None:
        self.es, self.name, self.ttl, self.wait, self.poll = es, name, ttl, wait, poll
        self.index = index_for(prefix, "secops.state")
        self.id = doc_id("lease", name)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{time.monotonic_ns()}"
        self._version: tuple[int, int] | None = None  # (seq_no, primary_term) of our lease document

    def _doc(self) -> dict:
        now = utcnow()
        return {"@timestamp": iso(now), "event": {"dataset": "secops.state", "ingested": iso(now)},
                "secops": {"state": {"key": f"lease:{self.name}", "value": self.holder,
                                     "checkpoint": iso(now + timedelta(seconds=self.ttl))}}}

    def _held(self, resp: dict) -> None:
        self._version = (resp["_seq_no"], resp["_primary_term"])

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait
        while True:
            try:
                self._held(self.es.create(index=self.index, id=self.id, document=self._doc(), refresh=False))
                return
            except ConflictError:
                pass
            try:
                cur = self.es.get(index=self.index, id=self.id)
            except NotFoundError:
                continue  # released between our create and get: try again at once
            state = cur["_source"]["secops"]["state"]
            if parse_time(state["checkpoint"]) < utcnow():  # the holder died: take over, once
                try:
                    self._held(self.es.index(index=self.index, id=self.id, document=self._doc(),
                                             if_seq_no=cur["_seq_no"], if_primary_term=cur["_primary_term"]))
                    return
                except ConflictError:
                    continue
            if time.monotonic() > deadline:
                raise LeaseTimeout(f"{self.name} is held by {state['value']} until {state['checkpoint']}")
            time.sleep(self.poll)

    def renew(self) -> None:
        """Push the expiry ``ttl`` seconds ahead (raises ConflictError if the lease was lost)."""
        if self._version is None:
            raise RuntimeError(f"lease {self.name} is not held")
        seq_no, term = self._version
        self._held(self.es.index(index=self.index, id=self.id, document=self._doc(), if_seq_no=seq_no,
                                 if_primary_term=term))

    def release(self) -> None:
        if self._version is None:
            return
        seq_no, term = self._version
        self._version = None
        with contextlib.suppress(ConflictError, NotFoundError):  # expired and taken over: theirs stays
            self.es.delete(index=self.index, id=self.id, if_seq_no=seq_no, if_primary_term=term)

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
