"""SSH: one record per connection with the client and server software banners (Zeek ssh.log)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from collectors.protocols.base import Analyzer, Doc, Flow, RunContext, Warn, evict_oldest, flow_by_server_port
from collectors.protocols.tshark import Packet

PORTS = frozenset({22, 2222})


@dataclass
class Banners:
    flow: Flow
    ts: float
    client: str | None = None
    server: str | None = None


def protocol_version(banner: str | None) -> int | None:
    """2 for ``SSH-2.0-...`` and ``SSH-1.99-...``, 1 for ``SSH-1.5-...``."""
    if not banner or not banner.startswith("SSH-"):
        return None
    version = banner[4:].split("-", 1)[0]
    return 2 if version in ("2.0", "1.99") else 1 if version.startswith("1.") else None


class SshAnalyzer(Analyzer):
    DATASET = "secops.ssh"
    SERVICE = "ssh"
    LAYERS = frozenset({"ssh"})
    FILTER = "ssh.protocol"
    FIELDS = ("ssh.protocol",)

    def __init__(self, warn: Warn, context: RunContext | None = None) -> None:
        super().__init__(warn, context)
        self.conns: dict[tuple[str, str], Banners] = {}

    def handle(self, pkt: Packet) -> Iterable[Doc]:
        banner = pkt.first("ssh.protocol")
        oriented = flow_by_server_port(pkt, PORTS)
        if banner is None or oriented is None:
            return
        flow, from_client = oriented
        entry = self.conns.setdefault(flow.key(), Banners(flow, pkt.ts))
        for stale in evict_oldest(self.conns):  # banner floods: the oldest one-sided records are logged
            yield self.emit(stale)
        if from_client:
            entry.client = banner
        else:
            entry.server = banner
        if entry.client and entry.server:
            del self.conns[flow.key()]
            yield self.emit(entry)

    def emit(self, b: Banners) -> Doc:
        fields = {
            "secops.ssh.client": b.client,
            "secops.ssh.server": b.server,
            "secops.ssh.version": protocol_version(b.server or b.client),
            "service.version": b.server,
        }
        return self.document(b.flow, b.ts, ("ssh",), fields, self.SERVICE)

    def finish(self) -> Iterable[Doc]:
        rest = sorted(self.conns.values(), key=lambda b: b.ts)
        self.conns.clear()
        for b in rest:
            yield self.emit(b)
        self.report_cuts()
