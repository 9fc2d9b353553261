"""The Python frame decoder (``collectors.decode.Decoder``): every link type it reads, tunnels, IP fragments.

Input: one byte of options (link type in the low nibble, bit 4 verified checksums, bit 5 a 4 KiB reassembly
budget, bit 6 a minute between frames so fragments time out), then frames in the framing of
``seeds.pack_frames``, decoded in turn by one decoder (reassembly spans frames). Contract: nothing raises; at
most one packet per encapsulation level; addresses, ports and lengths in range; the reassembly byte count
matches the buffers held; and each frame decodes the same when it sits inside a larger buffer between other
bytes (a read past the frame's end would show as a difference).
"""

from __future__ import annotations

from collectors.decode import (
    BUF,
    DPORT,
    DST,
    FRAG_DATAGRAM_MAX,
    L4OFF,
    PLEN,
    PROTO,
    SPORT,
    SRC,
    Decoder,
)
from collectors.flowconst import MAX_DEPTH
from tests.fuzz.seeds import SEED_CAPTURES, frames, pack_frames, unpack_frames

LINKTYPES = (1, 0, 108, 9, 101, 12, 14, 228, 229, 113, 276, 105, 127)
PAD = b"\x45\x00\xff\xff" * 4  # bytes around the frame that look like the start of an IPv4 header
SMALL_BUDGET = 4096


def _view(p: tuple, buf: bytes, end: int) -> tuple:
    """A packet with its buffer replaced by the bytes from its L4 offset to the frame's end (its own buffer's
    end for a reassembled datagram)."""
    rest = p[BUF][p[L4OFF]:end] if p[BUF] is buf else bytes(p[BUF][p[L4OFF]:])
    return (*p[:L4OFF], bytes(rest), *p[BUF + 1:])


def _check(decoder: Decoder, budget: int, pkts: list) -> None:
    assert len(pkts) <= MAX_DEPTH + 1
    for p in pkts:
        assert len(p[SRC]) == len(p[DST]) and len(p[SRC]) in (4, 16)
        assert 0 <= p[PROTO] <= 255 and 0 <= p[SPORT] <= 0xFFFF and 0 <= p[DPORT] <= 0xFFFF and p[PLEN] >= 0
    assert decoder.frag_bytes == sum(2 * len(r.buf) for r in decoder.frags.values())
    assert decoder.frag_bytes <= budget + 2 * FRAG_DATAGRAM_MAX
    assert all(n > 0 for n in decoder.errors.values())


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    options = data[0]
    linktype = LINKTYPES[(options & 0x0F) % len(LINKTYPES)]
    budget = SMALL_BUDGET if options & 0x20 else 16 * 1024 * 1024
    step = 61_000_000_000 if options & 0x40 else 1000
    alone = Decoder(verify_checksums=bool(options & 0x10), frag_bytes_max=budget)
    placed = Decoder(verify_checksums=bool(options & 0x10), frag_bytes_max=budget)
    for i, frame in enumerate(unpack_frames(data[1:], limit=32)):
        ts = 1_700_000_000_000_000_000 + i * step
        pkts = alone.decode(linktype, frame, 0, len(frame), ts)
        _check(alone, budget, pkts)
        buf = PAD + frame + PAD
        inner = placed.decode(linktype, buf, len(PAD), len(frame), ts)
        assert [_view(p, buf, len(PAD) + len(frame)) for p in inner] == [_view(p, frame, len(frame)) for p in pkts]
    assert alone.errors == placed.errors and alone.bad_checksums == placed.bad_checksums
    assert alone.arp_new == placed.arp_new


def seeds() -> list[bytes]:
    """Runs of up to 8 consecutive frames from captures of every link type, tunnel and fragment kind."""
    out = []
    for name in SEED_CAPTURES:
        run: list[bytes] = []
        kind = None
        for linktype, frame in frames([name], per_file=40):
            if linktype not in LINKTYPES:
                break
            kind = LINKTYPES.index(linktype)
            run.append(frame)
            if len(run) == 8:
                out.append(bytes([kind]) + pack_frames(run))
                run = []
        if run and kind is not None:
            out.append(bytes([kind]) + pack_frames(run))
    return out
