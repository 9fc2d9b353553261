"""Process settings (secops/runtime.py): the allocator's thresholds and leaving without the interpreter's teardown."""

from __future__ import annotations

import subprocess
import sys

from tests.support import REPO

LEAVE = """
import logging, sys
from secops.runtime import exit_now, tune_process
tune_process()
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
logging.getLogger("t").info("logged")
sys.stdout.write("written" * 10000)
import atexit
atexit.register(lambda: sys.stdout.write("atexit"))
exit_now(3)
"""


def test_exit_now_flushes_what_was_written_and_keeps_the_status() -> None:
    done = subprocess.run([sys.executable, "-c", LEAVE], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stdout == "written" * 10000  # buffered output all out; atexit handlers skipped
    assert "logged" in done.stderr


def test_the_lean_reader_leaves_with_its_status(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run([sys.executable, "-m", "collectors.ingest", str(tmp_path / "missing.pcap")], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "error:" in done.stderr
