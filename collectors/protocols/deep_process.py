"""The deep path of a large capture file in a process of its own.

The flow path and the protocol analyzers are both Python and shared one interpreter lock: on 300k packets of real traces
the analyzers' thread took 12 s and the flow path 4 s, one after the other, while the second core ran only tshark. For a
large file the analyzers therefore run in a child process (``python -m collectors.protocols.deep_process``, told its
run's name and tshark in a first line, ``first_line``; it starts tshark with the default path before that line,
``collectors.deep_spares``): the parent writes the selected frames to its standard input as it would to tshark's, and
the child runs :class:`~collectors.protocols.stream.TsharkStdinRun` on them and writes one JSON line per message to its
standard output: ``["d", document]``, ``["w", warning]``, ``["e", [originator, responder, port, service, time]]`` for a
connection an analyzer announced (FTP data, which the parent's pipeline claims), or ``["f", [blocks read, of them given
to tshark]]`` after each read of its input (the parent ends a run by its tshark's frames). A reader thread in the parent
turns the lines back into documents, warnings and announcements, in order; a document stays the text the child wrote
(``DocumentText``) unless its consumer needs a dict.

A child costs about 0.2 s of CPU to start, so small files (a test trace) keep the analyzers in a thread
(``collectors.deep_spares.DEEP_PROCESS_MIN_BYTES``), and so does the live sensor: its flow workers already keep every
core busy, and a child per one-second chunk would only add that cost.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import BinaryIO

import orjson

from collectors import deep_spares
from collectors.protocols import tshark_command
from collectors.protocols.document_text import DOCUMENT_LINE, DocumentLines
from collectors.protocols.expected import ExpectedConnections
from collectors.protocols.stream import _DONE, DocumentQueue, TsharkStdinRun, end_process
from collectors.protocols.tshark import STDIN, TsharkRun, start_tshark
from secops.runtime import buffered_stdout, exit_now, tune_process, widen_pipe

Warn = Callable[[str], None]

READ_BYTES = 1 << 20
INBOX_PIECE_BYTES = 1 << 20
INBOX_PIECES = 8  # at most 8 MiB of selected frames wait for one child
OUTPUT_BUFFER_BYTES = 256 << 10
ABORT_WAIT_S = 5  # a child told to stop (``ProcessRun.abort``) is killed after this long


class ProcessRun(DocumentQueue):
    """Parent side: the same face as ``TsharkStdinRun`` (write, ready, close), the work in a child process.

    A writer thread feeds the child from a bounded inbox (``INBOX_PIECES`` of ``INBOX_PIECE_BYTES``), so the flow
    path reads on while the child works: writing straight into the pipe made the parent wait for each child in
    turn (on 1M real-trace packets the ingest used 1.5 of 2 cores)."""

    def __init__(self, name: str, tshark_path: str, warn: Warn, expected: ExpectedConnections | None = None) -> None:
        super().__init__(name, warn, expected)
        self._stderr: list[bytes] = []
        self.reported: tuple[int, int] | None = None  # (blocks the child has read, of them given to tshark)
        self._inbox: queue.Queue[memoryview | None] = queue.Queue(maxsize=INBOX_PIECES)
        self._aborted = False
        try:
            self._proc: subprocess.Popen | None = deep_spares.take() or deep_spares.spawn()
        except OSError as exc:
            self._proc = None
            self.failed = self.finished = True
            warn(f"{name}: protocol metadata not read: its process could not start ({exc})")
            return
        self._inbox.put(memoryview(first_line(name, tshark_path)))
        widen_pipe(self._proc.stdin)  # fewer, larger reads in the child
        widen_pipe(self._proc.stdout)  # the child writes its documents without waiting for this process's reader
        self._errors = threading.Thread(target=self._drain_errors, daemon=True)
        self._errors.start()
        self._reader = threading.Thread(target=self._read, name="secops-deep-process", daemon=True)
        self._reader.start()
        self._writer = threading.Thread(target=self._write_input, name="secops-deep-input", daemon=True)
        self._writer.start()

    @property
    def tshark_frames(self) -> int:
        """Frames the child's tshark has been given, as last reported (the selected frames written until the
        child reports: one without native readers gives it every frame)."""
        return self.frames if self.reported is None else self.reported[1]

    def write(self, blocks: bytes, linktypes: tuple[int, ...], frames: int) -> None:
        data = memoryview(self.framed(blocks, linktypes, frames))
        if self.failed or self._proc is None:
            return
        for start in range(0, len(data), INBOX_PIECE_BYTES):  # blocks only while the inbox is full
            self._inbox.put(data[start:start + INBOX_PIECE_BYTES])

    def _write_input(self) -> None:
        """Writer thread: the inbox into the child's standard input, closed after the last piece."""
        assert self._proc is not None
        while (piece := self._inbox.get()) is not None:
            if self.failed:
                continue  # keep taking pieces: a writer never waits on a dead child
            try:
                self._proc.stdin.write(piece)
                if self._inbox.empty():  # nothing waiting: what is written reaches the child now
                    self._proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as exc:  # the child died: its exit status says why
                self.failed = True
                if not self._aborted:
                    self.warn(f"{self.name}: protocol metadata stopped: its process's input closed ({exc})")
        with contextlib.suppress(BrokenPipeError, OSError):
            self._proc.stdin.close()

    def abort(self) -> None:
        """The child stops now (its SIGTERM handler ends its tshark and removes its spool); what it had not written
        is dropped."""
        self.failed = self._aborted = True
        if self._proc is None:
            return
        with contextlib.suppress(OSError):
            self._proc.terminate()
        with contextlib.suppress(queue.Full):
            self._inbox.put_nowait(None)  # the writer thread ends once the child's input is closed
        try:
            self._proc.wait(timeout=ABORT_WAIT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()

    def _drain_errors(self) -> None:
        for line in self._proc.stderr:
            if len(self._stderr) < 50:
                self._stderr.append(line)

    def _read(self) -> None:
        """Reader thread: the child's lines as documents, warnings and announcements. The document lines of what the
        pipe holds are queued as one list (a call and a hand-off per document were a third of the parent's CPU on the
        1M-packet benchmark); other lines keep their place between them."""
        try:
            rest = b""
            while chunk := self._proc.stdout.read1(READ_BYTES):  # what the pipe holds, not a call per line
                lines = (rest + chunk if rest else chunk).split(b"\n")
                rest = lines.pop()
                self._take_lines(lines)
            if rest:  # a last line without its newline: the child died writing it, so it is parsed (or dropped)
                self._take(rest)
        finally:
            self._proc.stdout.close()
            status = self._proc.wait()
            self._errors.join(timeout=5)
            if status != 0 and not self._aborted:
                tail = b"".join(self._stderr).decode("utf-8", "replace").strip().splitlines()[-3:]
                self.warn(f"{self.name}: protocol metadata process exited with status {status}: "
                          f"{'; '.join(tail) or 'no message'}")
            self.docs.put(_DONE)

    def _take_lines(self, lines: list[bytes]) -> None:
        start = 0
        for i, line in enumerate(lines):
            if not line.startswith(DOCUMENT_LINE):
                self._take_documents(lines[start:i])
                self._take(line)
                start = i + 1
        self._take_documents(lines[start:] if start else lines)

    def _take_documents(self, lines: list[bytes]) -> None:
        """``["d", document]`` lines into the queue as they came (``DocumentLines``: the consumer writes them as one
        block or takes them one by one); damaged ones are dropped there."""
        if lines:
            self.docs.put([DocumentLines(lines)])

    def _take(self, line: bytes) -> None:
        try:
            kind, payload = orjson.loads(line)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            return
        if kind == "d":
            self.docs.put([payload])
        elif kind == "w":
            self.warn(payload)
        elif kind == "f":
            self.reported = (payload[0], payload[1])
        elif kind == "e" and self.expected is not None:
            self.expected.expect(*payload)

    def end_input(self) -> None:
        if self._proc is not None:
            self._inbox.put(None)

    def release(self) -> None:
        if self._proc is not None:
            self._writer.join()
            self._reader.join()


class _Announcements(ExpectedConnections):
    """The child's side of expected connections: each announcement goes to the parent."""

    def __init__(self, send: Callable[[str, object], None]) -> None:
        super().__init__()
        self._send = send

    def expect(self, orig_h: str, resp_h: str, resp_p: int, service: str, ts: float) -> None:
        self._send("e", [orig_h, resp_h, resp_p, service, ts])


class _Outbox:
    """The child's document queue: each document is written to the parent by the thread that made it (the native
    readers' or tshark's reader), under the output lock. A thread that only forwarded documents cost a hand-off and a
    wake-up per document."""

    def __init__(self, out: BinaryIO, lock: threading.Lock) -> None:
        self._out, self._lock = out, lock
        self.done = threading.Event()

    def put(self, doc: object) -> None:
        if doc is _DONE:
            self.done.set()
        else:
            self.put_many([doc])

    def put_many(self, docs: list[object]) -> None:
        """The documents a block of frames completed, in one write."""
        lines = b"".join([orjson.dumps(["d", doc], option=orjson.OPT_APPEND_NEWLINE) for doc in docs])
        with self._lock:
            self._out.write(lines)


def first_line(name: str, tshark_path: str) -> bytes:
    """What a child reads first (``serve``): its run's name and its tshark, each as the hex of its bytes (any file
    name passes)."""
    return os.fsencode(name).hex().encode() + b" " + os.fsencode(tshark_path).hex().encode() + b"\n"


def serve() -> int:
    """``python -m collectors.protocols.deep_process``: tshark started with the default path (``deep_spares``), then
    ``first_line`` read, then the run (``main``), on that tshark when the line names the same one. A process whose
    input closes before that line (a spare nobody took) stops its tshark and ends quietly."""
    tshark = start_tshark(tshark_command(STDIN, deep_spares.DEFAULT_TSHARK), TsharkRun(), lambda _msg: None, stdin=True)
    stdin = sys.stdin.fileno()
    head = b""
    while b"\n" not in head:
        data = os.read(stdin, READ_BYTES)
        if not data:
            end_process(tshark)
            return 0
        head += data
    line, pending = head.split(b"\n", 1)
    name, tshark_path = (os.fsdecode(bytes.fromhex(part.decode())) for part in line.split(b" ", 1))
    if tshark_path != deep_spares.DEFAULT_TSHARK:
        end_process(tshark)
        tshark = None
    return main(name, tshark_path, pending, tshark)


def main(name: str, tshark_path: str, pending: bytes = b"", tshark: subprocess.Popen | None = None) -> int:
    """Child side: the selected frames on stdin (pcapng blocks after the header; ``pending``: the first of them, read
    already) through tshark (``tshark``: started already with ``tshark_path``) and the analyzers."""
    tune_process()
    # large writes: the parent reads what the pipe holds at once (data channels' announcements need no hurry: the
    # parent holds back connections that may be FTP data until the file's deep path has ended)
    out = buffered_stdout(OUTPUT_BUFFER_BYTES)
    lock = threading.Lock()

    def send(kind: str, payload: object, flush: bool = False) -> None:
        line = orjson.dumps([kind, payload], option=orjson.OPT_APPEND_NEWLINE)
        with lock:
            out.write(line)
            if flush:
                out.flush()

    run = TsharkStdinRun(name, tshark_path, lambda msg: send("w", msg), _Announcements(send), raw_documents=True,
                         tshark=tshark)

    def stop(_signum: int, _frame: object) -> None:  # the parent's output is gone (ProcessRun.abort)
        run.abort()
        os._exit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    outbox = run.docs = _Outbox(out, lock)  # type: ignore[assignment]  # sent by the thread that made them
    run.deliver = outbox.put_many  # type: ignore[method-assign]
    stdin = sys.stdin.fileno()
    reported = None
    while data := pending or os.read(stdin, READ_BYTES):  # interface and packet blocks: the run writes the header
        pending = b""
        run.feed(data)
        if run.native is not None and (count := (run.native.blocks, run.tshark_frames)) != reported:
            send("f", count, flush=True)  # the parent ends the run when this tshark has read enough
            reported = count
    run.end_input()
    if run.finished:  # tshark never started: no reader thread will end the queue
        outbox.put(_DONE)
    outbox.done.wait()
    run.release()
    out.flush()
    return 0


if __name__ == "__main__":
    exit_now(serve())  # written, spool removed: the parent waits for this exit (0.10-0.13 s less)
