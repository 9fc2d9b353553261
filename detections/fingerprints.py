"""TLS client fingerprints (JA3, JA4) of well-known C2 and malware, matched at detection time.

A list ships with the package (``detections/data/c2_fingerprints.csv``); operators add or override entries
with their own files in the same format (``detections.fingerprint_files``), checked by
``secops rules fingerprints FILE``. Lines: ``fingerprint,name,severity,note``, ``#`` comments. A later file's
entry replaces an earlier one for the same fingerprint. Each match carries its entry's severity: a
fingerprint shared with a common TLS library (Go, Windows) is ``low``, one that names the tool ``high``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from elasticsearch import Elasticsearch

from detections.compiler import SEVERITY_SCORE, CompiledRule
from detections.engine import Match, _composite, _match_from_bucket, _sample_aggs, _terms_sources, window_filter
from detections.ioc import HEX32, JA4, MAX_IOC_FILE
from secops.es.templates import index_pattern
from secops.i18n import N_, message

SHIPPED = Path(__file__).parent / "data" / "c2_fingerprints.csv"
FIELDS = ("tls.client.ja4", "tls.client.ja3")
GROUP = ["source.ip", "destination.ip"]


@dataclass(frozen=True)
class Fingerprint:
    value: str
    name: str
    severity: str
    note: str = ""


@dataclass
class FingerprintList:
    entries: dict[str, Fingerprint] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)


def _read(path: Path, into: FingerprintList) -> None:
    if path.stat().st_size > MAX_IOC_FILE:
        raise ValueError(f"larger than {MAX_IOC_FILE} bytes")
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            value = row[0].strip().lower()
            name = row[1].strip() if len(row) > 1 else ""
            severity = row[2].strip().lower() if len(row) > 2 and row[2].strip() else "medium"
            if not (HEX32.match(value) or JA4.match(value)):
                into.errors.append(f"{path.name}:{n}: not a JA3 or JA4 fingerprint: {row[0][:80]!r}")
            elif not name:
                into.errors.append(f"{path.name}:{n}: {value}: no name")
            elif severity not in SEVERITY_SCORE:
                into.errors.append(f"{path.name}:{n}: {value}: severity {severity!r} is not one of "
                                   f"{', '.join(SEVERITY_SCORE)}")
            else:
                into.entries[value] = Fingerprint(value, name[:200], severity, ",".join(row[3:]).strip()[:400])


def load_fingerprints(files: list[Path] | tuple[Path, ...] = (), shipped: bool = True) -> FingerprintList:
    """The shipped list, then each file in order (later entries win); unreadable files are reported."""
    out = FingerprintList()
    for path in ([SHIPPED] if shipped else []) + [Path(p) for p in files]:
        try:
            _read(path, out)
        except (OSError, ValueError) as exc:
            out.errors.append(f"{path}: {exc}")
    return out


def make_fingerprint_run(fingerprints: FingerprintList):  # type: ignore[no-untyped-def]
    """The analytic: TLS sessions whose client fingerprint is listed, one match per client, server and entry."""
    def run(es: Elasticsearch, prefix: str, rule: CompiledRule, start: str, end: str) -> list[Match]:
        if not fingerprints.entries:
            return []
        index = index_pattern(prefix, "secops.tls")
        values = sorted(fingerprints.entries)
        out = []
        for fp_field in FIELDS:
            query = {"bool": {"filter": [{"terms": {fp_field: values}}, window_filter(start, end)]}}
            group = [*GROUP, fp_field]
            for b in _composite(es, index, query, _terms_sources(group), _sample_aggs()):
                entry = fingerprints.entries[str(b["key"][fp_field])]
                m = _match_from_bucket(es, index, query, b, group, message(
                    N_("%(n)s TLS sessions with the client fingerprint of %(name)s (%(fingerprint)s)"),
                    n=b["doc_count"], name=entry.name, fingerprint=entry.value))
                m.severity = entry.severity
                out.append(m)
        return out
    return run
