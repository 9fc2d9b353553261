"""Celery tasks of the collectors context: scheduled, chunked and on-demand nmap scans.

Every scan task re-validates its targets against the configured scope inside the worker (a task
message is input like any other). Results flow to the inventory through the task signature
``inventory.merge_scan`` (a chain), never through the inventory's code.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from celery import chain

from collectors.scanning import policy as policies
from collectors.scanning import state
from collectors.scanning.profiles import ProfileError
from collectors.scanning.runner import ScanError, ScanPlan, plan_scan, run_plan
from collectors.scanning.targets import Scope, TargetError
from secops.celery_app import app
from secops.config import ScanPolicy, get_settings
from secops.contracts.scan import ScanResult, ScanSource
from secops.ecs import parse_time, utcnow
from secops.es.client import make_client

log = logging.getLogger(__name__)
MERGE_TASK = "inventory.merge_scan"


def _policy(name: str) -> ScanPolicy:
    for p in get_settings().scanning.policies:
        if p.name == name:
            return p
    raise TargetError(f"unknown scan policy {name!r}")


@app.task(name="collectors.scan_chunk", acks_late=True)
def scan_chunk(hosts: list[str], profile: str, policy: str | None = None, reason: str = "") -> dict[str, Any]:
    """Scan one chunk of (already planned) hosts; returns the ScanResult payload for inventory.merge_scan."""
    s = get_settings()
    pol = _policy(policy) if policy else None
    plan = plan_scan(hosts, profile, s.scanning, policy=pol)  # scope check again, inside the worker
    report = run_plan(plan, nmap_path=s.scanning.nmap_path, timeout=s.scanning.host_timeout_seconds * 4)
    return ScanResult(report, ScanSource.SCAN, reason or (f"policy {policy}" if policy else "chunk"),
                      policy=policy).to_payload()


def _dispatch(plan: ScanPlan, policy: str | None, reason: str, chunk_size: int) -> list[str]:
    ids = []
    for chunk in plan.chunks(chunk_size):
        sig = chain(scan_chunk.s(list(chunk.host_args), plan.profile, policy, reason),
                    app.signature(MERGE_TASK))
        ids.append(sig.apply_async().id)
    return ids


@app.task(name="collectors.scan_due_policies")
def scan_due_policies(now_iso: str | None = None, only: list[str] | None = None) -> dict[str, Any]:
    """Beat task: start every policy that is due and inside a maintenance window, split into chunks.

    Returns {"started": [{"policy", "chunks", "task_ids"}], "skipped": {...}}; each task id is the
    merge step of one chunk's chain, so callers can wait for the inventory to be updated.
    """
    s = get_settings()
    now = parse_time(now_iso) if now_iso else utcnow()
    es = make_client(s)
    prefix = s.elasticsearch.index_prefix
    started, skipped = [], {}
    for pol in s.scanning.policies:
        if only and pol.name not in only:
            continue
        try:
            if not policies.is_due(pol, state.last_run(es, prefix, pol.name), now):
                skipped[pol.name] = "not due or outside maintenance window"
                continue
            scope = Scope.from_config(s.scanning.scopes, s.scanning.exclusions, [pol.scope])
            hosts = [str(a) for a in scope.expand()]
            if not hosts:
                skipped[pol.name] = "scope is empty after exclusions"
                continue
            plan = plan_scan(_compact(hosts), pol.profile, s.scanning, policy=pol)
        except (TargetError, ProfileError, policies.PolicyError) as exc:
            log.error("scan policy %s refused: %s", pol.name, exc)
            skipped[pol.name] = f"refused: {exc}"
            continue
        size = max(1, min(s.scanning.chunk_size, -(-len(hosts) // s.scanning.max_parallel_chunks)))
        ids = _dispatch(plan, pol.name, f"policy {pol.name}", size)
        state.record_run(es, prefix, pol.name, now, f"{len(ids)} chunks")
        started.append({"policy": pol.name, "chunks": len(ids), "hosts": len(hosts), "task_ids": ids})
    return {"started": started, "skipped": skipped}


def _compact(hosts: list[str]) -> list[str]:
    addrs = [ipaddress.ip_address(h) for h in hosts]
    nets = [n for v in (4, 6) for n in ipaddress.collapse_addresses(a for a in addrs if a.version == v)]
    return [str(n.network_address) if n.num_addresses == 1 else str(n) for n in nets]


@app.task(name="collectors.scan_targets")
def scan_targets(targets: list[str], profile: str = "standard", reason: str = "") -> dict[str, Any]:
    """Scope-checked scan of a few targets (playbooks' rescan), result merged via inventory.merge_scan.

    Returns {"ok": bool, "error"?: str, "targets", "profile", "hosts_up", "hosts_down", "open_ports",
    "merge_task_id"}. Refused targets never start nmap.
    """
    s = get_settings()
    try:
        plan = plan_scan(list(targets), profile, s.scanning)
        report = run_plan(plan, nmap_path=s.scanning.nmap_path, timeout=s.scanning.host_timeout_seconds * 4)
    except (TargetError, ProfileError, ScanError) as exc:
        return {"ok": False, "error": str(exc), "targets": list(targets), "profile": profile}
    result = ScanResult(report, ScanSource.SCAN, reason or "rescan")
    merge = app.send_task(MERGE_TASK, args=[result.to_payload()])
    return {"ok": True, "targets": list(targets), "profile": profile, "hosts_up": len(report.live_hosts),
            "hosts_down": len(report.down_hosts), "open_ports": sum(len(h.open_ports) for h in report.live_hosts),
            "merge_task_id": merge.id}
