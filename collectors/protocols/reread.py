"""Second looks read only the connections they are for.

A module that needs another look at a run's capture (HTTP after incomplete exchanges or for messages tshark
left unparsed, TLS on the server port of a ClientHello tshark did not decode) used to start tshark on the whole
capture again. Three such passes cost twice the main one: on 300k packets of real traces (127k selected frames)
the main pass took 6 s of tshark CPU and the second looks 11.9 s.

:class:`ConnectionFrames` indexes the capture once by connection with the Python decoder (the same decoding as
the flow path, tunnels and IP fragments included) and then either writes the frames of the asked connections to
a small capture for tshark (:meth:`subset`) or hands their TCP payload to a parser here (:meth:`tcp_payloads`).
The capture is read whole only for the index, which keeps where each frame is in the file; those later looks read
back just their frames from there (``pcapio.read_places``), however many looks a run takes.
tshark numbers the streams of that small capture its own way, so what it finds is mapped back to the main pass's
streams by endpoints and time (:meth:`Subset.remap`), which also tells apart connections that reused the same
endpoints.
"""

from __future__ import annotations

import bisect
import contextlib
import ipaddress
import os
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from collectors.decode import BUF, CAPLEN, DPORT, DST, FLAGS, L4OFF, PLEN, PROTO, SEQ, SPORT, SRC, TCP, UDP, Decoder
from collectors.pcapio import CaptureError, read_capture_placed, read_places
from collectors.protocols.documents import Flow
from collectors.protocols.tcp_reassembly import Chunk, Direction
from collectors.selection import interface_block, packet_block, stream_header

Endpoint = tuple[bytes, int]
Key = tuple[int, Endpoint, Endpoint]  # transport number, the two endpoints in sorted order
Wanted = tuple[Flow, float]  # a main-pass connection: its flow and the time of one of its packets

_TRANSPORTS = {"tcp": TCP, "udp": UDP}
_FIN, _SYN, _RST, _ACK_FLAG = 0x01, 0x02, 0x04, 0x10
OPENING_BYTES = 64  # first payload bytes kept per connection direction, for protocol detection


def connection_key(transport: int, a: Endpoint, b: Endpoint) -> Key:
    return (transport, a, b) if a <= b else (transport, b, a)


def flow_key(flow: Flow) -> Key | None:
    """The endpoints of a flow as the decoder sees them (packed addresses), or None when they do not parse."""
    number = _TRANSPORTS.get(flow.transport)
    try:
        a, b = endpoint(flow.orig_h, flow.orig_p), endpoint(flow.resp_h, flow.resp_p)
    except ValueError:
        return None
    return None if number is None else connection_key(number, a, b)


@dataclass(init=False)
class Segment:
    """TCP payload of one frame: who sent it, its sequence number, the bytes captured."""

    sender: Endpoint
    seq: int
    ts: float
    payload: bytes

    def __init__(self, sender: Endpoint, seq: int, ts: float, payload: bytes) -> None:
        self.sender = sender
        self.seq = seq
        self.ts = ts
        self.payload = payload


class ConnectionFrames:
    """The frames of one capture file grouped by connection (built on first use, then kept).

    Endpoints carry one connection after another when a port is reused (a scanner with a fixed source port): a
    SYN with a new initial sequence number, or one after a FIN or RST, starts the next connection on them. A
    connection is asked for by its main-pass flow and the time of one of its packets, which picks it among them.

    The capture is read whole once; each frame's place in the file, time, lengths and link type are kept (about
    30 bytes a frame, not the frame), so a later look reads only the frames it needs.
    """

    def __init__(self, pcap: Path) -> None:
        self.pcap = pcap
        self._built = False
        self._frames: dict[Key, array[int]] = {}  # frame numbers of each pair of endpoints, in capture order
        self._starts: dict[Key, list[tuple[float, int]]] = {}  # (time, index in _frames) of each connection
        self._fragments = array("I")  # frames with no TCP/UDP endpoints that went to IP fragment reassembly
        # (endpoints, connection) -> the earlier fragments of its datagrams that were reassembled (the frame that
        # completed one is in _frames): a capture of a few connections carries their fragments, not everyone's
        self._fragments_of: dict[tuple[Key, int], list[int]] = {}
        self._originators: dict[tuple[Key, int], Endpoint] = {}  # who sent the SYN of each TCP connection
        # (endpoints, connection, sender) -> (time, first bytes, length) of each direction's first TCP payload
        self._openings: dict[tuple[Key, int, Endpoint], tuple[float, bytes, int]] = {}
        self._heads_made: list[tuple[tuple[Key, int], dict[Endpoint, tuple[float, bytes, int]]]] | None = None
        # per frame number: where the frame is in the file and what its record said
        self._place = array("Q")
        self._caplen = array("I")
        self._wirelen = array("I")
        self._ts_ns = array("q")
        self._linktype = array("I")

    def _index(self) -> None:
        if self._built:
            return
        self._built = True
        # per pair of endpoints, looked up once a packet: [its frames, its connections' starts, the SYN of its
        # current connection, whether that saw FIN or RST, the last connection whose first payload from the lower
        # endpoint was kept, the same from the higher one]
        state: dict[Key, list] = {}
        all_frames, starts, openings, originators = self._frames, self._starts, self._openings, self._originators
        place_of, caplen_of, wirelen_of = self._place.append, self._caplen.append, self._wirelen.append
        ts_of, linktype_of = self._ts_ns.append, self._linktype.append
        decoder = _CountingDecoder()
        decode = decoder.decode
        try:  # damage was reported by the pass that read the capture first: the index takes what is readable
            for number, ((ts_ns, linktype, buf, off, caplen, wirelen), place) in enumerate(
                    read_capture_placed(self.pcap, _ignore)):
                place_of(place)
                caplen_of(caplen)
                wirelen_of(wirelen)
                ts_of(ts_ns)
                linktype_of(linktype)
                fragments = decoder.fragments
                decoder.number = number
                attributed = False
                for p in decode(linktype, buf, off, caplen, ts_ns):
                    proto = p[PROTO]
                    if proto != TCP and proto != UDP:
                        continue
                    attributed = True
                    a, b = (p[SRC], p[SPORT]), (p[DST], p[DPORT])
                    lower = a <= b
                    key = (proto, a, b) if lower else (proto, b, a)
                    pair = state.get(key)
                    if pair is None:  # the first frame of these endpoints
                        pair = state[key] = [array("I", (number,)), [(epoch_seconds(ts_ns), 0)], None, False, -1, -1]
                        all_frames[key], starts[key] = pair[0], pair[1]
                        before = 0
                    else:
                        frames = pair[0]
                        if frames[-1] == number:  # a second packet of theirs in this frame (a tunnel)
                            before = len(frames) - 1
                        else:
                            before = len(frames)
                            frames.append(number)
                    if decoder.completed:  # this frame ends a reassembled datagram: its fragments go with it
                        self._fragments_of.setdefault((key, len(pair[1]) - 1), []).extend(decoder.completed)
                    if proto != TCP:
                        continue
                    flags = p[FLAGS]
                    if flags & (_SYN | _ACK_FLAG) == _SYN:
                        syn = (a, p[SEQ])
                        if before and (pair[3] or (pair[2] is not None and pair[2] != syn)):
                            pair[1].append((epoch_seconds(ts_ns), before))
                            pair[3] = False
                        pair[2] = syn
                        originators[(key, len(pair[1]) - 1)] = a
                    elif flags & (_FIN | _RST):
                        pair[3] = True
                    if p[CAPLEN] > 0:
                        which, side = len(pair[1]) - 1, 4 if lower else 5
                        if pair[side] != which:
                            pair[side] = which
                            openings[(key, which, a)] = (epoch_seconds(ts_ns), _payload(p)[:OPENING_BYTES], p[PLEN])
                if not attributed and decoder.fragments != fragments:
                    self._fragments.append(number)
                decoder.completed = []
        except CaptureError:
            pass

    def connection_of(self, flow: Flow, ts: float) -> tuple[Key, int] | None:
        """(endpoints, which connection on them) of a flow seen at ``ts``; None when the capture has no such one."""
        key = flow_key(flow)
        self._index()
        return None if key is None or key not in self._frames else (key, self._connection(key, ts))

    def _connection(self, key: Key, ts: float) -> int:
        """Which connection on these endpoints was open at ``ts`` (the last one started by then)."""
        starts = self._starts[key]
        return max(bisect.bisect_right([start for start, _ in starts], ts) - 1, 0)

    def _connection_frames(self, key: Key, which: int) -> array[int]:
        starts, frames = self._starts[key], self._frames[key]
        end = starts[which + 1][1] if which + 1 < len(starts) else len(frames)
        return frames[starts[which][1]:end]

    def _wanted(self, wanted: Iterable[Wanted]) -> dict[tuple[Key, int], str]:
        """(endpoints, connection) -> main-pass stream of each asked connection; one asked for twice under two
        streams is left out."""
        self._index()
        streams: dict[tuple[Key, int], set[str]] = {}
        for flow, ts in wanted:
            key = flow_key(flow)
            if key is not None and key in self._frames:
                streams.setdefault((key, self._connection(key, ts)), set()).add(flow.stream)
        return {conn: next(iter(names)) for conn, names in streams.items() if len(names) == 1}

    def subset(self, wanted: Iterable[Wanted]) -> Subset | None:
        """A capture holding the frames of these connections only (None when none is left)."""
        streams = self._wanted(wanted)
        if not streams:
            return None
        numbers: set[int] = set()
        for key, which in streams:
            numbers.update(self._connection_frames(key, which))
            numbers.update(self._fragments_of.get((key, which), ()))
        fd, name = tempfile.mkstemp(prefix="secops-reread-", suffix=".pcapng")
        slots: list[int] = []
        with os.fdopen(fd, "wb") as out:
            out.write(stream_header())
            for number, (window, at) in self._read(sorted(numbers)):
                linktype = self._linktype[number]
                if linktype not in slots:
                    slots.append(linktype)
                    out.write(interface_block(linktype))
                frame = memoryview(window)[at:at + self._caplen[number]]
                out.write(packet_block(slots.index(linktype), self._ts_ns[number], frame, self._wirelen[number]))
        return Subset(Path(name), streams, self)

    def tcp_payloads(self, wanted: Iterable[Wanted]) -> dict[str, list[Segment]]:
        """Main-pass stream -> the TCP payload segments of its connection, in capture order."""
        streams = self._wanted((flow, ts) for flow, ts in wanted if flow.transport == "tcp")
        stream_of = {number: stream for (key, which), stream in streams.items()
                     for number in self._connection_frames(key, which)}
        out: dict[str, list[Segment]] = {}
        if not stream_of:
            return out
        decoder = Decoder()
        # IP fragments are decoded too: a fragmented segment is whole at its last fragment
        for number, (window, at) in self._read(sorted(stream_of.keys() | self._fragments)):
            packets = decoder.decode(self._linktype[number], window, at, self._caplen[number], self._ts_ns[number])
            stream = stream_of.get(number)
            if stream is None:
                continue
            for p in packets:
                if p[PROTO] == TCP and p[CAPLEN] > 0:
                    segment = Segment((p[SRC], p[SPORT]), p[SEQ], epoch_seconds(self._ts_ns[number]), _payload(p))
                    out.setdefault(stream, []).append(segment)
        return out

    def _read(self, numbers: list[int]) -> Iterator[tuple[int, tuple[bytes, int]]]:
        """(frame number, (window, offset)) of these frames (in capture order), read from their places."""
        place, caplen = self._place, self._caplen
        places = [(place[number], caplen[number]) for number in numbers]
        return zip(numbers, read_places(self.pcap, places), strict=False)  # shorter when the file lost its end

    def openings(self, server_ports: frozenset[int] = frozenset(), prefix: bytes = b"") -> list[Opening]:
        """Every TCP connection that carried payload (one of whose directions opened with ``prefix``), with the
        first payload bytes of each direction; oriented by its SYN, else by ``server_ports``, else by who sent
        first. Stream names are made up (``reread-N``): they are for :meth:`tcp_payloads` and :meth:`subset`, not
        for the main pass."""
        assert len(prefix) <= OPENING_BYTES
        out = []
        for n, ((key, which), sides) in enumerate(self._heads()):
            if prefix and not any(first[1].startswith(prefix) for first in sides.values()):
                continue
            _, a, b = key
            orig = self._originators.get((key, which))
            if orig is None:
                first = min(sides.items(), key=lambda item: item[1][0])[0]
                other = b if first == a else a
                orig = other if first[1] in server_ports and other[1] not in server_ports else first
            resp = b if orig == a else a
            flow = Flow("tcp", _address(orig[0]), orig[1], _address(resp[0]), resp[1], f"reread-{n}")
            out.append(Opening(flow, self._starts[key][which][0], sides.get(orig), sides.get(resp)))
        return out

    def _heads(self) -> list[tuple[tuple[Key, int], dict[Endpoint, tuple[float, bytes, int]]]]:
        """(endpoints, connection) and the first payload of each direction, of every TCP connection that carried
        payload, in order of their start (made once)."""
        if self._heads_made is None:
            self._index()
            heads: dict[tuple[Key, int], dict[Endpoint, tuple[float, bytes, int]]] = {}
            for (key, which, sender), first in self._openings.items():
                heads.setdefault((key, which), {})[sender] = first
            starts = self._starts
            self._heads_made = [(conn, heads[conn]) for conn in sorted(heads, key=lambda c: starts[c[0]][c[1]][0])]
        return self._heads_made

    def opening_with(self, prefix: bytes, server_ports: frozenset[int]) -> list[Wanted]:
        """TCP connections one of whose directions opened its payload with ``prefix`` (a protocol's magic)."""
        return [(o.flow, o.start) for o in self.openings(server_ports, prefix)]


class _CountingDecoder(Decoder):
    """The decoder, counting the fragments it takes for reassembly (so that a payload read replays those frames
    only: the others leave no state behind), and naming the frames of each datagram it completes."""

    def __init__(self) -> None:
        super().__init__()
        self.fragments = 0
        self.number = 0  # the frame being decoded
        self.completed: list[int] = []  # earlier frames of a datagram this frame completed

    def _frag_add(self, key: tuple, ts: int, start: int, data: bytes, more: bool) -> bytes | None:
        self.fragments += 1
        whole = super()._frag_add(key, ts, start, data, more)
        if whole is not None and self.completed_datagram is not None:
            self.completed += self.completed_datagram.tags
        elif (entry := self.frags.get(key)) is not None:  # its frames go with the datagram (dropped with it)
            entry.tags.append(self.number)
        return whole

@dataclass
class Opening:
    """A TCP connection of the capture and (time, first payload bytes, payload length) of each direction's first
    payload, None for a direction that sent none."""

    flow: Flow
    start: float
    client: tuple[float, bytes, int] | None
    server: tuple[float, bytes, int] | None


@dataclass
class Subset:
    """A small capture of some connections, and the main-pass stream of each."""

    path: Path
    streams: dict[tuple[Key, int], str]
    frames: ConnectionFrames

    def remap(self, flow: Flow, ts: float) -> Flow | None:
        """The flow (seen at ``ts``) with the main pass's stream; None for a connection that was not asked for."""
        connection = self.frames.connection_of(flow, ts)
        stream = self.streams.get(connection) if connection is not None else None
        return None if stream is None else replace(flow, stream=stream)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def _ignore(_message: str) -> None:
    pass


def _payload(p: tuple) -> bytes:
    """The captured TCP payload of a decoded packet."""
    data, l4 = p[BUF], p[L4OFF]
    start = l4 + (data[l4 + 12] >> 4) * 4
    return bytes(data[start:start + p[CAPLEN]])


@lru_cache(maxsize=65536)
def _address(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def endpoint(address: str, port: int) -> Endpoint:
    """An analyzer's endpoint (address text, port) as the index keys it."""
    return ipaddress.ip_address(address).packed, port


def epoch_seconds(ts_ns: int) -> float:
    """A frame time as the analyzers get it from tshark (its decimal text read as a float), so that document ids,
    which include the time, agree with the main pass's."""
    return float(f"{ts_ns // 1_000_000_000}.{ts_ns % 1_000_000_000:09d}")


def stream_bytes(segments: Iterable[Segment], sender: Endpoint, limit: int) -> bytes:
    """One direction's payload in sequence order, each sequence number once (retransmissions dropped), at most
    ``limit`` bytes kept. Segments are ordered by their signed distance from the first one's sequence number, so a
    segment captured out of order (or before a retransmission of an earlier one) still lands in its place."""
    kept: dict[int, bytes] = {}
    first: int | None = None
    size = 0
    for seg in segments:
        if seg.sender != sender:
            continue
        if first is None:
            first = seg.seq
        relative = ((seg.seq - first + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        if relative not in kept and size < limit:
            kept[relative] = seg.payload
            size += len(seg.payload)
    return b"".join(kept[seq] for seq in sorted(kept))


def sequenced(segments: Iterable[Segment], client: Endpoint,
              starts: Callable[[bool, Segment], bool] | None = None,
              ) -> Iterator[tuple[bool, float, list[Chunk], bool]]:
    """One connection's payload as its readers take it, in capture order: (from the client, time, the bytes that
    became contiguous in that direction, ``tcp_reassembly``; False), then each direction's rest after its holes (at
    the last segment's time; True: that direction ends). A direction starts at its first segment that ``starts``
    accepts (default: its first)."""
    sides: dict[bool, Direction] = {}
    last_ts = 0.0
    for seg in segments:
        from_client, last_ts = seg.sender == client, seg.ts
        side = sides.get(from_client)
        if side is None:
            if starts is not None and not starts(from_client, seg):
                continue
            side = sides[from_client] = Direction()
            side.next_seq = seg.seq
        yield from_client, seg.ts, side.add(seg.seq, seg.payload), False
    for from_client, side in sides.items():
        yield from_client, last_ts, side.flush(), True


def directions(segments: Iterable[Segment], flow: Flow, limit: int) -> tuple[bytes, bytes]:
    """(originator's, responder's) payload of one connection, each as :func:`stream_bytes` gives it."""
    segments = list(segments)
    return (stream_bytes(segments, endpoint(flow.orig_h, flow.orig_p), limit),
            stream_bytes(segments, endpoint(flow.resp_h, flow.resp_p), limit))
