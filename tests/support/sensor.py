"""`secops sensor run` as a subprocess for live tests: its stderr lines and (with ``-o ndjson``) its documents
are collected while it runs; its worker and capture processes can be found (to kill one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

# A TCP server for a lab host: reads each connection to its end, answers REPLY bytes, closes. argv: IP PORT REPLY
TCP_SINK = """
import socket, sys
srv = socket.create_server((sys.argv[1], int(sys.argv[2])))
while True:
    conn, _ = srv.accept()
    while conn.recv(65536):
        pass
    conn.sendall(b"r" * int(sys.argv[3]))
    conn.close()
"""


class SensorProcess:
    def __init__(self, config: Path, *args: str) -> None:
        env = dict(os.environ, SECOPS_CONFIG=str(config))
        self.proc = subprocess.Popen([sys.executable, "-m", "secops", "sensor", "run", *args], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.docs: list[dict] = []
        self.stderr: list[str] = []
        self.ready = threading.Event()
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._threads:
            t.start()

    def _read_out(self) -> None:
        for line in self.proc.stdout:
            self.docs.append(orjson.loads(line))

    def _read_err(self) -> None:
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.stderr.append(line)
            if line.startswith("capturing on"):
                self.ready.set()

    @property
    def err(self) -> str:
        return "".join(self.stderr)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop(kill=True)
                raise AssertionError(f"the sensor did not start:\n{self.err}")

    def stop(self, timeout: float = 300, kill: bool = False) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL) if kill else self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for t in self._threads:
            t.join(10)
        return self.proc.returncode

    def dataset(self, name: str) -> list[dict]:
        return [d for d in list(self.docs) if d["event"]["dataset"] == name]

    def stats(self) -> list[dict]:
        return [d["secops"]["sensor"] for d in self.dataset("secops.sensor")]

    def children(self, marker: str) -> list[int]:
        """Direct children whose command line contains ``marker`` ("spawn_main": the workers, or "dumpcap")."""
        pids = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if marker in cmd:
                    pids.append(int(pid))
        return sorted(set(pids))

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"timed out waiting for {what}; stderr:\n{self.err[-3000:]}")
            time.sleep(0.2)
