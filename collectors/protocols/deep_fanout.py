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
import zlib
from collections.abc import Callable

from collectors.decode import (
    DPORT,
    DST,
    PROTO,
    SPORT,
    SRC,
    TUNNEL_PORTS,
    Decoder,
)
from collectors.flowconst import TCP, UDP
from collectors.protocols.deep_process import ProcessRun
from collectors.protocols.document_text import Shipped
from collectors.protocols.expected import ExpectedConnections
from collectors.protocols.outer_ip import IPV6_FRAGMENT, Fragment, ip_fragment, ip_offset, whole_looking

Warn = Callable[[str], None]
Shares = list[tuple[bytes, int]]  # per analyzer process: its enhanced packet blocks and their frame count

DEEP_PROCESSES = 2  # analyzer processes per large file (measured on 2 cores: see README, "Whole ingest")
DHCP_PORTS = frozenset((67, 68, 546, 547))
MAX_FRAGMENTED = 4096  # datagrams whose fragments' share is remembered (the oldest go first)

_block = struct.Struct("<II").unpack_from
_epb = struct.Struct("<I8xI").unpack_from  # interface, (time), captured length
_u16 = struct.Struct("!H").unpack_from
_ports = struct.Struct("!HH").unpack_from




def plain_pair(linktype: int, buf: bytes, frame: int, end: int) -> tuple[bytes, bytes, int, int] | None:
    """(source, destination, source port, destination port; ports 0 when not UDP) of a frame whose outermost IP
    header says where it goes: TCP, or UDP off the tunnel ports. None for anything else (IP fragments, tunnels, other
    link types, MPLS, PPPoE, IPv6 extension headers), which the router reads further."""
    found = ip_offset(linktype, buf, frame, end)
    if found is None:
        return None
    off, etype = found
    if etype == 0x0800:
        if end - off < 20:
            return None
        proto, l4 = buf[off + 9], off + (buf[off] & 0x0F) * 4
        src, dst = buf[off + 12:off + 16], buf[off + 16:off + 20]
        fragment = _u16(buf, off + 6)[0] & 0x3FFF
    else:
        if end - off < 40:
            return None
        proto, l4 = buf[off + 6], off + 40
        src, dst = buf[off + 8:off + 24], buf[off + 24:off + 40]
        fragment = proto == IPV6_FRAGMENT
    if fragment:  # where its datagram goes (HostPairRouter.fragment_share)
        return None
    if proto == TCP:
        return src, dst, 0, 0
    if proto == UDP and end - l4 >= 4:
        sport, dport = _ports(buf, l4)
        if sport not in TUNNEL_PORTS and dport not in TUNNEL_PORTS:
            return src, dst, sport, dport
    return None






class HostPairRouter:
    """Splits a run of enhanced packet blocks into one run per child, each in capture order: every frame between
    the same two addresses (of the flow the analyzers see: a tunnel's inner one) goes to the same child."""

    def __init__(self, shares: int) -> None:
        self.shares = shares
        self.decoder = Decoder()  # for frames the plain reading does not cover (its fragment state is its own)
        # datagrams whose fragments are being routed: (version, source, destination, IP ID, protocol) -> (share,
        # placed by its first fragment)
        self.fragments: dict[tuple[int, bytes, bytes, int, int], tuple[int, bool]] = {}

    def share(self, linktype: int, buf: bytes, frame: int, end: int) -> int:
        pair = plain_pair(linktype, buf, frame, end)
        if pair is not None:
            return self._pair_share(pair)
        piece = ip_fragment(linktype, buf, frame, end)
        if piece is not None:
            return self.fragment_share(piece, linktype, buf, frame, end)
        decoded = self._decoded_share(linktype, buf, frame, end)
        return 0 if decoded is None else decoded

    def _decoded_share(self, linktype: int, buf: bytes, frame: int, end: int) -> int | None:
        """The share of the innermost flow the decoder finds in the frame (None: it finds none)."""
        packets = self.decoder.decode(linktype, buf, frame, end - frame)
        if not packets:
            return None
        p = packets[-1]
        udp = p[PROTO] == UDP
        return self._pair_share((p[SRC], p[DST], p[SPORT] if udp else 0, p[DPORT] if udp else 0))

    def _pair_share(self, pair: tuple[bytes, bytes, int, int]) -> int:
        a, b, sport, dport = pair
        if sport in DHCP_PORTS or dport in DHCP_PORTS:
            return 0
        return zlib.crc32(a + b if a < b else b + a) % self.shares

    def fragment_share(self, piece: Fragment, linktype: int, buf: bytes, frame: int, end: int) -> int:
        """Where an IP fragment goes: where its datagram's first-seen fragment went. The first fragment of an IPv4
        datagram goes by the flow inside it (a copy made to look whole, ``whole_looking``, through the decoder);
        any other first-seen fragment by its own pair. A first fragment meeting a remembered first fragment is a
        new datagram reusing the IP ID (or a duplicate): it is placed again."""
        key, offset = piece
        known = self.fragments.get(key)
        if known is not None and not (offset == 0 and known[1]):
            return known[0]
        whole = whole_looking(linktype, buf, frame, end) if offset == 0 else None
        target = self._decoded_share(linktype, whole, 0, len(whole)) if whole is not None else None
        if target is None:
            target = self._pair_share((key[1], key[2], 0, 0))
        if key not in self.fragments and len(self.fragments) >= MAX_FRAGMENTED:
            del self.fragments[next(iter(self.fragments))]
        self.fragments[key] = (target, offset == 0)
        return target

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
            if not count:
                continue
            child = self.children[i]
            if child is None:  # the second child's warnings say whose share they count
                name = self.name if i == 0 else f"{self.name} (analyzers {i + 1})"
                child = self.children[i] = ProcessRun(name, self.tshark_path, self.warn, self.expected)
            child.write(part, linktypes, count)

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
