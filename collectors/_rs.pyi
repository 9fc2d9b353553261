"""The Rust engines (collectors/rust): documents written as JSON text, without Python objects per message."""

class DnsEngine:
    """DNS, mDNS and LLMNR over UDP: ``dns_wire.parse`` and ``DnsAnalyzer`` in one, each document as JSON bytes."""

    messages: int
    truncated: int
    too_short: int
    records_cut: int
    cut_values: int

    def message(self, payload: bytes, kind: str, src: str, sport: int, dst: str, dport: int,
                ts: float) -> list[bytes]: ...
    def expire(self, now: float) -> list[bytes]: ...
    def finish(self) -> list[bytes]: ...
