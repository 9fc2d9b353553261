"""The asset document (contract: secops-asset index) and its identity.

Identity survives IP changes: an asset first seen with a MAC is keyed by that MAC; without one it is
keyed by its address within its network zone. The id is fixed at creation; later lookups find the
asset by MAC first, then by address + zone, so an IP-keyed asset that later shows a MAC keeps its id.
"""

from __future__ import annotations

from typing import Any

from secops.ecs import doc_id, get

SERVICE_FIELDS = ("name", "product", "version", "extrainfo", "tunnel", "cpe")


def asset_id(mac: str | None, ip: str | None, zone: str) -> str:
    if mac:
        return doc_id("asset", "mac", mac.lower())
    return doc_id("asset", "ip", zone, ip)


def new_asset(aid: str, zone: str, at: str, ip: str | None = None, mac: str | None = None) -> dict[str, Any]:
    return {
        "@timestamp": at,
        "event": {"dataset": "secops.asset", "kind": "state", "category": ["host"], "type": ["info"]},
        "host": {"ip": [ip] if ip else [], "mac": [mac] if mac else [], "os": {}},
        "secops": {"asset": {"id": aid, "zone": zone, "sources": [], "first_seen": at, "last_seen": at,
                             "services": [], "findings": [], "state": "active"}},
        "tags": [],
    }


def asset_part(doc: dict[str, Any]) -> dict[str, Any]:
    return doc.setdefault("secops", {}).setdefault("asset", {})


def service_key(svc: dict[str, Any]) -> tuple[int, str]:
    return int(svc["port"]), str(svc.get("transport") or "tcp")


def service_label(svc: dict[str, Any]) -> str:
    """'ftp vsftpd 3.0.3' — what service_changed reports as old/new."""
    return " ".join(str(svc[k]) for k in ("name", "product", "version") if svc.get(k)) or "unknown"


def services_by_key(doc: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    return {service_key(s): s for s in get(doc, "secops.asset.services") or []}


def add_unique(values: list[Any], *new: Any) -> list[Any]:
    out = list(values or [])
    for v in new:
        if v and v not in out:
            out.append(v)
    return out
