"""Celery tasks of the inventory context."""

from __future__ import annotations

from typing import Any

from inventory import service
from secops.celery_app import app
from secops.config import get_settings
from secops.es.client import make_client


@app.task(name="inventory.merge_scan")
def merge_scan(payload: dict[str, Any]) -> dict[str, Any]:
    """Merge one scan result (collectors.scan_chunk's return value) into the inventory."""
    s = get_settings()
    return service.merge_scan(make_client(s), s, payload)


@app.task(name="inventory.merge_observations")
def merge_observations(since_iso: str | None = None) -> dict[str, Any]:
    s = get_settings()
    return service.merge_observations(make_client(s), s, since_iso)


@app.task(name="inventory.mark_stale")
def mark_stale() -> dict[str, Any]:
    s = get_settings()
    return service.mark_stale(make_client(s), s)


@app.task(name="inventory.tag_asset")
def tag_asset(ip: str, tags: list[str], actor: str) -> str | None:
    s = get_settings()
    return service.tag_asset(make_client(s), s, ip, tags, actor)
