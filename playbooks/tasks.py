"""Celery tasks of the playbooks context."""

from __future__ import annotations

from secops.celery_app import app  # noqa: F401
