"""The deep path in a process of its own (large files): the same documents, warnings and FTP data channels as in
a thread, and a child that cannot start or dies costs only protocol metadata, never connections."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
from pathlib import Path

from collectors.ingest import Pipeline
from tests.support import TESTDATA

CAPTURES = [TESTDATA / "zeek" / "traces" / name for name in
            ("ftp/ipv4.pcap", "http/get.pcap", "tls/tls-conn-with-extensions.pcap", "dns-txt-multiple.pcap")]


def ingest(paths: list[Path], own_process: bool, **kw) -> tuple[list[dict], list[str]]:
    docs: list[dict] = []
    warnings: list[str] = []
    pipe = Pipeline(docs.append, on_warning=warnings.append, deep_process_min_bytes=0 if own_process else None, **kw)
    for path in paths:
        pipe.process_file(path)
    pipe.finish()
    return docs, warnings


def test_a_process_of_its_own_gives_the_thread_s_documents() -> None:
    paths = [p for p in CAPTURES if p.exists()]
    assert len(paths) >= 3
    in_thread, warned_thread = ingest(paths, own_process=False)
    in_process, warned_process = ingest(paths, own_process=True)
    assert sorted(in_process, key=lambda d: d["_id"]) == sorted(in_thread, key=lambda d: d["_id"])
    assert warned_process == warned_thread
    datasets = {d["event"]["dataset"] for d in in_process}
    assert {"secops.ftp", "secops.http", "secops.tls", "secops.dns"} <= datasets
    # the FTP analyzer's announcements cross back to the pipeline: data channels are named as in the thread
    assert any("ftp-data" in d["network"].get("protocol", []) for d in in_process
               if d["event"]["dataset"] == "secops.conn")


def test_without_tshark_the_child_warns_and_connections_remain(tmp_path: Path) -> None:
    docs, warnings = ingest([TESTDATA / "zeek" / "traces" / "http" / "get.pcap"], own_process=True,
                            tshark_path=str(tmp_path / "no-tshark"))
    (conn,) = [d for d in docs if d["event"]["dataset"] == "secops.conn"]
    assert conn["network"]["protocol"] == ["http"]
    # HTTP is read natively (collectors/protocols/native_tcp.py): its record needs no tshark
    http = [d["url"]["original"] for d in docs if d["event"]["dataset"] == "secops.http"]
    assert http == ["/download/CHANGES.bro-aux.txt"]
    assert any("tshark could not be started" in w for w in warnings), warnings


def test_a_child_killed_mid_file_is_reported_and_the_flow_path_goes_on(tmp_path: Path) -> None:
    """The analyzers' process dies while the file is read (its tshark is slow to start, so the child is surely
    still at work): one warning with its exit status, every connection still shipped, the pipeline's next file
    analysed again."""
    slow_tshark = tmp_path / "slow-tshark"
    slow_tshark.write_text(f"#!/bin/sh\nsleep 1\nexec {shutil.which('tshark')} \"$@\"\n")
    slow_tshark.chmod(0o755)
    killed = threading.Event()

    def kill_the_first_children() -> None:
        """Every analyzer process of the first file (they start together): those seen within 0.3 s of the first."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for pid in _children(os.getpid()):
                with contextlib.suppress(OSError):
                    if b"deep_process" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        os.kill(pid, signal.SIGKILL)
                        if not killed.is_set():
                            killed.set()
                            deadline = time.monotonic() + 0.3
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_first_children, daemon=True)
    killer.start()
    first, second = TESTDATA / "zeek" / "traces" / "http" / "methods.pcap", CAPTURES[1]
    docs: list[dict] = []
    warnings: list[str] = []
    pipe = Pipeline(docs.append, on_warning=warnings.append, tshark_path=str(slow_tshark), deep_process_min_bytes=0)
    pipe.process_file(first)
    killer.join()
    after_kill = len(docs)
    pipe.process_file(second)
    stats = pipe.finish()
    assert killed.is_set()
    assert any("protocol metadata process exited with status -9" in w for w in warnings), warnings
    reference, _ = ingest([first, second], own_process=False, deep=False)
    conns = [d for d in docs if d["event"]["dataset"] == "secops.conn"]
    assert len(conns) == stats.conns == sum(d["event"]["dataset"] == "secops.conn" for d in reference)
    assert not [d for d in docs[:after_kill] if d["event"]["dataset"] == "secops.http"]
    assert any(d["event"]["dataset"] == "secops.http" for d in docs[after_kill:])


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def test_the_parent_reads_a_pipe_s_worth_of_lines_in_order_and_survives_a_damaged_one() -> None:
    """Document lines are queued in batches (as the lines came: one NDJSON block for a writer that copies text, or
    one by one); a warning, a frame count or a damaged line between them keeps its place, and the documents around a
    damaged one still arrive."""
    from collectors.protocols.deep_process import ProcessRun
    from collectors.protocols.document_text import DocumentLines
    from collectors.protocols.stream import DocumentQueue

    warnings: list[str] = []
    run = ProcessRun.__new__(ProcessRun)  # the line handling alone: no child process
    DocumentQueue.__init__(run, "t", warnings.append, None)
    run.reported = None
    lines = [b'["d",{"n":1}]', b'["d",{"n":2}]', b'["w","careful"]', b'["d",{"n":3}]', b'["d",{"n":',
             b'["d",{"n":4}]', b'["f",[10,4]]', b'["d",{"n":5}]', b"", b"not json"]
    run._take_lines(lines)
    queued = run.ready()
    assert all(isinstance(item, DocumentLines) for item in queued)
    assert [doc.parse()["n"] for item in queued for doc in item.documents()] == [1, 2, 3, 4, 5]
    assert b"".join(item.ndjson()[1] for item in queued) == b'{"n":1}\n{"n":2}\n{"n":3}\n{"n":4}\n{"n":5}\n'
    assert sum(item.ndjson()[0] for item in queued) == 5
    assert warnings == ["careful"] and run.reported == (10, 4)


def test_a_file_name_that_is_not_utf8_reaches_its_child(tmp_path: Path) -> None:
    """The child is given the file's name (its warnings name it): one that is not UTF-8 too."""
    odd = tmp_path / os.fsdecode(b"capture-\xff.pcap")  # lone surrogates in Python
    shutil.copyfile(CAPTURES[0], odd)
    in_thread, _ = ingest([odd], own_process=False)
    in_process, _ = ingest([odd], own_process=True)
    assert in_thread and sorted(in_process, key=lambda d: d["_id"]) == sorted(in_thread, key=lambda d: d["_id"])


def test_a_child_s_last_line_cut_short_is_dropped_and_documents_are_counted_once() -> None:
    """A child that dies mid-write leaves a last line without its newline: parsed, and dropped when it does not
    parse (it could end in ``]`` and still be cut). A block of document lines counts its documents, not itself."""
    import subprocess
    import sys

    from collectors.protocols.deep_process import ProcessRun
    from collectors.protocols.document_text import DocumentLines
    from collectors.protocols.stream import _DONE, DocumentQueue

    run = ProcessRun.__new__(ProcessRun)
    DocumentQueue.__init__(run, "t", lambda _m: None, None)
    run.reported, run._stderr = None, []
    script = "import sys; sys.stdout.buffer.write(b'[\"d\",{\"n\":1}]\\n[\"d\",{\"n\":2}]\\n[\"d\",{\"a\":[1]')"
    run._proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run._errors = threading.Thread(target=lambda: None)
    run._errors.start()
    run._read()
    queued: list = []
    while (batch := run.docs.get()) is not _DONE:
        queued += batch
    assert len(queued) == 1 and isinstance(queued[0], DocumentLines)
    written: list[bytes] = []
    pipe = Pipeline(lambda _d: None, deep=False, text_sink=lambda _d: None, ndjson=written.append)
    pipe._ship_deep(queued)
    assert written == [b'{"n":1}\n{"n":2}\n'] and pipe.stats.deep_docs == 2


def _repeated_capture(source: Path, target: Path, copies: int) -> None:
    """``source``'s records ``copies`` times, each copy a second after the previous one (the same connections, one
    after another): a classic pcap longer than one read window, so analyzer processes are at work mid-file."""
    data = source.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1"  # little-endian, microseconds
    records, pos = [], 24
    while pos + 16 <= len(data):
        caplen = int.from_bytes(data[pos + 8:pos + 12], "little")
        records.append((int.from_bytes(data[pos:pos + 4], "little"), data[pos + 4:pos + 16 + caplen]))
        pos += 16 + caplen
    span = records[-1][0] - records[0][0] + 1
    with target.open("wb") as out:
        out.write(data[:24])
        for copy in range(copies):
            for seconds, rest in records:
                out.write((seconds + copy * span).to_bytes(4, "little") + rest)


def test_an_output_that_closes_mid_file_stops_the_analyzers_at_once(tmp_path: Path, monkeypatch) -> None:
    """``secops ingest ... | head``: the sink's broken pipe reaches the caller as itself (not as damage in the file,
    which used to read on), the analyzer processes and their tshark end without finishing their backlog, their
    spools are removed, and no warning is printed about them."""
    capture = tmp_path / "repeated.pcap"
    _repeated_capture(TESTDATA / "zeek" / "traces" / "http" / "get.pcap", capture, 1500)  # about 9 MB
    spools = tmp_path / "spools"
    spools.mkdir()
    monkeypatch.setenv("TMPDIR", str(spools))  # the children's tshark spools
    shipped: list[dict] = []

    def closing_sink(doc: dict) -> None:
        if len(shipped) == 1000:
            raise BrokenPipeError(32, "Broken pipe")
        shipped.append(doc)

    warnings: list[str] = []
    pipe = Pipeline(closing_sink, on_warning=warnings.append, deep_process_min_bytes=0)
    started = time.monotonic()
    try:
        pipe.process_file(capture)
    except BrokenPipeError:
        pass
    else:
        raise AssertionError("the closed output went unnoticed")
    assert time.monotonic() - started < 20
    assert warnings == []
    assert not [pid for pid in _children(os.getpid())
                if b"deep_process" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert list(spools.iterdir()) == []


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_spares_started_before_the_configuration_is_read_do_the_run_or_end_unused(monkeypatch) -> None:
    """``secops ingest`` of a large capture starts its analyzer processes, each with tshark on the default path,
    before it reads its configuration (``deep_spares``): the run takes them and gives the documents of analyzers in
    a thread, with that tshark or, told another path, the one it names; spares nobody takes stop their tshark and
    end when released."""
    from collectors import deep_spares
    from secops.config import SensorSettings

    assert SensorSettings().tshark_path == deep_spares.DEFAULT_TSHARK
    monkeypatch.setattr(deep_spares, "DEEP_PROCESS_MIN_BYTES", 0)
    path = CAPTURES[0]
    reference, warned = ingest([path], own_process=False)
    for tshark_path in (deep_spares.DEFAULT_TSHARK, shutil.which("tshark")):
        deep_spares.prestart(["--flag-like", "no-such-file", str(path)])
        spares = list(deep_spares._spares)
        assert len(spares) == deep_spares.DEEP_PROCESSES
        docs, warnings = ingest([path], own_process=True, tshark_path=tshark_path)
        assert not deep_spares._spares and all(spare.wait(timeout=30) == 0 for spare in spares)
        assert sorted(docs, key=lambda d: d["_id"]) == sorted(reference, key=lambda d: d["_id"])
        assert warnings == warned
    deep_spares.prestart([str(path)])
    spares = list(deep_spares._spares)
    deadline = time.monotonic() + 30
    while not all(_children(spare.pid) for spare in spares) and time.monotonic() < deadline:
        time.sleep(0.05)  # each spare starts its tshark once its imports are done
    tsharks = [pid for spare in spares for pid in _children(spare.pid)]
    assert len(tsharks) == len(spares)
    deep_spares.release()
    assert all(spare.wait(timeout=30) == 0 for spare in spares)
    assert not [pid for pid in tsharks if _running(pid)]
