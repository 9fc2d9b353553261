"""Alerts as the playbooks see them: the detections context raises an alert, stores it in
``secops-alert`` and sends its id by task name (``playbooks.on_alert``); the playbooks read it back.

Every value in an alert may come from the monitored network, so :class:`AlertRef` keeps only
well-formed values in its typed fields; templates still read the full document (``fields``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ALERT_DATASET = "secops.alert"
ON_ALERT_TASK = "playbooks.on_alert"
MAX_IP_TEXT = 45  # the longest textual IPv6 address


def _text(value: Any, limit: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


@dataclass(frozen=True)
class AlertRef:
    id: str
    rule_id: str | None = None
    rule_name: str | None = None
    severity: str | None = None
    tags: tuple[str, ...] = ()
    source_ip: str | None = None
    destination_ip: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_doc(cls, alert_id: str, doc: Mapping[str, Any]) -> AlertRef:
        rule: Mapping[str, Any] = doc["rule"] if isinstance(doc.get("rule"), Mapping) else {}
        tags: list[Any] = doc["tags"] if isinstance(doc.get("tags"), list) else []

        def ip(side: str) -> str | None:
            part = doc.get(side)
            return _text(part.get("ip"), MAX_IP_TEXT) if isinstance(part, Mapping) else None

        return cls(id=alert_id, rule_id=rule.get("id") or None, rule_name=rule.get("name") or None,
                   severity=rule.get("severity"), tags=tuple(t for t in tags if isinstance(t, str)),
                   source_ip=ip("source"), destination_ip=ip("destination"), fields=doc)

    @classmethod
    def missing(cls, alert_id: str) -> AlertRef:
        """An alert that can no longer be read (deleted or not yet visible): its id only."""
        return cls(id=alert_id)
