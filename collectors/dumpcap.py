"""One capture process: Wireshark's ``dumpcap`` writing a ring of pcap files, watched through its sync pipe.

dumpcap is started with a fixed argument list (never a shell) in capture-child mode (``-Z none``), which makes
it report on stderr, in framed messages, each new ring file (so the previous one is complete), the packets it
wrote and, when it stops, the kernel's drop count. While it runs, the kernel ring's drop counter is read from
dumpcap's own AF_PACKET socket (a duplicate taken with ``pidfd_getfd``; PACKET_STATISTICS resets on read, so
the counts read here plus dumpcap's final one add up to every drop exactly once).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SOL_PACKET, PACKET_STATISTICS = 263, 6
SYS_PIDFD_GETFD = 438
SP_ERROR, SP_BAD_FILTER, SP_FILE, SP_PACKET_COUNT, SP_DROPS = b"E", b"B", b"F", b"P", b"D"
RING_PREFIX = "live"

OnFile = Callable[[Path, int, int], None]  # (closed ring file, opened at ns, closed at ns)
Warn = Callable[[str], None]


class CaptureStartError(RuntimeError):
    """dumpcap could not start capturing (no such interface, bad filter, no permission ...)."""


@dataclass
class RingOptions:
    interface: str
    directory: Path
    capture_filter: str | None = None
    rotate_seconds: int = 1
    rotate_mb: int = 64
    buffer_mb: int = 64
    dumpcap_path: str = "dumpcap"

    def argv(self) -> list[str]:
        args = [self.dumpcap_path, "-i", self.interface, "-P", "-B", str(self.buffer_mb),
                "-b", f"interval:{self.rotate_seconds}", "-b", f"filesize:{self.rotate_mb * 1024}",
                "-w", str(self.directory / f"{RING_PREFIX}.pcap"), "-Z", "none"]
        if self.capture_filter:
            args += ["-f", self.capture_filter]
        return args


@dataclass
class RingCounters:
    packets: int = 0  # written to the ring, as dumpcap reported them
    kernel_drops: int = 0
    errors: list[str] = field(default_factory=list)


class DumpcapRing:
    """``start()`` returns once dumpcap captures (or raises :class:`CaptureStartError`); ``stop()`` seals the
    last file. ``on_file`` is called from the reader thread for every ring file dumpcap has closed."""

    def __init__(self, options: RingOptions, on_file: OnFile, on_warning: Warn | None = None) -> None:
        self.options = options
        self.on_file = on_file
        self.warn = on_warning or (lambda msg: None)
        self.counters = RingCounters()
        self.proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._current: tuple[Path, int] | None = None
        self._started = threading.Event()
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> None:
        self.options.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.proc = subprocess.Popen(self.options.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError as e:
            raise CaptureStartError(f"{self.options.dumpcap_path}: not found (apt-get install tshark, which brings "
                                    "dumpcap)") from e
        self._reader = threading.Thread(target=self._read, name=f"dumpcap-{self.proc.pid}", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._started.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._reader.join(5)
                self.stop()
                why = "; ".join(self.counters.errors) or f"exit status {self.proc.returncode}"
                raise CaptureStartError(f"dumpcap on {self.options.interface}: {why}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """Ask dumpcap to finish (SIGINT: it closes the current file and reports its drops), then wait."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.kernel_drops()  # what the kernel counted so far, before the socket goes away
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    # -- the sync pipe ---------------------------------------------------------------------------------
    def _read(self) -> None:
        stream = self.proc.stderr
        try:
            while True:
                head = stream.read(4)
                if len(head) < 4:
                    break
                kind, length = head[:1], int.from_bytes(head[1:], "big")
                body = stream.read(length) if length else b""
                self._message(kind, body)
        finally:
            stream.close()
            self.proc.wait()
            if self._current is not None:  # dumpcap closed its last file on the way out
                path, opened = self._current
                self._current = None
                if path.exists():
                    self.on_file(path, opened, time.time_ns())

    def _message(self, kind: bytes, body: bytes) -> None:
        text = body.rstrip(b"\0").decode("utf-8", "replace")
        if kind == SP_FILE:
            now = time.time_ns()
            previous, self._current = self._current, (Path(text), now)
            self._started.set()
            if previous is not None:
                self.on_file(previous[0], previous[1], now)
        elif kind == SP_PACKET_COUNT:
            with contextlib.suppress(ValueError):
                self.counters.packets += int(text)
        elif kind == SP_DROPS:
            digits = text.split(":", 1)[0]
            if digits.isdigit():
                with self._lock:
                    self.counters.kernel_drops += int(digits)
        elif kind == SP_ERROR:
            msg = " ".join(_nested(body)) or text
            self.counters.errors.append(msg)
            self.warn(f"dumpcap: {msg}")
        elif kind == SP_BAD_FILTER:
            self.counters.errors.append(f"bad capture filter: {text}")

    # -- kernel statistics -----------------------------------------------------------------------------
    def kernel_drops(self) -> int:
        """Drops counted so far (live from dumpcap's socket where the kernel allows, else at stop)."""
        sock = self._socket or self._borrow_socket()
        if sock is not None:
            try:
                raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
                drops = struct.unpack_from("II", raw)[1]
                with self._lock:
                    self.counters.kernel_drops += drops
            except OSError:
                pass
        return self.counters.kernel_drops

    def _borrow_socket(self) -> socket.socket | None:
        if not self.alive or not self._started.is_set():
            return None
        pid = self.proc.pid
        inodes = _packet_socket_inodes()
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            return None
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                dup = _pidfd_getfd(pid, int(fd))
                if dup is not None:
                    self._socket = socket.socket(fileno=dup)
                    return self._socket
        return None


def _nested(body: bytes) -> list[str]:
    """An error message carries two framed messages (primary, secondary)."""
    out, pos = [], 0
    while pos + 4 <= len(body):
        n = int.from_bytes(body[pos + 1:pos + 4], "big")
        text = body[pos + 4:pos + 4 + n].rstrip(b"\0").decode("utf-8", "replace").strip()
        if text:
            out.append(text)
        pos += 4 + n
    return out


def _packet_socket_inodes() -> set[str]:
    try:
        lines = Path("/proc/net/packet").read_text().splitlines()[1:]
    except OSError:
        return set()
    return {cols[8] for cols in (line.split() for line in lines) if len(cols) > 8}


def _pidfd_getfd(pid: int, fd: int) -> int | None:
    try:
        pidfd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        dup = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        return dup if dup >= 0 else None
    finally:
        os.close(pidfd)
