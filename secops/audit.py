"""Audit trail: one ``secops.audit`` document per consequential action (who, what, when, inputs, outcome)."""

from __future__ import annotations

import getpass
import os
from typing import Any

from elasticsearch import Elasticsearch

from secops.ecs import doc_id, iso, utcnow
from secops.es.bulk import dumps
from secops.es.templates import index_for
from secops.i18n import N_, Message

# What each audited action means, in words a person reads in the audit trail (audit catalogue, per reader's
# language). The parameter is the audited object (an alert id, a run id, an account...).
SUMMARIES = {
    "alert.acknowledge": N_("Acknowledged alerts %(object)s"),
    "alert.assign": N_("Assigned alerts %(object)s"),
    "alert.close": N_("Closed alerts %(object)s"),
    "alert.note": N_("Added a note to alerts %(object)s"),
    "alert.reopen": N_("Reopened alerts %(object)s"),
    "console.csrf_refused": N_("Refused a request without a valid CSRF token: %(object)s"),
    "console.denied": N_("Refused a request the role may not make: %(object)s"),
    "console.kill_switch": N_("Set the playbook kill switch"),
    "console.login": N_("Signed in as %(object)s"),
    "console.logout": N_("Signed out %(object)s"),
    "console.pcap.download": N_("Downloaded the packets of alert %(object)s"),
    "console.pcap.transcript": N_("Read the TCP transcript of alert %(object)s"),
    "console.playbook.approve": N_("Approved playbook run %(object)s"),
    "console.playbook.deny": N_("Denied playbook run %(object)s"),
    "console.playbook.plan": N_("Showed a playbook plan for alert %(object)s"),
    "console.playbook.start": N_("Started a playbook for alert %(object)s"),
    "console.preferences": N_("Changed the preferences of %(object)s"),
    "console.user.add": N_("Added console account %(object)s"),
    "console.user.disable": N_("Disabled console account %(object)s"),
    "console.user.enable": N_("Enabled console account %(object)s"),
    "console.user.passwd": N_("Changed the password of %(object)s"),
    "console.user.role": N_("Changed the role of %(object)s"),
    "inventory.export": N_("Exported the asset inventory to %(object)s"),
    "inventory.import_owners": N_("Imported asset owners from %(object)s"),
    "inventory.tag_asset": N_("Tagged asset %(object)s"),
    "playbook.approval.expired": N_("An approval expired for run %(object)s"),
    "playbook.approval.requested": N_("Asked for approval of step %(object)s"),
    "playbook.approve": N_("Approved step %(object)s"),
    "playbook.block.expired": N_("A block on %(object)s expired and was lifted"),
    "playbook.completed": N_("Playbook run %(object)s completed"),
    "playbook.deny": N_("Denied step %(object)s"),
    "playbook.denied": N_("Playbook run %(object)s was denied"),
    "playbook.expired": N_("Playbook run %(object)s expired"),
    "playbook.failed": N_("Playbook run %(object)s failed"),
    "playbook.halted": N_("Playbook run %(object)s halted"),
    "playbook.kill_switch": N_("Set the playbook kill switch"),
    "playbook.planned": N_("Playbook run %(object)s was planned (dry run)"),
    "playbook.refused": N_("Refused playbook run %(object)s"),
    "playbook.started": N_("Started playbook run %(object)s"),
    "playbook.step.acted": N_("Ran step %(object)s"),
    "playbook.step.failed": N_("Step %(object)s failed"),
    "playbook.step.planned": N_("Planned step %(object)s (dry run)"),
    "playbook.step.reverted": N_("Reverted step %(object)s"),
    "notify.sent": N_("Sent the notification of %(object)s"),
    "notify.failed": N_("Could not send the notification of %(object)s"),
}
UNKNOWN_SUMMARY = N_("%(action)s on %(object)s")


def summary(action: str, obj: str) -> Message:
    """The audited action in words (a message id + parameters, rendered in the reader's language)."""
    if action in SUMMARIES:
        return Message(SUMMARIES[action], {"object": obj})
    return Message(UNKNOWN_SUMMARY, {"action": action, "object": obj})


def current_actor() -> str:
    """The human or service behind an action: SECOPS_ACTOR, else the login name."""
    try:
        return os.environ.get("SECOPS_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def audit_doc(action: str, obj: str, outcome: str, *, actor: str | None = None, run_id: str | None = None,
              details: dict[str, Any] | None = None, at: str | None = None) -> dict[str, Any]:
    at = at or iso(utcnow())
    actor = actor or current_actor()
    return {
        "_id": doc_id("audit", at, actor, action, obj, run_id or ""),
        "@timestamp": at,
        "event": {"dataset": "secops.audit", "kind": "event", "category": ["configuration"], "action": action,
                  "outcome": outcome},
        "user": {"name": actor},
        "secops": {"audit": {"actor": actor, "action": action, "object": obj, "outcome": outcome,
                             "run_id": run_id, "details": dumps(details or {}).decode(),
                             "summary": summary(action, obj).as_doc()}},
    }


def write_audit(es: Elasticsearch, prefix: str, action: str, obj: str, outcome: str, *,
                source_ip: str | None = None, refresh: bool | str = "wait_for", **kw: Any) -> dict[str, Any]:
    """Index one audit document immediately (by default refresh=wait_for, so the next query sees it).

    ``source_ip`` records where a request came from (the console's client address).
    """
    doc = audit_doc(action, obj, outcome, **kw)
    if source_ip:
        doc["source"] = {"ip": source_ip}
    source = {k: v for k, v in doc.items() if k != "_id"}
    es.index(index=index_for(prefix, "secops.audit", doc["@timestamp"]), id=doc["_id"], document=source,
             refresh=refresh)
    return doc
