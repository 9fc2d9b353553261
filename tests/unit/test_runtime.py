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


BUFFERED = """
import io, os, sys
print("before", flush=False)
out = __import__("secops.runtime", fromlist=["x"]).buffered_stdout()
assert isinstance(out, io.BufferedWriter), type(out)
assert type(sys.stdout.buffer).__name__ == ("FileIO" if os.environ.get("PYTHONUNBUFFERED") else "BufferedWriter")
for n in range(1000):
    out.write(b"line %d\\n" % n)
out.flush()
out.close()
print("after")
"""


def test_buffered_stdout_buffers_even_where_python_is_told_not_to() -> None:
    """With PYTHONUNBUFFERED set (container images set it) sys.stdout.buffer is the raw file, a system call per
    write: the NDJSON writers use a buffer of their own, in order with what was printed before and after."""
    for unbuffered in ("1", ""):
        env = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": unbuffered}
        done = subprocess.run([sys.executable, "-c", BUFFERED], cwd=REPO, capture_output=True, text=True, timeout=60,
                              env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "before\n" + "".join(f"line {n}\n" for n in range(1000)) + "after\n"
