"""Process settings for the processes that read traffic (ingest, sensor workers, the analyzer processes) and
the CLI that starts them."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import logging
import os
import sys
from typing import IO, BinaryIO

# allocations of container objects between collections of the youngest generation (CPython's default is 700)
YOUNG_GC_THRESHOLD = 50_000


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD_BYTES = 32 << 20  # blocks below this come from the heap, not a fresh mapping each
TRIM_THRESHOLD_BYTES = 256 << 20  # free heap kept before it is given back to the kernel
TOP_PAD_BYTES = 64 << 20


def tune_allocator() -> None:
    """Fewer page faults: reading captures allocates and frees megabyte buffers (pipe reads, joined blocks) all the
    time, and glibc served many of them with fresh mappings or returned its heap top to the kernel between them, so
    each came back as zeroed pages faulted in one by one. With larger thresholds an analyzer process replaying its
    share of the 1M-packet benchmark used 1.21-1.25 s of CPU instead of 1.31-1.44 s. Peak memory is unchanged (what
    is kept is what was in use); nothing happens off glibc."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    for param, value in ((M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
                         (M_TOP_PAD, TOP_PAD_BYTES)):
        mallopt(param, value)


def tune_gc() -> None:
    """Fewer cyclic garbage collections. Reading traffic allocates millions of short-lived, acyclic containers
    (documents, packets, records): with the default threshold the collector ran every 700 of them and took 7% of
    the analyzers' samples; at 50,000 the in-process ingest of the 300k-packet slice used 8% less CPU. Objects alive
    at this point (modules, tables) are frozen out of every later scan. Cycles are still collected, just later."""
    gc.freeze()
    gc.set_threshold(YOUNG_GC_THRESHOLD, 20, 20)


def tune_process() -> None:
    """The allocator's and the garbage collector's settings for a process that reads traffic."""
    tune_allocator()
    tune_gc()


def buffered_stdout(size: int = 1 << 16) -> BinaryIO:
    """Standard output as a binary stream of its own, buffered ``size`` bytes. With PYTHONUNBUFFERED set (as most
    container images set it), ``sys.stdout.buffer`` is the raw file: one write(2) per call, two per NDJSON document
    (about 180k system calls on the 1M-packet benchmark, each giving up the interpreter lock). What was already
    written through ``sys.stdout`` is flushed first; the caller flushes this one (it leaves the descriptor open)."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    return open(sys.stdout.fileno(), "wb", buffering=size, closefd=False)


PIPE_BYTES = 1 << 20  # Linux's default ceiling for an unprivileged process (/proc/sys/fs/pipe-max-size)


def widen_pipe(stream: IO[bytes] | None, size: int = PIPE_BYTES) -> None:
    """Lets the pipe behind ``stream`` hold ``size`` bytes (64 KiB by default). Between the ingest's processes a
    writer blocked on a full pipe waits for a reader thread that must first take its interpreter's lock (up to 5 ms
    each time): with the analyzer processes' and tshark's pipes at 64 KiB, 1.3-1.8 of the 1M-packet ingest's
    core-seconds were idle, 0.6-0.8 with them at 1 MiB. Where the kernel refuses, the pipe stays as it was."""
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):
        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, size)


def exit_now(code: int) -> None:
    """End a traffic-reading process once its work is written: logs and standard streams flushed, then out without
    tearing the heap down (flow tables, caches, engines). That teardown took 0.1-0.2 s per process at the end of the
    1M-packet ingest, on its critical path (the parent waits for its analyzer processes' exit). Only where nothing is
    left to release: files are closed and temporary files removed before."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            stream.flush()
    os._exit(code)
