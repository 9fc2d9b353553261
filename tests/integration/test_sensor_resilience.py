"""The live sensor under trouble: a backlog builds and drains while it runs (every packet processed, the
connections equal an offline ingest of the same traffic); a killed worker or capture process is reported,
restarted, and capture goes on; over its disk budget it deletes unprocessed chunks and counts their packets."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest

from benchmarks.live_capture import Veth, build_capture, conn_key, offline_conns
from secops.config import load_settings
from tests.support.netns import Lab
from tests.support.sensor import TCP_SINK, SensorProcess
from tests.support.services import write_config

pytestmark = [pytest.mark.integration, pytest.mark.root]


def sensor_config(tmp_path: Path, **sensor: object) -> Path:
    s = load_settings(None, paths={"state_dir": str(tmp_path / "state"), "cache_dir": str(tmp_path / "cache")},
                      sensor={"stats_seconds": 0.5, **sensor})
    return write_config(s, tmp_path / "secops.yaml")


def flow_workers(sensor: SensorProcess) -> list[int]:
    """The sensor's worker processes (its Python children; dumpcap children are left alone)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == sensor.proc.pid and b"dumpcap" not in cmdline:
            pids.append(int(stat.parent.name))
    assert pids, "no worker process found"
    return pids


@contextmanager
def workers_paused(sensor: SensorProcess):
    """Stop the flow workers (SIGSTOP) while traffic arrives: processing falls behind capture on any machine
    (the selective deep path keeps up with this burst on an idle one), then let them drain (SIGCONT)."""
    pids = flow_workers(sensor)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    pcap = tmp_path_factory.mktemp("burst") / "burst.pcap"
    n, _ = build_capture(pcap, 120_000)
    return pcap, n


def test_backlog_builds_and_drains_while_running(tmp_path: Path, burst: tuple[Path, int]) -> None:
    pcap, n = burst
    with Veth() as link:
        sensor = SensorProcess(sensor_config(tmp_path), "-i", link.capture, "-o", "ndjson", "--observer", "t")
        try:
            sensor.wait_ready()
            with workers_paused(sensor):
                link.replay(pcap, 40_000)  # 3 s of traffic while no worker processes
                time.sleep(2)
            sensor.wait_for(lambda: any(s["packets_captured"] == n and s["backlog_chunks"] == 0 and
                                        s["packets_processed"] == n for s in sensor.stats()), 300,
                            "the backlog to drain")
            assert sensor.proc.poll() is None, "drained while running, not at shutdown"
        finally:
            assert sensor.stop() == 0, sensor.err
    stats = sensor.stats()
    assert max(s["backlog_chunks"] for s in stats) >= 2 and max(s["lag_seconds"] for s in stats) > 1.0, \
        "the workers never fell behind: no backlog was tested"
    final = stats[-1]
    assert final["packets_dropped"] == 0 and final["chunks_damaged"] == 0 and final["chunks_failed"] == 0
    got = Counter(map(conn_key, sensor.dataset("secops.conn")))
    assert got == Counter(map(conn_key, offline_conns(pcap)))


def test_disk_budget_cuts_capture_and_counts_it(tmp_path: Path, burst: tuple[Path, int]) -> None:
    pcap, n = burst
    with Veth() as link:
        sensor = SensorProcess(sensor_config(tmp_path, pcap_budget_mb=2), "-i", link.capture, "-o", "ndjson")
        try:
            sensor.wait_ready()
            with workers_paused(sensor):
                link.replay(pcap, 40_000)
                time.sleep(2)
            time.sleep(2)
        finally:
            assert sensor.stop() == 0, sensor.err
    final = sensor.stats()[-1]
    assert final["packets_captured"] == n and final["packets_dropped_kernel"] == 0
    assert final["chunks_dropped"] > 0 and final["packets_dropped_disk"] > 0
    assert final["packets_processed"] + final["packets_dropped_disk"] == n
    assert "over its disk budget" in sensor.err
    spool = tmp_path / "state" / "pcap"
    assert sum(p.stat().st_size for p in spool.rglob("*.pcap")) <= 2 * 1024 * 1024 + 64 * 1024


CLIENT = textwrap.dedent("""
    import socket, sys, time
    for i in range(int(sys.argv[2])):
        c = socket.create_connection((sys.argv[1], 9000), timeout=5)
        c.sendall(b"q" * (100 + i))
        c.shutdown(socket.SHUT_WR)
        while c.recv(65536):
            pass
        c.close()
        time.sleep(0.05)
""")


def test_killed_worker_and_capture_are_reported_and_capture_goes_on(tmp_path: Path) -> None:
    with Lab() as lab:
        srv, cli = lab.add_host("srv"), lab.add_host("cli")
        srv.popen(sys.executable, "-c", TCP_SINK, srv.ip, "9000", "300")
        sensor = SensorProcess(sensor_config(tmp_path), "-i", lab.bridge, "-o", "ndjson", "--no-deep")

        def conns() -> list[dict]:
            return [d for d in sensor.dataset("secops.conn") if d["destination"].get("port") == 9000]
        try:
            sensor.wait_ready()
            cli.run(sys.executable, "-c", CLIENT, srv.ip, "5", timeout=60)
            sensor.wait_for(lambda: len(conns()) == 5, 30, "the first connections")
            workers = sensor.children("spawn_main")
            assert len(workers) == 2, workers
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
            sensor.wait_for(lambda: "restarted" in sensor.err and len(sensor.children("spawn_main")) == 2, 60,
                            "the workers to be restarted")
            captures = sensor.children("dumpcap")
            assert len(captures) == 2, captures
            os.kill(captures[0], signal.SIGKILL)
            sensor.wait_for(lambda: "restarting it" in sensor.err and len(sensor.children("dumpcap")) == 2, 30,
                            "the capture process to be restarted")
            time.sleep(1)
            cli.run(sys.executable, "-c", CLIENT, srv.ip, "20", timeout=60)
            sensor.wait_for(lambda: len(conns()) == 25, 40, "the connections made after the crashes")
        finally:
            assert sensor.stop() == 0, sensor.err
    final = sensor.stats()[-1]
    assert final["worker_restarts"] == 2 and final["capture_restarts"] == 1
    assert "worker 0 died" in sensor.err and "worker 1 died" in sensor.err
    assert sorted(d["secops"]["conn"]["orig_bytes"] for d in conns()) == sorted([*range(100, 105), *range(100, 120)])
    assert all(d["secops"]["conn"]["state"] == "SF" for d in conns())
