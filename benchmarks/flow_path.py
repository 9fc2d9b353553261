#!/usr/bin/env python3
"""Flow-path throughput vs tshark, whole ingest into Elasticsearch, peak memory - one run, one capture.

    python3 benchmarks/flow_path.py [--packets 1000000] [--keep DIR] [--no-es]

Builds a capture of at least --packets packets in a temporary directory - by default the shared test
traces (Zeek's and the attack captures) repeated with rewritten addresses; ``--source synthetic`` generates
complete TCP conversations, DNS-like UDP pairs, ICMP echo and VLAN tags instead - then measures on that file:
  1. flow path (read + decode + flow table + conn documents, no output) packets/s, on the native core and on
     the Python reference engine (collectors/flowpath.py),
  2. `tshark -q -z conv,tcp -z conv,udp -r FILE` packets/s (the peer),
  3. `secops ingest FILE --output es --no-deep` into a local Elasticsearch node (started here),
  4. `secops ingest FILE --output ndjson` with all metadata (protocol detection, the selected frames through
     tshark, every analyzer), NDJSON to /dev/null: the whole offline path against the peer,
and prints a table with the ratio and the peak RSS of each run (getrusage of that process alone; for the
whole ingest the Python process and its tshark child separately, CPU time of both added up).
With --ingest-only only rows 2 and 4 run (the deep-path target: >= 2x the peer, peak RSS < 300 MB).
``--repeat N`` runs the peer and the whole ingest N times, one after the other, and prints each round's ratio and
their median: on a machine whose speed drifts between runs (tshark alone took 7.7-10.7 s on one file in five
runs here), one round's ratio can be off by a fifth.
"""

from __future__ import annotations

import argparse
import compileall
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ETH_SRC, ETH_DST = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def _ip4(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, src, dst) + payload


def _tcp(sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 65535, 0, 0) + data


def _frame(ip: bytes, vlan: int | None = None) -> bytes:
    if vlan is None:
        return ETH_DST + ETH_SRC + b"\x08\x00" + ip
    return ETH_DST + ETH_SRC + struct.pack("!HH", 0x8100, vlan) + b"\x08\x00" + ip


def tcp_conversation(c: bytes, s: bytes, cport: int, sport: int, rng: random.Random, vlan: int | None) -> list[bytes]:
    isn_c, isn_s = rng.getrandbits(32), rng.getrandbits(32)
    out = [_ip4(c, s, 6, _tcp(cport, sport, isn_c, 0, 0x02)),
           _ip4(s, c, 6, _tcp(sport, cport, isn_s, isn_c + 1, 0x12)),
           _ip4(c, s, 6, _tcp(cport, sport, isn_c + 1, isn_s + 1, 0x10))]
    sc, ss = isn_c + 1, isn_s + 1
    for _ in range(rng.randint(2, 12)):
        req = bytes(rng.randint(40, 400))
        out.append(_ip4(c, s, 6, _tcp(cport, sport, sc, ss, 0x18, req)))
        sc += len(req)
        for _ in range(rng.randint(1, 3)):
            resp = bytes(rng.choice((0, 200, 1400, 1400)))
            out.append(_ip4(s, c, 6, _tcp(sport, cport, ss, sc, 0x18 if resp else 0x10, resp)))
            ss += len(resp)
        out.append(_ip4(c, s, 6, _tcp(cport, sport, sc, ss, 0x10)))
    out += [_ip4(c, s, 6, _tcp(cport, sport, sc, ss, 0x11)),
            _ip4(s, c, 6, _tcp(sport, cport, ss, sc + 1, 0x11)),
            _ip4(c, s, 6, _tcp(cport, sport, sc + 1, ss + 1, 0x10))]
    return [_frame(p, vlan) for p in out]


def udp_pair(c: bytes, s: bytes, cport: int, rng: random.Random) -> list[bytes]:
    q, r = bytes(rng.randint(30, 60)), bytes(rng.randint(60, 300))
    return [_frame(_ip4(c, s, 17, struct.pack("!HHHH", cport, 53, 8 + len(q), 0) + q)),
            _frame(_ip4(s, c, 17, struct.pack("!HHHH", 53, cport, 8 + len(r), 0) + r))]


def build_capture(path: Path, packets: int, seed: int = 7) -> int:
    """Write a pcap of at least ``packets`` packets; returns the exact count."""
    rng = random.Random(seed)
    n, ts = 0, 1_700_000_000.0
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        i = 0
        while n < packets:
            i += 1
            c = struct.pack("!BBH", 10, 1, i % 60000)
            s = struct.pack("!BBH", 10, 2, rng.randint(1, 200))
            kind = i % 10
            if kind < 7:
                frames = tcp_conversation(c, s, 1024 + i % 60000, rng.choice((80, 443, 22, 8080, 445)), rng,
                                          100 if kind == 6 else None)
            elif kind < 9:
                frames = udp_pair(c, s, 1024 + i % 60000, rng)
            else:
                payload = struct.pack("!BBHHH", 8, 0, 0, i & 0xFFFF, 1) + bytes(56)
                frames = [_frame(_ip4(c, s, 1, payload)), _frame(_ip4(s, c, 1, b"\0" + payload[1:]))]
            for fr in frames:
                ts += 0.0002
                sec = int(ts)
                f.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(fr), len(fr)))
                f.write(fr)
                n += 1
    return n


def _csum_adjust(csum: int, old: list[int], new: list[int]) -> int:
    """RFC 1624 incremental update of a ones' complement checksum for replaced 16-bit words."""
    total = ~csum & 0xFFFF
    for o, n in zip(old, new, strict=True):
        total += (~o & 0xFFFF) + n
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _rewrite_addresses(frame: bytes, x: bytes) -> bytes:
    """XOR the low 16 bits of both IPv4 addresses of an Ethernet frame with ``x``, keeping the IP header and
    TCP/UDP checksums valid (the L4 pseudo-header covers the addresses), so checksum verification still passes."""
    b = bytearray(frame)
    old = [int.from_bytes(b[28:30], "big"), int.from_bytes(b[32:34], "big")]
    for a in (28, 32):
        b[a] ^= x[0]
        b[a + 1] ^= x[1]
    new = [int.from_bytes(b[28:30], "big"), int.from_bytes(b[32:34], "big")]
    b[24:26] = _csum_adjust(int.from_bytes(b[24:26], "big"), old, new).to_bytes(2, "big")
    l4 = 14 + (b[14] & 0x0F) * 4
    first_fragment = not int.from_bytes(b[20:22], "big") & 0x1FFF
    at = {6: l4 + 16, 17: l4 + 6}.get(b[23])
    if first_fragment and at is not None and at + 2 <= len(b):
        csum = int.from_bytes(b[at:at + 2], "big")
        if csum or b[23] == 6:  # UDP checksum 0 means "not computed"
            csum = _csum_adjust(csum, old, new)
            b[at:at + 2] = (csum or (0xFFFF if b[23] == 17 else 0)).to_bytes(2, "big")
    return bytes(b)


GAP_CAP_NS = 100_000_000  # longest pause kept inside a trace: 1M packets then span about a day, not years


def build_from_traces(path: Path, packets: int) -> int:
    """Concatenate the real test traces (Zeek's and the attack captures, Ethernet ones) until ``packets``:
    each repetition XORs the low 16 bits of every IPv4 address (a bijection, so both directions of a flow
    stay paired; checksums are adjusted), so repetitions are new connections. Pauses longer than 100 ms are
    shortened to 100 ms, so the capture spans about a day like a real one (not hundreds of daily indices)."""
    from collectors.pcapio import read_capture
    from tests.support import TESTDATA

    frames: list[tuple[int, bytes]] = []
    rel = 0
    for trace in sorted([*TESTDATA.glob("zeek/traces/**/*.pcap*"), *TESTDATA.glob("attacks/**/*.pcap*")]):
        prev = None
        for ts, lt, buf, off, cap, _ in read_capture(trace):
            if lt != 1:
                continue
            rel += GAP_CAP_NS if prev is None else min(max(ts - prev, 0), GAP_CAP_NS)
            prev = ts
            frames.append((rel, bytes(buf[off:off + cap])))
    span = frames[-1][0] + 1_000_000_000
    n, rep, ts0 = 0, 0, 1_700_000_000 * 1_000_000_000
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
        while n < packets:
            rep += 1
            x = struct.pack("!H", rep & 0xFFFF)
            for rel, fr in frames:
                if len(fr) >= 34 and fr[12:14] == b"\x08\x00":
                    fr = _rewrite_addresses(fr, x)
                sec, ns = divmod(ts0 + rep * span + rel, 1_000_000_000)
                f.write(struct.pack("<IIII", sec, ns, len(fr), len(fr)))
                f.write(fr)
                n += 1
                if n >= packets:
                    break
    return n


def measure(cmd: list[str], env: dict | None = None) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds (user+sys), peak RSS (KiB) of that child alone (os.wait4), and its stdout."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        dt = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[:4])}... failed: {err.read().decode(errors='replace')[-400:]}")
        return dt, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, out.read().decode(errors="replace")


FLOW_PATH = """
import sys, resource, time
from collectors.ingest import Pipeline
n = [0]
def sink(doc): n[0] += 1
pipe = Pipeline(sink, deep=False, verify_checksums=%s, engine=%r)
t0, c0 = time.perf_counter(), time.process_time()
pipe.process_file(sys.argv[1]); st = pipe.finish()
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
print(st.packets, st.conns, dt, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run_flow_path(pcap: Path, checksums: bool, engine: str = "native") -> tuple[int, int, float, float, int]:
    code = FLOW_PATH % (checksums, engine)
    out = subprocess.run([sys.executable, "-c", code, str(pcap)], capture_output=True, text=True, cwd=REPO,
                         check=True).stdout.split()
    return int(out[0]), int(out[1]), float(out[2]), float(out[3]), int(out[4])


INGEST = """
import atexit, os, resource, sys
def report():
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    os.write(2, f"RUSAGE {me.ru_maxrss} {kids.ru_maxrss} {me.ru_utime + me.ru_stime}\\n".encode())
atexit.register(report)
_exit = os._exit
def reporting_exit(code):  # runtime.exit_now leaves without atexit
    report()
    _exit(code)
os._exit = reporting_exit
%s
"""
CLI = "from secops.cli import main\nmain()"
LEAN = "from collectors.ingest import main\nfrom secops.runtime import exit_now\nexit_now(main(sys.argv[1:]))"  # no CLI


def run_ingest(pcap: Path, packets: int, lean: bool = False) -> list[tuple[str, int, float, float, int]]:
    """Whole ingest with all metadata to NDJSON: wall, CPU of Python + tshark, peak RSS of each process."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-c", INGEST % LEAN, str(pcap)] if lean else \
        [sys.executable, "-c", INGEST % CLI, "ingest", str(pcap), "--output", "ndjson"]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        dt = time.perf_counter() - t0
        err.seek(0)
        text = err.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"ingest failed: {text[-400:]}")
    fields = text.rsplit("RUSAGE ", 1)[1].split()
    own, child, own_cpu = int(fields[0]), int(fields[1]), float(fields[2])
    cpu = usage.ru_utime + usage.ru_stime  # wait4 counts the waited-for tshark children too
    name = "python3 -m collectors.ingest (lean reader)" if lean else "secops ingest --output ndjson (all metadata)"
    return [(name, packets, dt, cpu, own),
            ("  of which the main process (flow path, output)", packets, dt, own_cpu, own),
            ("  of which tshark and the analyzers' process", packets, dt, cpu - own_cpu, child)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, help="build/keep the capture in this directory")
    ap.add_argument("--no-es", action="store_true", help="skip the Elasticsearch ingest run")
    ap.add_argument("--ingest-only", action="store_true",
                    help="only the peer and the whole ingest with all metadata (the deep-path target)")
    ap.add_argument("--source", choices=("traces", "synthetic"), default="traces",
                    help="traces: the real test captures repeated with rewritten addresses (tshark dissects real "
                         "protocols); synthetic: generated TCP/UDP/ICMP with zero payloads")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="rounds of the peer and the whole ingest, alternating; prints the median ratio")
    args = ap.parse_args()
    # bytecode as an installed package has it (pip compiles on install): with PYTHONDONTWRITEBYTECODE set and a
    # source tree just edited, every run would otherwise compile the changed modules again (0.1 s in each run)
    for package in ("secops", "collectors"):
        compileall.compile_dir(REPO / package, quiet=1)
    tmp = Path(tempfile.mkdtemp(prefix="secops-bench-")) if not args.keep else args.keep
    tmp.mkdir(parents=True, exist_ok=True)
    pcap = tmp / f"flows-{args.source}.pcap"
    rows = []
    try:
        if not pcap.exists():
            t0 = time.perf_counter()
            (build_from_traces if args.source == "traces" else build_capture)(pcap, args.packets)
            print(f"built {pcap} ({pcap.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f}s",
                  file=sys.stderr)
        packets, conns, dt, cpu, rss = run_flow_path(pcap, checksums=False)
        rows.append(("flow path (decode+flows+conn docs)", packets, dt, cpu, rss))
        if not args.ingest_only:
            _, _, dt_c, cpu_c, rss_c = run_flow_path(pcap, checksums=True)
            rows.append(("flow path, checksums verified", packets, dt_c, cpu_c, rss_c))
            _, _, dt_p, cpu_p, rss_p = run_flow_path(pcap, checksums=False, engine="python")
            rows.append(("flow path, python engine", packets, dt_p, cpu_p, rss_p))
        dt_t, cpu_t, rss_t, _ = measure(["tshark", "-q", "-z", "conv,tcp", "-z", "conv,udp", "-r", str(pcap)])
        rows.append(("tshark -q -z conv,tcp -z conv,udp", packets, dt_t, cpu_t, rss_t))
        ingest = run_ingest(pcap, packets)
        rows += ingest
        lean = run_ingest(pcap, packets, lean=True)
        rows.append(lean[0])
        if not args.no_es and not args.ingest_only:
            rows.append(run_es_ingest(pcap, tmp, packets))
        print(f"\ncapture: {packets} packets, {conns} connections, {pcap.stat().st_size / 1e6:.0f} MB, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
        print(f"{'run':<44}{'wall s':>8}{'pkts/s wall':>13}{'CPU s':>8}{'pkts/s CPU':>12}{'peak RSS MB':>13}")
        for name, n, secs, cpus, kib in rows:
            print(f"{name:<44}{secs:>8.1f}{n / secs:>13,.0f}{cpus:>8.1f}{n / cpus:>12,.0f}{kib / 1024:>13.0f}")
        print(f"\nflow path / tshark: {dt_t / dt:.2f}x by wall time, {cpu_t / cpu:.2f}x by CPU time (target >= 3x)")
        (_, _, dt_i, cpu_i, rss_i), _, (*_, rss_k) = ingest
        print(f"whole ingest with all metadata / tshark: {dt_t / dt_i:.2f}x by wall time, {cpu_t / cpu_i:.2f}x by "
              f"CPU time (target >= 2x); peak RSS {rss_i / 1024:.0f} MB (main process), {rss_k / 1024:.0f} MB (largest "
              f"child: tshark or the analyzers' process); "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"lean reader (same pipeline without the CLI's imports) / tshark: {dt_t / lean[0][2]:.2f}x by wall "
              f"time, {cpu_t / lean[0][3]:.2f}x by CPU time")
        if args.repeat > 1:
            print_rounds(pcap, packets, [(dt_t, dt_i)], args.repeat)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def print_rounds(pcap: Path, packets: int, rounds: list[tuple[float, float]], repeat: int) -> None:
    """More rounds of the peer and the whole ingest, one after the other; each round's ratio and the median."""
    while len(rounds) < repeat:
        peer = measure(["tshark", "-q", "-z", "conv,tcp", "-z", "conv,udp", "-r", str(pcap)])[0]
        rounds.append((peer, run_ingest(pcap, packets)[0][2]))
    ratios = [peer / ingest for peer, ingest in rounds]
    print(f"{repeat} rounds (tshark s / ingest s): " + ", ".join(f"{p:.1f}/{i:.1f}" for p, i in rounds))
    print(f"whole ingest / tshark by wall time: median {statistics.median(ratios):.2f}x (rounds "
          f"{min(ratios):.2f}x-{max(ratios):.2f}x)")


def run_es_ingest(pcap: Path, tmp: Path, packets: int) -> tuple[str, int, float, float, int]:
    from benchmarks.common import local_node
    from secops.config import load_settings
    from tests.support.services import write_config

    with local_node(heap="1g") as node:
        s = load_settings(None, elasticsearch={"hosts": [node.url]}, paths={"state_dir": str(tmp / "state")})
        cfg = write_config(s, tmp / "secops.yaml")
        env = dict(os.environ, SECOPS_CONFIG=str(cfg))
        dt, cpu, rss, _ = measure([sys.executable, "-c", "from secops.cli import main; main()", "ingest", str(pcap),
                                   "--output", "es", "--no-deep"], env=env)
        return ("secops ingest --output es (no deep path)", packets, dt, cpu, rss)


if __name__ == "__main__":
    sys.exit(main())
