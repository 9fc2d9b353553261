"""Passive asset observations (``secops.observation``): what the sensors saw of a host.

The collectors write them (flow endpoints, answering services, DHCP leases); the inventory merges them
into assets. :class:`Observation` is the document's shape, read and written here only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

OBSERVATION_DATASET = "secops.observation"


class ObservationKind(StrEnum):
    ADDRESS = "address"  # a local address (and MAC) that sent packets
    SERVICE = "service"  # a port that answered
    DHCP = "dhcp"  # an address a DHCP server assigned to a MAC


@dataclass
class Observation:
    kind: ObservationKind
    timestamp: str | None
    ip: str | None = None
    mac: str | None = None
    hostname: str | None = None
    source: str = "passive"
    port: int | None = None
    transport: str | None = None
    service: str | None = None  # detected application protocol of a service
    vendor: str | None = None  # OUI vendor of the MAC
    dhcp_vendor_class: str | None = None  # DHCP option 60
    observer: str | None = None  # the sensor
    id: str | None = None  # deterministic document id (set by the producer)
    ingested: str | None = None  # when the store received it (set by the BulkWriter)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Observation:
        host = doc.get("host") or {}
        secops = doc.get("secops") or {}
        o = secops.get("observation") or {}
        ip = host.get("ip")
        if isinstance(ip, list):
            ip = ip[0] if ip else None
        port = o.get("port")
        kind = str(o.get("kind"))
        known = kind in {k.value for k in ObservationKind}  # other kinds are merged as an address
        return cls(kind=ObservationKind(kind) if known else ObservationKind.ADDRESS,
                   timestamp=doc.get("@timestamp"), ip=ip or None,
                   mac=(host.get("mac") or "").lower() or None, hostname=host.get("hostname") or None,
                   source=o.get("source") or "passive", port=int(port) if port else None,
                   transport=o.get("transport"), service=o.get("service"), vendor=o.get("vendor"),
                   dhcp_vendor_class=(secops.get("dhcp") or {}).get("vendor_class"),
                   observer=(doc.get("observer") or {}).get("name"), id=doc.get("_id"),
                   ingested=(doc.get("event") or {}).get("ingested"))

    def to_doc(self) -> dict[str, Any]:
        host: dict[str, Any] = {k: v for k, v in (("ip", self.ip), ("mac", self.mac), ("hostname", self.hostname)) if v}
        o: dict[str, Any] = {"kind": str(self.kind), "source": self.source}
        o.update((k, v) for k, v in (("port", self.port), ("transport", self.transport), ("service", self.service),
                                     ("vendor", self.vendor)) if v is not None)
        event: dict[str, Any] = {"dataset": OBSERVATION_DATASET, "kind": "event",
                                 "category": ["network" if self.kind is ObservationKind.DHCP else "host"],
                                 "type": ["info"]}
        if self.ingested:
            event["ingested"] = self.ingested
        doc: dict[str, Any] = {"@timestamp": self.timestamp, "event": event, "host": host,
                               "secops": {"observation": o}}
        if self.id:
            doc = {"_id": self.id, **doc}
        if self.dhcp_vendor_class:
            doc["secops"]["dhcp"] = {"vendor_class": self.dhcp_vendor_class}
        if self.observer:
            doc["observer"] = {"name": self.observer}
        return doc
