"""Roles and what each may do. Every console endpoint names one permission; the server checks it."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    ANALYST = "analyst"
    RESPONDER = "responder"
    ADMIN = "admin"
    AUDITOR = "auditor"


class Perm(StrEnum):
    OVERVIEW = "overview.read"
    ALERTS_READ = "alerts.read"
    ALERTS_TRIAGE = "alerts.triage"
    PCAP_READ = "pcap.read"
    RUNS_READ = "runs.read"
    APPROVALS_DECIDE = "approvals.decide"
    PLAYBOOK_START = "playbooks.start"
    KILL_SWITCH = "playbooks.kill_switch"
    ASSETS_READ = "assets.read"
    ASSETS_EXPORT = "assets.export"
    AUDIT_READ = "audit.read"
    USERS_MANAGE = "users.manage"
    CASES_READ = "cases.read"
    CASES_EDIT = "cases.edit"
    CASES_EXPORT = "cases.export"
    EXCEPTIONS_EDIT = "exceptions.edit"
    HUNT = "hunt"
    SELF = "self"  # one's own session and preferences: every signed-in user


_READ = {Perm.SELF, Perm.OVERVIEW, Perm.ALERTS_READ, Perm.RUNS_READ, Perm.ASSETS_READ, Perm.CASES_READ}
_CASEWORK = {Perm.CASES_EDIT, Perm.CASES_EXPORT, Perm.EXCEPTIONS_EDIT, Perm.HUNT}

PERMISSIONS: dict[Role, frozenset[Perm]] = {
    Role.VIEWER: frozenset(_READ),
    Role.ANALYST: frozenset(_READ | _CASEWORK | {Perm.ALERTS_TRIAGE, Perm.PCAP_READ}),
    # Approvals and hand-started playbooks belong to the responder alone (separation of duties).
    Role.RESPONDER: frozenset(_READ | _CASEWORK | {Perm.ALERTS_TRIAGE, Perm.PCAP_READ, Perm.APPROVALS_DECIDE,
                                       Perm.PLAYBOOK_START}),
    Role.ADMIN: frozenset(_READ | _CASEWORK | {Perm.ALERTS_TRIAGE, Perm.PCAP_READ, Perm.KILL_SWITCH, Perm.USERS_MANAGE,
                                   Perm.AUDIT_READ, Perm.ASSETS_EXPORT}),
    # The auditor reads everything, exports the inventory and cases, and changes nothing.
    Role.AUDITOR: frozenset(_READ | {Perm.PCAP_READ, Perm.ASSETS_EXPORT, Perm.AUDIT_READ, Perm.CASES_EXPORT,
                                               Perm.HUNT}),
}


def allowed(role: str, perm: Perm) -> bool:
    try:
        return perm in PERMISSIONS[Role(role)]
    except ValueError:
        return False
