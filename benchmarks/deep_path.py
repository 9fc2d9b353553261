#!/usr/bin/env python3
"""Deep-path (tshark protocol metadata) throughput vs plain tshark, and tshark output formats.

    python3 benchmarks/deep_path.py [--packets 150000] [--pyshark-packets 5000]

Concatenates the labelled attack/ICS captures of ../shared/testdata/attacks (SMB/DCE-RPC, HTTP,
DNS tunnel, FTP, DNP3, Modbus, S7comm) with mergecap until at least --packets packets, then
measures on that same file:
  1. extract_metadata (one tshark -T ek run + the Python protocol modules) packets/s,
  2. the peer: `tshark -n -r FILE` printing its one-line summaries (full dissection),
  3. the same tshark invocation as 1. with -T fields and with -T json (full trees), and pyshark
     on a --pyshark-packets prefix: why the deep path reads EK.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import print_table  # noqa: E402
from collectors.protocols import extract_metadata, tshark_command  # noqa: E402
from tests.support import TESTDATA  # noqa: E402

SOURCES = ["lateral-movement", "dns-tunnel", "bruteforce", "ics/dnp3", "ics/s7comm", "ics/modbus", "web"]


def build_capture(workdir: Path, packets: int) -> tuple[Path, int]:
    parts = sorted(p for d in SOURCES for p in (TESTDATA / "attacks" / d).glob("*.pcap*"))
    one = workdir / "one.pcapng"
    subprocess.run(["mergecap", "-a", "-w", str(one), *map(str, parts)], check=True)
    per = count_packets(one)
    big = workdir / "deep.pcapng"
    subprocess.run(["mergecap", "-a", "-w", str(big), *[str(one)] * max(1, -(-packets // per))], check=True)
    return big, count_packets(big)


def count_packets(path: Path) -> int:
    out = subprocess.run(["capinfos", "-c", "-M", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1].split()[-1])


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def pyshark_rate(path: Path, limit: int) -> tuple[float, int]:
    import pyshark  # the library DESIGN names; measured, not used by the deep path

    cmd = tshark_command(path)
    display_filter = cmd[cmd.index("-Y") + 1]
    cap = pyshark.FileCapture(str(path), display_filter=display_filter, keep_packets=False)
    start, n = time.perf_counter(), 0
    try:
        for frame_no, _pkt in enumerate(cap, 1):
            n = frame_no
            if frame_no >= limit:
                break
    finally:
        cap.close()
    elapsed = time.perf_counter() - start
    return elapsed, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=150_000)
    ap.add_argument("--pyshark-packets", type=int, default=5_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="secops-deep-") as tmp:
        big, total = build_capture(Path(tmp), args.packets)
        start = time.perf_counter()
        docs = sum(1 for _ in extract_metadata(big))
        ours = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peer = timed(["tshark", "-n", "-r", str(big)])
        cmd = tshark_command(big)
        i = cmd.index("ek")
        fields = timed([*cmd[:i], "fields", "-E", "occurrence=a", *cmd[i + 1:]])
        ek_only = timed(cmd)
        json_cmd = [c for j, c in enumerate(cmd) if not (c == "-e" or (j > 0 and cmd[j - 1] == "-e"))]
        json_cmd[json_cmd.index("ek")] = "json"
        as_json = timed(json_cmd)
        py_s, py_n = pyshark_rate(big, args.pyshark_packets)
    rows = [
        ["extract_metadata (tshark -T ek + modules)", total, ours, total / ours,
         f"{docs} docs, peak RSS {peak_mb:.0f} MB"],
        ["peer: tshark -n -r FILE (summary lines)", total, peer, total / peer, f"deep path at {peer / ours:.2f}x peer"],
        ["tshark same filter, -T ek -e", total, ek_only, total / ek_only, ""],
        ["tshark same filter, -T fields -e", total, fields, total / fields, ""],
        ["tshark same filter, -T json (full trees)", total, as_json, total / as_json, ""],
        ["pyshark same filter (prefix)", py_n, py_s, py_n / py_s if py_s else 0.0, "matching packets only"],
    ]
    print_table("Deep path throughput", ["run", "packets", "seconds", "packets/s", "note"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
