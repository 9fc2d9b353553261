"""Parser for nmap XML output (``-oX``), from nmap 5.x to 7.x, refusing hostile XML.

Entity declarations (billion laughs), external entities and DTD-fetching tricks are refused by
defusedxml before any expansion happens; truncated or non-nmap documents raise NmapXmlError.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from secops.contracts.scan import Host, OsClass, OsMatch, Port, Report, Script, Service

MAX_XML_BYTES = 512 * 1024 * 1024


class NmapXmlError(ValueError):
    """The input is not a complete, safe nmap XML document."""


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def port_set(spec: str) -> set[int]:
    """'21-23,80' -> {21, 22, 23, 80}."""
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            continue
        out.update(range(a, min(b, 65535) + 1))
    return out


def _scripts(parent: ET.Element | None) -> list[Script]:
    if parent is None:
        return []
    return [Script(s.get("id", ""), s.get("output", "")) for s in parent.findall("script")]


def _service(el: ET.Element | None) -> Service | None:
    if el is None:
        return None
    return Service(name=el.get("name"), product=el.get("product"), version=el.get("version"),
                   extrainfo=el.get("extrainfo"), tunnel=el.get("tunnel"), ostype=el.get("ostype"),
                   method=el.get("method"), conf=_int(el.get("conf")),
                   cpe=[c.text.strip() for c in el.findall("cpe") if c.text])


def _port(el: ET.Element) -> Port:
    state = el.find("state")
    return Port(port=_int(el.get("portid")) or 0, transport=el.get("protocol", "tcp"),
                state=state.get("state", "unknown") if state is not None else "unknown",
                reason=state.get("reason") if state is not None else None,
                service=_service(el.find("service")), scripts=_scripts(el))


def _os(el: ET.Element | None) -> list[OsMatch]:
    if el is None:
        return []
    matches = []
    for m in el.findall("osmatch"):
        classes = [OsClass(c.get("vendor"), c.get("osfamily"), c.get("osgen"), c.get("type"), _int(c.get("accuracy")),
                           [x.text.strip() for x in c.findall("cpe") if x.text]) for c in m.findall("osclass")]
        matches.append(OsMatch(m.get("name", ""), _int(m.get("accuracy")), classes))
    if matches and not any(m.classes for m in matches):
        # nmap 5.x puts <osclass> beside <osmatch>: attach them to the best match
        matches[0].classes = [OsClass(c.get("vendor"), c.get("osfamily"), c.get("osgen"), c.get("type"),
                                      _int(c.get("accuracy"))) for c in el.findall("osclass")]
    return matches


def _host(el: ET.Element) -> Host:
    status = el.find("status")
    host = Host(state=status.get("state", "unknown") if status is not None else "unknown",
                reason=status.get("reason") if status is not None else None,
                starttime=_int(el.get("starttime")), endtime=_int(el.get("endtime")))
    for a in el.findall("address"):
        kind, addr = a.get("addrtype"), a.get("addr")
        if not addr:
            continue
        if kind == "ipv4":
            host.ipv4.append(addr)
        elif kind == "ipv6":
            host.ipv6.append(addr)
        elif kind == "mac":
            host.mac, host.vendor = addr.lower(), a.get("vendor")
    host.hostnames = [h.get("name", "") for h in el.findall("hostnames/hostname") if h.get("name")]
    ports = el.find("ports")
    host.ports = [_port(p) for p in ports.findall("port")] if ports is not None else []
    host.os_matches = _os(el.find("os"))
    host.scripts = _scripts(el.find("hostscript"))
    return host


def parse_root(root: ET.Element) -> Report:
    if root.tag != "nmaprun":
        raise NmapXmlError(f"not nmap XML output: root element is <{root.tag}>, expected <nmaprun>")
    hosts_el = root.find("runstats/hosts")
    finished = root.find("runstats/finished")
    report = Report(
        scanner_version=root.get("version"), args=root.get("args"), start=_int(root.get("start")),
        end=_int(finished.get("time")) if finished is not None else None,
        hosts_up=_int(hosts_el.get("up")) if hosts_el is not None else None,
        hosts_down=_int(hosts_el.get("down")) if hosts_el is not None else None,
        hosts_total=_int(hosts_el.get("total")) if hosts_el is not None else None,
        exit_status=finished.get("exit") if finished is not None else None,
        error=finished.get("errormsg") if finished is not None else None,
    )
    for info in root.findall("scaninfo"):
        proto, spec = info.get("protocol", "tcp"), info.get("services", "")
        report.scanned_ports[proto] = ",".join(x for x in (report.scanned_ports.get(proto), spec) if x)
    report.hosts = [_host(h) for h in root.findall("host")]
    return report


def parse_bytes(data: bytes | str, source: str = "<input>") -> Report:
    """Parse nmap XML held in memory."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MAX_XML_BYTES:
        raise NmapXmlError(f"{source}: larger than {MAX_XML_BYTES} bytes")
    if not data.strip():
        raise NmapXmlError(f"{source}: empty file, not nmap XML")
    try:
        root = DET.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise NmapXmlError(f"{source}: refused hostile XML ({type(exc).__name__}: entity or external "
                           "reference declarations are not allowed in nmap output)") from None
    except ET.ParseError as exc:
        raise NmapXmlError(f"{source}: not well-formed XML, truncated or corrupt ({exc})") from None
    try:
        return parse_root(root)
    except NmapXmlError as exc:
        raise NmapXmlError(f"{source}: {exc}") from None


def parse_file(path: str | Path) -> Report:
    """Parse an nmap ``-oX`` file; NmapXmlError with the file name on any problem."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_XML_BYTES:
            raise NmapXmlError(f"{p}: larger than {MAX_XML_BYTES} bytes")
        data = p.read_bytes()
    except OSError as exc:
        raise NmapXmlError(f"{p}: cannot read ({exc.strerror})") from None
    return parse_bytes(data, str(p))
