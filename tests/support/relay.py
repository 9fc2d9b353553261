"""A plain TCP relay: makes a loopback-only service (the test Elasticsearch node) reachable on another
address, such as a lab bridge that namespace "hosts" route through. Real sockets, bytes copied as is."""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpRelay:
    """Listen on ``listen_host`` (``port`` 0: any free port) and copy each connection to ``target``.
    ``close()`` is a cut link: the listener and every open connection go away."""

    def __init__(self, listen_host: str, target: tuple[str, int], port: int = 0) -> None:
        self.target = target
        self.server = socket.create_server((listen_host, port))
        self.address = self.server.getsockname()[:2]
        self._stop = threading.Event()
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
        self.server.close()
        for s in list(self._open):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


if __name__ == "__main__":  # run in a lab namespace: python -m tests.support.relay LISTEN_IP PORT TARGET_IP PORT
    import sys

    relay = TcpRelay(sys.argv[1], (sys.argv[3], int(sys.argv[4])), port=int(sys.argv[2]))
    threading.Event().wait()
