"""Run nmap through python-nmap (argument list, no shell) on validated, scope-checked targets.

Order of operations is the safety contract: parse targets -> check scope and exclusions -> build
arguments from typed values -> only then construct python-nmap's PortScanner (which itself spawns
``nmap -V``) and run the scan. A rejected target therefore never starts any nmap process.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import nmap

from collectors.scanning.nmap_xml import NmapXmlError, Report, parse_bytes
from collectors.scanning.profiles import build_arguments, get_profile
from collectors.scanning.targets import Scope, Target, TargetError, nmap_host_args, validate_targets
from secops.config import ScanningSettings, ScanPolicy

SAFE_TOKEN = re.compile(r"^[A-Za-z0-9:.,/_-]+$")  # options; hosts are canonical CIDRs


class ScanError(RuntimeError):
    """nmap could not run or produced no usable result."""


@dataclass(frozen=True)
class ScanPlan:
    """Everything needed to run one scan, validated: canonical host arguments and nmap options."""

    host_args: tuple[str, ...]
    nmap_args: tuple[str, ...]
    profile: str

    def chunks(self, size: int) -> list[ScanPlan]:
        return [ScanPlan(tuple(c), self.nmap_args, self.profile) for c in chunk_hosts(self.host_args, size)]


def plan_scan(targets: Iterable[object], profile: str, scanning: ScanningSettings, *, policy: ScanPolicy | None = None,
              ports: str | None = None, scope_names: Sequence[str] | None = None,
              resolver: Callable[[str], list[str]] | None = None) -> ScanPlan:
    """Validate targets against the scope (the named scopes, or all) and build the nmap options."""
    get_profile(profile)
    names = [policy.scope] if policy else scope_names
    scope = Scope.from_config(scanning.scopes, scanning.exclusions, names)
    validated: list[Target] = validate_targets(targets, scope, max_addresses=scanning.max_target_addresses,
                                               resolver=resolver)
    args = build_arguments(profile, ports=ports or (policy.ports if policy else None),
                           timing=policy.timing if policy else 4, max_rate=policy.max_rate if policy else None,
                           host_timeout_seconds=scanning.host_timeout_seconds, max_retries=scanning.max_retries,
                           version_intensity=policy.version_intensity if policy else None)
    versions = {n.version for t in validated for n in t.networks}
    if len(versions) > 1:
        raise TargetError("IPv4 and IPv6 targets cannot share one nmap run; scan them separately")
    if versions == {6}:
        args.append("-6")
    return ScanPlan(tuple(nmap_host_args(validated)), tuple(args), profile)


def chunk_hosts(host_args: Sequence[str], size: int) -> list[list[str]]:
    """Split host arguments into chunks of at most ``size`` addresses, each as compact CIDR strings."""
    nets = [ipaddress.ip_network(h) for h in host_args]
    if sum(n.num_addresses for n in nets) <= size:
        return [list(host_args)]
    addrs = [a for n in nets for a in ([n.network_address] if n.num_addresses == 1 else n.hosts())]
    chunks = []
    for i in range(0, len(addrs), size):
        part = addrs[i:i + size]
        by_version: dict[int, list] = {}
        for a in part:
            by_version.setdefault(a.version, []).append(a)
        cidrs = [n for group in by_version.values() for n in ipaddress.collapse_addresses(group)]
        chunks.append([str(c.network_address) if c.num_addresses == 1 else str(c) for c in cidrs])
    return chunks


def _assert_safe(tokens: Sequence[str], what: str) -> None:
    # Belt and braces: python-nmap shlex-splits strings, so every token must be one plain word.
    for t in tokens:
        if not SAFE_TOKEN.match(t):
            raise TargetError(f"refusing to pass {what} token {t!r} to nmap")
    if what == "host" and any(t.startswith("-") for t in tokens):
        raise TargetError("refusing a host argument that starts with '-'")


def run_plan(plan: ScanPlan, *, nmap_path: str = "nmap", timeout: int = 0) -> Report:
    """Run nmap for one plan (or chunk) via python-nmap and parse its XML output."""
    _assert_safe(plan.host_args, "host")
    _assert_safe(plan.nmap_args, "option")
    for host in plan.host_args:
        ipaddress.ip_network(host)  # canonical networks only; raises ValueError otherwise
    try:
        scanner = nmap.PortScanner(nmap_search_path=(nmap_path,))
        scanner.scan(hosts=" ".join(plan.host_args), arguments=" ".join(plan.nmap_args), timeout=timeout)
    except nmap.PortScannerTimeout:
        raise ScanError(f"nmap did not finish within {timeout}s") from None
    except nmap.PortScannerError as exc:
        raise ScanError(f"nmap failed: {str(exc).strip()[:500]}") from None
    output = scanner.get_nmap_last_output()
    try:
        return parse_bytes(output, "nmap output")
    except NmapXmlError as exc:
        raise ScanError(str(exc)) from None


def run_chunked(plan: ScanPlan, chunk_size: int, parallel: int, *, nmap_path: str = "nmap",
                on_chunk: Callable[[Report], None] | None = None) -> Report:
    """Run the chunks of a plan in parallel nmap processes (local threads) and merge their reports."""
    chunks = plan.chunks(chunk_size)
    reports: list[Report] = []
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = [pool.submit(run_plan, c, nmap_path=nmap_path) for c in chunks]
        for fut in as_completed(futures):
            rep = fut.result()
            reports.append(rep)
            if on_chunk:
                on_chunk(rep)
    return merge_reports(reports)


def merge_reports(reports: Sequence[Report]) -> Report:
    """One report from several chunk reports (host lists concatenated, counters summed)."""
    if len(reports) == 1:
        return reports[0]
    first = reports[0]

    def total(attr: str) -> int | None:
        vals = [getattr(r, attr) for r in reports]
        return None if any(v is None for v in vals) else sum(vals)

    starts = [r.start for r in reports if r.start]
    ends = [r.end for r in reports if r.end]
    return Report(scanner_version=first.scanner_version, args=first.args, start=min(starts) if starts else None,
                  end=max(ends) if ends else None, hosts_up=total("hosts_up"), hosts_down=total("hosts_down"),
                  hosts_total=total("hosts_total"), scanned_ports=dict(first.scanned_ports),
                  hosts=[h for r in reports for h in r.hosts], exit_status=first.exit_status)
