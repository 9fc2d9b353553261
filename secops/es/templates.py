"""Index templates with explicit ECS mappings for every dataset, and index naming.

Event datasets go to one index per day (``secops-conn-2026.11.23``) so retention can drop whole
indices on a core node without ILM; stateful datasets (assets, alerts, playbook runs, scheduler
state) live in one index each and are updated in place under deterministic ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from secops.ecs import dataset_short, parse_time

if TYPE_CHECKING:  # the deep path's worker process imports this module for its limits, not the client
    from elasticsearch import Elasticsearch

MAX_KEYWORD_CHARS = 4096  # Elasticsearch counts UTF-16 units; a longer keyword value is not indexed at all
KW = {"type": "keyword", "ignore_above": MAX_KEYWORD_CHARS}
# Text an attacker or a person chose (URLs, user agents, names, commands): a keyword plus a lowercase-normalised
# ``.ci`` sub-field, so Sigma's case-insensitive string matches (detections.pipeline) and analysts' searches can
# ignore case while aggregations and displays keep the original.
CI = {**KW, "fields": {"ci": {**KW, "normalizer": "secops_lowercase"}}}
NORMALIZERS = {"secops_lowercase": {"type": "custom", "filter": ["lowercase"]}}
IP = {"type": "ip"}
LONG = {"type": "long"}
DATE = {"type": "date"}
BOOL = {"type": "boolean"}
TEXT = {"type": "text"}
FLOAT = {"type": "float"}


def obj(**props: dict) -> dict:
    return {"properties": props}


def endpoint() -> dict:
    return obj(ip=IP, port=LONG, mac=KW, bytes=LONG, packets=LONG, domain=CI, address=KW,
               user=obj(name=CI), geo=obj(name=KW))


ECS_BASE: dict[str, Any] = {
    "@timestamp": DATE,
    "message": TEXT,
    "tags": KW,
    "labels": {"type": "object", "dynamic": True},
    "ecs": obj(version=KW),
    "event": obj(
        dataset=KW, kind=KW, category=KW, type=KW, action=KW, outcome=KW, module=KW, id=KW, code=KW,
        created=DATE, ingested=DATE, start=DATE, end=DATE, duration=LONG, severity=LONG, reason=KW,
        original={"type": "keyword", "index": False, "doc_values": False},
    ),
    "source": endpoint(),
    "destination": endpoint(),
    "client": endpoint(),
    "server": endpoint(),
    "network": obj(
        transport=KW, protocol=KW, community_id=KW, type=KW, direction=KW, iana_number=KW,
        application=KW, bytes=LONG, packets=LONG, vlan=obj(id=KW), name=KW,
    ),
    "observer": obj(hostname=KW, name=KW, type=KW, ip=IP, ingress=obj(interface=obj(name=KW))),
    "host": obj(
        ip=IP, mac=KW, hostname=CI, name=CI, id=KW, domain=KW, type=KW,
        os=obj(name=KW, family=KW, version=KW, full=KW, type=KW, platform=KW),
    ),
    "related": obj(ip=IP, hosts=KW, hash=KW, user=KW),
    "user": obj(name=CI, id=KW, domain=CI),
    "user_agent": obj(original=CI, name=KW, version=KW),
    "url": obj(original=CI, domain=CI, path=CI, query=CI, full=CI, extension=CI, scheme=KW, port=LONG),
    "http": obj(
        version=KW,
        request=obj(method=CI, referrer=CI, mime_type=KW, body=obj(bytes=LONG)),
        response=obj(status_code=LONG, mime_type=KW, body=obj(bytes=LONG)),
    ),
    "dns": obj(
        id=KW, op_code=KW, type=KW, response_code=KW, header_flags=KW, resolved_ip=IP,
        question=obj(name=CI, type=KW, class_=KW, registered_domain=CI, subdomain=CI, top_level_domain=CI),
        answers=obj(name=CI, type=KW, data=CI, ttl=LONG, **{"class": KW}),
    ),
    "tls": obj(
        version=KW, version_protocol=KW, cipher=KW, curve=KW, established=BOOL, resumed=BOOL, next_protocol=KW,
        client=obj(server_name=CI, ja3=KW, ja4=KW, supported_ciphers=KW),
        server=obj(
            ja3s=KW, hash=obj(sha256=KW, sha1=KW, md5=KW), not_after=DATE, not_before=DATE, subject=CI, issuer=CI,
            x509=obj(subject=obj(common_name=CI, distinguished_name=CI), issuer=obj(common_name=CI,
                     distinguished_name=CI), serial_number=KW, not_after=DATE, not_before=DATE,
                     alternative_names=CI),
        ),
    ),
    "file": obj(name=CI, path=CI, size=LONG, hash=obj(sha256=KW, sha1=KW, md5=KW)),
    "rule": obj(id=KW, uuid=KW, name=KW, author=KW, severity=KW, description=TEXT, reference=KW, ruleset=KW,
                license=KW, category=KW, version=KW),
    "threat": obj(
        framework=KW,
        technique=obj(id=KW, name=KW, subtechnique=obj(id=KW, name=KW)),
        tactic=obj(id=KW, name=KW),
        indicator=obj(type=KW, description=TEXT, provider=KW, ip=IP, name=KW, confidence=KW),
    ),
    "service": obj(name=KW, type=KW, version=KW),
    "process": obj(name=CI, pid=LONG, command_line=CI),
    # keyword values cut to MAX_KEYWORD_CHARS by bound_keywords: which field, its full length and digest
    "secops": obj(truncated=obj(field=KW, length=LONG, sha256=KW)),
}

# strings not declared above become keywords (never analysed text, never guessed dates)
DYNAMIC_TEMPLATES = [
    {"secops_times": {"path_match": "secops.*_time", "mapping": DATE}},
    {"secops_seen": {"path_match": "secops.*.*_seen", "mapping": DATE}},
    {"strings_as_keyword": {"match_mapping_type": "string", "mapping": KW}},
]


@dataclass(frozen=True)
class Dataset:
    name: str  # event.dataset, e.g. "secops.conn"
    daily: bool = True  # one index per day, else one index updated in place
    properties: dict[str, Any] = field(default_factory=dict)  # extra explicit mappings under secops.*

    @property
    def short(self) -> str:
        return dataset_short(self.name)


def _secops(**sections: dict) -> dict:
    return {"secops": obj(**sections)}


SERVICE = obj(port=LONG, transport=KW, name=KW, product=KW, version=KW, extrainfo=KW, cpe=KW, state=KW,
              tunnel=KW, banner=KW, source=KW, first_seen=DATE, last_seen=DATE)

DATASETS: dict[str, Dataset] = {d.name: d for d in [
    Dataset("secops.conn", properties=_secops(conn=obj(
        uid=KW, state=KW, history=KW, orig_bytes=LONG, resp_bytes=LONG, missed_bytes=LONG, deep_cut_bytes=LONG,
        local_orig=BOOL, local_resp=BOOL, tunnel_parents=KW, ip_proto=LONG, vlan=LONG, inner_vlan=LONG,
    ))),
    Dataset("secops.dns", properties=_secops(dns=obj(rtt=FLOAT, qtype=LONG, rcode=LONG, rejected=BOOL,
                                                     label_max_len=LONG, label_entropy=FLOAT))),
    Dataset("secops.http", properties=_secops(http=obj(trans_depth=LONG, authorization_scheme=KW, info_code=LONG,
                                                       status_msg=KW, uri_raw=CI, location=CI, cookie=CI))),
    Dataset("secops.tls", properties=_secops(tls=obj(
        cert_chain_fps=KW, last_alert=KW, client_alpn=KW, self_signed=BOOL, cert_expired=BOOL,
        heartbeat=obj(records=LONG, max_payload_length=LONG, overclaimed=BOOL, oversized=BOOL, leaked=BOOL,
                      before_handshake=BOOL, unsolicited=BOOL)))),
    Dataset("secops.dhcp", properties=_secops(dhcp=obj(hostname=CI, vendor_class=CI, client_mac=KW,
                                                       assigned_ip=IP, requested_ip=IP, msg_type=KW, lease_time=LONG,
                                                       server_id=IP))),
    Dataset("secops.ssh", properties=_secops(ssh=obj(
        client=CI, server=CI, version=LONG, auth_success=BOOL, kex_alg=KW, host_key_alg=KW, cipher_alg=KW,
        mac_alg=KW, compression_alg=KW, host_key=KW, host_key_type=KW, hassh=KW, hassh_server=KW))),
    Dataset("secops.smb", properties=_secops(smb=obj(command=KW, pipe=CI, share=CI, filename=CI, dialect=KW,
                                                     version=LONG, status=KW),
                                             dcerpc=obj(endpoint=CI, operation=CI, opnum=LONG, uuid=KW))),
    Dataset("secops.ftp", properties=_secops(ftp=obj(command=CI, arg=CI, reply_code=LONG, reply_msg=CI))),
    Dataset("secops.modbus", properties=_secops(modbus=obj(function_code=LONG, function=KW, exception=KW,
                                                           unit_id=LONG, transaction_id=LONG, is_write=BOOL,
                                                           pdu_type=KW))),
    Dataset("secops.dnp3", properties=_secops(dnp3=obj(function_code=LONG, function=KW, is_control=BOOL,
                                                       iin=LONG, fc_request=KW, fc_reply=KW))),
    Dataset("secops.s7comm", properties=_secops(s7comm=obj(rosctr=KW, function_code=KW, function=KW,
                                                           subfunction=KW, is_program_change=BOOL,
                                                           subfunction_code=KW, rosctr_code=LONG, pdu_reference=LONG,
                                                           is_orig=BOOL, error_class=KW, error_code=KW))),
    Dataset("secops.iec104", properties=_secops(iec104=obj(type_id=LONG, type=KW, cot=LONG, apdu_type=KW,
                                                           is_command=BOOL, cause=KW,
                                                           common_address=LONG))),
    Dataset("secops.observation", properties=_secops(observation=obj(source=KW))),
    Dataset("secops.sensor", properties=_secops(sensor=obj(
        packets_captured=LONG, packets_dropped=LONG, packets_dropped_kernel=LONG, packets_dropped_disk=LONG,
        packets_processed=LONG, lag_seconds=FLOAT, backlog_chunks=LONG, chunks=LONG, chunks_damaged=LONG,
        chunks_failed=LONG, chunks_dropped=LONG, connections=LONG, workers=LONG, worker_restarts=LONG,
        capture_restarts=LONG, flows_evicted=LONG, decode_errors=LONG, spool_bytes=LONG))),
    Dataset("secops.asset", daily=False, properties=_secops(asset=obj(
        id=KW, zone=KW, owner=KW, department=KW, location=KW, criticality=KW, sources=KW,
        first_seen=DATE, last_seen=DATE, last_scan=DATE, vendor=KW, services=SERVICE, findings=KW,
    ))),
    Dataset("secops.asset_change", properties=_secops(asset_change=obj(
        asset_id=KW, change=KW, field=KW, old=KW, new=KW, port=LONG, transport=KW, zone=KW, learning=BOOL))),
    Dataset("secops.alert", daily=False, properties=_secops(alert=obj(
        id=KW, status=KW, assignee=KW, group_key=KW, count=LONG, first_time=DATE, last_time=DATE, incident_id=KW,
        event_ids=KW, event_index=KW, kibana_url=KW, notes=obj(at=DATE, by=KW, text=TEXT),
        reason_message={"type": "object", "enabled": False},  # {id, params}: rendered per reader, not searched
        history=obj(at=DATE, by=KW, action=KW, old=KW, new=KW),
        suppression=obj(key=KW, terms=obj(field=KW, value=KW), start=DATE, end=DATE, window_seconds=LONG,
                        docs_count=LONG),
    ))),
    Dataset("secops.incident", daily=False, properties=_secops(incident=obj(
        id=KW, host=KW, status=KW, severity=KW, score=LONG, rules=KW, rule_ids=KW, tactics=KW, techniques=KW,
        alert_ids=KW, alert_count=LONG, first_time=DATE, last_time=DATE))),
    Dataset("secops.playbook_run", daily=False, properties=_secops(playbook=obj(
        run_id=KW, name=KW, status=KW, alert_id=KW, dry_run=BOOL, step=KW, steps=obj(
            name=KW, action=KW, status=KW, started=DATE, finished=DATE, result=KW, error=KW, action_key=KW,
            attempts=LONG, params=KW, holder=KW, lease_until=DATE, dispatched_at=DATE, retry_at=DATE,
            error_message={"type": "object", "enabled": False}),  # {id, params}: rendered per reader
        current=LONG, created=DATE, updated=DATE, finished=DATE, actor=KW, error=KW,
        error_message={"type": "object", "enabled": False},  # {id, params}: the run's error, rendered per reader
        approval=obj(step=KW, status=KW, deadline=DATE, by=KW, at=DATE),
    ))),
    Dataset("secops.audit", properties=_secops(audit=obj(actor=KW, action=KW, object=KW, outcome=KW,
                                                         details=KW, run_id=KW,
                                                         summary={"type": "object", "enabled": False}))),
    Dataset("secops.case", daily=False, properties=_secops(case=obj(
        id=KW, title=TEXT, status=KW, severity=KW, assignee=KW, tags=KW, alert_ids=KW, created=DATE, updated=DATE,
        created_by=KW, observables=obj(type=KW, value=KW, field=KW),
        comments=obj(id=KW, at=DATE, by=KW, text=TEXT),
        attachments=obj(id=KW, name=KW, kind=KW, sha256=KW, size=LONG, at=DATE, by=KW, note=KW),
        history=obj(at=DATE, by=KW, action=KW, old=KW, new=KW),
    ))),
    Dataset("secops.exception", daily=False, properties=_secops(exception=obj(
        id=KW, rule_id=KW, conditions=obj(field=KW, op=KW, value=KW), expires=DATE, comment=TEXT, author=KW,
        created=DATE, updated=DATE))),
    Dataset("secops.state", daily=False, properties=_secops(state=obj(key=KW, checkpoint=DATE, value=KW, status=KW,
                                                                     address=KW))),
]}


def dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None


def index_for(prefix: str, dataset_name: str, timestamp: str | datetime | None = None) -> str:
    """Index a document of this dataset and time belongs to."""
    ds = dataset(dataset_name)
    if not ds.daily:
        return f"{prefix}-{ds.short}"
    when = parse_time(timestamp) if timestamp is not None else None
    day = when.strftime("%Y.%m.%d") if when else "undated"
    return f"{prefix}-{ds.short}-{day}"


def index_pattern(prefix: str, dataset_name: str) -> str:
    ds = dataset(dataset_name)
    return f"{prefix}-{ds.short}-*" if ds.daily else f"{prefix}-{ds.short}"


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if k in out and isinstance(out[k], dict) and isinstance(v, dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _fix_class(props: dict) -> dict:
    # python keyword workaround above: class_ -> class
    return {("class" if k == "class_" else k): (_fix_class(v) if isinstance(v, dict) else v) for k, v in props.items()}


def mappings_for(ds: Dataset) -> dict:
    return {
        "dynamic": True,
        "date_detection": False,
        "dynamic_templates": DYNAMIC_TEMPLATES,
        "properties": _fix_class(_merge(ECS_BASE, ds.properties)),
    }


@cache
def case_insensitive_fields() -> frozenset[str]:
    """Dotted names of every field with a ``.ci`` sub-field, over all datasets (fixed: computed once)."""
    return frozenset().union(*(_ci_fields(mappings_for(ds)["properties"]) for ds in DATASETS.values()))


def _ci_fields(properties: dict, path: str = "") -> set[str]:
    out: set[str] = set()
    for name, spec in properties.items():
        dotted = f"{path}{name}"
        if "ci" in spec.get("fields", {}):
            out.add(dotted)
        if "properties" in spec:
            out |= _ci_fields(spec["properties"], dotted + ".")
    return out


def replica_settings(replicas: int | None) -> dict:
    """An explicit replica count, or (unset) 0 on a single node and 1 as soon as a second node is there."""
    if replicas is None:
        return {"auto_expand_replicas": "0-1"}
    return {"number_of_replicas": replicas, "auto_expand_replicas": False}


def template_body(prefix: str, ds: Dataset, replicas: int | None = None) -> dict:
    return {
        "index_patterns": [index_pattern(prefix, ds.name)],
        "priority": 200,
        "template": {
            "settings": {"number_of_shards": 1, **replica_settings(replicas), "refresh_interval": "1s",
                         "mapping.total_fields.limit": 3000, "analysis": {"normalizer": NORMALIZERS}},
            "mappings": mappings_for(ds),
        },
        "_meta": {"managed_by": "secops", "dataset": ds.name},
    }


def install_templates(es: Elasticsearch, prefix: str = "secops", replicas: int | None = None) -> list[str]:
    """Create or update one composable index template per dataset; returns their names."""
    names = []
    for ds in DATASETS.values():
        name = f"{prefix}-{ds.short}"
        es.indices.put_index_template(name=name, **template_body(prefix, ds, replicas))
        names.append(name)
    return names


@cache
def _unbounded_paths(dataset_name: str | None) -> frozenset[str]:
    """Dotted string fields of a dataset that are not keywords (text, unindexed): they keep long values."""
    ds = DATASETS.get(dataset_name or "")
    props = mappings_for(ds)["properties"] if ds else _fix_class(ECS_BASE)
    out: set[str] = set()

    def walk(properties: dict, path: str) -> None:
        for name, spec in properties.items():
            if "properties" in spec:
                walk(spec["properties"], f"{path}{name}.")
            elif spec.get("type") not in ("keyword", None) or spec.get("index") is False:
                out.add(f"{path}{name}")
    walk(props, "")
    return frozenset(out)


def _utf16_prefix(value: str, units: int) -> str | None:
    """``value`` cut to at most ``units`` UTF-16 code units (never inside a surrogate pair), None if it fits."""
    if len(value) * 2 <= units:
        return None
    encoded = value.encode("utf-16-le", "surrogatepass")
    if len(encoded) <= units * 2:
        return None
    cut = encoded[:units * 2]
    if 0xD8 <= cut[-1] <= 0xDB:  # a high surrogate whose partner was cut off
        cut = cut[:-2]
    return cut.decode("utf-16-le", "surrogatepass")


def bound_keywords(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with every keyword string longer than MAX_KEYWORD_CHARS cut to that length, so it stays
    searchable (Elasticsearch would index nothing of it), each cut listed in ``secops.truncated`` with the full
    length and SHA-256. Returns ``doc`` itself when nothing is too long."""
    unbounded = _unbounded_paths(((doc.get("event") or {}) if isinstance(doc.get("event"), dict) else {})
                                 .get("dataset"))
    cuts: list[dict[str, Any]] = []

    def bound(value: Any, path: str) -> Any:
        if isinstance(value, dict):
            new = {k: bound(v, f"{path}{k}.") for k, v in value.items()}
            return new if any(new[k] is not value[k] for k in value) else value
        if isinstance(value, list):
            new_list = [bound(v, path) for v in value]
            return new_list if any(a is not b for a, b in zip(new_list, value, strict=True)) else value
        if isinstance(value, str) and path[:-1] not in unbounded:
            prefix = _utf16_prefix(value, MAX_KEYWORD_CHARS)
            if prefix is not None:
                cuts.append({"field": path[:-1], "length": len(value),
                             "sha256": hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()})
                return prefix
        return value

    out = bound(doc, "")
    if not cuts:
        return doc
    secops = dict(out.get("secops") or {})
    secops["truncated"] = [*(secops.get("truncated") or []), *cuts]
    return {**out, "secops": secops}
