"""A large file's deep path split across several analyzer processes by host pair.

One analyzer process (``deep_process``) ran behind the flow path, and on real traces it was the critical path: the
whole ingest used about 1.5 of the machine's two cores. Like Zeek cluster workers and Suricata's ``cluster_flow``
fanout, :class:`ProcessFanout` gives each of ``DEEP_PROCESSES`` children (each with its own tshark) the frames of
its share of the traffic, and hands their documents, warnings and FTP announcements back as one run.

The share is a symmetric hash of an IP address pair, not of the 5-tuple, so that what an analyzer ties together
across connections stays in one child: an FTP control connection and its data channels (they also cross to the
parent as announcements), SMB and the DCE-RPC connections it opens. The pair is the flow's own, as the analyzers
see it: a frame whose outermost IP header carries TCP or UDP off the tunnel ports is read in place; a tunnel (or
any other encapsulation) goes through the flow path's decoder and by its inner pair, so a flow goes to the same
child tunnelled or not. An IP datagram's fragments all go where its first fragment goes (``fragment_share``, which
remembers the datagram), and the first goes by the flow inside it: its headers are read as if the datagram were whole.
Fragments that went by their outer pair split a tunnelled flow whose larger datagrams fragment (GTP-U at a 1500-byte
MTU): on the 1M-packet real-trace benchmark one GTP-U download's responses reached one child and its requests the
other, which logged 11 requests as unanswered and gave its tshark 6,874 first fragments it could not reassemble.
DHCP (UDP ports 67/68 and 546/547) moves between addresses (0.0.0.0 to broadcast, then the
lease), so it always goes to the first child, as does a frame the decoder finds no IP in (ARP).

Frame numbers in a child count that child's frames, as a run's already count the frames of its run: the documents
that name one (ICS, DCE-RPC) are the same for a file and this module's ``DEEP_PROCESSES``.

With the native flow core the main process does not walk the selection here: the core routes each frame it selects
by the same rule as it selects it (``NativeFlowPath.route``), reading the common frames (the outermost IP header's
TCP or UDP, fragments) itself and asking :meth:`HostPairRouter.share` about the rest, and hands the shares to
:meth:`ProcessFanout.write_shares`. :meth:`HostPairRouter.split` is the reference it is tested against and the
Python engine's way.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from collectors.deep_spares import DEEP_PROCESSES
from collectors.protocols.deep_process import ProcessRun
from collectors.protocols.document_text import Shipped
from collectors.protocols.expected import ExpectedConnections
from collectors.protocols.host_pairs import HostPairs

Warn = Callable[[str], None]
Shares = list[tuple[bytes, int]]  # per analyzer process: its enhanced packet blocks and their frame count


_block = struct.Struct("<II").unpack_from
_epb = struct.Struct("<I8xI").unpack_from  # interface, (time), captured length


class HostPairRouter:
    """Splits a run of enhanced packet blocks into one run per child, each in capture order: every frame between
    the same two addresses (of the flow the analyzers see: a tunnel's inner one) goes to the same child."""

    def __init__(self, shares: int) -> None:
        self.shares = shares
        self.pairs = HostPairs(shares)
        self.share = self.pairs.share  # the native core's question, answered in compiled code (host_pairs)

    def split(self, blocks: bytes, linktypes: tuple[int, ...]) -> Shares:
        """(blocks, frame count) per child. ``blocks`` holds whole blocks (``take_selected``); a block that is not
        an enhanced packet block goes to every child."""
        spans: list[list[tuple[int, int]]] = [[] for _ in range(self.shares)]
        counts = [0] * self.shares
        pos, end = 0, len(blocks)
        while end - pos >= 12:
            btype, length = _block(blocks, pos)
            if length < 12 or pos + length > end:
                break
            if btype == 6 and length >= 32:
                interface, caplen = _epb(blocks, pos + 8)
                linktype = linktypes[interface] if interface < len(linktypes) else -1
                frame = pos + 28
                target = self.share(linktype, blocks, frame, min(frame + caplen, pos + length - 4))
                _add(spans[target], pos, pos + length)
                counts[target] += 1
            else:
                for own in spans:
                    _add(own, pos, pos + length)
            pos += length
        return [(b"".join(blocks[s:e] for s, e in own), n) for own, n in zip(spans, counts, strict=True)]


def _add(spans: list[tuple[int, int]], start: int, stop: int) -> None:
    """Appends ``[start, stop)``, merged with the last span when they touch (long runs of one share copy once)."""
    if spans and spans[-1][1] == start:
        spans[-1] = (spans[-1][0], stop)
    else:
        spans.append((start, stop))


class ProcessFanout:
    """One run of the deep path in ``DEEP_PROCESSES`` children: the face of one ``ProcessRun`` (write, ready,
    end_input, drain, close). A child starts with its first frame, so a file between two hosts costs one."""

    def __init__(self, name: str, tshark_path: str, warn: Warn, expected: ExpectedConnections | None = None,
                 processes: int | None = None) -> None:
        self.name = name
        self.tshark_path = tshark_path
        self.warn = warn
        self.expected = expected
        self.router = HostPairRouter(processes or DEEP_PROCESSES)
        self.children: list[ProcessRun | None] = [None] * self.router.shares
        self.frames = 0

    @property
    def finished(self) -> bool:
        return all(child is None or child.finished for child in self.children)

    @property
    def tshark_frames(self) -> int:
        """The most frames one child's tshark has been given (each holds its own)."""
        return max((child.tshark_frames for child in self.running), default=0)

    @property
    def running(self) -> list[ProcessRun]:
        return [child for child in self.children if child is not None]

    def write(self, blocks: bytes, linktypes: tuple[int, ...], frames: int) -> None:
        self.write_shares(self.router.split(blocks, linktypes), linktypes)

    def write_shares(self, shares: Shares, linktypes: tuple[int, ...]) -> None:
        """Blocks already split by host pair, one (blocks, frame count) per child: ``split``'s, or the native
        flow core's (``NativeFlowPath.route``, which routes as it selects by the same rule)."""
        if len(shares) != len(self.children):
            raise ValueError(f"{len(shares)} shares for {len(self.children)} analyzer processes")
        self.frames += sum(count for _, count in shares)
        for i, (part, count) in enumerate(shares):
            if count:
                self._child(i).write(part, linktypes, count)

    def start(self) -> None:
        """Every child started now (``MetadataStream.start_processes``)."""
        for i in range(len(self.children)):
            self._child(i)

    def _child(self, i: int) -> ProcessRun:
        child = self.children[i]
        if child is None:  # the second child's warnings say whose share they count
            name = self.name if i == 0 else f"{self.name} (analyzers {i + 1})"
            child = self.children[i] = ProcessRun(name, self.tshark_path, self.warn, self.expected)
        return child

    def ready(self) -> list[Shipped]:
        return [doc for child in self.running for doc in child.ready()]

    def end_input(self) -> None:
        for child in self.running:
            child.end_input()

    def drain(self) -> list[Shipped]:
        return [doc for child in self.running for doc in child.drain()]

    def release(self) -> None:
        for child in self.running:
            child.release()

    def close(self) -> list[Shipped]:
        self.end_input()
        return self.drain()

    def abort(self) -> None:
        for child in self.running:
            child.abort()
