"""Rule exceptions ("tune detection"): a rule, field conditions taken from an alert's values, an expiry, a
comment and an author (``secops-exception``, one document each).

The scheduler honours the exceptions live at each run: a query or correlation rule's Lucene query gains
``AND NOT (conditions)`` for each exception, so excepted events never count towards a match; every match is
also checked against the conditions (analytics compute their own matches). Open alerts an exception covers
can be closed in one step. Conditions: ``is`` (exact value), ``suffix`` (a domain or its subdomains),
``cidr`` (an address in a network).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from detections.alerts import AlertStore
from detections.compiler import CompiledRule
from detections.engine import Match
from secops.ecs import doc_id, get, iso, parse_time, utcnow
from secops.es.templates import index_for

OPS = ("is", "suffix", "cidr")
FIELD_RE = re.compile(r"^[A-Za-z0-9_@][A-Za-z0-9_.@-]{0,127}$")
RULE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
LUCENE_SPECIAL = re.compile(r'([+\-=&|><!(){}\[\]^"~*?:\\/ ])')
MAX_CONDITIONS = 10
MAX_EXCEPTIONS_PER_RULE = 500
MAX_EXCEPTIONS_PER_SEARCH = 10000


class ExceptionError(ValueError):
    """An exception that cannot be stored (unknown operator, bad field, no conditions, past expiry...)."""


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str

    def __post_init__(self) -> None:
        if not FIELD_RE.match(self.field or ""):
            raise ExceptionError(f"not a field name: {self.field[:60]!r}")
        if self.op not in OPS:
            raise ExceptionError(f"operator must be one of {', '.join(OPS)}")
        if not self.value or len(self.value) > 1000 or any(ord(c) < 32 for c in self.value):
            raise ExceptionError(f"{self.field}: a value is 1-1000 printable characters")
        if self.op == "cidr":
            try:
                ipaddress.ip_network(self.value, strict=False)
            except ValueError:
                raise ExceptionError(f"{self.field}: {self.value[:60]!r} is not an address or network") from None

    def holds(self, doc: dict[str, Any]) -> bool:
        value = get(doc, self.field)
        for v in value if isinstance(value, list) else [value]:
            if v is None:
                continue
            text = str(v)
            if self.op == "is" and text == self.value:
                return True
            if self.op == "suffix":
                s, t = self.value.lower().strip(".").rstrip("."), text.lower().rstrip(".")
                if t == s or t.endswith("." + s):
                    return True
            if self.op == "cidr":
                try:
                    if ipaddress.ip_address(text) in ipaddress.ip_network(self.value, strict=False):
                        return True
                except ValueError:
                    pass
        return False

    def lucene(self) -> str:
        if self.op == "is":
            return f'{self.field}:"{_quote(self.value)}"'
        if self.op == "cidr":
            return f'{self.field}:"{ipaddress.ip_network(self.value, strict=False)}"'
        s = self.value.strip(".")
        wild, exact, low = LUCENE_SPECIAL.sub(r"\\\1", s), _quote(s), LUCENE_SPECIAL.sub(r"\\\1", s.lower())
        return (f'({self.field}:"{exact}" OR {self.field}:*.{wild} OR {self.field}.ci:"{_quote(s.lower())}" '
                f"OR {self.field}.ci:*.{low})")

    def as_doc(self) -> dict[str, str]:
        return {"field": self.field, "op": self.op, "value": self.value}


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


@dataclass
class RuleException:
    id: str
    rule_id: str
    conditions: list[Condition]
    expires: str | None
    comment: str
    author: str
    created: str
    updated: str

    def live(self, now: datetime) -> bool:
        return self.expires is None or parse_time(self.expires) > now

    def covers(self, doc: dict[str, Any]) -> bool:
        return all(c.holds(doc) for c in self.conditions)

    def lucene(self) -> str:
        return " AND ".join(c.lucene() for c in self.conditions)

    @classmethod
    def from_doc(cls, doc_id_: str, src: dict[str, Any]) -> RuleException:
        e = src["secops"]["exception"]
        return cls(doc_id_, e["rule_id"], [Condition(c["field"], c["op"], c["value"]) for c in e["conditions"]],
                   e.get("expires"), e.get("comment") or "", e.get("author") or "", e["created"], e["updated"])

    def to_doc(self) -> dict[str, Any]:
        return {"@timestamp": self.created, "event": {"dataset": "secops.exception", "kind": "state"},
                "rule": {"id": self.rule_id},
                "secops": {"exception": {"id": self.id, "rule_id": self.rule_id,
                                         "conditions": [c.as_doc() for c in self.conditions],
                                         "expires": self.expires, "comment": self.comment, "author": self.author,
                                         "created": self.created, "updated": self.updated}}}


def conditions_from(pairs: list[tuple[str, str, str]]) -> list[Condition]:
    conds = [Condition(f, op, v) for f, op, v in pairs]
    if not conds or len(conds) > MAX_CONDITIONS:
        raise ExceptionError(f"an exception has 1-{MAX_CONDITIONS} conditions")
    return conds


def with_exceptions(rule: CompiledRule, live: list[RuleException]) -> CompiledRule:
    """The rule with every live exception's conditions excluded from its query (and its members' queries)."""
    if not live or rule.kind == "analytic":
        return rule
    clause = " ".join(f"AND NOT ({e.lucene()})" for e in live)

    def narrowed(r: CompiledRule) -> CompiledRule:
        return dataclasses.replace(r, query=f"({r.query or '*'}) {clause}")

    if rule.correlation is not None:
        corr = dataclasses.replace(rule.correlation, members=[narrowed(m) for m in rule.correlation.members])
        return dataclasses.replace(rule, correlation=corr)
    return narrowed(rule)


def excepted(match: Match, live: list[RuleException]) -> bool:
    """A match whose own values (group and sample fields) fall under an exception."""
    doc: dict[str, Any] = {}
    for k, v in {**match.fields, **{k: v for k, v in match.group.items() if v is not None}}.items():
        cur = doc
        *parents, leaf = k.split(".")
        for p in parents:
            cur = cur.setdefault(p, {})
        cur[leaf] = v
    return any(e.covers(doc) for e in live)


@dataclass
class ExceptionStore:
    es: Elasticsearch
    prefix: str

    @property
    def index(self) -> str:
        return index_for(self.prefix, "secops.exception")

    def get(self, exception_id: str) -> RuleException:
        try:
            doc = self.es.get(index=self.index, id=exception_id)
        except NotFoundError:
            raise LookupError(f"no exception {exception_id!r}") from None
        return RuleException.from_doc(doc["_id"], doc["_source"])

    def list(self, rule_id: str | None = None, size: int = MAX_EXCEPTIONS_PER_RULE) -> list[RuleException]:
        query = {"term": {"secops.exception.rule_id": rule_id}} if rule_id else {"match_all": {}}
        res = self.es.search(index=self.index, query=query, size=size, ignore_unavailable=True,
                             allow_no_indices=True, sort=[{"secops.exception.created": {"order": "desc",
                                                                                         "unmapped_type": "date"}}])
        return [RuleException.from_doc(h["_id"], h["_source"]) for h in res["hits"]["hits"]]

    def live(self, rule_id: str, now: datetime | None = None) -> list[RuleException]:
        now = now or utcnow()
        return [e for e in self.list(rule_id) if e.live(now)]

    def live_for(self, rule_ids: list[str], now: datetime | None = None) -> dict[str, list[RuleException]]:
        """:meth:`live` for several rules with one search (one per rule when they have more exceptions than one
        search returns)."""
        now = now or utcnow()
        if not rule_ids:
            return {}
        res = self.es.search(index=self.index, size=MAX_EXCEPTIONS_PER_SEARCH, ignore_unavailable=True,
                             allow_no_indices=True, query={"terms": {"secops.exception.rule_id": rule_ids}},
                             sort=[{"secops.exception.created": {"order": "desc", "unmapped_type": "date"}}])
        if res["hits"]["total"]["value"] > len(res["hits"]["hits"]):
            return {rule_id: self.live(rule_id, now) for rule_id in rule_ids}
        out: dict[str, list[RuleException]] = {rule_id: [] for rule_id in rule_ids}
        for h in res["hits"]["hits"]:
            exc = RuleException.from_doc(h["_id"], h["_source"])
            mine = out.setdefault(exc.rule_id, [])
            if len(mine) < MAX_EXCEPTIONS_PER_RULE:
                mine.append(exc)
        return {rule_id: [e for e in excs if e.live(now)] for rule_id, excs in out.items()}

    def add(self, rule_id: str, conditions: list[Condition], author: str, comment: str,
            expires: str | None = None) -> RuleException:
        if not RULE_RE.match(rule_id or ""):
            raise ExceptionError("not a rule id")
        if not comment.strip():
            raise ExceptionError("an exception needs a comment (why it is safe)")
        now = iso(utcnow())
        exp = _expiry(expires)
        exc = RuleException(doc_id("exception", rule_id, now, author, *(c.value for c in conditions))[:20], rule_id,
                            conditions, exp, comment[:4000], author, now, now)
        self.es.index(index=self.index, id=exc.id, document=exc.to_doc(), refresh=True, op_type="create")
        return exc

    def edit(self, exception_id: str, *, conditions: list[Condition] | None = None, comment: str | None = None,
             expires: str | None = "", ) -> tuple[RuleException, RuleException]:
        """Change conditions, comment or expiry (``expires=''`` keeps it, None removes it); (before, after)."""
        before = self.get(exception_id)
        after = dataclasses.replace(before, conditions=conditions or before.conditions,
                                    comment=(comment[:4000] if comment and comment.strip() else before.comment),
                                    expires=before.expires if expires == "" else _expiry(expires, allow_past=True),
                                    updated=iso(utcnow()))
        self.es.index(index=self.index, id=exception_id, document=after.to_doc(), refresh=True)
        return before, after

    def remove(self, exception_id: str) -> RuleException:
        exc = self.get(exception_id)
        self.es.delete(index=self.index, id=exception_id, refresh=True)
        return exc

    def covered_alerts(self, exc: RuleException, limit: int = 1000) -> list[str]:
        """Open or acknowledged alerts of the rule whose events (or the alert itself) all fall under ``exc``."""
        alerts = AlertStore(self.es, self.prefix, notifier=None)
        res = self.es.search(index=alerts.index, size=limit, ignore_unavailable=True, allow_no_indices=True,
                             query={"bool": {"filter": [{"term": {"rule.id": exc.rule_id}}],
                                             "must_not": [{"term": {"secops.alert.status": "closed"}}]}})
        out = []
        for h in res["hits"]["hits"]:
            a = h["_source"].get("secops", {}).get("alert", {})
            ids = list(a.get("event_ids") or [])[:200]
            docs = []
            if ids:
                ev = self.es.search(index=a.get("event_index") or f"{self.prefix}-*", size=len(ids),
                                    query={"ids": {"values": ids}}, ignore_unavailable=True, allow_no_indices=True)
                docs = [e["_source"] for e in ev["hits"]["hits"]]
            if all(exc.covers(d) for d in docs or [h["_source"]]):
                out.append(h["_id"])
        return out


def _expiry(value: str | None, allow_past: bool = False) -> str | None:
    """An ISO time, or a duration such as ``30d`` / ``12h`` from now; None or empty = never expires."""
    if not value:
        return None
    m = re.fullmatch(r"(\d{1,5})([mhd])", value.strip())
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return iso(utcnow() + timedelta(**{unit: int(m.group(1))}))
    try:
        when = parse_time(value)
    except (ValueError, TypeError):
        raise ExceptionError("expiry is an ISO time or a duration like 30d, 12h, 90m") from None
    if when <= utcnow() and not allow_past:
        raise ExceptionError("the expiry is in the past")
    return iso(when)
