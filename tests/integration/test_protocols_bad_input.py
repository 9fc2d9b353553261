"""Deep path on bad input: truncated and random files, missing tshark, hostile file names."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from collectors.protocols import extract_metadata, tshark_command
from tests.support import TESTDATA

pytestmark = pytest.mark.integration
IODINE = TESTDATA / "attacks/dns-tunnel/dns-tunnel-iodine.pcap"


def run(path: Path, **kw) -> tuple[list[dict], list[str]]:
    warnings: list[str] = []
    return list(extract_metadata(path, on_warning=warnings.append, **kw)), warnings


def test_truncated_capture_keeps_documents_before_the_cut(tmp_path):
    full, _ = run(IODINE)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(IODINE.read_bytes()[: IODINE.stat().st_size // 2])
    docs, warnings = run(cut)
    assert len(warnings) == 1 and "cut short" in warnings[0]
    full_ids = {d["_id"] for d in full}
    # every transaction completed before the cut comes out exactly as from the whole file
    assert len(docs) > len(full) // 4
    answered = [d for d in docs if d["dns"].get("response_code")]
    assert answered and all(d["_id"] in full_ids for d in answered)


def test_random_bytes_and_empty_file_warn_and_yield_nothing(tmp_path):
    noise = tmp_path / "noise.pcap"
    noise.write_bytes(os.urandom(4096))
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    for path in (noise, empty):
        docs, warnings = run(path)
        assert docs == [] and len(warnings) == 1 and path.name in warnings[0]


def test_missing_tshark_and_missing_file_are_warnings(tmp_path):
    docs, warnings = run(IODINE, tshark_path=str(tmp_path / "no-tshark"))
    assert docs == [] and "could not be started" in warnings[0]
    docs, warnings = run(tmp_path / "absent.pcap")
    assert docs == [] and "not a readable file" in warnings[0]


def test_hostile_file_name_is_one_argument(tmp_path):
    hostile = tmp_path / "-r $(touch pwned); `id` ' \" -Y frame.pcap"
    shutil.copyfile(IODINE, hostile)
    cmd = tshark_command(hostile)
    assert str(hostile) in cmd and cmd[cmd.index("-r") + 1] == str(hostile)
    docs, warnings = run(hostile)
    assert warnings == [] and len(docs) == len(run(IODINE)[0])
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
