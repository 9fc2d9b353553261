"""Playbook actions: one small module each, the same face (see base.Action); ACTIONS maps name -> action."""

from __future__ import annotations

from playbooks.actions.base import Action
from playbooks.actions.contain import Contain
from playbooks.actions.enrich import Enrich
from playbooks.actions.notify import Notify
from playbooks.actions.pcap import AttachPcap
from playbooks.actions.rescan import Rescan
from playbooks.actions.tag import TagAsset
from playbooks.actions.ticket import Ticket

ACTIONS: dict[str, Action] = {a.name: a for a in (Enrich(), Rescan(), Notify(), Contain(), TagAsset(), Ticket(),
                                                  AttachPcap())}
