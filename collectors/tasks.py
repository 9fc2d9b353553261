"""Celery tasks of the collectors context."""

from __future__ import annotations

from secops.celery_app import app  # noqa: F401
