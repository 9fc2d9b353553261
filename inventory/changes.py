"""Asset change events (secops.asset_change, daily indices): what changed, when, on which asset."""

from __future__ import annotations

from typing import Any

from secops.ecs import doc_id

CHANGES = ("new_asset", "asset_gone", "port_opened", "port_closed", "service_changed", "os_changed",
           "mac_ip_changed")


def change_doc(asset: dict[str, Any], change: str, at: str, *, port: int | None = None,
               transport: str | None = None, old: str | None = None, new: str | None = None,
               learning: bool = False) -> dict[str, Any]:
    """learning: recorded during the zone's learning period (inventory.learning), so no alert."""
    if change not in CHANGES:
        raise ValueError(f"unknown asset change {change!r}")
    aid = asset["secops"]["asset"]["id"]
    body: dict[str, Any] = {"asset_id": aid, "change": change, "zone": asset["secops"]["asset"].get("zone")}
    for key, value in (("port", port), ("transport", transport), ("old", old), ("new", new)):
        if value is not None:
            body[key] = value
    if learning:
        body["learning"] = True
    return {
        "_id": doc_id("asset_change", aid, change, port, transport, old, new, at),
        "@timestamp": at,
        "event": {"dataset": "secops.asset_change", "kind": "event", "category": ["host"], "type": ["change"],
                  "action": change},
        "host": {"ip": list(asset.get("host", {}).get("ip") or []), "mac": list(asset.get("host", {}).get("mac") or []),
                 "hostname": asset.get("host", {}).get("hostname")},
        "secops": {"asset_change": body},
        "message": _message(change, port, transport, old, new),
    }


def _message(change: str, port: int | None, transport: str | None, old: str | None, new: str | None) -> str:
    where = f" {port}/{transport}" if port is not None else ""
    detail = f": {old or '-'} -> {new or '-'}" if (old or new) else ""
    return f"{change.replace('_', ' ')}{where}{detail}"
