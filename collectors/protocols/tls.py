"""TLS (and the TLS handshake inside QUIC): one record per session, as Zeek's ssl.log.

Filled from the ClientHello (SNI, JA3, JA4, offered versions), ServerHello (negotiated version,
cipher as IANA/Zeek names it, JA3S), the server's Certificate message (SHA-256 fingerprints of the
DER chain), alerts and ChangeCipherSpec/application data from both sides (``established``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from collectors.protocols.base import Analyzer, Doc, Flow, RunContext, Warn, flow_of, make_doc, sender_is_orig
from collectors.protocols.ja4 import ja4
from collectors.protocols.tshark import Packet, to_int

CLIENT_HELLO, SERVER_HELLO, CERTIFICATE = 1, 2, 11
CCS, ALERT, HANDSHAKE, APP_DATA = 20, 21, 22, 23
# tshark resolves cipher suite numbers to their IANA names in a custom column (same names as Zeek)
CIPHER_COLUMN = "secopsCipher"
VERSIONS = {0x0300: ("ssl", "3.0"), 0x0301: ("tls", "1.0"), 0x0302: ("tls", "1.1"), 0x0303: ("tls", "1.2"),
            0x0304: ("tls", "1.3"), 0xFEFF: ("dtls", "1.0"), 0xFEFD: ("dtls", "1.2"), 0xFEFC: ("dtls", "1.3")}
ALERTS = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 21: "decryption_failed",
    22: "record_overflow", 30: "decompression_failure", 40: "handshake_failure", 41: "no_certificate",
    42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked", 45: "certificate_expired",
    46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied", 50: "decode_error",
    51: "decrypt_error", 60: "export_restriction", 70: "protocol_version", 71: "insufficient_security",
    80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled", 100: "no_renegotiation",
    109: "missing_extension", 110: "unsupported_extension", 112: "unrecognized_name",
    113: "bad_certificate_status_response", 115: "unknown_psk_identity", 116: "certificate_required",
    120: "no_application_protocol",
}
CURVES = {23: "secp256r1", 24: "secp384r1", 25: "secp521r1", 29: "x25519", 30: "x448", 256: "ffdhe2048",
          257: "ffdhe3072", 258: "ffdhe4096", 4588: "X25519MLKEM768"}


@dataclass
class Session:
    flow: Flow
    ts: float
    quic: bool = False
    sni: str | None = None
    ja3: str | None = None
    ja4: str | None = None
    ja3s: str | None = None
    client_version: int | None = None
    version: int | None = None
    cipher: str | None = None
    curve: str | None = None
    alpn: list[str] = field(default_factory=list)
    next_protocol: str | None = None
    client_sid: str | None = None
    resumed: bool = False
    certs: list[str] = field(default_factory=list)
    last_alert: str | None = None
    ccs: set[bool] = field(default_factory=set)  # sides (True = originator) that sent ChangeCipherSpec
    app_data: set[bool] = field(default_factory=set)
    emitted: bool = False

    @property
    def established(self) -> bool:
        if self.version == 0x0304 or self.quic:
            return self.version is not None and len(self.app_data) == 2 and not self.quic
        return len(self.ccs) == 2


def _ints(pkt: Packet, name: str) -> list[int]:
    return [v for v in (to_int(x) for x in pkt.values(name)) if v is not None]


# extensions whose body is a signature-algorithm list (tshark reports all of them in one field)
SIG_LIST_EXTENSIONS = (13, 34, 50)  # signature_algorithms, delegated_credentials, signature_algorithms_cert


def signature_algorithms(pkt: Packet) -> list[int]:
    """The signature_algorithms extension's list only, in offered order (what JA4 hashes)."""
    algs = _ints(pkt, "tls.handshake.sig_hash_alg")
    lengths = _ints(pkt, "tls.handshake.sig_hash_alg_len")
    owners = [t for t in _ints(pkt, "tls.handshake.extension.type") if t in SIG_LIST_EXTENSIONS]
    if len(owners) != len(lengths):
        return algs if owners == [13] or not owners else []
    out, pos = [], 0
    for owner, length in zip(owners, lengths, strict=True):
        chunk = algs[pos: pos + length // 2]
        pos += length // 2
        if owner == 13:
            out += chunk
    return out


class TlsAnalyzer(Analyzer):
    DATASET = "secops.tls"
    SERVICE = "ssl"
    LAYERS = frozenset({"tls"})
    FILTER = "tls"
    FIELDS = (
        "tls.record.content_type", "tls.handshake.type", "tls.handshake.version", "tls.handshake.ciphersuite",
        "tls.handshake.extension.type", "tls.handshake.extensions_server_name", "tls.handshake.extensions_alpn_str",
        "tls.handshake.extensions.supported_version", "tls.handshake.sig_hash_alg",
        "tls.handshake.sig_hash_alg_len", "tls.handshake.ja3",
        "tls.handshake.ja3s", "tls.handshake.certificate", "tls.alert_message.desc", "tls.handshake.session_id",
        "tls.handshake.server_named_curve", "tls.handshake.extensions_key_share_group", f"_ws.col.{CIPHER_COLUMN}",
    )
    COLUMNS = ((CIPHER_COLUMN, "%Cus:tls.handshake.ciphersuite:0:R"),)

    def __init__(self, warn: Warn, context: RunContext | None = None) -> None:
        super().__init__(warn, context)
        self.sessions: dict[tuple[str, str], Session] = {}

    def handle(self, pkt: Packet) -> Iterable[Doc]:
        types = _ints(pkt, "tls.handshake.type")
        records = _ints(pkt, "tls.record.content_type")
        probe = flow_of(pkt, CLIENT_HELLO in types or SERVER_HELLO not in types)
        if probe is None:
            return
        key = probe.key()
        s = self.sessions.get(key)
        if s is None or (CLIENT_HELLO in types and s.emitted):
            if CLIENT_HELLO not in types and SERVER_HELLO in types:
                probe = flow_of(pkt, False)
            if probe is None:
                return
            s = self.sessions[key] = Session(probe, pkt.ts, quic="quic" in pkt.protocols)
        if s.emitted:
            return
        from_orig = sender_is_orig(pkt, s.flow)
        if CLIENT_HELLO in types and from_orig:
            self._client_hello(s, pkt)
        if SERVER_HELLO in types and not from_orig:
            self._server_hello(s, pkt)
        if CERTIFICATE in types and not from_orig and not s.certs:
            s.certs = [hashlib.sha256(bytes.fromhex(c.replace(":", ""))).hexdigest()
                       for c in pkt.values("tls.handshake.certificate")]
        if ALERT in records:
            desc = pkt.int("tls.alert_message.desc")
            if desc is not None:
                s.last_alert = ALERTS.get(desc, str(desc))
        if CCS in records:
            s.ccs.add(from_orig)
        if APP_DATA in records:
            s.app_data.add(from_orig)
        if s.established:
            s.emitted = True
            yield self.emit(s)

    @staticmethod
    def _client_hello(s: Session, pkt: Packet) -> None:
        s.sni = pkt.first("tls.handshake.extensions_server_name")
        s.ja3 = pkt.first("tls.handshake.ja3")
        s.client_version = pkt.int("tls.handshake.version")
        s.alpn = pkt.values("tls.handshake.extensions_alpn_str")
        s.client_sid = pkt.first("tls.handshake.session_id")
        s.ja4 = ja4(quic=s.quic, legacy_version=s.client_version,
                    supported_versions=_ints(pkt, "tls.handshake.extensions.supported_version"),
                    ciphers=_ints(pkt, "tls.handshake.ciphersuite"),
                    extensions=_ints(pkt, "tls.handshake.extension.type"),
                    signature_algorithms=signature_algorithms(pkt),
                    alpn_first=s.alpn[0] if s.alpn else None)

    @staticmethod
    def _server_hello(s: Session, pkt: Packet) -> None:
        supported = _ints(pkt, "tls.handshake.extensions.supported_version")
        s.version = supported[0] if supported else pkt.int("tls.handshake.version")
        s.cipher = pkt.first(f"_ws.col.{CIPHER_COLUMN}")
        if s.cipher and s.cipher.startswith("0x"):  # number tshark has no name for
            s.cipher = f"unknown-{int(s.cipher, 16)}"
        s.ja3s = pkt.first("tls.handshake.ja3s")
        curve = pkt.int("tls.handshake.server_named_curve") or pkt.int("tls.handshake.extensions_key_share_group")
        s.curve = CURVES.get(curve, str(curve)) if curve is not None else None
        alpn = pkt.values("tls.handshake.extensions_alpn_str")
        s.next_protocol = alpn[0] if alpn else None
        sid = pkt.first("tls.handshake.session_id")
        s.resumed = bool(sid and s.client_sid and sid == s.client_sid)

    def emit(self, s: Session) -> Doc:
        proto, version = VERSIONS.get(s.version, (None, None)) if s.version is not None else (None, None)
        fields: dict[str, Any] = {
            "tls.version": version,
            "tls.version_protocol": proto,
            "tls.cipher": s.cipher,
            "tls.curve": s.curve,
            "tls.client.server_name": s.sni,
            "tls.client.ja3": s.ja3,
            "tls.client.ja4": s.ja4,
            "tls.server.ja3s": s.ja3s,
            "tls.next_protocol": s.next_protocol,
            "tls.resumed": s.resumed,
            "tls.established": s.established,
            "tls.server.hash.sha256": s.certs[0].upper() if s.certs else None,
            "secops.tls.cert_chain_fps": s.certs,
            "secops.tls.last_alert": s.last_alert,
            "secops.tls.client_alpn": s.alpn,
        }
        protocol = ["ssl", "quic"] if s.quic else self.SERVICE
        return make_doc(self.DATASET, s.flow, s.ts, ("tls",), fields, protocol)

    def finish(self) -> Iterable[Doc]:
        rest = sorted((s for s in self.sessions.values() if not s.emitted), key=lambda s: s.ts)
        self.sessions.clear()
        for s in rest:
            yield self.emit(s)
