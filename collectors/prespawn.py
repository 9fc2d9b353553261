"""Analyzer processes started before the command that needs them has finished starting.

``secops ingest`` spends about 0.2 s importing its command line (typer, the configuration's pydantic models) with one
core busy, and only then starts a large file's analyzer processes (``deep_process``), which spend about 0.16 s each
importing the analyzers. :func:`start` launches them first, on the idle core: each imports everything and then waits
for its name and tshark on standard input (``--wait``); :func:`take` hands one to ``ProcessRun``, which writes that
line and goes on as with a child it started itself. A child never taken reads the end of its input when this
process exits, and exits too. Only this module's imports run before the launch (it must stay light).
"""

from __future__ import annotations

import os
import subprocess
import sys

# offline ingest: capture files from this size get their analyzers processes of their own
# (SECOPS_DEEP_PROCESS_MIN_BYTES overrides it: 0 gives every file its analyzer processes, as the tests of that path do)
DEEP_PROCESS_MIN_BYTES = int(os.environ.get("SECOPS_DEEP_PROCESS_MIN_BYTES", 16 << 20))
DEEP_PROCESSES = 2  # analyzer processes per large file (measured on 2 cores: see README, "Whole ingest")
WAIT = "--wait"  # the child's first argument: name and tshark come on standard input

_ready: list[subprocess.Popen] = []


def child_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "collectors.protocols.deep_process", *args]


def spawn(*args: str) -> subprocess.Popen:
    """An analyzer process with pipes to its standard streams (OSError if it cannot start)."""
    return subprocess.Popen(child_command(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=1 << 16)


def start(count: int = DEEP_PROCESSES) -> None:
    """``count`` waiting analyzer processes (fewer if the system refuses some: ``ProcessRun`` starts its own)."""
    for _ in range(count):
        try:
            _ready.append(spawn(WAIT))
        except OSError:
            return


def take() -> subprocess.Popen | None:
    """A waiting analyzer process still alive, or None."""
    while _ready:
        proc = _ready.pop(0)
        if proc.poll() is None:
            return proc
    return None


def wanted(args: list[str]) -> bool:
    """Whether ``secops ingest ARGS`` will start analyzer processes: the protocol metadata is on and a file named
    on the command line is at least ``DEEP_PROCESS_MIN_BYTES`` long."""
    if "--no-deep" in args:
        return False
    for arg in args:
        if not arg.startswith("-"):
            try:
                if os.stat(arg).st_size >= DEEP_PROCESS_MIN_BYTES:
                    return True
            except (OSError, ValueError):
                continue
    return False
