"""TLS/DTLS heartbeat records of one session (RFC 6520), read for heartbleed-class abuse.

RFC 6520 4: a HeartbeatMessage is type (1 byte), payload_length (2), payload, then at least 16 bytes of
padding, and its total length must not exceed 2^14. A request that claims more payload than its record
carries is the heartbleed read (CVE-2014-0160); a vulnerable peer answers with that much of its memory.
Heartbeats are meant for established sessions ("SHOULD NOT be sent during handshakes") and only after
both hellos carried the heartbeat extension. After the handshake the message is encrypted: then only
the record lengths tell a request from a leak (a response much longer than the request it answers),
as Zeek's policy/protocols/ssl/heartbleed.zeek reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collectors.protocols.tshark import Packet, to_int

HEARTBEAT = 24  # record content type
HEARTBEAT_EXTENSION = 15
REQUEST = 1
HEADER, MIN_PADDING = 3, 16  # message type + payload_length; RFC 6520 4 minimum padding
MAX_MESSAGE = 2 ** 14  # RFC 6520 4: a HeartbeatMessage never exceeds 2^14 bytes
MAX_CIPHERTEXT = 2 ** 14 + 2048  # RFC 5246 6.2.3: the largest encrypted record
# An encrypted response echoes the request's payload with its own padding and MAC: more than this many
# bytes beyond the request it answers is memory the responder was not given.
LEAK_MARGIN = 64


def _ints(pkt: Packet, name: str) -> list[int]:
    return [v for v in (to_int(x) for x in pkt.values(name)) if v is not None]


@dataclass
class Heartbeats:
    offered: bool = False  # the ClientHello carried the heartbeat extension
    accepted: bool = False  # the ServerHello did too
    records: int = 0
    max_payload_length: int | None = None  # the largest payload length a readable request claimed
    overclaimed: bool = False  # a request claimed more payload than its record carries
    oversized: bool = False  # a heartbeat record longer than RFC 6520 allows
    leaked: bool = False  # a response much longer than the request it answers
    before_handshake: bool = False  # a heartbeat before the handshake completed
    unsolicited: bool = False  # a heartbeat without the extension in both hellos
    pending: dict[bool, int] = field(default_factory=dict)  # side (True = client) -> its open request's length

    @property
    def negotiated(self) -> bool:
        return self.offered and self.accepted

    def note_hello(self, pkt: Packet, layer: str, from_client: bool) -> None:
        offered = HEARTBEAT_EXTENSION in _ints(pkt, f"{layer}.handshake.extension.type")
        if from_client:
            self.offered = offered
        else:
            self.accepted = offered

    def note(self, pkt: Packet, layer: str, from_client: bool, established: bool, encrypted: bool) -> None:
        """The heartbeat records of one packet. Messages are read only before the sender's ChangeCipherSpec
        (tshark reads random ciphertext as a message when its first byte happens to be a type)."""
        kinds, lengths = _ints(pkt, f"{layer}.record.content_type"), _ints(pkt, f"{layer}.record.length")
        if len(kinds) != len(lengths):
            return
        beats = [n for kind, n in zip(kinds, lengths, strict=True) if kind == HEARTBEAT]
        types = _ints(pkt, f"{layer}.heartbeat_message.type")
        claimed = _ints(pkt, f"{layer}.heartbeat_message.payload_length")
        readable = not encrypted and len(types) == len(claimed) == len(beats)
        for i, length in enumerate(beats):
            self.records += 1
            self.before_handshake |= not established
            self.unsolicited |= not self.negotiated
            if readable:
                self._message(types[i], claimed[i], length)
            else:
                self.oversized |= length > MAX_CIPHERTEXT
            request = types[i] == REQUEST if readable else (not from_client) not in self.pending
            if request:
                self.pending[from_client] = length
            else:
                asked = self.pending.pop(not from_client, None)
                self.leaked |= asked is not None and length > asked + LEAK_MARGIN

    def _message(self, kind: int, payload_length: int, record_length: int) -> None:
        self.oversized |= record_length > MAX_MESSAGE
        if kind != REQUEST:
            return
        self.max_payload_length = max(self.max_payload_length or 0, payload_length)
        self.overclaimed |= payload_length + HEADER + MIN_PADDING > record_length

    def fields(self) -> dict[str, Any]:
        """The ``secops.tls.heartbeat.*`` fields (none when the session had no heartbeat)."""
        if not self.records:
            return {}
        out: dict[str, Any] = {"records": self.records, "max_payload_length": self.max_payload_length,
                               "overclaimed": self.overclaimed, "oversized": self.oversized, "leaked": self.leaked,
                               "before_handshake": self.before_handshake, "unsolicited": self.unsolicited}
        return {f"secops.tls.heartbeat.{k}": v for k, v in out.items()}
