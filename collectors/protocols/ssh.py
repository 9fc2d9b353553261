"""SSH on any port: one record per connection, as Zeek's ssh.log.

What is logged: both software banners (RFC 4253 4.2), the algorithms the two sides negotiated (7.1), chosen as
Zeek's ssh/main.zeek chooses them (the client's first algorithm the server also offers; cipher, MAC and compression
per direction, one value when both directions agree), the server host key's MD5 fingerprint (Zeek's ``host_key``)
and its algorithm, and the HASSH fingerprints of client and server (MD5 over their KEXINIT lists, as Salesforce's
HASSH defines them). Authentication outcome is not inferred (Zeek guesses it from packet sizes).

tshark's SSH dissector runs on port 22 only, so SSH elsewhere reaches it as plain TCP, and dissecting every
handshake packet costs far more than reading two short byte strings. So SSH is read here, without tshark: at the
end of a run, the connections one of whose directions opened with ``SSH-`` (``RunContext.frames``, on any port)
have their payload parsed, the identification lines and then the cleartext binary packets up to NEWKEYS.
tshark's dissector is the differential oracle (tests/integration/test_detect_any_port.py).
Parsing is bounded (``MAX_LINES`` lines before the banner, ``MAX_PACKETS`` packets of at most
``MAX_PACKET`` bytes, ``MAX_NAMES`` algorithm names) and never raises on hostile bytes: damage ends the reading and
what was read so far is logged.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from collectors.protocols.base import Analyzer
from collectors.protocols.documents import MAX_VALUE_CHARS, Flow, Written
from collectors.protocols.reread import directions
from collectors.protocols.tshark import Packet

PORTS = frozenset({22, 2222})  # server ports, to orient a connection whose opening handshake was not captured
MAX_CONNECTIONS = 20_000  # connections read per run; later ones are counted and skipped
MAX_BYTES = 64 * 1024  # payload read per direction: banners and key exchange sit at the start
MAX_LINES = 32  # lines a server may send before its identification line (RFC 4253 4.2)
MAX_PACKETS = 8  # binary packets read per direction before NEWKEYS
MAX_PACKET = 35_000  # RFC 4253 6.1: the packet length every implementation must support
MAX_NAMES = 128  # names per algorithm list

KEXINIT, NEWKEYS, KEXDH_REPLY, KEX_DH_GEX_REPLY = 20, 21, 31, 33
NAME_LISTS = ("kex", "host_key", "enc_c2s", "enc_s2c", "mac_c2s", "mac_s2c", "cmp_c2s", "cmp_s2c")


@dataclass
class Side:
    """What one direction said before encryption started."""

    banner: str | None = None
    algorithms: dict[str, list[str]] = field(default_factory=dict)  # KEXINIT name-lists by NAME_LISTS
    messages: list[bytes] = field(default_factory=list)  # binary packet payloads in order


def protocol_version(banner: str | None) -> int | None:
    """2 for ``SSH-2.0-...`` and ``SSH-1.99-...``, 1 for ``SSH-1.5-...``."""
    if not banner or not banner.startswith("SSH-"):
        return None
    version = banner[4:].split("-", 1)[0]
    return 2 if version in ("2.0", "1.99") else 1 if version.startswith("1.") else None


def read_side(data: bytes) -> Side:
    """The identification line and the cleartext packets of one direction's payload."""
    side = Side()
    pos = 0
    for _ in range(MAX_LINES + 1):
        end = data.find(b"\n", pos)
        if end < 0:
            return side
        line = data[pos:end].rstrip(b"\r")
        pos = end + 1
        if line.startswith(b"SSH-"):
            side.banner = line.decode("latin-1")[:MAX_VALUE_CHARS]
            break
    if side.banner is None or protocol_version(side.banner) != 2:
        return side  # SSH-1 frames packets differently; its banner is all that is logged
    while len(side.messages) < MAX_PACKETS and pos + 5 <= len(data):
        length, padding = struct.unpack_from("!IB", data, pos)
        if not 5 <= length <= MAX_PACKET or padding >= length or pos + 4 + length > len(data):
            break
        payload = data[pos + 5:pos + 4 + length - padding]
        pos += 4 + length
        side.messages.append(payload)
        if payload[:1] == bytes([KEXINIT]) and not side.algorithms:
            side.algorithms = kexinit_lists(payload)
        if payload[:1] == bytes([NEWKEYS]):
            break  # what follows is encrypted
    return side


def kexinit_lists(payload: bytes) -> dict[str, list[str]]:
    """The name-lists of a KEXINIT message (RFC 4253 7.1); {} when it is damaged."""
    pos = 17  # message number and 16 bytes of cookie
    lists: dict[str, list[str]] = {}
    for name in NAME_LISTS:
        text = _string(payload, pos)
        if text is None:
            return {}
        pos += 4 + len(text)
        lists[name] = [n[:MAX_VALUE_CHARS] for n in text.decode("latin-1").split(",")[:MAX_NAMES] if n]
    return lists


def _string(payload: bytes, pos: int) -> bytes | None:
    """An SSH ``string`` (uint32 length and bytes) at ``pos``, or None when it runs past the end."""
    if pos + 4 > len(payload):
        return None
    (length,) = struct.unpack_from("!I", payload, pos)
    return payload[pos + 4:pos + 4 + length] if pos + 4 + length <= len(payload) else None


def first_common(client: list[str], server: list[str]) -> str | None:
    """RFC 4253 7.1: the first algorithm on the client's list that the server also supports."""
    if not client or not server:
        return None
    offered = set(server)
    return next((name for name in client if name in offered), "Algorithm negotiation failed")


def per_direction(client: Side, server: Side, c2s: str, s2c: str) -> str | None:
    """One value when both directions negotiated the same algorithm, else both (Zeek's find_bidirectional_alg)."""
    to_server = first_common(client.algorithms.get(c2s, []), server.algorithms.get(c2s, []))
    to_client = first_common(client.algorithms.get(s2c, []), server.algorithms.get(s2c, []))
    if to_server is None or to_client is None:
        return None
    return to_server if to_server == to_client else f"To server: {to_server}, to client: {to_client}"


def hassh(side: Side, direction: str) -> str | None:
    """HASSH (client, ``c2s``) or HASSHServer (``s2c``): MD5 of kex;cipher;mac;compression of one KEXINIT."""
    lists = side.algorithms
    if not lists:
        return None
    text = ";".join(",".join(lists[name]) for name in ("kex", f"enc_{direction}", f"mac_{direction}",
                                                       f"cmp_{direction}"))
    return hashlib.md5(text.encode("latin-1"), usedforsecurity=False).hexdigest()


def host_key(server: Side, kex_alg: str | None) -> tuple[str | None, str | None]:
    """(MD5 fingerprint as colon hex, key type) of the host key in the server's key exchange reply."""
    reply = KEX_DH_GEX_REPLY if kex_alg and "group-exchange" in kex_alg else KEXDH_REPLY
    message = next((m for m in server.messages if m[:1] == bytes([reply])), None)
    blob = _string(message, 1) if message is not None else None
    if not blob:
        return None, None
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    key_type = _string(blob, 0)
    return (":".join(digest[i:i + 2] for i in range(0, 32, 2)),
            key_type.decode("latin-1")[:MAX_VALUE_CHARS] if key_type else None)


class SshAnalyzer(Analyzer):
    DATASET = "secops.ssh"
    SERVICE = "ssh"
    LAYERS = frozenset()
    FILTER = ""  # read here, not by tshark
    FIELDS = ()

    def wants(self, layers: set[str]) -> bool:
        return False

    def handle(self, pkt: Packet) -> Iterable[Written]:
        return ()

    def finish(self) -> Iterable[Written]:
        if self.context is None:
            return
        connections = self.context.frames.opening_with(b"SSH-", PORTS)
        if len(connections) > MAX_CONNECTIONS:
            self.warn(f"ssh: {len(connections) - MAX_CONNECTIONS} connection(s) beyond {MAX_CONNECTIONS} per run "
                      "not analysed")
            connections = connections[:MAX_CONNECTIONS]
        payloads = self.context.frames.tcp_payloads(connections)
        for flow, ts in connections:
            segments = payloads.get(flow.stream, [])
            client, server = (read_side(data) for data in directions(segments, flow, MAX_BYTES))
            if client.banner or server.banner:
                yield self.emit(flow, ts, client, server)

    def emit(self, flow: Flow, ts: float, client: Side, server: Side) -> Written:
        kex = first_common(client.algorithms.get("kex", []), server.algorithms.get("kex", []))
        fingerprint, key_type = host_key(server, kex)
        fields = {
            "secops.ssh.client": client.banner,
            "secops.ssh.server": server.banner,
            "secops.ssh.version": protocol_version(server.banner or client.banner),
            "secops.ssh.kex_alg": kex,
            "secops.ssh.host_key_alg": first_common(client.algorithms.get("host_key", []),
                                                    server.algorithms.get("host_key", [])),
            "secops.ssh.cipher_alg": per_direction(client, server, "enc_c2s", "enc_s2c"),
            "secops.ssh.mac_alg": per_direction(client, server, "mac_c2s", "mac_s2c"),
            "secops.ssh.compression_alg": per_direction(client, server, "cmp_c2s", "cmp_s2c"),
            "secops.ssh.host_key": fingerprint,
            "secops.ssh.host_key_type": key_type,
            "secops.ssh.hassh": hassh(client, "c2s"),
            "secops.ssh.hassh_server": hassh(server, "s2c"),
            "service.version": server.banner,
        }
        return self.document(flow, ts, ("ssh",), fields, self.SERVICE)
