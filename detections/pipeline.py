"""The project's pySigma processing pipeline: Sigma log sources and field names -> secops ECS documents.

Each Sigma log source is routed to one ``event.dataset`` (added to the query as a condition), and the
generic (``src_ip``, ``dst_port``), web-log (``c-uri``, ``cs-host``) and Zeek (``id.orig_h``, ``query``,
``qtype_name``) field names are mapped to the ECS fields the collectors write. Rules written for this
project use ``product: secops`` with ``service: <dataset short name>`` and ECS field names directly.

Sigma compares strings case-insensitively (``|re`` excepted): the last step points plain string matches on
fields that have a lowercase-normalised ``.ci`` sub-field (secops.es.templates.CI) at that sub-field.
Sigma regular expressions (unanchored PCRE searches) are rewritten into Lucene's dialect (anchored, no flags)
by :class:`LuceneRegex` with detections.lucene_regex.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sigma.processing.conditions import IncludeFieldCondition, LogsourceCondition, MatchStringCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import (
    AddConditionTransformation,
    AddFieldnameSuffixTransformation,
    FieldMappingTransformation,
)
from sigma.processing.transformations.base import DetectionItemTransformation
from sigma.rule import SigmaDetectionItem, SigmaLogSource
from sigma.types import SigmaRegularExpression, SigmaRegularExpressionFlag

from detections.lucene_regex import lucene_regex
from secops.es.templates import DATASETS, case_insensitive_fields

CI_SUFFIX = ".ci"
UNSUPPORTED = "secops.unsupported"  # log sources nothing in this project produces (firewall configs, Kerberos, ...)

# Zeek's connection identifiers and Sigma's generic network names, valid in every network dataset.
ENDPOINT_FIELDS: dict[str, str | list[str]] = {
    "id.orig_h": "source.ip", "id.orig_p": "source.port", "id.resp_h": "destination.ip",
    "id.resp_p": "destination.port", "src_ip": "source.ip", "src_port": "source.port",
    "dst_ip": "destination.ip", "dst_port": "destination.port", "SourceIp": "source.ip",
    "DestinationIp": "destination.ip", "DestinationPort": "destination.port", "SourcePort": "source.port",
    "uid": "secops.conn.uid", "community_id": "network.community_id", "proto": "network.transport",
    "protocol": "network.transport", "src_mac": "source.mac", "dst_mac": "destination.mac",
}

DATASET_FIELDS: dict[str, dict[str, str | list[str]]] = {
    "secops.conn": {
        "service": "network.protocol", "conn_state": "secops.conn.state", "history": "secops.conn.history",
        "orig_bytes": "secops.conn.orig_bytes", "resp_bytes": "secops.conn.resp_bytes",
        "orig_pkts": "source.packets", "resp_pkts": "destination.packets", "orig_ip_bytes": "source.bytes",
        "resp_ip_bytes": "destination.bytes", "missed_bytes": "secops.conn.missed_bytes",
        "local_orig": "secops.conn.local_orig", "local_resp": "secops.conn.local_resp",
        "duration": "event.duration", "action": "event.action", "blocked": "event.outcome",
    },
    "secops.dns": {
        "query": "dns.question.name", "qtype_name": "dns.question.type", "record_type": "dns.question.type",
        "qtype": "secops.dns.qtype", "qclass_name": "dns.question.class", "rcode_name": "dns.response_code",
        "rcode": "secops.dns.rcode", "answers": "dns.answers.data", "answer": "dns.answers.data",
        "TTLs": "dns.answers.ttl", "trans_id": "dns.id", "rejected": "secops.dns.rejected", "Z": "secops.dns.z",
        "rtt": "secops.dns.rtt",
    },
    "secops.http": {
        "c-uri": "url.original", "cs-uri": "url.original", "uri": "url.original", "c-uri-query": "url.query",
        "cs-uri-query": "url.query", "c-uri-stem": "url.path", "cs-uri-stem": "url.path",
        "c-uri-extension": "url.extension", "c-useragent": "user_agent.original",
        "cs-user-agent": "user_agent.original", "user_agent": "user_agent.original", "cs-host": "url.domain",
        "host": "url.domain", "cs-method": "http.request.method", "method": "http.request.method",
        "sc-status": "http.response.status_code", "status_code": "http.response.status_code",
        "cs-referer": "http.request.referrer", "referrer": "http.request.referrer", "cs-cookie": "secops.http.cookie",
        "resp_mime_types": "http.response.mime_type", "orig_mime_types": "http.request.mime_type",
        "request_body_len": "http.request.body.bytes", "response_body_len": "http.response.body.bytes",
        "username": "user.name", "version": "http.version",
    },
    "secops.tls": {
        "server_name": "tls.client.server_name", "ja3": "tls.client.ja3", "ja3s": "tls.server.ja3s",
        "ja4": "tls.client.ja4", "cipher": "tls.cipher", "version": "tls.version", "established": "tls.established",
        "certificate.serial": "tls.server.x509.serial_number",
        "certificate.subject": "tls.server.x509.subject.distinguished_name",
        "certificate.issuer": "tls.server.x509.issuer.distinguished_name",
        "san.dns": "tls.server.x509.alternative_names", "subject": "tls.server.x509.subject.distinguished_name",
        "issuer": "tls.server.x509.issuer.distinguished_name",
    },
    "secops.smb": {
        "name": ["secops.smb.filename", "secops.smb.pipe"], "path": "secops.smb.share",
        "share_type": "secops.smb.share_type", "endpoint": "secops.dcerpc.endpoint",
        "operation": "secops.dcerpc.operation", "named_pipe": "secops.smb.pipe", "command": "secops.smb.command",
    },
    "secops.ftp": {"command": "secops.ftp.command", "arg": "secops.ftp.arg", "reply_code": "secops.ftp.reply_code",
                   "reply_msg": "secops.ftp.reply_msg", "user": "user.name"},
    "secops.ssh": {"client": "secops.ssh.client", "server": "secops.ssh.server",
                   "auth_success": "secops.ssh.auth_success", "kex_alg": "secops.ssh.kex_alg",
                   "cipher_alg": "secops.ssh.cipher_alg", "mac_alg": "secops.ssh.mac_alg",
                   "compression_alg": "secops.ssh.compression_alg", "host_key_alg": "secops.ssh.host_key_alg",
                   "host_key": "secops.ssh.host_key", "hassh": "secops.ssh.hassh",
                   "hasshServer": "secops.ssh.hassh_server"},
    "secops.modbus": {"func": "secops.modbus.function", "exception": "secops.modbus.exception"},
    "secops.dnp3": {"fc_request": "secops.dnp3.function", "fc_reply": "secops.dnp3.function"},
}


INLINE_FLAGS = re.compile(r"\(\?([imsx]+)\)")


def split_inline_flags(pattern: str) -> tuple[str, bool]:
    """(pattern without leading inline flags such as ``(?i)``, case-insensitive?)."""
    if m := INLINE_FLAGS.match(pattern):
        return pattern[m.end():], "i" in m[1]
    return pattern, False


@dataclass
class LuceneRegex(DetectionItemTransformation):
    """Sigma ``|re`` values in Lucene's dialect (detections.lucene_regex: translated, then refused when over
    Elasticsearch's regexp budget); case-insensitive ones move to the field's ``.ci`` sub-field (they stay
    case-sensitive on a field without one)."""

    ci_fields: frozenset[str] = frozenset()

    def apply_detection_item(self, detection_item: SigmaDetectionItem) -> None:
        values = []
        for value in detection_item.value:
            if isinstance(value, SigmaRegularExpression):
                pattern, ignore_case = split_inline_flags(str(value.regexp))
                ignore_case = ignore_case or SigmaRegularExpressionFlag.IGNORECASE in value.flags
                fold = ignore_case and detection_item.field in self.ci_fields
                if fold:
                    detection_item.field += CI_SUFFIX
                value = SigmaRegularExpression(lucene_regex(pattern, lowercase=fold))
            values.append(value)
        detection_item.value = values
        self.processing_item_applied(detection_item)


@dataclass(frozen=True)
class Route:
    """Where a Sigma log source's events live, and any extra condition selecting them."""

    dataset: str
    extra: tuple[tuple[str, str], ...] = ()


# (category, product, service) -> route; None matches anything in that position (first match wins).
ROUTES: list[tuple[tuple[str | None, str | None, str | None], Route]] = [
    ((None, "zeek", "conn"), Route("secops.conn")),
    ((None, "zeek", "dns"), Route("secops.dns")),
    ((None, "zeek", "http"), Route("secops.http")),
    ((None, "zeek", "ssl"), Route("secops.tls")),
    ((None, "zeek", "x509"), Route("secops.tls")),
    ((None, "zeek", "smb_files"), Route("secops.smb")),
    ((None, "zeek", "smb_mapping"), Route("secops.smb")),
    ((None, "zeek", "dce_rpc"), Route("secops.smb")),
    ((None, "zeek", "ftp"), Route("secops.ftp")),
    ((None, "zeek", "ssh"), Route("secops.ssh")),
    ((None, "zeek", "dhcp"), Route("secops.dhcp")),
    ((None, "zeek", "modbus"), Route("secops.modbus")),
    ((None, "zeek", "dnp3"), Route("secops.dnp3")),
    ((None, "zeek", "rdp"), Route("secops.conn", (("network.protocol", "rdp"),))),
    (("dns", None, None), Route("secops.dns")),
    (("proxy", None, None), Route("secops.http")),
    (("webserver", None, None), Route("secops.http")),
    (("firewall", None, None), Route("secops.conn")),
    (("network_connection", None, None), Route("secops.conn")),
]


def route_for(logsource: SigmaLogSource) -> Route:
    """The dataset a rule's log source reads (``secops.unsupported`` when nothing here produces it)."""
    if logsource.product == "secops" and logsource.service:
        name = f"secops.{logsource.service}"
        return Route(name if name in DATASETS else UNSUPPORTED)
    for (category, product, service), route in ROUTES:
        if ((category is None or logsource.category == category) and (product is None or logsource.product == product)
                and (service is None or logsource.service == service)):
            return route
    return Route(UNSUPPORTED)


def _logsources() -> list[tuple[tuple[str | None, str | None, str | None], Route]]:
    return ROUTES + [((None, "secops", d.short), Route(d.name)) for d in DATASETS.values()]


def secops_pipeline() -> ProcessingPipeline:
    """Field mappings (per dataset) and the ``event.dataset`` condition for every routed log source."""
    items: list[ProcessingItem] = []
    for (category, product, service), route in _logsources():
        ident = f"secops_{category}_{product}_{service}"
        items.append(ProcessingItem(
            identifier=f"{ident}_fields", transformation=FieldMappingTransformation(mapped_fields(route.dataset)),
            rule_conditions=[LogsourceCondition(category=category, product=product, service=service)]))
        extra = {"event.dataset": route.dataset, **dict(route.extra)}
        items.append(ProcessingItem(
            identifier=f"{ident}_dataset", transformation=AddConditionTransformation(extra),
            rule_conditions=[LogsourceCondition(category=category, product=product, service=service)]))
    ci_fields = case_insensitive_fields()
    items.append(ProcessingItem(identifier="secops_lucene_regex", transformation=LuceneRegex(ci_fields)))
    items.append(ProcessingItem(
        identifier="secops_case_insensitive_strings", transformation=AddFieldnameSuffixTransformation(CI_SUFFIX),
        field_name_conditions=[IncludeFieldCondition(fields=sorted(ci_fields))],
        # all values plain strings (wildcards allowed): regular expressions, CIDRs, numbers, nulls keep the field
        detection_item_conditions=[MatchStringCondition(cond="all", pattern="(?s).*")]))
    return ProcessingPipeline(name="secops ECS", priority=20, items=items)


def mapped_fields(dataset: str) -> dict[str, str | list[str]]:
    return {**ENDPOINT_FIELDS, **DATASET_FIELDS.get(dataset, {})}
