"""Generate docs/fields.md, the document contract, from the index templates plus a description per field.

    python3 docs/generate_fields.py          # rewrite docs/fields.md
    python3 docs/generate_fields.py --check  # exit 1 if docs/fields.md is not current

Types and the field list come from ``secops.es.templates`` (what Elasticsearch is told); the meaning of
each field is written here. A field without a description stops the generator, so a new mapping cannot
reach the templates undocumented (tests/unit/test_fields_doc.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from secops.es.templates import DATASETS, Dataset, mappings_for  # noqa: E402

OUTPUT = ROOT / "docs" / "fields.md"

SIDES = {
    "source": "originator of the connection (Zeek's orig)",
    "destination": "responder of the connection (Zeek's resp)",
    "client": "application-level client",
    "server": "application-level server",
}
ENDPOINT = {
    "ip": "IP address",
    "port": "transport port (ICMP: the message type, as Zeek logs it)",
    "mac": "MAC address (lower case, colon-separated)",
    "bytes": "IP bytes sent (Zeek orig_ip_bytes / resp_ip_bytes)",
    "packets": "packets sent",
    "domain": "DNS name",
    "address": "address as text (IP, name or socket)",
    "user.name": "user name",
    "geo.name": "site or location name",
}

DESCRIPTIONS: dict[str, str] = {
    # -- every dataset ---------------------------------------------------------------------------
    "@timestamp": "when the event happened (flow start, query, alert's first match, run creation)",
    "message": "one-line human summary",
    "tags": "free labels (rule tags on alerts)",
    "labels": "free key/value labels (dynamic object)",
    "ecs.version": "ECS version the document follows",
    "event.dataset": "the kind of document, e.g. secops.conn; names the index",
    "event.kind": "ECS kind: event, alert, state",
    "event.category": "ECS categories (network, host, process, configuration, ...)",
    "event.type": "ECS types (connection, protocol, info, change, ...)",
    "event.action": "what happened (audit: the action name)",
    "event.outcome": "success, failure or unknown",
    "event.module": "the producing module",
    "event.id": "identifier of the event",
    "event.code": "protocol- or source-specific code",
    "event.created": "when the document was created",
    "event.ingested": "when the store received it; detection windows and checkpoints cut on this",
    "event.start": "first packet / start of the activity",
    "event.end": "last packet / end of the activity",
    "event.duration": "duration in nanoseconds (Zeek duration)",
    "event.severity": "numeric severity (alerts: the rule's score)",
    "event.reason": "why the event was raised (alerts: the match reason)",
    "event.original": "the raw original, stored but not indexed",
    "network.transport": "tcp, udp, icmp, ipv6-icmp, ... (lower case)",
    "network.protocol": "application protocol(s) detected on the flow (Zeek service)",
    "network.community_id": "Community ID v1 flow hash",
    "network.type": "ipv4 or ipv6",
    "network.direction": "inbound, outbound, internal, external",
    "network.iana_number": "IANA protocol number",
    "network.application": "application name",
    "network.bytes": "IP bytes in both directions",
    "network.packets": "packets in both directions",
    "network.vlan.id": "outer VLAN id",
    "network.name": "network name (zone)",
    "observer.hostname": "host name of the sensor",
    "observer.name": "name of the sensor that saw it (where its pcap lives)",
    "observer.type": "sensor or scanner",
    "observer.ip": "address of the sensor",
    "observer.ingress.interface.name": "capture interface",
    "host.ip": "addresses of the host (assets: every current address)",
    "host.mac": "MAC addresses of the host",
    "host.hostname": "host name (DHCP, DNS or scan)",
    "host.name": "host name",
    "host.id": "stable host identifier",
    "host.domain": "host's domain",
    "host.type": "kind of host",
    "host.os.name": "operating system name",
    "host.os.family": "operating system family (lower case)",
    "host.os.version": "operating system version",
    "host.os.full": "operating system as the best nmap OS match names it",
    "host.os.type": "operating system type",
    "host.os.platform": "operating system platform",
    "related.ip": "every address the document mentions (for pivoting)",
    "related.hosts": "every host name the document mentions",
    "related.hash": "every hash the document mentions",
    "related.user": "every user name the document mentions",
    "user.name": "user name",
    "user.id": "user identifier",
    "user.domain": "user's domain",
    "user_agent.original": "HTTP User-Agent as sent",
    "user_agent.name": "parsed user agent name",
    "user_agent.version": "parsed user agent version",
    "url.original": "request target as sent (Zeek uri)",
    "url.domain": "Host header / host part (Zeek host)",
    "url.path": "path part of the URL",
    "url.query": "query string without '?'",
    "url.full": "reconstructed absolute URL",
    "url.extension": "file extension of the path",
    "url.scheme": "URL scheme",
    "url.port": "port in the URL",
    "http.version": "HTTP version (1.0, 1.1)",
    "http.request.method": "request method",
    "http.request.referrer": "Referer header",
    "http.request.mime_type": "MIME type of the request body",
    "http.request.body.bytes": "request body length (Zeek request_body_len)",
    "http.response.status_code": "response status code",
    "http.response.mime_type": "MIME type of the response body",
    "http.response.body.bytes": "response body length (Zeek response_body_len)",
    "dns.id": "DNS transaction id",
    "dns.op_code": "DNS opcode",
    "dns.type": "query or answer",
    "dns.response_code": "response code name (NOERROR, NXDOMAIN, ...)",
    "dns.header_flags": "header flags set (AA, TC, RD, RA, ...)",
    "dns.resolved_ip": "addresses in the answers",
    "dns.question.name": "queried name",
    "dns.question.type": "query type name (A, AAAA, TXT, ...)",
    "dns.question.class": "query class (IN, ...)",
    "dns.question.registered_domain": "registered domain of the queried name",
    "dns.question.subdomain": "subdomain part of the queried name",
    "dns.question.top_level_domain": "top-level domain of the queried name",
    "dns.answers.name": "owner name of an answer",
    "dns.answers.type": "answer record type",
    "dns.answers.class": "answer record class",
    "dns.answers.data": "answer data (address, name, text)",
    "dns.answers.ttl": "answer TTL in seconds",
    "tls.version": "negotiated version (\"1.2\", \"1.3\")",
    "tls.version_protocol": "tls or ssl",
    "tls.cipher": "negotiated cipher suite",
    "tls.curve": "key exchange curve",
    "tls.established": "the handshake completed",
    "tls.resumed": "the session was resumed",
    "tls.next_protocol": "negotiated ALPN protocol",
    "tls.client.server_name": "SNI the client asked for",
    "tls.client.ja3": "JA3 client fingerprint",
    "tls.client.ja4": "JA4 client fingerprint",
    "tls.client.supported_ciphers": "cipher suites the client offered",
    "tls.server.ja3s": "JA3S server fingerprint",
    "tls.server.hash.sha256": "SHA-256 of the server certificate",
    "tls.server.hash.sha1": "SHA-1 of the server certificate",
    "tls.server.hash.md5": "MD5 of the server certificate",
    "tls.server.not_after": "certificate expiry",
    "tls.server.not_before": "certificate start of validity",
    "tls.server.subject": "certificate subject",
    "tls.server.issuer": "certificate issuer",
    "tls.server.x509.subject.common_name": "certificate subject CN",
    "tls.server.x509.subject.distinguished_name": "certificate subject DN",
    "tls.server.x509.issuer.common_name": "certificate issuer CN",
    "tls.server.x509.issuer.distinguished_name": "certificate issuer DN",
    "tls.server.x509.serial_number": "certificate serial number",
    "tls.server.x509.not_after": "certificate expiry",
    "tls.server.x509.not_before": "certificate start of validity",
    "tls.server.x509.alternative_names": "certificate subject alternative names",
    "file.name": "file name",
    "file.path": "file path",
    "file.size": "file size in bytes",
    "file.hash.sha256": "SHA-256 of the file",
    "file.hash.sha1": "SHA-1 of the file",
    "file.hash.md5": "MD5 of the file",
    "rule.id": "Sigma rule id",
    "rule.uuid": "rule UUID",
    "rule.name": "rule title",
    "rule.author": "rule author",
    "rule.severity": "low, medium, high or critical",
    "rule.description": "rule description",
    "rule.reference": "references of the rule",
    "rule.ruleset": "sigma or analytic",
    "rule.license": "rule license",
    "rule.category": "rule category",
    "rule.version": "rule version",
    "threat.framework": "MITRE ATT&CK",
    "threat.technique.id": "ATT&CK technique ids",
    "threat.technique.name": "ATT&CK technique names",
    "threat.technique.subtechnique.id": "ATT&CK sub-technique ids",
    "threat.technique.subtechnique.name": "ATT&CK sub-technique names",
    "threat.tactic.id": "ATT&CK tactic ids",
    "threat.tactic.name": "ATT&CK tactic names",
    "threat.indicator.type": "indicator type (ipv4-addr, domain-name, ...)",
    "threat.indicator.description": "indicator description",
    "threat.indicator.provider": "indicator source",
    "threat.indicator.ip": "indicator address",
    "threat.indicator.name": "indicator value",
    "threat.indicator.confidence": "indicator confidence",
    "service.name": "service name",
    "service.type": "service type",
    "service.version": "service version",
    "process.name": "process name",
    "process.pid": "process id",
    "process.command_line": "process command line",
    # -- secops.conn (Zeek conn.log semantics) ----------------------------------------------------
    "secops.conn.uid": "connection id, stable across the flow's documents",
    "secops.conn.state": "Zeek conn_state (S0, S1, SF, REJ, RSTO, RSTOS0, RSTR, RSTRH, SH, SHR, OTH, ...)",
    "secops.conn.history": "Zeek history letters (ShADadFf..., upper case = originator)",
    "secops.conn.orig_bytes": "originator payload bytes by TCP sequence numbers (Zeek orig_bytes)",
    "secops.conn.resp_bytes": "responder payload bytes by TCP sequence numbers (Zeek resp_bytes)",
    "secops.conn.missed_bytes": "bytes missed in content gaps (Zeek missed_bytes)",
    "secops.conn.deep_cut_bytes": "TCP payload bytes the protocol analyzers did not get: a direction went over "
                                  "sensor.deep_bytes_per_direction (absent when nothing was cut)",
    "secops.conn.local_orig": "the originator is in a local network",
    "secops.conn.local_resp": "the responder is in a local network",
    "secops.conn.ip_proto": "IP protocol number",
    "secops.conn.vlan": "outer VLAN id",
    "secops.conn.inner_vlan": "inner VLAN id (QinQ)",
    "secops.conn.tunnel_parents": "uids of the tunnels the flow was carried in",
    # -- protocol datasets ------------------------------------------------------------------------
    "secops.dns.qtype": "numeric query type",
    "secops.dns.rcode": "numeric response code",
    "secops.dns.rtt": "seconds between query and answer",
    "secops.dns.rejected": "the server answered with an error code or without any record (Zeek rejected)",
    "secops.dns.label_max_len": "longest label of the queried name (tunnelling indicator)",
    "secops.dns.label_entropy": "Shannon entropy of the queried name's labels (tunnelling indicator)",
    "secops.http.trans_depth": "position of the request in its connection (Zeek trans_depth)",
    "secops.http.status_msg": "response reason phrase",
    "secops.http.info_code": "last 1xx informational status",
    "secops.http.location": "Location header",
    "secops.http.cookie": "Cookie header",
    "secops.http.authorization_scheme": "scheme of the Authorization header (Basic, Bearer, ...)",
    "secops.http.uri_raw": "request target as sent (url.original has %-escapes decoded, as Zeek logs it)",
    "secops.tls.client_alpn": "ALPN protocols the client offered",
    "secops.tls.last_alert": "last TLS alert seen",
    "secops.tls.cert_chain_fps": "SHA-256 fingerprints of the certificate chain",
    "secops.tls.self_signed": "the server certificate signed itself: issuer equals subject and its own key verifies "
                              "its signature (name test alone for algorithms the parser cannot verify, e.g. ML-DSA)",
    "secops.tls.cert_expired": "the session happened after the server certificate's notAfter",
    "secops.tls.heartbeat.records": "heartbeat records (RFC 6520) seen in the session's selected frames",
    "secops.tls.heartbeat.max_payload_length": "largest payload length a readable heartbeat request claimed",
    "secops.tls.heartbeat.overclaimed": "a heartbeat request claimed more payload than its record holds (heartbleed)",
    "secops.tls.heartbeat.oversized": "a heartbeat record longer than RFC 6520 allows (2^14 bytes)",
    "secops.tls.heartbeat.leaked": "a heartbeat response much longer than its request (memory returned)",
    "secops.tls.heartbeat.before_handshake": "a heartbeat was sent before the handshake completed",
    "secops.tls.heartbeat.unsolicited": "a heartbeat without the heartbeat extension in both hellos",
    "secops.dhcp.msg_type": "DHCP message types of the transaction",
    "secops.dhcp.client_mac": "client hardware address",
    "secops.dhcp.hostname": "host name option (12)",
    "secops.dhcp.vendor_class": "vendor class identifier (option 60)",
    "secops.dhcp.requested_ip": "address the client asked for",
    "secops.dhcp.assigned_ip": "address the server assigned",
    "secops.dhcp.lease_time": "lease time in seconds",
    "secops.dhcp.server_id": "server identifier",
    "secops.ssh.version": "SSH protocol version",
    "secops.ssh.client": "client software banner",
    "secops.ssh.server": "server software banner",
    "secops.ssh.auth_success": "authentication appears to have succeeded",
    "secops.ssh.kex_alg": "key exchange algorithm negotiated (RFC 4253 7.1, Zeek's kex_alg)",
    "secops.ssh.host_key_alg": "server host key algorithm negotiated",
    "secops.ssh.cipher_alg": "encryption algorithm negotiated (both directions, or 'To server: ..., to client: ...')",
    "secops.ssh.mac_alg": "MAC algorithm negotiated (as cipher_alg)",
    "secops.ssh.compression_alg": "compression algorithm negotiated (as cipher_alg)",
    "secops.ssh.host_key": "MD5 fingerprint of the server host key, colon hex (Zeek's host_key)",
    "secops.ssh.host_key_type": "type named in the server host key (ssh-ed25519, ssh-rsa, ...)",
    "secops.ssh.hassh": "HASSH of the client: MD5 of its KEXINIT kex;cipher;mac;compression lists",
    "secops.ssh.hassh_server": "HASSHServer: the same over the server's KEXINIT",
    "secops.smb.version": "1 (SMB1) or 2 (SMB2/3)",
    "secops.smb.dialect": "negotiated dialect",
    "secops.smb.command": "SMB command name",
    "secops.smb.status": "NT status of the response",
    "secops.smb.share": "tree (share) path",
    "secops.smb.filename": "file opened or created",
    "secops.smb.pipe": "named pipe opened",
    "secops.dcerpc.endpoint": "DCE/RPC endpoint (interface name)",
    "secops.dcerpc.operation": "DCE/RPC operation name",
    "secops.dcerpc.opnum": "DCE/RPC operation number",
    "secops.dcerpc.uuid": "DCE/RPC interface UUID",
    "secops.ftp.command": "FTP command",
    "secops.ftp.arg": "command argument",
    "secops.ftp.reply_code": "reply code",
    "secops.ftp.reply_msg": "reply text",
    "secops.modbus.transaction_id": "Modbus/TCP transaction id",
    "secops.modbus.unit_id": "unit (slave) id",
    "secops.modbus.function_code": "function code",
    "secops.modbus.function": "function name",
    "secops.modbus.pdu_type": "request or response",
    "secops.modbus.is_write": "the function writes coils or registers",
    "secops.modbus.exception": "exception code name of an error response",
    "secops.dnp3.function_code": "application function code",
    "secops.dnp3.function": "application function name",
    "secops.dnp3.fc_request": "request function name",
    "secops.dnp3.fc_reply": "response function name",
    "secops.dnp3.iin": "internal indications of the response",
    "secops.dnp3.is_control": "the function operates outputs (select/operate/direct operate)",
    "secops.s7comm.rosctr_code": "ROSCTR (PDU type) code",
    "secops.s7comm.rosctr": "ROSCTR name (job, ack_data, userdata, ...)",
    "secops.s7comm.function_code": "function code",
    "secops.s7comm.function": "function name",
    "secops.s7comm.subfunction_code": "userdata subfunction code",
    "secops.s7comm.subfunction": "userdata subfunction name",
    "secops.s7comm.pdu_reference": "PDU reference",
    "secops.s7comm.error_class": "error class of the response",
    "secops.s7comm.error_code": "error code of the response",
    "secops.s7comm.is_orig": "sent by the connection's originator",
    "secops.s7comm.is_program_change": "the function changes the PLC program or state (download, stop, ...)",
    "secops.iec104.apdu_type": "I, S or U format",
    "secops.iec104.type_id": "ASDU type identifier",
    "secops.iec104.type": "ASDU type name",
    "secops.iec104.cot": "cause of transmission code",
    "secops.iec104.cause": "cause of transmission name",
    "secops.iec104.common_address": "common address of the ASDU",
    "secops.iec104.is_command": "the ASDU is a command (control direction)",
    # -- passive observations and the sensor ------------------------------------------------------
    "secops.observation.source": "passive (flows) or dhcp",
    "secops.sensor.packets_captured": "packets the capture engine received",
    "secops.sensor.packets_dropped": "packets the kernel or engine dropped",
    "secops.sensor.packets_processed": "packets the flow workers processed",
    "secops.sensor.packets_dropped_kernel": "packets the kernel ring dropped (dumpcap's socket statistics)",
    "secops.sensor.packets_dropped_disk": "packets of chunks deleted unprocessed to keep the disk budget",
    "secops.sensor.lag_seconds": "how far processing is behind capture",
    "secops.sensor.backlog_chunks": "sealed chunks waiting for a worker",
    "secops.sensor.chunks": "chunks processed",
    "secops.sensor.spool_bytes": "bytes held by the pcap spool",
    "secops.sensor.chunks_damaged": "chunks with damaged packets (reported, the rest processed)",
    "secops.sensor.chunks_failed": "chunks a worker failed on (kept in the spool)",
    "secops.sensor.chunks_dropped": "chunks deleted unprocessed for the disk budget",
    "secops.sensor.connections": "connection records shipped",
    "secops.sensor.workers": "flow-hash worker processes",
    "secops.sensor.worker_restarts": "workers restarted after dying",
    "secops.sensor.capture_restarts": "capture processes (dumpcap) restarted after dying",
    "secops.sensor.flows_evicted": "flows evicted from the flow table early (memory bound)",
    "secops.sensor.decode_errors": "packets that could not be decoded",
    # -- inventory --------------------------------------------------------------------------------
    "secops.asset.id": "asset id (from first MAC, else address and zone); survives address changes",
    "secops.asset.zone": "network zone (inventory.zones)",
    "secops.asset.owner": "owner (CMDB import)",
    "secops.asset.department": "department (CMDB import)",
    "secops.asset.location": "location (CMDB import)",
    "secops.asset.criticality": "criticality (CMDB import)",
    "secops.asset.sources": "what saw it: scan, import, passive",
    "secops.asset.first_seen": "first sighting",
    "secops.asset.last_seen": "latest sighting",
    "secops.asset.last_scan": "latest scan that found it up",
    "secops.asset.vendor": "hardware vendor (nmap or the MAC's OUI)",
    "secops.asset.findings": "compliance findings (forbidden_service:NAME:PORT/TRANSPORT, no_owner, scan_overdue)",
    "secops.asset.services.port": "service port",
    "secops.asset.services.transport": "tcp or udp",
    "secops.asset.services.name": "service name",
    "secops.asset.services.product": "product (nmap version detection)",
    "secops.asset.services.version": "product version",
    "secops.asset.services.extrainfo": "extra product information",
    "secops.asset.services.tunnel": "ssl when the service is wrapped in TLS",
    "secops.asset.services.cpe": "CPE names",
    "secops.asset.services.state": "open",
    "secops.asset.services.source": "scan, import or passive",
    "secops.asset.services.banner": "service banner",
    "secops.asset.services.first_seen": "first time the service was seen",
    "secops.asset.services.last_seen": "latest time the service was seen",
    "secops.asset_change.asset_id": "the asset that changed",
    "secops.asset_change.change": "new_asset, asset_gone, port_opened, port_closed, service_changed, os_changed, "
                                  "mac_ip_changed",
    "secops.asset_change.field": "the field that changed",
    "secops.asset_change.old": "value before",
    "secops.asset_change.new": "value after",
    "secops.asset_change.port": "port of a port or service change",
    "secops.asset_change.transport": "transport of a port or service change",
    "secops.asset_change.zone": "network zone of the asset",
    "secops.asset_change.learning": "true on a new_asset recorded during its zone's learning period (no alert)",
    # -- detections -------------------------------------------------------------------------------
    "secops.alert.id": "alert id",
    "secops.alert.status": "open, acknowledged, closed",
    "secops.alert.assignee": "analyst the alert is assigned to",
    "secops.alert.group_key": "rule and grouping values that fold matches into one alert",
    "secops.alert.count": "matches folded into the alert",
    "secops.alert.first_time": "first matching event",
    "secops.alert.last_time": "latest matching event",
    "secops.alert.event_ids": "ids of the matching events (capped)",
    "secops.alert.event_index": "index pattern of the matching events",
    "secops.alert.kibana_url": "Kibana Discover link to the matching events",
    "secops.alert.reason_message": "the reason as message id + parameters, rendered per reader (not indexed)",
    "secops.alert.notes.at": "when a note was added",
    "secops.alert.notes.by": "who added a note",
    "secops.alert.notes.text": "note text",
    "secops.alert.history.at": "when the alert changed",
    "secops.alert.history.by": "who changed it",
    "secops.alert.history.action": "what changed (created, status, assign, ...)",
    "secops.alert.history.old": "value before",
    "secops.alert.history.new": "value after",
    "secops.alert.suppression.key": "per-rule suppression: the suppression fields' values as one keyword",
    "secops.alert.suppression.terms.field": "per-rule suppression: a field the rule suppresses by "
                                            "(x_secops_suppression.fields)",
    "secops.alert.suppression.terms.value": "per-rule suppression: that field's value in this alert's events "
                                            "(null: the field was missing)",
    "secops.alert.suppression.start": "per-rule suppression: start of the window (first matching event)",
    "secops.alert.suppression.end": "per-rule suppression: end of the window (start + window, exclusive); "
                                    "later events open a new alert",
    "secops.alert.suppression.window_seconds": "per-rule suppression: the rule's window (x_secops_suppression.window)",
    "secops.alert.suppression.docs_count": "per-rule suppression: matching events folded into this alert after "
                                           "the first (Elastic's kibana.alert.suppression.docs_count); "
                                           "secops.alert.count counts them all",
    # -- playbooks (secops.contracts.playbook) ----------------------------------------------------
    "secops.playbook.run_id": "run id (from playbook, alert and trigger)",
    "secops.playbook.name": "playbook name",
    "secops.playbook.alert_id": "alert the run responds to",
    "secops.playbook.status": "running, waiting_approval, completed, failed, refused, denied, expired, halted",
    "secops.playbook.dry_run": "actions only planned, nothing changed",
    "secops.playbook.current": "index of the current step",
    "secops.playbook.step": "name of the current step",
    "secops.playbook.actor": "who started the run",
    "secops.playbook.created": "when the run was created",
    "secops.playbook.updated": "last change of the run document",
    "secops.playbook.finished": "when the run ended",
    "secops.playbook.error": "why the run failed, was refused, denied, expired or halted (raw English text)",
    "secops.playbook.error_message": "that reason as message id + parameters, rendered per reader (not indexed)",
    "secops.playbook.approval.step": "step waiting for (or given) an approval",
    "secops.playbook.approval.status": "waiting, approved, denied, expired",
    "secops.playbook.approval.deadline": "when a pending approval expires",
    "secops.playbook.approval.by": "who decided",
    "secops.playbook.approval.at": "when it was decided",
    "secops.playbook.steps.name": "step name",
    "secops.playbook.steps.action": "action of the step",
    "secops.playbook.steps.status": "pending, running, retrying, waiting_approval, done, skipped, failed, not_run",
    "secops.playbook.steps.attempts": "executions so far",
    "secops.playbook.steps.action_key": "idempotency key of the step's action",
    "secops.playbook.steps.params": "resolved parameters (compact JSON)",
    "secops.playbook.steps.dispatched_at": "when the step was last sent to the workers",
    "secops.playbook.steps.holder": "execution holding the step's lease",
    "secops.playbook.steps.started": "first start",
    "secops.playbook.steps.lease_until": "end of the holder's lease",
    "secops.playbook.steps.retry_at": "when a retry is due",
    "secops.playbook.steps.finished": "when the step ended",
    "secops.playbook.steps.result": "result (compact JSON)",
    "secops.playbook.steps.error": "error of the last failed attempt",
    "secops.playbook.steps.error_message": "that error as message id + parameters, rendered per reader (not indexed)",
    # -- audit and state --------------------------------------------------------------------------
    "secops.audit.actor": "who acted (human or service)",
    "secops.audit.action": "what was done",
    "secops.audit.object": "what it was done to",
    "secops.audit.outcome": "success, failure, not_found, unknown",
    "secops.audit.run_id": "playbook run, if any",
    "secops.audit.details": "inputs and results (JSON)",
    "secops.case.id": "case id",
    "secops.case.title": "case title",
    "secops.case.status": "open, in_progress or closed",
    "secops.case.severity": "low, medium, high or critical",
    "secops.case.assignee": "analyst the case is assigned to",
    "secops.case.tags": "labels",
    "secops.case.alert_ids": "alerts escalated into the case",
    "secops.case.created": "when the case was opened",
    "secops.case.updated": "when the case last changed",
    "secops.case.created_by": "who opened it",
    "secops.case.observables.type": "ip, domain, hash, ja3, ja4 or community_id",
    "secops.case.observables.value": "the observable (validated, lower-cased for domains and hashes)",
    "secops.case.observables.field": "field of the alert or event it was taken from",
    "secops.case.comments.id": "comment id",
    "secops.case.comments.at": "when it was written",
    "secops.case.comments.by": "who wrote it",
    "secops.case.comments.text": "markdown (raw HTML shown as text)",
    "secops.case.attachments.id": "attachment id",
    "secops.case.attachments.name": "file name",
    "secops.case.attachments.kind": "pcap or file",
    "secops.case.attachments.sha256": "SHA-256 taken when it was attached",
    "secops.case.attachments.size": "bytes",
    "secops.case.attachments.at": "when it was attached",
    "secops.case.attachments.by": "who attached it",
    "secops.case.attachments.note": "what it holds (packets, connections)",
    "secops.case.history.at": "when the case changed",
    "secops.case.history.by": "who changed it",
    "secops.case.history.action": "what changed (created, status, alert_added, commented, attached, ...)",
    "secops.case.history.old": "value before",
    "secops.case.history.new": "value after",
    "secops.exception.id": "exception id",
    "secops.exception.rule_id": "rule it tunes",
    "secops.exception.conditions.field": "field a condition tests",
    "secops.exception.conditions.op": "is, suffix (domain and subdomains) or cidr",
    "secops.exception.conditions.value": "value, domain or network",
    "secops.exception.expires": "when it stops applying (none: never)",
    "secops.exception.comment": "why it is safe",
    "secops.exception.author": "who made it",
    "secops.exception.created": "when it was made",
    "secops.exception.updated": "when it last changed",
    "secops.audit.summary": "the action in words: message id + parameters, rendered per reader (not indexed)",
    "secops.state.key": "name of the state entry (lease:NAME, checkpoint keys, playbooks.block, ...)",
    "secops.state.value": "value (JSON or holder)",
    "secops.state.checkpoint": "checkpoint time or expiry",
    # -- incidents and truncation ------------------------------------------------------------------
    "secops.alert.incident_id": "incident this alert was rolled up into",
    "secops.incident.id": "incident identifier (host plus the hour window it opened in)",
    "secops.incident.host": "the host the incident's alerts concern",
    "secops.incident.status": "open, acknowledged, closed",
    "secops.incident.severity": "highest severity of its alerts",
    "secops.incident.score": "combined risk score of its alerts",
    "secops.incident.alert_count": "number of alerts rolled up",
    "secops.incident.alert_ids": "ids of the alerts rolled up",
    "secops.incident.rule_ids": "ids of the rules that fired",
    "secops.incident.rules": "names of the rules that fired",
    "secops.incident.tactics": "MITRE ATT&CK tactics of its alerts",
    "secops.incident.techniques": "MITRE ATT&CK techniques of its alerts",
    "secops.incident.first_time": "first alert time",
    "secops.incident.last_time": "last alert time",
    "secops.truncated.field": "field whose value was cut to the keyword limit (4,096 UTF-16 units)",
    "secops.truncated.length": "original length of the cut value",
    "secops.truncated.sha256": "SHA-256 of the original value",
    "secops.state.status": "state of the entry (a playbooks.block: active or expired)",
    "secops.state.address": "the address a playbooks.block entry blocks",
}


def leaves(properties: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, mapping in properties.items():
        full = f"{path}{name}"
        if "properties" in mapping:
            yield from leaves(mapping["properties"], full + ".")
        else:
            yield full, mapping


def type_of(mapping: dict[str, Any]) -> str:
    kind = str(mapping.get("type", "object"))
    if mapping.get("index") is False:
        kind += " (not indexed)"
    if "ci" in mapping.get("fields", {}):
        kind += " + `.ci`"
    return kind


def describe(field: str) -> str:
    if field in DESCRIPTIONS:
        return DESCRIPTIONS[field]
    side, _, leaf = field.partition(".")
    if side in SIDES and leaf in ENDPOINT:
        return f"{ENDPOINT[leaf]} of the {SIDES[side]}"
    raise KeyError(f"{field} has no description: add one to docs/generate_fields.py")


def _table(fields: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = ["| field | type | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{name}` | {type_of(m)} | {describe(name)} |" for name, m in sorted(fields)]
    return rows


def _index(ds: Dataset) -> str:
    return f"`PREFIX-{ds.short}-YYYY.MM.DD`" if ds.daily else f"`PREFIX-{ds.short}`"


def render() -> str:
    per_dataset = {name: dict(leaves(mappings_for(ds)["properties"])) for name, ds in DATASETS.items()}
    shared = set.intersection(*(set(fields) for fields in per_dataset.values()))
    base = {f: m for f, m in next(iter(per_dataset.values())).items() if f in shared}
    out = [
        "# Document fields",
        "",
        "Generated by `python3 docs/generate_fields.py` from the index templates (`secops/es/templates.py`);",
        "do not edit by hand. Field names follow the Elastic Common Schema where it has the field;",
        "project fields live under `secops.*`. Connection documents follow Zeek's conn.log semantics.",
        "",
        "Types are the Elasticsearch mapping types. `+ .ci` marks a keyword with a lower-cased sub-field",
        "(`FIELD.ci`) that case-insensitive Sigma matches use. Strings not listed are mapped as keywords.",
        "`PREFIX` is `elasticsearch.index_prefix` (default `secops`).",
        "",
        "## Datasets",
        "",
        "| event.dataset | index | own fields |",
        "| --- | --- | --- |",
    ]
    specific = {}
    for name, ds in DATASETS.items():
        fields = [(f, m) for f, m in per_dataset[name].items() if f not in base]
        specific[name] = fields
        out.append(f"| `{name}` | {_index(ds)} | {len(fields)} |")
    out += ["", "## Fields of every dataset", "", *_table(list(base.items()))]
    for name, fields in specific.items():
        if fields:
            out += ["", f"## {name}", "", *_table(fields)]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run python3 docs/generate_fields.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
