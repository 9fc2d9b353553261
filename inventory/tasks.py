"""Celery tasks of the inventory context."""

from __future__ import annotations

from secops.celery_app import app  # noqa: F401
