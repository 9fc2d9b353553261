#!/usr/bin/env python3
"""Live capture: `secops sensor run` against plain `dumpcap`, same traffic, same run.

    python3 benchmarks/live_capture.py [--packets 300000] [--rates 20000,50000,100000,200000,400000]
                                       [--sustain 60] [--keep DIR]

Builds a capture of --packets packets of about 400 bytes (complete TCP conversations and DNS-like UDP pairs
between 198.19.0.0/16 addresses, generated as in benchmarks/flow_path.py), creates a network namespace joined
to the root namespace by a veth (no addresses, IPv6 off: nothing but the replay crosses it, and it goes
nowhere), then for every rate replays the capture with `tcpreplay --pps=R` from the namespace twice:
  1. captured by plain `dumpcap -P -B 64 -w FILE` (the peer; the sensor's dumpcaps get the same -B each),
  2. captured by `python3 -m secops sensor run --output ndjson` with its default configuration (one worker
     and one capture process per core, 1 s chunks, the deep path on),
and prints packets captured / lost by each, the rate where each starts to lose, how long the sensor took to
drain its backlog after the replay, and whether the connections it shipped equal an offline ingest of
dumpcap's file (Community ID, packets, bytes, payload bytes, state, history per connection).
Then it replays the capture in a loop for --sustain seconds above what the workers can process and reports
the sensor's processing rate with metadata on over that window (packets processed / seconds, read from its
secops.sensor documents), with the backlog it built and how long that backlog took to drain.

Needs root (namespaces), tcpreplay and dumpcap. Report `uptime` next to the figures: the 2 cores are shared.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import print_table  # noqa: E402
from benchmarks.flow_path import tcp_conversation, udp_pair  # noqa: E402
from collectors.ingest import Pipeline  # noqa: E402
from collectors.pcap_spool import NS, ChunkWriter, count_packets  # noqa: E402


def build_capture(path: Path, packets: int, seed: int = 7) -> tuple[int, float]:
    """Whole conversations of ~400-byte packets in 198.19.0.0/16; returns (packets, mean frame size)."""
    rng = random.Random(seed)
    n = total = i = 0
    ts = 1_700_000_000 * NS
    writer = ChunkWriter(path)
    try:
        while n < packets:
            i += 1
            c = struct.pack("!BBH", 198, 19, i % 60000)
            s = struct.pack("!BBBB", 198, 19, 250, rng.randint(1, 200))
            if i % 10 < 8:
                frames = tcp_conversation(c, s, 1024 + i % 60000, rng.choice((80, 443, 22, 8080, 445)), rng, None)
            else:
                frames = udp_pair(c, s, 1024 + i % 60000, rng)
            for fr in frames:
                ts += 200_000
                writer.write(ts, fr)
                total += len(fr)
            n += len(frames)
    finally:
        writer.close()
    return n, total / n


def sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True)


class Veth:
    """A namespace with one end of a veth; the other end (``self.capture``) stays in the root namespace."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000:05d}"
        self.ns, self.send, self.capture = f"lcb{tag}", f"lcs{tag}", f"lcr{tag}"
        self.failed = 0
        self.achieved = "?"

    def __enter__(self) -> Veth:
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.capture, "type", "veth", "peer", "name", self.send)
        sh("ip", "link", "set", self.send, "netns", self.ns)
        sh("sysctl", "-qw", f"net.ipv6.conf.{self.capture}.disable_ipv6=1")
        sh("ip", "link", "set", self.capture, "up")
        sh("ip", "netns", "exec", self.ns, "sysctl", "-qw", f"net.ipv6.conf.{self.send}.disable_ipv6=1")
        sh("ip", "netns", "exec", self.ns, "ip", "link", "set", self.send, "up")
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "link", "del", self.capture], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], check=False, capture_output=True)

    def replay(self, pcap: Path, pps: int, loops: int = 1) -> str:
        """tcpreplay's "Actual: ..." line; a packet it failed to send counts against the sender, not a capture."""
        res = subprocess.run(["ip", "netns", "exec", self.ns, "tcpreplay", "-q", "-i", self.send, f"--pps={pps}",
                              f"--loop={loops}", str(pcap)], capture_output=True, text=True, check=True)
        self.failed = sum(int(line.split(":")[1]) for line in res.stdout.splitlines() if "Failed packets" in line)
        return next((line.strip() for line in res.stdout.splitlines() if "Actual" in line), res.stdout.strip())


def plain_dumpcap(veth: Veth, pcap: Path, pps: int, out: Path) -> tuple[int, int]:
    """(packets in dumpcap's file, drops dumpcap reported)."""
    proc = subprocess.Popen(["dumpcap", "-i", veth.capture, "-P", "-B", "64", "-w", str(out)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        if out.exists():
            break
        time.sleep(0.05)
    time.sleep(0.5)
    veth.achieved = achieved_rate(veth.replay(pcap, pps), count_packets(pcap))
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    dropped = 0
    for line in err.splitlines():  # "Packets received/dropped on interface 'x': 300000/0 (pcap:0/...)"
        if "received/dropped" in line:
            dropped = int(line.split(":")[1].split("/")[1].split()[0])
    return count_packets(out), dropped


class SensorRun:
    """`secops sensor run -o ndjson` in a subprocess; documents are collected as they stream out."""

    def __init__(self, veth: Veth, work: Path, tag: str) -> None:
        state = work / f"state-{tag}"
        cfg = work / f"secops-{tag}.yaml"
        cfg.write_text(f"paths:\n  state_dir: {state}\nsensor:\n  stats_seconds: 1\n")
        env = dict(os.environ, SECOPS_CONFIG=str(cfg), PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen([sys.executable, "-m", "secops", "sensor", "run", "-i", veth.capture,
                                      "-o", "ndjson", "--observer", "bench"], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.conns: list[dict] = []
        self.stats: list[tuple[float, dict]] = []
        self.stderr = b""
        self._out = threading.Thread(target=self._read, daemon=True)
        self._out.start()
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._err.start()
        deadline = time.monotonic() + 60
        while not self.stats:  # first secops.sensor document: the captures run
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sensor did not start: {self.stderr.decode(errors='replace')}")
            time.sleep(0.1)

    def _read(self) -> None:
        for line in self.proc.stdout:
            doc = orjson.loads(line)
            ds = doc["event"]["dataset"]
            if ds == "secops.conn":
                self.conns.append(doc)
            elif ds == "secops.sensor":
                self.stats.append((time.monotonic(), doc["secops"]["sensor"]))

    def _read_err(self) -> None:
        self.stderr = self.proc.stderr.read()

    def latest(self) -> dict:
        return self.stats[-1][1]

    def stop(self, max_drain: float = 1800) -> dict:
        """SIGTERM: the sensor processes its backlog; after ``max_drain`` s a second one abandons the rest."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=max_drain)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)
        self._out.join()
        self._err.join()
        if self.proc.returncode != 0:
            raise RuntimeError(f"sensor failed: {self.stderr.decode(errors='replace')[-2000:]}")
        return self.latest()


def achieved_rate(actual: str, packets: int) -> str:
    """tcpreplay's "Actual: N packets (B bytes) sent in S seconds" as packets per second."""
    try:
        seconds = float(actual.split(" sent in ")[1].split()[0])
    except (IndexError, ValueError):
        return "?"
    return f"{packets / seconds:,.0f}"


def conn_key(d: dict) -> tuple:
    c = d["secops"]["conn"]
    return (d["network"]["community_id"], d["source"]["packets"], d["destination"]["packets"], d["source"]["bytes"],
            d["destination"]["bytes"], c["orig_bytes"], c["resp_bytes"], c["state"], c.get("history"))


def offline_conns(pcap: Path) -> list[dict]:
    docs: list[dict] = []
    pipe = Pipeline(lambda d: docs.append(d) if d["event"]["dataset"] == "secops.conn" else None, deep=False)
    pipe.process_file(pcap)
    pipe.finish()
    return docs


def compare(sensor: list[dict], offline: list[dict]) -> str:
    a, b = Counter(map(conn_key, sensor)), Counter(map(conn_key, offline))
    if a == b:
        return f"equal ({len(offline)})"
    return f"DIFFER: {sum((a - b).values())} only sensor, {sum((b - a).values())} only offline of {len(offline)}"


def first_loss(rows: list[tuple[int, int]]) -> str:
    lost = [rate for rate, n in rows if n]
    return f"{min(lost):,} pkt/s" if lost else "none up to the highest rate"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=300_000)
    ap.add_argument("--rates", default="20000,50000,100000,200000,400000")
    ap.add_argument("--sustain", type=float, default=60.0, help="seconds of the sustained-processing run (0: skip)")
    ap.add_argument("--sustain-pps", type=int, default=50_000, help="offered rate: above what the workers process")
    ap.add_argument("--keep", type=Path)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    for tool in ("tcpreplay", "dumpcap"):
        if not shutil.which(tool):
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="secops-live-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        pcap = work / "replay.pcap"
        n, mean = build_capture(pcap, args.packets)
        print(f"capture: {n:,} packets, {mean:.0f} bytes mean; load before: {os.getloadavg()[0]:.2f}")
        rows, dump_loss, sensor_loss = [], [], []
        with Veth() as veth:
            for rate in (int(r) for r in args.rates.split(",")):
                dumped = work / f"dumpcap-{rate}.pcap"
                d_n, d_drop = plain_dumpcap(veth, pcap, rate, dumped)
                run = SensorRun(veth, work, str(rate))
                time.sleep(0.5)
                achieved = achieved_rate(veth.replay(pcap, rate), n)
                replay_end = time.monotonic()
                time.sleep(1.5)
                final = run.stop()
                drained = run.stats[-1][0] - replay_end
                same = compare(run.conns, offline_conns(dumped)) if d_n == n else "dumpcap lost packets"
                s_lost = n - final["packets_captured"]
                rows.append([f"{rate:,}", f"{veth.achieved} / {achieved}", f"{d_n:,}",
                             f"{n - d_n:,} ({d_drop:,} kernel)",
                             f"{final['packets_captured']:,}",
                             f"{s_lost:,} ({final['packets_dropped_kernel']:,} kernel, "
                             f"{final['packets_dropped_disk']:,} disk)",
                             f"{final['packets_processed']:,}", f"{drained:.1f}", same,
                             f"{os.getloadavg()[0]:.2f}"])
                dump_loss.append((rate, n - d_n))
                sensor_loss.append((rate, s_lost))
                dumped.unlink()
            print_table(f"Live capture of {n:,} packets replayed into a veth (2 cores shared with other work)",
                        ["pkt/s", "sent at (dumpcap / sensor run)", "dumpcap captured", "dumpcap lost",
                         "sensor captured", "sensor lost", "sensor processed", "drain s",
                         "sensor conns vs offline(dumpcap file)", "load 1m"], rows)
            print(f"dumpcap starts to lose at: {first_loss(dump_loss)}; "
                  f"the sensor starts to lose at: {first_loss(sensor_loss)}")
            if args.sustain > 0:
                sustained(veth, pcap, n, work, args.sustain, args.sustain_pps)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def sustained(veth: Veth, pcap: Path, n: int, work: Path, seconds: float, pps: int) -> None:
    """Offer more than the workers process for ``seconds``; the processing rate is what they kept up."""
    loops = max(1, int(seconds * pps / n + 0.999))
    run = SensorRun(veth, work, "sustained")
    start = time.monotonic()
    base = run.latest()["packets_processed"]
    replay = threading.Thread(target=veth.replay, args=(pcap, pps, loops), daemon=True)
    sent = n * loops
    replay.start()
    time.sleep(seconds)
    window_end = time.monotonic()
    at_end = run.latest()
    processed = at_end["packets_processed"] - base
    replay.join()
    time.sleep(1.5)  # the last packets leave the kernel ring (libpcap's 250 ms block timeout) before capture stops
    replay_end = time.monotonic()
    at_replay_end = run.latest()["packets_processed"]
    final = run.stop(max_drain=600)
    drained = run.stats[-1][0] - replay_end
    rate = processed / (window_end - start)
    drain_rate = (final["packets_processed"] - at_replay_end) / drained if drained > 0 else 0.0
    print_table(f"Sustained processing, metadata on: {pps:,} pkt/s offered for {seconds:.0f} s "
                f"({loops} loops of the capture)",
                ["sent (tcpreplay failures)", "processed in window", "pkt/s processed (window)",
                 "backlog at window end (chunks)", "lag s at end", "captured", "lost (kernel/disk)", "processed",
                 "drain s after replay", "pkt/s processed (drain)", "load 1m"],
                [[f"{sent - veth.failed:,} ({veth.failed:,})", f"{processed:,}", f"{rate:,.0f}",
                  str(at_end["backlog_chunks"]), f"{at_end['lag_seconds']:.1f}",
                  f"{final['packets_captured']:,}",
                  f"{final['packets_dropped_kernel']:,}/{final['packets_dropped_disk']:,}",
                  f"{final['packets_processed']:,}", f"{drained:.1f}", f"{drain_rate:,.0f}",
                  f"{os.getloadavg()[0]:.2f}"]])
    print("During the window tcpreplay's pacing loop holds a core; the drain rate is the workers' alone.")


if __name__ == "__main__":
    raise SystemExit(main())
