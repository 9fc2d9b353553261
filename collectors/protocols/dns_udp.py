"""DNS, mDNS and LLMNR over UDP read from the datagrams themselves: one face, two implementations.

- :class:`RustDns`: ``collectors._rs.DnsEngine`` (collectors/rust), which parses, pairs and writes each document as
  JSON text, so no Python object is built per message: 3.4-3.8 us a datagram against the compiled reference's
  17.7-19.6 us (the shared iodine tunnel capture, 434 datagrams).
- :class:`PythonDns`: ``dns_wire.parse`` and ``DnsAnalyzer``, the reference the Rust engine is tested against
  (document for document, counter for counter), used when the extension is not built (``SECOPS_PURE_PYTHON``, no
  Rust toolchain) or when ``RUST`` is False.

``raw``: the documents are passed on as their JSON text (``orjson.Fragment``) instead of dicts, for a consumer that
only serialises them again (the analyzer process's pipe to its parent, ``deep_process``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from collectors.protocols.base import EngineDocuments, built_rust, cuts_warning
from collectors.protocols.dns import DnsAnalyzer
from collectors.protocols.dns_wire import WireStats, parse
from collectors.protocols.documents import Flow, Written

if TYPE_CHECKING:
    from collectors._rs import DnsEngine


ENGINE: type[DnsEngine] | None = built_rust("DnsEngine")

Warn = Callable[[str], None]

RUST = True  # False: the Python reference reads DNS even where the engine is built (the peer in A/B runs)


def udp_dns(warn: Warn, raw: bool = False) -> RustDns | PythonDns:
    """The DNS reader of one run: the Rust engine when it is built (and ``RUST``), else the Python reference."""
    return RustDns(ENGINE, warn, raw) if RUST and ENGINE is not None else PythonDns(warn)


SWEEP_SECONDS = 1.0  # capture time between sweeps for queries past their timeout (``read``)


class PythonDns:
    """``dns_wire.parse`` into a ``DnsAnalyzer``."""

    def __init__(self, warn: Warn) -> None:
        self.analyzer = DnsAnalyzer(warn)
        self.stats = WireStats()
        self.next_sweep: float | None = None

    def read(self, payload: bytes, kind: str, src: str, sport: int, dst: str, dport: int,
             ts: float) -> list[Written]:
        """A datagram of a run in capture order: the queries past their timeout every ``SWEEP_SECONDS`` of capture
        time (not on how many other frames tshark printed), then the documents its message completes."""
        docs: list[Written] = []
        if self.next_sweep is None or ts >= self.next_sweep:
            self.next_sweep = ts + SWEEP_SECONDS
            docs += self.expire(ts)
        return docs + self.message(payload, kind, src, sport, dst, dport, ts)

    def message(self, payload: bytes, kind: str, src: str, sport: int, dst: str, dport: int,
                ts: float) -> list[Written]:
        """The documents one datagram completes (``kind``: dns, mdns or llmnr, by port)."""
        msg = parse(payload, kind, self.stats)
        if msg is None:
            return []
        a, b = f"{src}:{sport}", f"{dst}:{dport}"
        sender = Flow("udp", src, sport, dst, dport, f"{a}-{b}" if a < b else f"{b}-{a}")
        return list(self.analyzer.handle_message(msg, sender, ts))

    def expire(self, now: float) -> list[Written]:
        return list(self.analyzer.expire(now))

    def finish(self) -> list[Written]:
        return list(self.analyzer.finish())

    @property
    def damaged(self) -> tuple[int, int]:
        """(messages truncated or without a header, of them without a header)."""
        return self.stats.truncated + self.stats.too_short, self.stats.too_short


class RustDns:
    """``collectors._rs.DnsEngine``: the same documents as :class:`PythonDns`, written as JSON by the engine."""

    def __init__(self, engine: type[DnsEngine], warn: Warn, raw: bool) -> None:
        self.warn = warn
        self.engine = engine()
        self.documents = EngineDocuments(raw)

    def message(self, payload: bytes, kind: str, src: str, sport: int, dst: str, dport: int,
                ts: float) -> list[Written]:
        return self.documents(self.engine.message(payload, kind, src, sport, dst, dport, ts))

    def read(self, payload: bytes, kind: str, src: str, sport: int, dst: str, dport: int,
             ts: float) -> list[Written]:
        """``PythonDns.read``: the engine keeps the sweep's time."""
        return self.documents(self.engine.message(payload, kind, src, sport, dst, dport, ts, True))

    def frame(self, buf: bytes, off: int, caplen: int, ts: float) -> list[Written] | None:
        """``read`` for the frame at ``off`` of ``buf`` when it is plain Ethernet, IPv4 and UDP on a DNS port (the
        decoder's fast path), read in place; None for any other frame (it is decoded). About 2 us less a datagram
        than decoding it first: 0.27-0.31 s against 0.35-0.38 s for one analyzer process's 38.5k datagrams on the
        1M-packet benchmark."""
        written = self.engine.frame(buf, off, caplen, ts)
        return None if written is None else self.documents(written)

    def expire(self, now: float) -> list[Written]:
        return self.documents(self.engine.expire(now))

    def finish(self) -> list[Written]:
        docs = self.documents(self.engine.finish())
        if self.engine.cut_values:  # DnsAnalyzer.report_cuts's warning
            self.warn(cuts_warning(DnsAnalyzer.SERVICE, self.engine.cut_values))
        return docs

    @property
    def damaged(self) -> tuple[int, int]:
        return self.engine.truncated + self.engine.too_short, self.engine.too_short
