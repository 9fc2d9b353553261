"""TLS, DTLS (and the TLS handshake inside QUIC): one record per session, as Zeek's ssl.log.

Filled from the ClientHello (SNI, JA3, JA4, offered versions), ServerHello (negotiated version,
cipher as IANA/Zeek names it, JA3S), the server's Certificate message (SHA-256 fingerprints of the
DER chain), alerts and ChangeCipherSpec/application data from both sides (``established``: for
TLS 1.3, where ChangeCipherSpec is only a compatibility gesture, encrypted records from both
sides, as Zeek's analyzer decides it).

TLS on a port tshark gives to another dissector (RDP after X.224 negotiation, an FTP data
channel after AUTH TLS, any unregistered port taken by a conversation) is found by its first
bytes: a TCP payload that starts with a TLS handshake record carrying a ClientHello. At the end
of the capture those streams are read again with TLS decoded on their server port.

TCP connections whose first payload is a TLS hello are read by the deep path itself (``native_tcp`` and
``tls_wire``): their frames reach ``handle`` as the same tshark fields, so one state machine reads both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from collectors.protocols.base import Analyzer, RunContext, Warn, evict_oldest, layers_above_tcp
from collectors.protocols.documents import Flow, Written, flow_of, sender_is_orig
from collectors.protocols.ja4 import ja4
from collectors.protocols.reread import Segment, Wanted, endpoint, sequenced
from collectors.protocols.tls_heartbeat import HEARTBEAT, Heartbeats
from collectors.protocols.tshark import Packet, to_int

CLIENT_HELLO, SERVER_HELLO, CERTIFICATE, SERVER_KEY_EXCHANGE = 1, 2, 11, 12
CCS, ALERT, HANDSHAKE, APP_DATA = 20, 21, 22, 23
# tshark resolves cipher suite numbers to their IANA names in a custom column (same names as Zeek)
CIPHER_COLUMN = "secopsCipher"
DTLS_CIPHER_COLUMN = "secopsDtlsCipher"
TLS13 = 0x0304
# (version_protocol, tls.version); DTLS and versions without a TLS number carry Zeek's version name
VERSIONS = {0x0002: ("ssl", "2.0"), 0x0300: ("ssl", "3.0"), 0x0301: ("tls", "1.0"), 0x0302: ("tls", "1.1"),
            0x0303: ("tls", "1.2"), 0x0304: ("tls", "1.3"), 0xFEFF: ("dtls", "DTLSv10"),
            0xFEFD: ("dtls", "DTLSv12"), 0xFEFC: ("dtls", "DTLSv13")}
# payload layers tshark leaves TLS under when another dissector owns the port or conversation
OPAQUE_LAYERS = frozenset({"data", "tpkt", "ftp-data", "cotp"})
# a TCP payload opening with a TLS handshake record (22, version 3.x) that carries a ClientHello
UNDECODED_HELLO = "tcp.payload[0:2] == 16:03 and tcp.payload[5] == 1 and !tls"
# RFC 7983: STUN (ICE), DTLS and SRTP share one UDP port pair; the first STUN binding request
# tells who opened the flow, which is how Zeek orients the DTLS session's connection
STUN_BINDING_REQUEST = "stun.type == 0x0001"
MAX_UDP_OPENERS = 65_536
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


@dataclass(init=False)
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
    leaf_der: bytes | None = None  # the server's certificate (validity, names, self-signature: x509.py)
    last_alert: str | None = None
    ccs: set[bool] = field(default_factory=set)  # sides (True = originator) that sent ChangeCipherSpec
    app_data: set[bool] = field(default_factory=set)
    emitted: bool = False
    client_is_orig: bool = True  # False when the connection's opener is the TLS server (DTLS after ICE)
    heartbeats: Heartbeats = field(default_factory=Heartbeats)

    def __init__(self, flow: Flow, ts: float, quic: bool = False, sni: str | None = None, ja3: str | None = None,
                 ja4: str | None = None, ja3s: str | None = None, client_version: int | None = None,
                 version: int | None = None, cipher: str | None = None, curve: str | None = None,
                 alpn: list[str] | None = None, next_protocol: str | None = None, client_sid: str | None = None,
                 resumed: bool = False, certs: list[str] | None = None, leaf_der: bytes | None = None,
                 last_alert: str | None = None, ccs: set[bool] | None = None, app_data: set[bool] | None = None,
                 emitted: bool = False, client_is_orig: bool = True, heartbeats: Heartbeats | None = None) -> None:
        self.flow = flow
        self.ts = ts
        self.quic = quic
        self.sni = sni
        self.ja3 = ja3
        self.ja4 = ja4
        self.ja3s = ja3s
        self.client_version = client_version
        self.version = version
        self.cipher = cipher
        self.curve = curve
        self.alpn = [] if alpn is None else alpn
        self.next_protocol = next_protocol
        self.client_sid = client_sid
        self.resumed = resumed
        self.certs = [] if certs is None else certs
        self.leaf_der = leaf_der
        self.last_alert = last_alert
        self.ccs = set() if ccs is None else ccs
        self.app_data = set() if app_data is None else app_data
        self.emitted = emitted
        self.client_is_orig = client_is_orig
        self.heartbeats = Heartbeats() if heartbeats is None else heartbeats

    @property
    def established(self) -> bool:
        if self.version == 0x0304 or self.quic:
            return self.version is not None and len(self.app_data) == 2 and not self.quic
        return len(self.ccs) == 2


def version_of(code: int | None) -> tuple[str | None, str | None]:
    """(version_protocol, tls.version) as Zeek names the version: TLS drafts and unknown numbers
    (``TLSv13-draft23``, ``unknown-32257``) keep Zeek's name."""
    if code is None:
        return None, None
    if code in VERSIONS:
        return VERSIONS[code]
    if code >> 8 == 0x7F:
        return "tls", f"TLSv13-draft{code & 0xFF}"
    return None, f"unknown-{code}"


def _ints(pkt: Packet, name: str) -> list[int]:
    return [v for v in (to_int(x) for x in pkt.values(name)) if v is not None]


# extensions whose body is a signature-algorithm list (tshark reports all of them in one field)
SIG_LIST_EXTENSIONS = (13, 34, 50)  # signature_algorithms, delegated_credentials, signature_algorithms_cert


def signature_algorithms(pkt: Packet, layer: str = "tls") -> list[int]:
    """The signature_algorithms extension's list only, in offered order (what JA4 hashes)."""
    algs = _ints(pkt, f"{layer}.handshake.sig_hash_alg")
    lengths = _ints(pkt, f"{layer}.handshake.sig_hash_alg_len")
    owners = [t for t in _ints(pkt, f"{layer}.handshake.extension.type") if t in SIG_LIST_EXTENSIONS]
    if len(owners) != len(lengths):
        return algs if owners == [13] or not owners else []
    out, pos = [], 0
    for owner, length in zip(owners, lengths, strict=True):
        chunk = algs[pos: pos + length // 2]
        pos += length // 2
        if owner == 13:
            out += chunk
    return out


_TLS_FIELDS = (
    "record.content_type", "handshake.type", "handshake.version", "handshake.ciphersuite",
    "handshake.extension.type", "handshake.extensions_server_name", "handshake.extensions_alpn_str",
    "handshake.extensions.supported_version", "handshake.sig_hash_alg", "handshake.sig_hash_alg_len",
    "handshake.ja3", "handshake.ja3s", "handshake.certificate", "alert_message.desc", "handshake.session_id",
    "handshake.server_named_curve", "handshake.extensions_key_share_group",
    "record.length", "heartbeat_message.type", "heartbeat_message.payload_length",
)


class TlsAnalyzer(Analyzer):
    DATASET = "secops.tls"
    SERVICE = "ssl"
    LAYERS = frozenset({"tls", "dtls", "stun"})
    FILTER = f"tls or dtls or ({UNDECODED_HELLO}) or {STUN_BINDING_REQUEST}"
    FIELDS = (
        *(f"tls.{f}" for f in _TLS_FIELDS), "tls.record.opaque_type", *(f"dtls.{f}" for f in _TLS_FIELDS),
        f"_ws.col.{CIPHER_COLUMN}", f"_ws.col.{DTLS_CIPHER_COLUMN}",
    )
    COLUMNS = ((CIPHER_COLUMN, "%Cus:tls.handshake.ciphersuite:0:R"),
               (DTLS_CIPHER_COLUMN, "%Cus:dtls.handshake.ciphersuite:0:R"))

    def __init__(self, warn: Warn, context: RunContext | None = None) -> None:
        super().__init__(warn, context)
        self.sessions: dict[tuple[str, str], Session] = {}
        self.undecoded: dict[str, Wanted] = {}  # tcp stream -> (flow, time) of a ClientHello tshark did not decode
        self.udp_openers: dict[str, tuple[str, int]] = {}  # udp stream -> (address, port) that spoke first

    def wants(self, layers: set[str]) -> bool:
        return not self.LAYERS.isdisjoint(layers) or ("tcp" in layers and not layers.isdisjoint(OPAQUE_LAYERS))

    @staticmethod
    def _undecoded_payload(protocols: list[str]) -> bool:
        """Whether tshark decoded nothing but opaque layers above the innermost TCP header."""
        above = layers_above_tcp(protocols)
        if not above:
            return False
        return OPAQUE_LAYERS.issuperset(above)

    def handle(self, pkt: Packet) -> Iterable[Written]:
        layer = "dtls" if "dtls" in pkt.protocols and "tls" not in pkt.protocols else "tls"
        if layer not in pkt.protocols:
            if "stun" in pkt.protocols:
                self._note_opener(pkt)
            else:
                self._note_undecoded(pkt)
            return
        types = _ints(pkt, f"{layer}.handshake.type")
        records = _ints(pkt, f"{layer}.record.content_type") + _ints(pkt, "tls.record.opaque_type")
        probe = flow_of(pkt, CLIENT_HELLO in types or SERVER_HELLO not in types)
        if probe is None:
            return
        key = probe.key()
        s = self.sessions.get(key)
        if s is not None and CLIENT_HELLO in types and not s.emitted and s.established:
            s.emitted = True  # a held session (heartbeats negotiated) ends where the next one starts
            yield self.emit(s)
        if s is None or (CLIENT_HELLO in types and s.emitted):
            if CLIENT_HELLO not in types and SERVER_HELLO in types:
                probe = flow_of(pkt, False)
            if probe is None:
                return
            opener = self.udp_openers.get(probe.stream) if probe.transport == "udp" else None
            flipped = opener is not None and opener == (probe.resp_h, probe.resp_p)
            if flipped:
                probe = Flow(probe.transport, probe.resp_h, probe.resp_p, probe.orig_h, probe.orig_p, probe.stream)
            s = self.sessions[key] = Session(probe, pkt.ts, quic="quic" in pkt.protocols, client_is_orig=not flipped)
            for stale in evict_oldest(self.sessions):  # logged ones only suppress repeats
                if not stale.emitted:
                    yield self.emit(stale)
        if s.emitted:
            return
        from_orig = sender_is_orig(pkt, s.flow)
        from_client = from_orig == s.client_is_orig
        if CLIENT_HELLO in types and from_client:
            self._client_hello(s, pkt, layer)
        if SERVER_HELLO in types and not from_client:
            self._server_hello(s, pkt, layer)
        if SERVER_KEY_EXCHANGE in types and SERVER_HELLO not in types and not from_client:
            self._curve(s, pkt, layer)
        if (CLIENT_HELLO in types and from_client) or (SERVER_HELLO in types and not from_client):
            s.heartbeats.note_hello(pkt, layer, from_client)
        if HEARTBEAT in records:
            s.heartbeats.note(pkt, layer, from_client, s.established, from_orig in s.ccs or s.version == TLS13)
        if CERTIFICATE in types and not from_client and not s.certs:
            ders = [bytes.fromhex(c.replace(":", "")) for c in pkt.values(f"{layer}.handshake.certificate")]
            s.certs = [hashlib.sha256(der).hexdigest() for der in ders]
            s.leaf_der = ders[0] if ders else None
        if ALERT in records:
            desc = pkt.int(f"{layer}.alert_message.desc")
            if desc is not None:
                s.last_alert = ALERTS.get(desc, str(desc))
        if CCS in records:
            s.ccs.add(from_orig)
        if APP_DATA in records:
            s.app_data.add(from_orig)
        if s.established and not s.heartbeats.negotiated:  # with heartbeats: held to count later ones
            s.emitted = True
            yield self.emit(s)

    def _note_opener(self, pkt: Packet) -> None:
        """The sender of the first STUN binding request of a UDP flow opened it (DTLS may follow)."""
        flow = flow_of(pkt, True)
        if flow is None or flow.transport != "udp" or flow.stream in self.udp_openers:
            return
        if len(self.udp_openers) >= MAX_UDP_OPENERS:
            self.udp_openers.clear()
        self.udp_openers[flow.stream] = (flow.orig_h, flow.orig_p)

    def _note_undecoded(self, pkt: Packet) -> None:
        """A ClientHello under another dissector (the display filter matched its first bytes)."""
        if self.context is None or not self._undecoded_payload(pkt.protocols):
            return
        flow = flow_of(pkt, True)
        if flow is not None and flow.transport == "tcp" and flow.stream.isdigit():
            self.undecoded.setdefault(flow.stream, (flow, pkt.ts))

    @staticmethod
    def _client_hello(s: Session, pkt: Packet, layer: str) -> None:
        s.sni = pkt.first(f"{layer}.handshake.extensions_server_name")
        s.ja3 = pkt.first(f"{layer}.handshake.ja3")
        s.client_version = pkt.int(f"{layer}.handshake.version")
        s.alpn = pkt.values(f"{layer}.handshake.extensions_alpn_str")
        s.client_sid = pkt.first(f"{layer}.handshake.session_id")
        s.ja4 = ja4(quic=s.quic, legacy_version=s.client_version,
                    supported_versions=_ints(pkt, f"{layer}.handshake.extensions.supported_version"),
                    ciphers=_ints(pkt, f"{layer}.handshake.ciphersuite"),
                    extensions=_ints(pkt, f"{layer}.handshake.extension.type"),
                    signature_algorithms=signature_algorithms(pkt, layer),
                    alpn_first=s.alpn[0] if s.alpn else None)

    @staticmethod
    def _server_hello(s: Session, pkt: Packet, layer: str) -> None:
        supported = _ints(pkt, f"{layer}.handshake.extensions.supported_version")
        s.version = supported[0] if supported else pkt.int(f"{layer}.handshake.version")
        s.cipher = pkt.first(f"_ws.col.{DTLS_CIPHER_COLUMN if layer == 'dtls' else CIPHER_COLUMN}")
        if s.cipher and s.cipher.startswith("0x"):  # number tshark has no name for
            s.cipher = f"unknown-{int(s.cipher, 16)}"
        s.ja3s = pkt.first(f"{layer}.handshake.ja3s")
        s.curve = None
        TlsAnalyzer._curve(s, pkt, layer)
        alpn = pkt.values(f"{layer}.handshake.extensions_alpn_str")
        s.next_protocol = alpn[0] if alpn else None
        sid = pkt.first(f"{layer}.handshake.session_id")
        s.resumed = bool(sid and s.client_sid and sid == s.client_sid)

    @staticmethod
    def _curve(s: Session, pkt: Packet, layer: str) -> None:
        """The server's key exchange group: TLS 1.3's key_share, or the named curve of a ServerKeyExchange (which
        may arrive in a later frame than the ServerHello)."""
        curve = pkt.int(f"{layer}.handshake.server_named_curve") or pkt.int(
            f"{layer}.handshake.extensions_key_share_group")
        if curve is not None:
            s.curve = CURVES.get(curve, str(curve))

    def emit(self, s: Session) -> Written:
        proto, version = version_of(s.version)
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
            **s.heartbeats.fields(),
        }
        if s.leaf_der is not None:
            # imported here: the cryptography package costs 75 ms at start-up, which processes that never see a
            # certificate (the flow path's main process, which imports the probes' package) should not pay
            from collectors.protocols.x509 import CertificateError, server_certificate_fields

            try:
                fields |= server_certificate_fields(s.leaf_der, s.ts)
            except CertificateError as exc:
                self.warn(f"tls: server certificate of {s.flow.resp_h}:{s.flow.resp_p} not readable: {exc}")
        protocol = ["ssl", "quic"] if s.quic else self.SERVICE
        return self.document(s.flow, s.ts, ("tls",), fields, protocol)

    def finish(self) -> Iterable[Written]:
        rest = [s for s in self.sessions.values() if not s.emitted]
        self.sessions.clear()
        if self.undecoded and self.context is not None:
            rest += self._second_look()
        for s in sorted(rest, key=lambda s: s.ts):
            yield self.emit(s)
        self.report_cuts()

    def _second_look(self) -> list[Session]:
        """Read the connections of undecoded ClientHellos again from their payload with the native TLS reader:
        each direction from its first TLS record (the client's from that ClientHello on, the server's from its
        first record after it), in capture order, through this module's state machine. (This was a tshark pass
        with TLS decoded on their server ports: a tshark start, 0.3 s of CPU, per run.)"""
        from collectors.protocols.tls_wire import Frame, TlsConnection, TlsStats, frame_packet  # imports this module

        assert self.context is not None
        payloads = self.context.frames.tcp_payloads(self.undecoded.values())
        again, stats = TlsAnalyzer(self.warn), TlsStats()
        for stream, (flow, hello_ts) in self.undecoded.items():
            conn, client = TlsConnection(stats), endpoint(flow.orig_h, flow.orig_p)
            for from_client, ts, chunks, last in sequenced(payloads.get(stream, ()), client, _first_records(hello_ts)):
                if last:
                    continue  # what waited behind a hole: a direction's records end at it
                frame = Frame()
                for chunk in chunks:
                    conn.feed(from_client, chunk, frame)
                ends = (flow.orig_h, flow.resp_h, flow.orig_p, flow.resp_p) if from_client else (
                    flow.resp_h, flow.orig_h, flow.resp_p, flow.orig_p)
                for _ in again.handle(frame_packet(frame, ts, *ends, stream)):
                    pass  # established sessions stay in again.sessions (emitted here, from the main pass)
        return [s for s in again.sessions.values() if s.version is not None or s.sni is not None]


def _first_records(hello_ts: float) -> Callable[[bool, Segment], bool]:
    """Where a second look's directions start: the client's at its ClientHello (from ``hello_ts``), the server's at
    its first TLS record after that."""
    started: set[bool] = set()

    def first_record(from_client: bool, seg: Segment) -> bool:
        head = seg.payload[:6]
        ok = len(head) == 6 and head[1] == 3 and (
            head[0] == HANDSHAKE and head[5] == CLIENT_HELLO and seg.ts >= hello_ts if from_client
            else True in started and CCS <= head[0] <= HEARTBEAT)
        if ok:
            started.add(from_client)
        return ok

    return first_record
