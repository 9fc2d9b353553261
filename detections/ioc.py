"""Indicator matching against local IOC lists and STIX 2.1 bundles (offline).

IOC folders hold ``*.txt``/``*.csv`` lists (one indicator per line, ``#`` comments, an optional second
CSV column is the description) and ``*.json`` STIX 2.1 bundles whose indicators use simple comparison
patterns (``[ipv4-addr:value = '...']``, ``domain-name``, ``url``, JA3 hashes via ``x-ja3`` / ``ja3``).
A bad file is reported and skipped.
"""

from __future__ import annotations

import csv
import ipaddress
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import stix2
from elasticsearch import Elasticsearch

from detections.compiler import CompiledRule
from detections.engine import Match, _composite, _match_from_bucket, _sample_aggs, _terms_sources, window_filter
from secops.es.templates import index_pattern
from secops.i18n import N_, REASONS, message, translated_texts

log = logging.getLogger(__name__)
MAX_IOC_FILE = 32 * 1024 * 1024
HEX32 = re.compile(r"^[0-9a-f]{32}$")
JA4 = re.compile(r"^[tqd]\d{2}[di]\d{4}[a-z0-9]{2}_[0-9a-f]{12}_[0-9a-f]{12}$")
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\.?$")
STIX_TERM = re.compile(r"\[\s*([a-z0-9-]+):([a-z0-9_.'-]+)\s*=\s*'([^']{1,512})'\s*\]", re.I)
FIELDS = {
    "ip": ["source.ip", "destination.ip"],
    "domain": ["dns.question.name", "url.domain", "tls.client.server_name"],
    "ja3": ["tls.client.ja3", "tls.server.ja3s"],
    "ja4": ["tls.client.ja4"],
}


@dataclass
class IocSet:
    ips: set[str] = field(default_factory=set)
    domains: set[str] = field(default_factory=set)
    ja3: set[str] = field(default_factory=set)
    ja4: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ips) + len(self.domains) + len(self.ja3) + len(self.ja4)

    def add(self, value: str) -> bool:
        v = value.strip().lower().rstrip(".")
        if not v:
            return False
        try:
            self.ips.add(str(ipaddress.ip_network(v, strict=False)) if "/" in v else str(ipaddress.ip_address(v)))
            return True
        except ValueError:
            pass
        if HEX32.match(v):
            self.ja3.add(v)
        elif JA4.match(v):
            self.ja4.add(v)
        elif DOMAIN.match(v):
            self.domains.add(v)
        else:
            return False
        return True


def _load_list(path: Path, iocs: IocSet) -> None:
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or row[0].lstrip().startswith("#"):
                continue
            if not iocs.add(row[0]) and n > 1:  # the first line may be a header
                iocs.errors.append(f"{path.name}:{n}: not an IP, domain, JA3 or JA4: {row[0][:80]!r}")


def _load_stix(path: Path, iocs: IocSet) -> None:
    bundle = stix2.parse(path.read_text(encoding="utf-8"), allow_custom=True)
    objects = getattr(bundle, "objects", [bundle])
    for obj in objects:
        if getattr(obj, "type", "") != "indicator" or getattr(obj, "pattern_type", "stix") != "stix":
            continue
        for _kind, _prop, value in STIX_TERM.findall(obj.pattern):
            iocs.add(value)


def load_iocs(dirs: list[Path]) -> IocSet:
    iocs = IocSet()
    for d in dirs:
        for path in sorted(Path(d).rglob("*")) if Path(d).is_dir() else [Path(d)]:
            if not path.is_file() or path.suffix not in (".txt", ".csv", ".json"):
                continue
            try:
                if path.stat().st_size > MAX_IOC_FILE:
                    raise ValueError(f"larger than {MAX_IOC_FILE} bytes")
                (_load_stix if path.suffix == ".json" else _load_list)(path, iocs)
            except (OSError, ValueError, stix2.exceptions.STIXError) as exc:
                iocs.errors.append(f"{path}: {exc}")
    return iocs


def ioc_query(iocs: IocSet) -> dict | None:
    should: list[dict] = []
    nets = [i for i in iocs.ips if "/" in i]
    addrs = [i for i in iocs.ips if "/" not in i]
    for f in FIELDS["ip"]:
        if addrs:
            should.append({"terms": {f: addrs}})
        should += [{"term": {f: n}} for n in nets]
    for f in FIELDS["domain"]:
        if iocs.domains:
            should.append({"terms": {f: sorted(iocs.domains)}})
            should += [{"wildcard": {f: {"value": f"*.{d}"}}} for d in sorted(iocs.domains)[:500]]
    for kind in ("ja3", "ja4"):
        values = sorted(getattr(iocs, kind))
        if values:
            should += [{"terms": {f: values}} for f in FIELDS[kind]]
    return {"bool": {"should": should, "minimum_should_match": 1}} if should else None


def make_ioc_rule(iocs: IocSet) -> CompiledRule:
    def run(es: Elasticsearch, prefix: str, rule: CompiledRule, start: str, end: str) -> list[Match]:
        query = ioc_query(iocs)
        if query is None:
            return []
        index = ",".join(index_pattern(prefix, d) for d in ("secops.conn", "secops.dns", "secops.http", "secops.tls"))
        q = {"bool": {"filter": [query, window_filter(start, end)]}}
        group = ["source.ip", "destination.ip"]
        return [_match_from_bucket(es, index, q, b, group,
                                   message(N_("%(n)s events matched a local indicator"), n=b["doc_count"]))
                for b in _composite(es, index, q, _terms_sources(group), _sample_aggs())]

    title = N_("Indicator Of Compromise Match")
    description = message(N_("Traffic to or from one of %(n)s local indicators (IP, domain, JA3, JA4)."), n=len(iocs))
    return CompiledRule(id="secops-ioc-match", title=title, kind="analytic",
                        dataset="secops.conn,secops.dns,secops.http,secops.tls", severity="high", level="high",
                        author="secops project", license="Apache-2.0", techniques=["T1071"],
                        tactics=["Command and Control"], tags=["attack.t1071", "attack.command-and-control"],
                        description=description.english(), analytic=run,
                        i18n=translated_texts(REASONS, title=title, description=description))
