"""Reconfiguring the Celery app (tests and `secops` commands that point it at another Redis) must move both
the producer pool and the result backend: Celery caches them from the first URL it saw."""

from __future__ import annotations

from celery import Celery

from secops.celery_app import configure
from secops.config import Settings


def _settings(url: str) -> Settings:
    return Settings.model_validate({"redis": {"url": url}})


def test_reconfigured_app_sends_and_waits_on_the_new_broker():
    app = Celery("reconfigure-test", set_as_current=False)
    configure(app, _settings("redis://127.0.0.1:6391/0"))
    assert ":6391" in app.pool.connection.as_uri()
    assert ":6391" in app.backend.as_uri()
    configure(app, _settings("redis://127.0.0.1:6392/0"))
    assert ":6392" in app.pool.connection.as_uri()
    assert ":6392" in app.producer_pool.connections.connection.as_uri()
    assert ":6392" in app.backend.as_uri()
