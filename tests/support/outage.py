"""Store outages and full disks for tests: a loopback TCP relay in front of the real Elasticsearch node that
goes down on cue, and a small tmpfs for a spool. Only 127.0.0.1; every socket and mount is released."""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit


class OutageRelay:
    """Relays 127.0.0.1:port to the node; after ``cut_on`` appears in a request it drops every connection and
    stops listening, so the node looks down (connection refused) while it keeps running for the test."""

    def __init__(self, target_url: str, cut_on: bytes = b" /_bulk"):
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 9200)
        self.cut_on = cut_on
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.down = threading.Event()
        self._sel = selectors.DefaultSelector()
        self._peer: dict[socket.socket, socket.socket] = {}
        self._upstream: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._run, name="outage-relay", daemon=True)

    def __enter__(self) -> OutageRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        self.listener.setblocking(False)
        self._sel.register(self.listener, selectors.EVENT_READ)
        try:
            while not self.down.is_set():
                for key, _ in self._sel.select(timeout=0.1):
                    sock = key.fileobj
                    if sock is self.listener:
                        client, _addr = self.listener.accept()
                        upstream = socket.create_connection(self.target, timeout=10)
                        for s in (client, upstream):
                            s.setblocking(True)
                            self._sel.register(s, selectors.EVENT_READ)
                        self._peer[client], self._peer[upstream] = upstream, client
                        self._upstream.add(upstream)
                        continue
                    self._pump(sock)
        finally:
            for s in [self.listener, *self._peer]:
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(s)
                s.close()
            self._sel.close()

    def _pump(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(1 << 16)
        except OSError:
            data = b""
        if data and self.cut_on and self.cut_on in data and sock not in self._upstream:
            self.down.set()  # the request never reaches the node
            return
        peer = self._peer.get(sock)
        if not data or peer is None:
            for s in (sock, peer):
                if s is not None:
                    with contextlib.suppress(KeyError, ValueError):
                        self._sel.unregister(s)
                    self._peer.pop(s, None)
                    self._upstream.discard(s)
                    s.close()
            return
        peer.sendall(data)


@contextlib.contextmanager
def small_tmpfs(size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on a fresh directory (needs root), unmounted and removed afterwards."""
    if os.geteuid() != 0:
        raise RuntimeError("a full-disk test mounts a small tmpfs and needs root (CI runs as root)")
    mount = Path(tempfile.mkdtemp(prefix="secops-smallfs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        with contextlib.suppress(OSError):
            mount.rmdir()
