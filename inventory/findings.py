"""Compliance findings on an asset: forbidden services, missing owner, overdue scan."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from secops.config import InventorySettings
from secops.ecs import get, parse_time

# nmap's service names for the classic cleartext r-services
ALIASES = {"login": "rlogin", "shell": "rsh", "exec": "rexec", "telnets": "telnet", "ftp-data": "ftp"}
SMBV1_MARKERS = ("smbv1", "nt lm 0.12", "nt lm 0.12 (smbv1)")


def service_names(svc: dict[str, Any]) -> set[str]:
    """Normalised names a service answers to (nmap name, alias, smbv1 flag)."""
    name = str(svc.get("name") or "").lower()
    names = {name, ALIASES.get(name, name)}
    if "smbv1" in (svc.get("flags") or []):
        names.add("smbv1")
    return names - {""}


def compute(asset: dict[str, Any], cfg: InventorySettings, now: datetime) -> list[str]:
    forbidden = {f.lower() for f in cfg.forbidden_services}
    out = []
    for svc in get(asset, "secops.asset.services") or []:
        hit = sorted(service_names(svc) & forbidden)
        if hit:
            out.append(f"forbidden_service:{hit[0]}:{svc.get('port')}/{svc.get('transport', 'tcp')}")
    if not get(asset, "secops.asset.owner"):
        out.append("no_owner")
    last_scan = get(asset, "secops.asset.last_scan")
    if not last_scan or now - parse_time(last_scan) > timedelta(days=cfg.scan_overdue_days):
        out.append("scan_overdue")
    return out
