"""Scan results: what an nmap run or an nmap XML import found, as it travels to the inventory.

The collectors build a :class:`ScanResult` (parsed report plus where it came from); the inventory
merges it. Between processes (the Celery chain ``collectors.scan_chunk`` -> ``inventory.merge_scan``)
it travels as the JSON of :meth:`ScanResult.to_payload` and is rebuilt with :meth:`ScanResult.from_payload`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class ScanSource(StrEnum):
    SCAN = "scan"  # nmap run by secops
    IMPORT = "import"  # an existing nmap -oX file


@dataclass
class Script:
    id: str
    output: str


@dataclass
class Service:
    name: str | None = None
    product: str | None = None
    version: str | None = None
    extrainfo: str | None = None
    tunnel: str | None = None
    ostype: str | None = None
    method: str | None = None
    conf: int | None = None
    cpe: list[str] = field(default_factory=list)


@dataclass
class Port:
    port: int
    transport: str
    state: str
    reason: str | None = None
    service: Service | None = None
    scripts: list[Script] = field(default_factory=list)

    @property
    def has_version(self) -> bool:
        return bool(self.service and (self.service.product or self.service.version))


@dataclass
class OsClass:
    vendor: str | None
    family: str | None
    gen: str | None
    type: str | None
    accuracy: int | None
    cpe: list[str] = field(default_factory=list)


@dataclass
class OsMatch:
    name: str
    accuracy: int | None
    classes: list[OsClass] = field(default_factory=list)


@dataclass
class Host:
    state: str
    reason: str | None = None
    ipv4: list[str] = field(default_factory=list)
    ipv6: list[str] = field(default_factory=list)
    mac: str | None = None
    vendor: str | None = None
    hostnames: list[str] = field(default_factory=list)
    ports: list[Port] = field(default_factory=list)
    os_matches: list[OsMatch] = field(default_factory=list)
    scripts: list[Script] = field(default_factory=list)
    starttime: int | None = None
    endtime: int | None = None

    @property
    def up(self) -> bool:
        return self.state == "up"

    @property
    def addresses(self) -> list[str]:
        return self.ipv4 + self.ipv6

    @property
    def open_ports(self) -> list[Port]:
        return [p for p in self.ports if p.state == "open"]

    @property
    def script_count(self) -> int:
        return len(self.scripts) + sum(len(p.scripts) for p in self.ports)


@dataclass
class Report:
    scanner_version: str | None
    args: str | None
    start: int | None
    end: int | None
    hosts_up: int | None
    hosts_down: int | None
    hosts_total: int | None
    scanned_ports: dict[str, str] = field(default_factory=dict)  # transport -> nmap port spec from <scaninfo>
    hosts: list[Host] = field(default_factory=list)
    exit_status: str | None = None
    error: str | None = None

    @property
    def live_hosts(self) -> list[Host]:
        return [h for h in self.hosts if h.up]

    @property
    def down_hosts(self) -> list[Host]:
        return [h for h in self.hosts if not h.up]

    def counts(self) -> dict[str, int | None]:
        """The summary figures INDEX.tsv records per file."""
        return {
            "runstats_up": self.hosts_up, "runstats_down": self.hosts_down, "runstats_total": self.hosts_total,
            "host_elems": len(self.hosts), "host_elems_up": len(self.live_hosts),
            "host_elems_down": len(self.down_hosts),
            "hosts_with_osmatch": sum(1 for h in self.hosts if h.os_matches),
            "port_elems": sum(len(h.ports) for h in self.hosts),
            "ports_open": sum(len(h.open_ports) for h in self.hosts),
            "ports_with_product_or_version": sum(1 for h in self.hosts for p in h.ports if p.has_version),
            "script_results": sum(h.script_count for h in self.hosts),
            "ipv6_addrs": sum(len(h.ipv6) for h in self.hosts),
        }


def _scripts(items: Any) -> list[Script]:
    return [Script(id=str(s.get("id") or ""), output=str(s.get("output") or "")) for s in items or []]


def _service(data: Any) -> Service | None:
    if not data:
        return None
    return Service(name=data.get("name"), product=data.get("product"), version=data.get("version"),
                   extrainfo=data.get("extrainfo"), tunnel=data.get("tunnel"), ostype=data.get("ostype"),
                   method=data.get("method"), conf=data.get("conf"), cpe=list(data.get("cpe") or []))


def _port(data: dict[str, Any]) -> Port:
    return Port(port=int(data["port"]), transport=data.get("transport") or "tcp", state=data.get("state") or "",
                reason=data.get("reason"), service=_service(data.get("service")), scripts=_scripts(data.get("scripts")))


def _os_match(data: dict[str, Any]) -> OsMatch:
    return OsMatch(name=data.get("name") or "", accuracy=data.get("accuracy"),
                   classes=[OsClass(vendor=c.get("vendor"), family=c.get("family"), gen=c.get("gen"),
                                    type=c.get("type"), accuracy=c.get("accuracy"), cpe=list(c.get("cpe") or []))
                            for c in data.get("classes") or []])


def _host(data: dict[str, Any]) -> Host:
    return Host(state=data.get("state") or "unknown", reason=data.get("reason"), ipv4=list(data.get("ipv4") or []),
                ipv6=list(data.get("ipv6") or []), mac=data.get("mac"), vendor=data.get("vendor"),
                hostnames=list(data.get("hostnames") or []), ports=[_port(p) for p in data.get("ports") or []],
                os_matches=[_os_match(m) for m in data.get("os_matches") or []],
                scripts=_scripts(data.get("scripts")), starttime=data.get("starttime"), endtime=data.get("endtime"))


@dataclass
class ScanResult:
    """A scan or import result on its way to the inventory."""

    report: Report
    source: ScanSource
    reason: str = ""
    policy: str | None = None  # the scan policy that started it, if any

    def to_payload(self) -> dict[str, Any]:
        """Plain JSON: the report's fields plus ``source``, ``reason`` and (when set) ``policy``."""
        data = asdict(self.report)
        data.update(source=str(self.source), reason=self.reason)
        if self.policy is not None:
            data["policy"] = self.policy
        return data

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> ScanResult:
        """Rebuild a result from its JSON (missing optional keys take their defaults)."""
        report = Report(scanner_version=data.get("scanner_version"), args=data.get("args"), start=data.get("start"),
                        end=data.get("end"), hosts_up=data.get("hosts_up"), hosts_down=data.get("hosts_down"),
                        hosts_total=data.get("hosts_total"), scanned_ports=dict(data.get("scanned_ports") or {}),
                        hosts=[_host(h) for h in data.get("hosts") or []], exit_status=data.get("exit_status"),
                        error=data.get("error"))
        return cls(report=report, source=ScanSource(data.get("source") or "scan"), reason=data.get("reason") or "",
                   policy=data.get("policy"))

    @classmethod
    def coerce(cls, value: ScanResult | dict[str, Any]) -> ScanResult:
        return value if isinstance(value, ScanResult) else cls.from_payload(value)
