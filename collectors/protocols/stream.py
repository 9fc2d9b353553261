"""One tshark reading the selected frames of one capture file on its standard input, next to the flow path.

The flow engines copy the frames the analyzers need (``collectors.protocols.detect`` decides per flow) into a
pcapng byte stream; :class:`MetadataStream` starts tshark on the first selected bytes, writes them to its stdin
while the flow path goes on (tshark dissects on the other core), and collects the finished documents in a
queue that the caller drains between blocks (``ready``) and at the end of the file (``close``).

Why not one tshark for the whole run: tshark keeps per-frame, reassembly and conversation state for everything it
has read (about 1.3 KB per frame it read here), so a process that lived as long as a sensor would grow without
bound. A tshark run therefore ends with its capture file or once a tshark of it has read ``FRAMES_PER_RUN`` frames
(each of a large file's analyzer processes, ``deep_fanout``, has its own tshark and reports its count), whichever
comes first, and the next frames start a new one: memory follows the frames in flight, not the file. Frames read
natively do not count (their readers' state is bounded by connection timeouts), only up to
``SELECTED_PER_TSHARK_FRAME`` times as many. (A flow whose frames straddle such a cut is analysed
in two parts, as one straddling two files is.) The frames tshark reads are also teed to a spool file, from which a
module's second look (HTTP's after incomplete exchanges, TLS's on odd ports) takes the frames of the connections it
needs (``collectors.protocols.reread``); it is removed when the run ends.

DNS, mDNS and LLMNR over UDP never reach tshark: :class:`~collectors.protocols.native.NativeFrames` takes those
frames out of the stream in ``feed``, parses them with ``dns_wire`` and hands the messages to a ``DnsAnalyzer`` of
the run's own; TCP connections likewise (``native_tcp``: reassembled per direction): the FTP control channel (lines
into ``FtpAnalyzer.line``; its data-channel announcements go to the run's expected connections, which in
``deep_process``'s child travel to the parent as ``"e"`` lines), HTTP/1.x and TLS on any port (``http_wire``,
``tls_wire``). tshark's frame numbers are mapped back to the stream's (``NativeFrames.renumber``), which some
modules use in document ids. ``NATIVE = False`` gives every frame to tshark (the peer in benchmarks/dns_native.py);
``NATIVE_TCP = False`` only the TCP connections.

Memory stays bounded: a write blocks while tshark is behind (the pipe is the buffer), so the flow path never
runs more than a pipe's worth ahead of the dissector.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from collectors.protocols import analyze, tshark_command
from collectors.protocols.base import RunContext
from collectors.protocols.document_text import Shipped
from collectors.protocols.documents import Written
from collectors.protocols.expected import ExpectedConnections
from collectors.protocols.native import NativeFrames
from collectors.protocols.reread import ConnectionFrames
from collectors.protocols.tshark import STDIN, TsharkRun, read_tshark, start_tshark
from collectors.selection import interface_block, stream_header

if TYPE_CHECKING:
    from collectors.protocols.deep_fanout import ProcessFanout, Shares

Warn = Callable[[str], None]
_DONE = object()


NATIVE = True  # read DNS/mDNS/LLMNR over UDP here instead of in tshark (False: tshark reads every frame)
NATIVE_TCP = True  # with NATIVE: read FTP control, HTTP/1.x and TLS connections here too (``native_tcp``)
FRAMES_PER_RUN = 131_072  # frames one tshark of a run reads at most (about 170 MB of tshark memory)
# selected frames (native ones included) a run takes at most, per frame its tshark may read (on 1M real-trace
# packets a third of the selected frames reach tshark: counting them all cut the file into twice the runs)
SELECTED_PER_TSHARK_FRAME = 8


class MetadataStream:
    """Deep-path documents for the frames written to it (one capture file's selection), one tshark run after
    another. A run that reached ``frames_per_run`` finishes in the background (tshark's last frames, the second
    looks) while the next one reads on; at most one does, so at most two runs are alive at a time."""

    def __init__(self, name: str, tshark_path: str, warn: Warn, frames_per_run: int = FRAMES_PER_RUN,
                 expected: ExpectedConnections | None = None, own_process: bool = False) -> None:
        """``own_process`` runs the analyzers in a process of their own (``deep_process``), for large files."""
        self.own_process = own_process
        self.name = name
        self.tshark_path = tshark_path
        self.warn = warn
        self.expected = expected
        self.frames_per_run = frames_per_run
        self.selected_per_run = SELECTED_PER_TSHARK_FRAME * frames_per_run
        self.runs = 0
        self._run: TsharkStdinRun | ProcessFanout | None = None
        self._ending: TsharkStdinRun | ProcessFanout | None = None  # the previous run, finishing its input
        self._finished: list[Shipped] = []

    def write(self, blocks: bytes, linktypes: tuple[int, ...], frames: int) -> None:
        """Enhanced packet blocks from ``take_selected`` (``frames`` of them) and the link type of every
        interface id they use."""
        if not blocks:
            return
        self._current().write(blocks, linktypes, frames)
        self._end_if_full()

    def write_shares(self, shares: Shares, linktypes: tuple[int, ...]) -> None:
        """The selection already split by host pair (``NativeFlowPath.take_shares``): one (blocks, frame count)
        per analyzer process of ``own_process``."""
        if not any(count for _, count in shares):
            return
        from collectors.protocols.deep_fanout import ProcessFanout  # deep_fanout imports this module
        run = self._current()
        if not isinstance(run, ProcessFanout):
            raise TypeError("a selection split by host pair is for the analyzer processes (own_process)")
        run.write_shares(shares, linktypes)
        self._end_if_full()

    def start_processes(self) -> None:
        """Start the analyzer processes now, not at the first selected frames: a large file's first block takes the
        flow path a few tenths of a second, and their start-up (0.16 s of imports each) overlaps it. Their tshark
        still starts with the first frames for it (a file with nothing to analyse costs no tshark start-up).
        ``own_process`` only."""
        from collectors.protocols.deep_fanout import ProcessFanout
        run = self._current()
        if isinstance(run, ProcessFanout):
            run.start()

    def _current(self) -> TsharkStdinRun | ProcessFanout:
        if self._run is None:
            self.runs += 1
            name = self.name if self.runs == 1 else f"{self.name} (part {self.runs})"
            if self.own_process:
                from collectors.protocols.deep_fanout import ProcessFanout
                self._run = ProcessFanout(name, self.tshark_path, self.warn, self.expected)
            else:
                self._run = TsharkStdinRun(name, self.tshark_path, self.warn, self.expected)
        return self._run

    def _end_if_full(self) -> None:
        if self._run is None:
            return
        if self._run.tshark_frames >= self.frames_per_run or self._run.frames >= self.selected_per_run:
            self._end_previous()
            self._run.end_input()
            self._ending, self._run = self._run, None

    def _end_previous(self) -> None:
        if self._ending is not None:
            self._finished += self._ending.drain()
            self._ending = None

    def ready(self) -> list[Shipped]:
        """Documents finished so far (never blocks)."""
        out, self._finished = self._finished, []
        if self._ending is not None:
            out += self._ending.ready()
            if self._ending.finished:
                self._ending.release()
                self._ending = None
        if self._run is not None:
            out += self._run.ready()
        return out

    def close(self) -> list[Shipped]:
        """End of the file's selection: wait for tshark and the analyzers; every remaining document."""
        self._end_previous()
        out = self.ready()
        if self._run is not None:
            out += self._run.close()
            self._run = None
        return out

    def abort(self) -> None:
        """Nothing more can be written (the output closed, or the run was stopped): every run ends now, its documents
        dropped, its tshark and analyzer processes ended, its spool removed."""
        for run in (self._ending, self._run):
            if run is not None:
                run.abort()
        self._ending = self._run = None
        self._finished = []


class DocumentQueue:
    """One run of the deep path as the stream sees it: its documents, handed from a reader thread to the caller
    (``_DONE`` ends them), and what it was given."""

    def __init__(self, name: str, warn: Warn, expected: ExpectedConnections | None) -> None:
        self.name = name
        self.warn = warn
        self.expected = expected
        self.failed = False
        self.docs: queue.SimpleQueue = queue.SimpleQueue()
        self.finished = False
        self.frames = 0  # selected frames written
        self.interfaces = 0  # interface blocks written so far

    def framed(self, blocks: bytes, linktypes: tuple[int, ...], frames: int) -> bytes:
        """Packet blocks preceded by the interface blocks this run has not been given yet."""
        self.frames += frames
        head = b"".join(interface_block(lt) for lt in linktypes[self.interfaces:])
        self.interfaces = len(linktypes)
        return head + blocks

    def deliver(self, docs: list[Written]) -> None:
        """Documents the caller's thread completed, into the queue."""
        for doc in docs:
            self.docs.put(doc)

    def ready(self) -> list[Shipped]:
        """Documents finished so far (never blocks)."""
        out: list[Shipped] = []
        while True:
            try:
                item = self.docs.get_nowait()
            except queue.Empty:
                return out
            self._collect(item, out)

    def until_done(self) -> list[Shipped]:
        """Every document still to come (blocks until the reader thread ends)."""
        out: list[Shipped] = []
        while not self.finished:
            self._collect(self.docs.get(), out)
        return out

    def _collect(self, item: object, out: list[Shipped]) -> None:
        """A queue item into ``out``: a document, a list of them (``deep_process``'s reader), or the end."""
        if item is _DONE:
            self.finished = True
        elif isinstance(item, list):
            out += item
        else:
            out.append(item)  # type: ignore[arg-type]

    def end_input(self) -> None:
        """No more frames: the run reads to the end of what it was given."""
        raise NotImplementedError

    def release(self) -> None:
        """After the last document: what the run held (threads, files) is let go."""

    def drain(self) -> list[Shipped]:
        """After ``end_input``: every remaining document (blocks until the run ends), then the run is let go."""
        out = self.ready() + self.until_done()
        self.release()
        return out

    def close(self) -> list[Shipped]:
        """End of the run's frames: wait for its analyzers; every remaining document."""
        self.end_input()
        return self.drain()

    def abort(self) -> None:
        """Ends the run now, without its remaining documents (``MetadataStream.abort``)."""
        raise NotImplementedError


def end_process(proc: subprocess.Popen | None) -> None:
    """Kill a started process (tshark) and reap it; None: nothing to end."""
    if proc is not None:
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait()


class TsharkStdinRun(DocumentQueue):
    """One tshark reading a pcapng stream on stdin, its analyzers in a reader thread."""

    def __init__(self, name: str, tshark_path: str, warn: Warn, expected: ExpectedConnections | None = None,
                 raw_documents: bool = False, tshark: subprocess.Popen | None = None) -> None:
        """``raw_documents``: natively written documents stay JSON text (``dns_udp``): the queue only serialises.
        ``tshark``: this run's tshark, started already (``deep_process.serve``) with ``tshark_command``."""
        super().__init__(name, warn, expected)
        self.tshark_path = tshark_path
        self._proc = None
        self._started = tshark
        self._reader: threading.Thread | None = None
        self._spool: IO[bytes] | None = None
        self._spool_path: Path | None = None
        # DNS/mDNS/LLMNR over UDP, FTP control, HTTP/1.x and TLS: read here
        self.native = NativeFrames(name, warn, expected, NATIVE_TCP, raw_documents) if NATIVE else None

    # -- input ---------------------------------------------------------------------------------------
    @property
    def tshark_frames(self) -> int:
        """Frames given to tshark so far."""
        return self.frames if self.native is None else self.native.blocks - len(self.native.taken_at)

    def write(self, blocks: bytes, linktypes: tuple[int, ...], frames: int) -> None:
        self.feed(self.framed(blocks, linktypes, frames))

    def feed(self, data: bytes) -> None:
        """Bytes of the pcapng stream after its header (interface and packet blocks): the frames read natively
        (``collectors.protocols.native``) stay here, the others go to tshark and to the spool. Only connections
        tshark reads ever need a second look (SSH, HTTP's incomplete exchanges, TLS and other protocols on odd
        ports), and indexing the natively read frames too cost about a tenth of the analyzers' CPU."""
        for_tshark, docs = self.native.split(data) if self.native is not None else (data, [])
        if docs:
            self.deliver(docs)
        if self.failed:
            return
        if self._proc is None and not self._start():
            return
        try:
            if for_tshark:
                self._spool.write(for_tshark)
                self._proc.stdin.write(for_tshark)
        except (BrokenPipeError, OSError, ValueError) as exc:  # tshark died: its exit status says why at close
            self.failed = True
            self.warn(f"{self.name}: protocol metadata stopped: tshark input closed ({exc})")

    def _start(self) -> bool:
        run = TsharkRun()
        self._proc, self._started = self._started, None
        if self._proc is None:
            self._proc = start_tshark(tshark_command(STDIN, self.tshark_path), run, self._tshark_warning, stdin=True)
        if self._proc is None:
            self.failed = True
            return False
        fd, spool = tempfile.mkstemp(prefix="secops-deep-", suffix=".pcapng")
        self._spool, self._spool_path = os.fdopen(fd, "wb"), Path(spool)
        self._reader = threading.Thread(target=self._read, args=(run,), name="secops-deep", daemon=True)
        self._reader.start()
        header = stream_header()
        self._spool.write(header)
        try:
            self._proc.stdin.write(header)
        except (BrokenPipeError, OSError):
            self.failed = True
            return False
        return True

    def _tshark_warning(self, msg: str) -> None:
        self.warn(f"{self.name}: {msg}")

    # -- output --------------------------------------------------------------------------------------
    def _read(self, run: TsharkRun) -> None:
        """Reader thread: tshark's packets through the analyzers; documents into the queue."""
        assert self._spool_path is not None
        context = RunContext(self._spool_path, self.tshark_path, ConnectionFrames(self._spool_path), self.expected)
        try:
            packets = read_tshark(self._proc, run, self._tshark_warning)
            if self.native is not None:
                packets = self.native.renumber(packets)
            for doc in analyze(packets, context, run, self.warn, self.name):
                self.docs.put(doc)
        except Exception as exc:  # the deep path must never take the flow path down
            self.warn(f"{self.name}: protocol metadata failed: {type(exc).__name__}: {exc}")
        finally:
            self.docs.put(_DONE)

    def end_input(self) -> None:
        """No more frames: tshark reads to its end (the spool is complete before that: a second look re-reads it)."""
        if self.native is not None:
            self.deliver(self.native.finish())
        if self._proc is None:
            self.finished = True
            self._stop_started()
            return
        with contextlib.suppress(OSError):
            self._spool.close()
        with contextlib.suppress(BrokenPipeError, OSError):
            self._proc.stdin.close()

    def abort(self) -> None:
        """tshark ends now and the spool goes; the reader thread (a daemon) stops at tshark's end or with the
        process."""
        self.failed = self.finished = True
        self._stop_started()
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            with contextlib.suppress(OSError, ValueError):
                self._proc.stdin.close()
            self._proc.wait()  # reaped: killed, it ends at once
        if self._spool is not None:
            with contextlib.suppress(OSError):
                self._spool.close()
        self._remove_spool()

    def release(self) -> None:
        """After the last document: the reader thread has ended; the spool goes."""
        if self._reader is not None:
            self._reader.join()
        self._remove_spool()

    def _stop_started(self) -> None:
        """A tshark started for this run that it never used (no frame came for it)."""
        end_process(self._started)
        self._started = None

    def _remove_spool(self) -> None:
        if self._spool_path is not None:
            with contextlib.suppress(OSError):
                self._spool_path.unlink()

