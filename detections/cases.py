"""Cases: the analyst's investigation record built from alerts.

A case (``secops-case``, one document each) has a title, status, severity, assignee and tags, the alerts
escalated into it, the observables extracted from those alerts and their events, markdown comments,
attachments (files kept beside the state directory, hashed when attached) and a full change history.
Every change is an optimistic-concurrency write (``if_seq_no``), so two analysts never overwrite each other.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elasticsearch import ConflictError, Elasticsearch, NotFoundError

from secops.ecs import doc_id, flatten, iso, utcnow
from secops.es.templates import index_for
from secops.notify import Notifier

CASE_STATUSES = ("open", "in_progress", "closed")
CASE_SEVERITIES = ("low", "medium", "high", "critical")
MAX_ALERTS = 1000
MAX_OBSERVABLES = 2000
MAX_TEXT = 20000
MAX_ATTEMPTS = 50  # optimistic-concurrency retries of one change
NAME_RE = re.compile(r"^[A-Za-z0-9_@][A-Za-z0-9_.@-]{0,63}$")
TAG_RE = re.compile(r"^[^\x00-\x1f<>\"']{1,64}$")
DOMAIN_FIELDS = {"dns.question.name", "tls.client.server_name", "url.domain", "destination.domain",
                 "source.domain", "server.domain", "client.domain", "related.hosts", "http.request.host"}
HASH_RE = re.compile(r"(^|\.)hash\.(md5|sha1|sha256|sha384|sha512)$")
LABEL_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_-]{1,63}\.?$")
HEX_RE = re.compile(r"^[0-9a-fA-F]{32,128}$")


class CaseError(ValueError):
    """A change the case cannot take (unknown status, empty comment, bad assignee...)."""


@dataclass(frozen=True)
class Observable:
    type: str  # ip | domain | hash | ja3 | ja4 | community_id
    value: str
    field: str

    def as_doc(self) -> dict[str, str]:
        return {"type": self.type, "value": self.value, "field": self.field}


def _kind(field_name: str, value: str) -> str | None:
    """Which observable a (field, value) pair is, if any; values are validated, not trusted."""
    if field_name.endswith(".ip") or field_name == "related.ip":
        try:
            ipaddress.ip_address(value)
            return "ip"
        except ValueError:
            return None
    if field_name in DOMAIN_FIELDS:
        return "domain" if LABEL_RE.match(value) and not value.replace(".", "").isdigit() else None
    if HASH_RE.search(field_name):
        return "hash" if HEX_RE.match(value) else None
    leaf = field_name.rsplit(".", 1)[-1]
    if leaf in ("ja3", "ja3s"):
        return "ja3" if re.fullmatch(r"[0-9a-f]{32}", value) else None
    if leaf in ("ja4", "ja4s"):
        return "ja4" if re.fullmatch(r"[A-Za-z0-9_]{10,80}", value) else None
    if field_name == "network.community_id":
        return "community_id" if re.fullmatch(r"1:[A-Za-z0-9+/=]{20,60}", value) else None
    return None


def extract_observables(docs: Iterable[dict[str, Any]]) -> list[Observable]:
    """Addresses, domains, hashes, JA3/JA4 and Community IDs found in alerts and their events, once each."""
    seen: dict[tuple[str, str], Observable] = {}
    for doc in docs:
        for name, value in flatten(doc):
            for v in value if isinstance(value, list) else [value]:
                if not isinstance(v, str) or not v or len(v) > 253:
                    continue
                kind = _kind(name, v)
                if kind:
                    key = (kind, v.lower() if kind in ("domain", "hash") else v)
                    seen.setdefault(key, Observable(kind, key[1], name))
    return list(seen.values())[:MAX_OBSERVABLES]


def case_index(prefix: str) -> str:
    return index_for(prefix, "secops.case")


@dataclass
class CaseStore:
    es: Elasticsearch
    prefix: str
    files: Path  # attachments: <files>/<case id>/<attachment id>-<name>
    announce: Notifier | None = None  # notifications of assignments (secops.notify), by severity policy

    @property
    def index(self) -> str:
        return case_index(self.prefix)

    # -- reading ---------------------------------------------------------------------------------
    def get(self, case_id: str) -> dict[str, Any]:
        try:
            doc = self.es.get(index=self.index, id=case_id)
        except NotFoundError:
            raise LookupError(f"no case {case_id!r}") from None
        return {"_id": doc["_id"], **doc["_source"]}

    def list(self, status: str | None = None, assignee: str | None = None, size: int = 200) -> list[dict[str, Any]]:
        filters = [{"term": {f"secops.case.{k}": v}} for k, v in (("status", status), ("assignee", assignee)) if v]
        self.es.indices.refresh(index=self.index, ignore_unavailable=True)
        res = self.es.search(index=self.index, size=size, query={"bool": {"filter": filters}},
                             ignore_unavailable=True, allow_no_indices=True,
                             sort=[{"secops.case.updated": {"order": "desc", "unmapped_type": "date"}}])
        return [{"_id": h["_id"], **h["_source"]} for h in res["hits"]["hits"]]

    def file_path(self, case_id: str, attachment: dict[str, Any]) -> Path:
        return self.files / case_id / f"{attachment['id']}-{attachment['name']}"

    # -- writing ---------------------------------------------------------------------------------
    def create(self, title: str, actor: str, severity: str = "medium", tags: list[str] | None = None,
               assignee: str | None = None) -> dict[str, Any]:
        title = _title(title)
        now = iso(utcnow())
        case_id = "case-" + doc_id("case", title, actor, now)[:16]
        doc = {"@timestamp": now, "event": {"dataset": "secops.case", "kind": "state", "created": now},
               "message": title,
               "secops": {"case": {"id": case_id, "title": title, "status": "open", "severity": _severity(severity),
                                   "assignee": _assignee(assignee), "tags": _tags(tags or []), "alert_ids": [],
                                   "created": now, "updated": now, "created_by": actor, "observables": [],
                                   "comments": [], "attachments": [],
                                   "history": [{"at": now, "by": actor, "action": "created", "old": None,
                                                "new": title}]}}}
        self.es.index(index=self.index, id=case_id, document=doc, refresh=True, op_type="create")
        case = {"_id": case_id, **doc}
        if case["secops"]["case"]["assignee"] and self.announce is not None:
            self.announce.case_assigned(case, actor)
        return case

    def _mutate(self, case_id: str, actor: str, change: Callable[[dict[str, Any], str], list[tuple]]) -> \
            dict[str, Any]:
        """Apply ``change`` (which edits the case section and returns (action, old, new) entries) and write it
        back only if nobody changed the case meanwhile; retried on a conflict."""
        for attempt in range(MAX_ATTEMPTS):
            try:
                raw = self.es.get(index=self.index, id=case_id)
            except NotFoundError:
                raise LookupError(f"no case {case_id!r}") from None
            src = raw["_source"]
            c = src["secops"]["case"]
            now = iso(utcnow())
            entries = change(c, now)
            if not entries:
                return {"_id": case_id, **src}
            c["history"] = [*c.get("history", []), *({"at": now, "by": actor, "action": a,
                                                       "old": None if o is None else str(o)[:1000],
                                                       "new": None if n is None else str(n)[:1000]}
                                                      for a, o, n in entries)]
            c["updated"] = now
            try:
                self.es.index(index=self.index, id=case_id, document=src, refresh=True,
                              if_seq_no=raw["_seq_no"], if_primary_term=raw["_primary_term"])
            except ConflictError:
                time.sleep(random.uniform(0, 0.02 * (attempt + 1)))  # let the other writer finish
                continue
            return {"_id": case_id, **src}
        raise CaseError(f"case {case_id} is being changed by someone else; try again")

    def update(self, case_id: str, actor: str, **fields: Any) -> dict[str, Any]:
        """Set title, status, severity, assignee or tags; each change is one history entry."""
        checks = {"title": _title, "status": _status, "severity": _severity, "assignee": _assignee, "tags": _tags}
        unknown = set(fields) - set(checks)
        if unknown:
            raise CaseError(f"cannot set {', '.join(sorted(unknown))}")
        clean = {k: checks[k](v) for k, v in fields.items() if v is not None or k == "assignee"}

        assigned: list[bool] = []

        def change(c: dict[str, Any], _now: str) -> list[tuple]:
            out = []
            assigned[:] = []
            for k, v in clean.items():
                if c.get(k) != v:
                    out.append((k, ", ".join(c[k]) if k == "tags" else c.get(k), ", ".join(v) if k == "tags" else v))
                    c[k] = v
                    if k == "assignee" and v:
                        assigned.append(True)
            return out

        case = self._mutate(case_id, actor, change)
        if assigned and self.announce is not None:
            self.announce.case_assigned(case, actor)
        return case

    def add_alerts(self, case_id: str, actor: str, alerts: list[dict[str, Any]],
                   events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Escalate alerts into the case; their observables (and their events') join the case's."""
        found = extract_observables([*alerts, *(events or [])])

        def change(c: dict[str, Any], _now: str) -> list[tuple]:
            have = list(c.get("alert_ids") or [])
            fresh = [a["_id"] for a in alerts if a["_id"] not in have]
            if len(have) + len(fresh) > MAX_ALERTS:
                raise CaseError(f"a case holds at most {MAX_ALERTS} alerts")
            known = {(o["type"], o["value"]) for o in c.get("observables") or []}
            new_obs = [o.as_doc() for o in found if (o.type, o.value) not in known]
            c["alert_ids"] = have + fresh
            c["observables"] = [*(c.get("observables") or []), *new_obs][:MAX_OBSERVABLES]
            out: list[tuple] = [("alert_added", None, i) for i in fresh]
            if new_obs:
                out.append(("observables_added", None, len(new_obs)))
            return out

        return self._mutate(case_id, actor, change)

    def comment(self, case_id: str, actor: str, text: str) -> dict[str, Any]:
        if not text.strip():
            raise CaseError("a comment needs text")
        if len(text) > MAX_TEXT:
            raise CaseError(f"a comment holds at most {MAX_TEXT} characters")

        def change(c: dict[str, Any], now: str) -> list[tuple]:
            cid = doc_id("comment", actor, now, text)[:12]
            c["comments"] = [*(c.get("comments") or []), {"id": cid, "at": now, "by": actor, "text": text}]
            return [("commented", None, cid)]

        return self._mutate(case_id, actor, change)

    def attach(self, case_id: str, actor: str, source: Path, name: str, kind: str = "file",
               note: str = "") -> dict[str, Any]:
        """Copy ``source`` into the case's folder, hashed (SHA-256) as it is attached; returns the attachment."""
        self.get(case_id)
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:120].lstrip(".") or "file"
        with source.open("rb") as fh:
            sha = hashlib.file_digest(fh, "sha256").hexdigest()
        att = {"id": doc_id("attachment", case_id, sha, safe, iso(utcnow()))[:12], "name": safe, "kind": kind,
               "sha256": sha, "size": source.stat().st_size, "by": actor, "note": note[:1000]}
        target = self.file_path(case_id, att)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        with target.open("rb") as fh:  # what is kept is what was hashed
            if hashlib.file_digest(fh, "sha256").hexdigest() != sha:
                target.unlink()
                raise CaseError("the attachment changed while it was copied")

        def change(c: dict[str, Any], now: str) -> list[tuple]:
            att["at"] = now
            c["attachments"] = [*(c.get("attachments") or []), att]
            return [("attached", None, f"{safe} sha256={sha}")]

        self._mutate(case_id, actor, change)
        return att


def _title(value: str) -> str:
    value = (value or "").strip()
    if not value or len(value) > 300 or any(ord(ch) < 32 for ch in value):
        raise CaseError("a title is 1-300 printable characters")
    return value


def _status(value: str) -> str:
    if value not in CASE_STATUSES:
        raise CaseError(f"status must be one of {', '.join(CASE_STATUSES)}")
    return value


def _severity(value: str) -> str:
    if value not in CASE_SEVERITIES:
        raise CaseError(f"severity must be one of {', '.join(CASE_SEVERITIES)}")
    return value


def _assignee(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    if not NAME_RE.match(value):  # type: ignore[arg-type]
        raise CaseError("an assignee is a user name")
    return value


def _tags(values: list[str] | str) -> list[str]:
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",")]
    tags = list(dict.fromkeys(v.strip() for v in values if v and v.strip()))
    if len(tags) > 50 or not all(TAG_RE.match(t) for t in tags):
        raise CaseError("tags are up to 50 short labels without quotes, angle brackets or control characters")
    return tags
