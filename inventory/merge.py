"""Merge sightings into assets: nmap scan/import results and passive observations.

Each sighting is resolved to an asset (MAC, else address within zone), the asset is updated and the
differences are written as asset_change documents. Scan results are authoritative for the ports the
scan covered: a previously open port inside the scanned range that is no longer open is `port_closed`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from netaddr import EUI, NotRegisteredError
from netaddr.core import AddrFormatError

from inventory.changes import change_doc
from inventory.findings import compute as compute_findings
from inventory.learning import ZoneLearning
from inventory.model import add_unique, asset_id, asset_part, new_asset, service_key, service_label, services_by_key
from inventory.store import AssetStore
from inventory.zones import zone_for
from secops.config import InventorySettings
from secops.contracts.observation import Observation, ObservationKind
from secops.contracts.scan import Host, Port, ScanResult, Service
from secops.ecs import iso, parse_time, utcnow
from secops.es.bulk import BulkWriter

SMBV1_SCRIPT_MARKERS = ("smbv1", "nt lm 0.12")


@dataclass
class MergeResult:
    """What one merge run did (returned by the inventory's merge_scan/merge_observations as a dict)."""

    asset_ids: list[str] = field(default_factory=list)  # every asset written, created or updated
    changes: Counter[str] = field(default_factory=Counter)  # asset_change documents by kind
    hosts_seen: int = 0
    hosts_down: int = 0
    assets_created: int = 0
    assets_updated: int = 0
    learned: int = 0  # new assets recorded during their zone's learning period (no alert)

    def as_dict(self) -> dict[str, Any]:
        return {"hosts_seen": self.hosts_seen, "hosts_down": self.hosts_down, "assets_created": self.assets_created,
                "assets_updated": self.assets_updated, "learned": self.learned, "changes": dict(self.changes),
                "asset_ids": self.asset_ids}


def oui_vendor(mac: str | None) -> str | None:
    if not mac:
        return None
    try:
        return EUI(mac).oui.registration().org
    except (NotRegisteredError, AddrFormatError, IndexError, ValueError):
        return None


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _port_covered(spec: str | None, port: int) -> bool:
    if not spec:
        return False
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        if _digits(lo) and (not hi or _digits(hi)) and int(lo) <= port <= int(hi or lo):
            return True
    return False


class Merger:
    """One merge run: caches the assets it touched, collects changes, writes everything on close()."""

    def __init__(self, store: AssetStore, writer: BulkWriter, cfg: InventorySettings, now: datetime | None = None,
                 learning: ZoneLearning | None = None):
        self.store, self.writer, self.cfg, self.learning = store, writer, cfg, learning
        self.now = now or utcnow()
        self.touched: dict[str, dict[str, Any]] = {}
        self.created: set[str] = set()  # new in this run: their ports are part of new_asset, not port_opened
        self.by_mac: dict[str, str] = {}
        self.by_ip: dict[tuple[str, str], str] = {}
        self.result = MergeResult()

    # -- resolution ------------------------------------------------------------------------
    def resolve(self, ip: str | None, mac: str | None, at: str) -> tuple[dict[str, Any], bool]:
        """The asset for this sighting (creating it if new) and whether it is new."""
        zone = zone_for(ip, self.cfg.zones, self.cfg.default_zone)
        aid = (self.by_mac.get(mac) if mac else None) or (self.by_ip.get((zone, ip)) if ip else None)
        asset = self.touched.get(aid) if aid else None
        if asset is None:
            asset = self.store.find(mac, ip, zone)
        if asset is not None and mac and asset["host"].get("mac") and mac not in asset["host"]["mac"]:
            # the address now answers with another MAC: another device took it over
            old = asset
            asset = self.store.find(mac, None, zone) or None
            created = asset is None
            if created:
                asset = self._new_asset(mac, ip, zone, at, ip)
            self._change(asset, "mac_ip_changed", at, old=f"{ip}={','.join(old['host']['mac'])}", new=f"{ip}={mac}")
            self._drop_ip(old, ip, at)
            return self._track(asset, created)
        created = asset is None
        if created:
            asset = self._new_asset(mac, ip, zone, at, ip or mac)
        return self._track(asset, created)

    def _new_asset(self, mac: str | None, ip: str | None, zone: str, at: str, label: str | None) -> dict[str, Any]:
        """A new asset and its new_asset change, marked as learned while its zone is in its learning period."""
        asset = new_asset(asset_id(mac, ip, zone), zone, at, ip, mac)
        learning = bool(self.learning and self.learning.is_learning(zone))
        if learning and self.learning:
            self.learning.record(zone)
        self._change(asset, "new_asset", at, new=label, learning=learning)
        return asset

    def _track(self, asset: dict[str, Any], created: bool) -> tuple[dict[str, Any], bool]:
        aid = asset["secops"]["asset"]["id"]
        if aid not in self.touched:
            self.touched[aid] = asset
            if created:
                self.created.add(aid)
                self.result.assets_created += 1
            else:
                self.result.assets_updated += 1
        return asset, aid in self.created

    def _drop_ip(self, asset: dict[str, Any], ip: str, at: str) -> None:
        asset["host"]["ip"] = [x for x in asset["host"].get("ip", []) if x != ip]
        self._track(asset, False)

    def _index(self, asset: dict[str, Any]) -> None:
        aid, zone = asset["secops"]["asset"]["id"], asset["secops"]["asset"]["zone"]
        for mac in asset["host"].get("mac", []):
            self.by_mac[mac] = aid
        for ip in asset["host"].get("ip", []):
            self.by_ip[(zone, ip)] = aid

    def _change(self, asset: dict[str, Any], change: str, at: str, **kw: Any) -> None:
        self.writer.add(change_doc(asset, change, at, **kw))
        self.result.changes[change] += 1

    # -- common updates --------------------------------------------------------------------
    def bind(self, asset: dict[str, Any], ip: str | None, mac: str | None, at: str, source: str) -> None:
        """Record address/MAC, mac_ip_changed when a known MAC moved to another address, sources, times."""
        host, part = asset["host"], asset_part(asset)
        if mac and ip and host.get("ip") and ip not in host["ip"] and mac in (host.get("mac") or []):
            self._change(asset, "mac_ip_changed", at, old=f"{mac}={','.join(host['ip'])}", new=f"{mac}={ip}")
            host["ip"] = []
        if ip:
            host["ip"] = add_unique(host.get("ip", []), ip)
        if mac:
            host["mac"] = add_unique(host.get("mac", []), mac)
            vendor = oui_vendor(mac)
            if vendor and not part.get("vendor"):
                part["vendor"] = vendor
        part["sources"] = add_unique(part.get("sources", []), source)
        if not part.get("first_seen") or parse_time(at) < parse_time(part["first_seen"]):
            part["first_seen"] = at
        if not part.get("last_seen") or parse_time(at) > parse_time(part["last_seen"]):
            part["last_seen"] = at
            asset["@timestamp"] = at
        part["state"] = "active"
        self._index(asset)

    # -- scan results ----------------------------------------------------------------------
    def merge_scan(self, result: ScanResult) -> MergeResult:
        """Merge one scan/import result."""
        report, source = result.report, str(result.source)
        end = report.end or report.start
        at = iso(end) if end else iso(self.now)
        for host in report.hosts:
            if not host.up:
                self.result.hosts_down += 1
                continue
            addrs = host.addresses
            ip, mac = (addrs[0] if addrs else None), (host.mac or None)
            if not ip and not mac:
                continue
            self.result.hosts_seen += 1
            asset, created = self.resolve(ip, mac, at)
            self.bind(asset, ip, mac, at, source)
            self._scan_details(asset, host, created, at, report.scanned_ports, source)
            part = asset_part(asset)
            if not part.get("last_scan") or parse_time(at) > parse_time(part["last_scan"]):
                part["last_scan"] = at
        return self.result

    def _scan_details(self, asset: dict[str, Any], host: Host, created: bool, at: str,
                      scanned: dict[str, str], source: str) -> None:
        part, h = asset_part(asset), asset["host"]
        if host.hostnames:
            h["hostname"] = host.hostnames[0]
        if host.vendor:
            part["vendor"] = host.vendor
        self._os(asset, host, created, at)
        old = services_by_key(asset)
        smbv1 = any(m in (s.output or "").lower() for s in host.scripts for m in SMBV1_SCRIPT_MARKERS)
        new: dict[tuple[int, str], dict[str, Any]] = {}
        for p in host.ports:
            if p.state != "open":
                continue
            svc = self._service(p, at, smbv1, source)
            key = service_key(svc)
            prev = old.get(key)
            if prev:
                svc["first_seen"] = prev.get("first_seen", at)
                if any(prev.get(k) for k in ("product", "version")) and \
                        (prev.get("product"), prev.get("version")) != (svc.get("product"), svc.get("version")):
                    self._change(asset, "service_changed", at, port=key[0], transport=key[1],
                                 old=service_label(prev), new=service_label(svc))
                for k in ("product", "version", "name", "cpe"):  # keep passive knowledge the scan lacks
                    if not svc.get(k) and prev.get(k):
                        svc[k] = prev[k]
            elif not created:
                self._change(asset, "port_opened", at, port=key[0], transport=key[1], new=service_label(svc))
            new[key] = svc
        for key, prev in old.items():
            if key in new:
                continue
            if _port_covered(scanned.get(key[1]), key[0]):
                self._change(asset, "port_closed", at, port=key[0], transport=key[1], old=service_label(prev))
            else:
                new[key] = prev  # not covered by this scan: keep what we knew
        part["services"] = sorted(new.values(), key=service_key)

    @staticmethod
    def _service(p: Port, at: str, smbv1: bool, source: str) -> dict[str, Any]:
        s = p.service or Service()
        svc: dict[str, Any] = {"port": int(p.port), "transport": p.transport or "tcp", "state": "open",
                               "source": source, "first_seen": at, "last_seen": at}
        for k, v in (("name", s.name), ("product", s.product), ("version", s.version), ("extrainfo", s.extrainfo),
                     ("tunnel", s.tunnel)):
            if v:
                svc[k] = v
        if s.cpe:
            svc["cpe"] = list(s.cpe)
        script_text = " ".join((x.output or "") for x in p.scripts).lower()
        if (smbv1 and svc.get("name") in ("microsoft-ds", "netbios-ssn")) or \
                any(m in script_text for m in SMBV1_SCRIPT_MARKERS):
            svc["flags"] = ["smbv1"]
        return svc

    def _os(self, asset: dict[str, Any], host: Host, created: bool, at: str) -> None:
        if not host.os_matches:
            return
        best = max(host.os_matches, key=lambda m: m.accuracy or 0)
        family = ((best.classes[0].family if best.classes else None) or "").lower() or None
        os_doc = {"full": best.name, "name": best.name, "family": family, "platform": family}
        old = (asset["host"].get("os") or {}).get("full")
        if old and old != os_doc["full"] and not created:
            self._change(asset, "os_changed", at, old=old, new=os_doc["full"])
        asset["host"]["os"] = {k: v for k, v in os_doc.items() if v}

    # -- passive observations --------------------------------------------------------------
    def merge_observation(self, obs: Observation) -> None:
        """One passive observation (kinds: address, service, dhcp)."""
        ip, mac = obs.ip, obs.mac
        if not ip and not mac:
            return
        at = obs.timestamp or iso(self.now)
        self.result.hosts_seen += 1
        asset, created = self.resolve(ip, mac, at)
        self.bind(asset, ip, mac, at, "passive")
        part = asset_part(asset)
        if obs.hostname:
            asset["host"]["hostname"] = obs.hostname
        if obs.dhcp_vendor_class:
            part["dhcp_vendor_class"] = obs.dhcp_vendor_class
        if obs.kind is ObservationKind.SERVICE and obs.port:
            key = (obs.port, str(obs.transport or "tcp"))
            services = services_by_key(asset)
            svc = services.get(key)
            if svc is None:
                svc = {"port": key[0], "transport": key[1], "state": "open", "source": "passive",
                       "first_seen": at, "last_seen": at}
                if obs.service:
                    svc["name"] = obs.service
                if not created:
                    self._change(asset, "port_opened", at, port=key[0], transport=key[1], new=service_label(svc))
                services[key] = svc
            else:
                svc["last_seen"] = max(svc.get("last_seen") or at, at)
                if obs.service and not svc.get("name"):
                    svc["name"] = obs.service
            part["services"] = sorted(services.values(), key=service_key)

    # -- output ----------------------------------------------------------------------------
    def close(self) -> MergeResult:
        """Write every touched asset (findings refreshed) and make them visible to the next lookup."""
        for aid, asset in self.touched.items():
            asset_part(asset)["findings"] = compute_findings(asset, self.cfg, self.now)
            self.store.save(self.writer, asset)
            self.result.asset_ids.append(aid)
        self.writer.flush()
        self.store.refresh()
        if self.learning:
            self.result.learned = sum(self.learning.learned.values())
            self.learning.audit()
        return self.result
