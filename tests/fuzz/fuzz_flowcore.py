"""The native flow core (``collectors._flowcore``, C) through its Python API, against the Python reference.

Input: one byte of options (link type in the low nibble as in ``fuzz_decode``, bit 4 verified checksums, bit 5 a
7-flow table so flows are evicted, bit 6 pcapng instead of classic pcap: the core walks pcap records itself in
``feed_pcap`` and takes pcapng frames one by one in ``feed``; bit 7 three analyzer shares instead of two), then
frames in the framing of ``seeds.pack_frames``. Both engines run with protocol detection and frame selection on, as
the ingest pipeline runs them. Contract: nothing raises, and the C core gives what the Python engine gives: the same
connection records in the same order, counters, damage counts by reason, warnings and selected frames; and the
selected frames read back as a capture (the deep path hands them to tshark), as many as were counted; and the core
routing them to analyzer processes as it selects gives what ``HostPairRouter.split`` gives of its one selection
stream.
Run the C core under AddressSanitizer with ``tests/fuzz/asan.sh``.
"""

from __future__ import annotations

import struct

from collectors.flowpath import NativeFlowPath, PythonFlowPath
from collectors.pcapio import read_capture
from collectors.protocols.deep_fanout import HostPairRouter
from collectors.protocols.detect import SERVICES, UPGRADES, probe
from collectors.selection import interface_block, stream_header
from tests.fuzz.fuzz_decode import LINKTYPES
from tests.fuzz.fuzz_decode import seeds as decode_seeds
from tests.fuzz.seeds import scratch_file, unpack_frames

PATH, SELECTED = scratch_file("capture"), scratch_file("selected")


def capture(linktype: int, frames: list[bytes], pcapng: bool) -> bytes:
    """A capture file of ``frames``, 10 ms apart."""
    times = [1_700_000_000_000_000 + 10_000 * i for i in range(len(frames))]  # microseconds
    if not pcapng:
        return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype) + b"".join(
            struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(f), len(f)) + f for t, f in zip(times, frames,
                                                                                                   strict=True))

    def block(btype: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           block(1, struct.pack("<HHI", linktype, 0, 262144))]
    out += [block(6, struct.pack("<IIIII", 0, t >> 32, t & 0xFFFFFFFF, len(f), len(f)) + f)
            for t, f in zip(times, frames, strict=True)]
    return b"".join(out)


def _run(engine: type[PythonFlowPath] | type[NativeFlowPath], options: int) -> tuple:
    records: list[tuple] = []
    warnings: list[str] = []
    path = engine(records.append, max_flows=7 if options & 0x20 else 500_000, verify_checksums=bool(options & 0x10),
                  probe=probe, services=SERVICES, collect=True, upgrades=UPGRADES)
    counts = path.process_file(PATH, warnings.append, None)
    selected = path.take_selected()
    path.sweep(1_800_000_000 * 10**9)
    path.finish()
    return (records, counts, warnings, selected, path.linktypes(), path.selected, path.probes, path.deep_cut,
            path.evicted, path.open_flows, +path.errors())


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    options = data[0]
    linktype = LINKTYPES[(options & 0x0F) % len(LINKTYPES)]
    PATH.write_bytes(capture(linktype, unpack_frames(data[1:], limit=48), bool(options & 0x40)))
    try:
        _compare(options)
    finally:
        PATH.unlink(missing_ok=True)
        SELECTED.unlink(missing_ok=True)


def _routed(options: int, shares: int) -> tuple[list[tuple[bytes, int]], tuple[int, ...]]:
    """The native core's selection routed to ``shares`` analyzer processes as it selects (``route``)."""
    path = NativeFlowPath(lambda _r: None, max_flows=7 if options & 0x20 else 500_000,
                          verify_checksums=bool(options & 0x10), probe=probe, services=SERVICES, collect=True,
                          upgrades=UPGRADES)
    path.route(shares, HostPairRouter(shares).share)
    path.process_file(PATH, lambda _m: None, None)
    return path.take_shares(), path.linktypes()


def _compare(options: int) -> None:
    python, native = _run(PythonFlowPath, options), _run(NativeFlowPath, options)
    assert native == python
    selected, linktypes = python[3], python[4]
    shares = 3 if options & 0x80 else 2
    assert _routed(options, shares) == (HostPairRouter(shares).split(selected, linktypes), linktypes)
    if selected:  # a pcapng fragment: tshark reads it after a section header and the interface descriptions
        SELECTED.write_bytes(stream_header() + b"".join(interface_block(lt) for lt in linktypes) + selected)
        warnings: list[str] = []
        assert sum(1 for _ in read_capture(SELECTED, warnings.append)) == python[5] and not warnings


def seeds() -> list[bytes]:
    """The decoder's seeds (runs of real frames of every link type and tunnel), as pcap and as pcapng."""
    return [s for seed in decode_seeds() for s in (seed, bytes([seed[0] | 0x40]) + seed[1:])]
