"""Frames read back from their places (collectors.pcapio.read_capture_placed / read_places)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

import collectors.pcapio as pcapio
from collectors.pcapio import read_capture, read_capture_placed, read_places
from tests.support import TESTDATA

GET = TESTDATA / "zeek" / "traces" / "http" / "get.pcap"
NG = TESTDATA / "zeek" / "traces" / "pcapng-multi-interface.pcapng"


def _frames(path: Path) -> list[bytes]:
    return [bytes(buf[off:off + caplen]) for _ts, _lt, buf, off, caplen, _wl in read_capture(path)]


@pytest.mark.parametrize("source", [GET, NG])
@pytest.mark.parametrize("zipped", [False, True])
def test_every_frame_reads_back_from_its_place(tmp_path: Path, source: Path, zipped: bool) -> None:
    """Across buffer refills (a tiny CHUNK), plain and gzip'd, pcap and pcapng: the frame at each place is the
    frame the record held, read all together, one by one, or every third one."""
    path = tmp_path / (source.name + (".gz" if zipped else ""))
    path.write_bytes(gzip.compress(source.read_bytes()) if zipped else source.read_bytes())
    expected = _frames(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pcapio, "CHUNK", 512)
        placed = [(place, caplen) for (_ts, _lt, _buf, _off, caplen, _wl), place in read_capture_placed(path)]
    assert len(placed) == len(expected) > 2
    for places in (placed, placed[::3], placed[-1:]):
        got = [bytes(window[at:at + size]) for (window, at), (_, size) in zip(read_places(path, places), places,
                                                                               strict=True)]
        assert got == [expected[placed.index(p)] for p in places]


def test_places_far_apart_are_sought_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two frames at both ends of a file read about their own bytes, not the file between them."""
    path = tmp_path / "get.pcap"
    path.write_bytes(GET.read_bytes() + GET.read_bytes()[24:] * 40)  # the same records again, 40 times
    placed = [(place, caplen) for (_ts, _lt, _buf, _off, caplen, _wl), place in read_capture_placed(path)]
    frames = _frames(path)
    read = []
    opened = pcapio._open

    def counting(p: Path):
        f = opened(p)
        raw = f.read
        f.read = lambda n=-1: read.append(len(data := raw(n))) or data  # type: ignore[method-assign]
        return f

    monkeypatch.setattr(pcapio, "_open", counting)
    ends = [placed[0], placed[-1]]
    assert [bytes(w[at:at + n]) for (w, at), (_, n) in zip(read_places(path, ends), ends, strict=True)] == \
        [frames[0], frames[-1]]
    assert sum(read) == placed[0][1] + placed[-1][1] < path.stat().st_size // 20


def test_a_file_cut_short_yields_the_frames_it_still_holds(tmp_path: Path) -> None:
    path = tmp_path / "get.pcap"
    path.write_bytes(GET.read_bytes())
    placed = [(place, caplen) for (_ts, _lt, _buf, _off, caplen, _wl), place in read_capture_placed(path)]
    path.write_bytes(GET.read_bytes()[:placed[-2][0] + placed[-2][1]])  # the last frame is gone
    assert len(list(read_places(path, placed))) == len(placed) - 1
    path.unlink()
    assert list(read_places(path, placed)) == []
