#!/usr/bin/env python3
"""Deep path with DNS read natively against the same deep path with tshark reading every selected frame.

    python3 benchmarks/dns_native.py FILE [FILE ...]

For each capture, the ingest pipeline runs three times in this process (analyzers in a thread, so the process's
CPU is the flow path, the native DNS reader and the analyzers; its children's CPU is tshark): without
``collectors.protocols.stream.NATIVE`` (the peer: tshark reads every selected frame), then with it (DNS/mDNS/LLMNR
over UDP read here, not written to tshark) once by the Python reference (``dns_udp.RUST = False``) and once by the
Rust engine (``collectors._rs``, when built). Prints wall time, process CPU and tshark CPU of each, the ratios,
and whether the runs shipped the same documents (ids included).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import print_table  # noqa: E402
from collectors.ingest import Pipeline  # noqa: E402
from collectors.protocols import dns_udp, stream  # noqa: E402


def run(path: Path, native: bool, rust: bool = False) -> tuple[float, float, float, list[str], int]:
    """(wall s, process CPU s, tshark CPU s, sorted document ids, DNS frames read natively)."""
    stream.NATIVE = native
    dns_udp.RUST = rust
    taken = [0]
    original = stream.TsharkStdinRun.end_input

    def end_input(self: stream.TsharkStdinRun) -> None:
        if self.native is not None:
            taken[0] += self.native.frames
        original(self)

    stream.TsharkStdinRun.end_input = end_input  # type: ignore[method-assign]
    ids: list[str] = []
    pipe = Pipeline(lambda doc: ids.append(doc["_id"]))
    pipe.deep_process_min_bytes = 1 << 62  # analyzers in a thread: children's CPU is tshark alone
    before_self = resource.getrusage(resource.RUSAGE_SELF)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        pipe.process_file(path)
        pipe.finish()
    finally:
        stream.TsharkStdinRun.end_input = original  # type: ignore[method-assign]
    wall = time.perf_counter() - started
    after_self = resource.getrusage(resource.RUSAGE_SELF)
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after_self.ru_utime + after_self.ru_stime) - (before_self.ru_utime + before_self.ru_stime)
    tshark = (after_children.ru_utime + after_children.ru_stime) - (before_children.ru_utime +
                                                                    before_children.ru_stime)
    return wall, cpu, tshark, sorted(ids), taken[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("captures", nargs="+", type=Path)
    args = parser.parse_args()
    rows = []
    for path in args.captures:
        peer = run(path, native=False)
        rows.append([path.name, "tshark reads all", peer[0], peer[1], peer[2], len(peer[3]), "-"])
        runs = [("DNS native, Python", False)] + ([("DNS native, Rust", True)] if dns_udp.ENGINE else [])
        for label, rust in runs:
            mine = run(path, native=True, rust=rust)
            rows.append([path.name, label, mine[0], mine[1], mine[2], len(mine[3]), mine[4]])
            rows.append([path.name, "  ratio to the peer", mine[0] / peer[0], mine[1] / peer[1],
                         mine[2] / max(peer[2], 1e-9), "same" if mine[3] == peer[3] else "DIFFERENT", ""])
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print_table(f"deep path, DNS native vs tshark (load {' '.join(load)})",
                ["capture", "run", "wall s", "process CPU s", "tshark CPU s", "documents", "DNS frames native"],
                [[c if not isinstance(c, float) else round(c, 3) for c in row] for row in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
