"""DHCP: one record per transaction (xid), as Zeek's dhcp.log, plus a passive asset observation.

The ACK ties the client MAC to its assigned address; host name (option 12) and vendor class
(option 60) come from the client's messages. Every ACK also yields a ``secops.observation`` of
kind "dhcp" for the inventory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from collectors.protocols.base import Analyzer, RunContext, Warn, evict_oldest, flow_by_server_port
from collectors.protocols.documents import Doc, Flow, Written
from collectors.protocols.tshark import Packet
from secops.ecs import doc_id, iso

MSG_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE",
             8: "INFORM"}
PORTS = frozenset({67})

MAX_MESSAGES = 64  # message types kept per transaction


@dataclass
class Lease:
    flow: Flow
    ts: float
    xid: str
    mac: str | None = None
    hostname: str | None = None
    vendor_class: str | None = None
    requested_ip: str | None = None
    assigned_ip: str | None = None
    server_id: str | None = None
    lease_time: int | None = None
    msg_types: list[str] = field(default_factory=list)


class DhcpAnalyzer(Analyzer):
    DATASET = "secops.dhcp"
    SERVICE = "dhcp"
    LAYERS = frozenset({"dhcp"})
    FILTER = "dhcp"
    FIELDS = (
        "dhcp.id", "dhcp.hw.mac_addr", "dhcp.ip.your", "dhcp.ip.client", "dhcp.option.dhcp", "dhcp.option.hostname",
        "dhcp.option.vendor_class_id", "dhcp.option.requested_ip_address", "dhcp.option.dhcp_server_id",
        "dhcp.option.ip_address_lease_time",
    )

    def __init__(self, warn: Warn, context: RunContext | None = None) -> None:
        super().__init__(warn, context)
        self.leases: dict[str, Lease] = {}

    def handle(self, pkt: Packet) -> Iterable[Written]:
        xid = pkt.first("dhcp.id")
        oriented = flow_by_server_port(pkt, PORTS)
        if xid is None or oriented is None:
            return
        flow, from_client = oriented
        lease = self.leases.get(xid) or Lease(flow, pkt.ts, xid)
        self.leases[xid] = lease
        for stale in evict_oldest(self.leases):
            yield from self.emit(stale)
        msg = MSG_TYPES.get(pkt.int("dhcp.option.dhcp", 0) or 0, "BOOTP")
        if len(lease.msg_types) < MAX_MESSAGES:  # one transaction id repeated without end
            lease.msg_types.append(msg)
        lease.mac = lease.mac or pkt.first("dhcp.hw.mac_addr")
        if from_client:
            lease.hostname = pkt.first("dhcp.option.hostname") or lease.hostname
            lease.vendor_class = pkt.first("dhcp.option.vendor_class_id") or lease.vendor_class
            lease.requested_ip = pkt.first("dhcp.option.requested_ip_address") or lease.requested_ip
        else:
            lease.server_id = pkt.first("dhcp.option.dhcp_server_id") or lease.server_id
            lease.lease_time = pkt.int("dhcp.option.ip_address_lease_time") or lease.lease_time
        if msg == "ACK":
            your = pkt.first("dhcp.ip.your")
            unset = "0.0.0.0"  # noqa: S104 - an empty yiaddr field, not a bind address
            lease.assigned_ip = your if your and your != unset else pkt.first("dhcp.ip.client")
        if msg in ("ACK", "NAK"):
            del self.leases[xid]
            yield from self.emit(lease, pkt.ts)

    def emit(self, lease: Lease, ts: float | None = None) -> Iterable[Written]:
        mac = lease.mac.lower() if lease.mac else None
        fields = {
            "secops.dhcp.msg_type": lease.msg_types,
            "secops.dhcp.client_mac": mac,
            "secops.dhcp.hostname": lease.hostname,
            "secops.dhcp.vendor_class": lease.vendor_class,
            "secops.dhcp.requested_ip": lease.requested_ip,
            "secops.dhcp.assigned_ip": lease.assigned_ip,
            "secops.dhcp.lease_time": lease.lease_time,
            "secops.dhcp.server_id": lease.server_id,
            "source.mac": mac,
        }
        yield self.document(lease.flow, lease.ts, ("dhcp", lease.xid), fields, self.SERVICE)
        if lease.assigned_ip and mac:
            when = iso(ts if ts is not None else lease.ts)
            obs: Doc = {
                "_id": doc_id("secops.observation", "dhcp", mac, lease.assigned_ip, when),
                "@timestamp": when,
                "event": {"dataset": "secops.observation", "kind": "event", "category": ["network"],
                          "type": ["info"]},
                "host": {"ip": lease.assigned_ip, "mac": mac},
                "secops": {"observation": {"kind": "dhcp", "source": "dhcp"}},
            }
            if lease.hostname:
                obs["host"]["hostname"] = lease.hostname
            if lease.vendor_class:
                obs["secops"]["dhcp"] = {"vendor_class": lease.vendor_class}
            yield obs

    def finish(self) -> Iterable[Written]:
        rest = sorted(self.leases.values(), key=lambda x: x.ts)
        self.leases.clear()
        for lease in rest:
            yield from self.emit(lease)
        self.report_cuts()
