"""Case work that crosses contexts (a composition root): escalate alerts with their events, attach the pcap of
a case's connections from the capture spool, export a case as a zip with SHA-256 and SM3 manifests. Used by the
console pages, the JSON API and ``secops cases``; callers write the audit document."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from collectors.connection_pcap import MAX_PCAP_CONNECTIONS
from detections.cases import CaseStore
from inventory.export import digest_file, sm3_available
from secops.cells import cell_tree
from secops.config import Settings
from secops.console.alerts import AlertQueue
from secops.console.ops import gather_pcap, observers
from secops.ecs import parse_time, utcnow
from secops.notify import Notifier

MANIFESTS = ("MANIFEST.sha256", "MANIFEST.sm3")


def case_store(settings: Settings, es: Elasticsearch) -> CaseStore:
    return CaseStore(es, settings.elasticsearch.index_prefix, settings.paths.state_dir / "cases",
                     announce=Notifier.from_settings(settings, es))


def escalate(store: CaseStore, queue: AlertQueue, actor: str, alert_ids: list[str], case_id: str | None = None,
             title: str | None = None, severity: str | None = None) -> dict[str, Any]:
    """Put alerts (one, a group, an incident's) into an existing case, or a new one titled after the first."""
    if not alert_ids:
        raise LookupError("no alerts to escalate")
    contexts = [queue.context(i) for i in dict.fromkeys(alert_ids)]
    alerts = [c.alert for c in contexts]
    events = [e for c in contexts for e in c.events]
    if not case_id:
        first = alerts[0]
        rule = first.get("rule", {})
        sev = severity or {"critical": "critical", "high": "high", "low": "low",
                           "informational": "low"}.get(rule.get("severity"), "medium")
        case_id = store.create(title or str(rule.get("name") or first["_id"]), actor, severity=sev)["_id"]
    return store.add_alerts(case_id, actor, alerts, events)


@dataclass
class CasePcap:
    attachment: dict[str, Any]
    packets: int
    community_ids: list[str]


def attach_pcap(store: CaseStore, queue: AlertQueue, settings: Settings, case_id: str, actor: str,
                workdir: Path) -> CasePcap:
    """The packets of every connection of the case's alerts, from the spool, attached and hashed."""
    case = store.get(case_id)["secops"]["case"]
    wanted: list[tuple[str, Any, Any]] = []
    seen_by: list[dict[str, Any]] = []  # the alerts and events: which sensors saw them
    for alert_id in case.get("alert_ids") or []:
        try:
            ctx = queue.context(alert_id)
        except LookupError:
            continue
        seen_by += [ctx.alert, *ctx.events]
        a = ctx.alert.get("secops", {}).get("alert", {})
        first = parse_time(a.get("first_time") or ctx.alert["@timestamp"]) - timedelta(minutes=5)
        last = parse_time(a.get("last_time") or ctx.alert["@timestamp"]) + timedelta(minutes=5)
        wanted += [(cid, first, last) for cid in queue.community_ids(ctx) if cid not in {w[0] for w in wanted}]
    if not wanted:
        raise LookupError("the case's alerts name no connection (no Community ID)")
    wanted = wanted[:MAX_PCAP_CONNECTIONS]
    pcap, _asked, problems = gather_pcap(settings, observers(seen_by), wanted,
                                         workdir / f"{case_id}-{utcnow().strftime('%Y%m%dT%H%M%SZ')}.pcap")
    if pcap is None:
        raise LookupError("no capture holds packets of this case's connections" + "".join(f"; {p}" for p in problems))
    att = store.attach(case_id, actor, pcap.path, pcap.path.name, kind="pcap",
                       note=f"{pcap.packets} packets of {len(pcap.connections)} connections")
    if att["sha256"] != pcap.sha256:
        raise RuntimeError("the attached pcap differs from the extracted one")
    return CasePcap(att, pcap.packets, pcap.connections)


@dataclass
class CaseExport:
    path: Path
    sha256: str  # of the zip itself
    files: dict[str, dict[str, str]]  # name in the zip -> {"sha256": ..., "sm3": ...}


def export_case(store: CaseStore, case_id: str, workdir: Path) -> CaseExport:
    """A zip: ``case.json`` (strings neutralised against formula injection), ``attachments/`` and manifests in
    ``sha256sum -c`` form (SHA-256, and SM3 / GB/T 32905) of every file in it."""
    case = store.get(case_id)
    folder = workdir / case_id
    (folder / "attachments").mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    for att in case["secops"]["case"].get("attachments") or []:
        src = store.file_path(case_id, att)
        if not src.is_file():
            raise LookupError(f"attachment {att['name']} is missing from the case folder")
        name = f"attachments/{att['id']}-{att['name']}"
        (folder / name).write_bytes(src.read_bytes())
        if digest_file(folder / name, "sha256") != att["sha256"]:
            raise RuntimeError(f"attachment {att['name']} no longer matches the hash taken when it was attached")
        names.append(name)
    (folder / "case.json").write_text(json.dumps(cell_tree(case), ensure_ascii=False, indent=2, sort_keys=True),
                                      encoding="utf-8")
    names.insert(0, "case.json")
    files = {n: {"sha256": digest_file(folder / n, "sha256")} for n in names}
    (folder / MANIFESTS[0]).write_text("".join(f"{files[n]['sha256']}  {n}\n" for n in names), encoding="utf-8")
    written = [MANIFESTS[0]]
    if sm3_available():
        for n in names:
            files[n]["sm3"] = digest_file(folder / n, "sm3")
        (folder / MANIFESTS[1]).write_text("".join(f"{files[n]['sm3']}  {n}\n" for n in names), encoding="utf-8")
        written.append(MANIFESTS[1])
    out = workdir / f"{case_id}-{utcnow().strftime('%Y%m%dT%H%M%SZ')}.zip"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for n in [*names, *written]:
            zf.write(folder / n, f"{case_id}/{n}")
    return CaseExport(out, digest_file(out, "sha256"), files)
