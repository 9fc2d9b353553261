"""The frames selected for the deep path, framed as a pcapng byte stream (what tshark reads on stdin).

The native core writes the enhanced packet blocks itself (``FlowCore.take_selected``); :class:`FrameSelection`
is the same for the Python engine, byte for byte (tests/unit/test_deep_selection.py holds the two equal).
Blocks are little-endian; every interface has nanosecond timestamps (``if_tsresol`` = 9), and interface ids
are the slots of :meth:`linktypes`, in the order link types were first selected. A stream starts with
:func:`stream_header` and gets :func:`interface_block` for each new slot before the packets that use it.
"""

from __future__ import annotations

import struct

SNAPLEN = 262_144
# TCP payload bytes one flow direction hands the deep path at most (settings: sensor.deep_bytes_per_direction).
# Measured (`secops ingest` of one HTTP header line, tshark 4.0): 1 MiB 2.2 s CPU, 2 MiB 4.1 s, 4 MiB 11.9 s
# (tshark's reassembly re-parses the whole message for every segment). What the analyzers log sits at the start
# of a direction: HTTP headers and the first body bytes (lengths come from the headers, or from the second
# look), TLS/SSH handshakes, FTP/SMTP commands; a longer direction loses only what follows the cap, and the cut
# is counted.
DEEP_BYTES_PER_DIRECTION = 1 << 20
_SHB = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
_EPB_HEAD = struct.Struct("<IIIIIII")


def stream_header() -> bytes:
    """Section header block (byte-order magic, version 1.0, section length unknown)."""
    return _SHB


def interface_block(linktype: int) -> bytes:
    """Interface description block with if_tsresol = 9 (nanoseconds) and opt_endofopt."""
    return struct.pack("<IIHHIHHB3xHHI", 1, 32, linktype, 0, SNAPLEN, 9, 1, 9, 0, 0, 32)


def packet_block(interface: int, ts_ns: int, frame: bytes | memoryview, wirelen: int) -> bytes:
    """Enhanced packet block of one frame."""
    caplen = len(frame)
    padded = (caplen + 3) & ~3
    total = 32 + padded
    t = ts_ns & 0xFFFFFFFFFFFFFFFF
    return b"".join((_EPB_HEAD.pack(6, total, interface, t >> 32, t & 0xFFFFFFFF, caplen, max(wirelen, caplen)),
                     frame, bytes(padded - caplen), total.to_bytes(4, "little")))


class FrameSelection:
    """Selected frames collected between two :meth:`take` calls (the Python engine's ``take_selected``)."""

    MAX_INTERFACES = 64  # as the native core: frames of further link types are not selected

    def __init__(self) -> None:
        self.slots: list[int] = []
        self.blocks: list[bytes] = []
        self.count = 0

    def block(self, linktype: int, ts_ns: int, frame: bytes | memoryview, wirelen: int) -> bytes | None:
        """The frame's block (its link type gets a slot), or None when no slot is left."""
        try:
            interface = self.slots.index(linktype)
        except ValueError:
            if len(self.slots) == self.MAX_INTERFACES:
                return None
            interface = len(self.slots)
            self.slots.append(linktype)
        return packet_block(interface, ts_ns, frame, wirelen)

    def add(self, linktype: int, ts_ns: int, frame: bytes | memoryview, wirelen: int) -> None:
        block = self.block(linktype, ts_ns, frame, wirelen)
        if block is not None:
            self.add_blocks([block])

    def add_blocks(self, blocks: list[bytes]) -> None:
        self.blocks += blocks
        self.count += len(blocks)

    def take(self) -> bytes:
        out, self.blocks = b"".join(self.blocks), []
        return out

    def linktypes(self) -> tuple[int, ...]:
        return tuple(self.slots)
