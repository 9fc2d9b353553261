"""Analyzer processes started before ``secops ingest`` has read its configuration.

The command's first 0.3-0.45 s (importing the command line, reading the configuration) run on one core while the other
idles; the analyzer processes (``deep_process``) then spent as long again starting: their imports and, in each, tshark's
start (0.21 s of CPU, dissector registration). When the command line names a capture file large enough for analyzer
processes, :func:`prestart` starts them at once, and each starts tshark with the configuration's default path
(``DEFAULT_TSHARK``) while it waits to be told its run's name and tshark (``collectors.protocols.deep_process.serve``):
that work moves onto the idle core. This module imports nothing of the protocol modules (76 ms), so the spares start
about 0.1 s into the command. A spare told another tshark ends the one it started and starts that one.

Spares nobody takes (a small file, a command that fails before reading) end when their input closes: at
:func:`release`, or when this process exits, since the pipe closes with it. Nothing here reads the configuration or
imports the ingest pipeline.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterable

# offline ingest: capture files from this size get their analyzers processes of their own (deep_process)
# (SECOPS_DEEP_PROCESS_MIN_BYTES overrides it: 0 gives every file its analyzer processes, as the tests of that path do)
DEEP_PROCESS_MIN_BYTES: int | None = int(os.environ.get("SECOPS_DEEP_PROCESS_MIN_BYTES", 16 << 20))
DEEP_PROCESSES = 2  # analyzer processes per large file (measured on 2 cores: see README, "Whole ingest")
DEFAULT_TSHARK = "tshark"  # secops.config's sensor.tshark_path default (tests/unit/test_deep_process.py holds it)

_spares: list[subprocess.Popen] = []


def spawn() -> subprocess.Popen:
    """A new analyzer process, waiting for its first line (``deep_process.first_line``)."""
    return subprocess.Popen([sys.executable, "-m", "collectors.protocols.deep_process"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=1 << 16)


def prestart(words: Iterable[str]) -> None:
    """Start ``DEEP_PROCESSES`` spares when one of ``words`` (a command line's arguments) names a regular file of at
    least ``DEEP_PROCESS_MIN_BYTES``; nothing otherwise, or when they cannot start (the run starts its own then)."""
    if DEEP_PROCESS_MIN_BYTES is None or _spares:
        return
    for word in words:
        try:
            info = os.stat(word)
        except (OSError, ValueError):
            continue
        if stat.S_ISREG(info.st_mode) and info.st_size >= DEEP_PROCESS_MIN_BYTES:
            try:
                for _ in range(DEEP_PROCESSES):
                    _spares.append(spawn())
            except OSError:
                release()
            return


def take() -> subprocess.Popen | None:
    """A spare still running, oldest first; None when there is none."""
    while _spares:
        proc = _spares.pop(0)
        if proc.poll() is None:
            return proc
        _close(proc)
    return None


def release() -> None:
    """End the spares nobody took: their input closes before their first line, so they stop their tshark and exit."""
    while _spares:
        _close(_spares.pop())


def _close(proc: subprocess.Popen) -> None:
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
