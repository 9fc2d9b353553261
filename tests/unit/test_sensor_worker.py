"""A sensor worker on spool chunks: flows spanning chunks stay whole, finished connections ship as soon as the
capture is complete past their close delay, a damaged chunk is reported and skipped, a backlog batch is read
in one deep pass with the same result."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from collectors.ingest import Pipeline
from collectors.pcapio import read_capture
from collectors.sensor_worker import EXPIRE_MARGIN_NS, BackgroundOut, Batch, Worker, WorkerConfig
from tests.support import TESTDATA
from tests.unit.test_flows_spool import spool_from

TRACE = TESTDATA / "zeek" / "traces" / "modbus" / "modbus-and-non-modbus-p502.pcap"
NS = 1_000_000_000


class Collect:
    def __init__(self) -> None:
        self.docs: list[dict] = []
        self.flushes = 0

    def add(self, doc: dict) -> None:
        self.docs.append(doc)

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        pass

    def conns(self) -> list[dict]:
        return [d for d in self.docs if d["event"]["dataset"] == "secops.conn"]


def key(d: dict) -> tuple:
    c = d["secops"]["conn"]
    return (d["network"]["community_id"], d["source"]["packets"], d["destination"]["packets"], c["orig_bytes"],
            c["resp_bytes"], c["state"], c["history"])


def offline(trace: Path, deep: bool = False) -> list[dict]:
    docs: list[dict] = []
    pipe = Pipeline(docs.append, deep=deep)
    pipe.process_file(trace)
    pipe.finish()
    return docs


def last_ts(chunk: Path) -> int:
    return max(r[0] for r in read_capture(chunk))


def worker(deep: bool = False, engine: str = "auto") -> tuple[Worker, Collect, list[str]]:
    out, warnings = Collect(), []
    cfg = WorkerConfig(0, "test-sensor", "ndjson", deep=deep, engine=engine)
    return Worker(cfg, out, warnings.append), out, warnings


@pytest.mark.parametrize("engine", ["native", "python"])
def test_flows_spanning_chunks_stay_whole_and_ship_promptly(tmp_path: Path, engine: str) -> None:
    chunks = [c.path for c in spool_from(TRACE, tmp_path / "spool", per_chunk=7).chunks()]
    assert len(chunks) > 5
    w, out, _ = worker(engine=engine)
    shipped_before_finish = 0
    for chunk in chunks:
        done = w.run_batch(Batch((chunk,), last_ts(chunk) + 1))
        assert done.packets == sum(1 for _ in read_capture(chunk)) and not done.damaged
    # a quiet link: the capture is complete well past every close delay
    w.run_batch(Batch((), last_ts(chunks[-1]) + 10 * NS + EXPIRE_MARGIN_NS))
    shipped_before_finish = len(out.conns())
    w.finish()
    want = [d for d in offline(TRACE) if d["event"]["dataset"] == "secops.conn"]
    assert Counter(map(key, out.conns())) == Counter(map(key, want))
    closed = [d for d in want if d["secops"]["conn"]["state"] in ("SF", "RSTO", "RSTR", "REJ", "S0")]
    assert closed and shipped_before_finish >= len(closed), "finished connections waited for the end of the run"
    assert out.flushes >= len(chunks), "every batch flushes the output (fresh data)"


def test_connection_waits_for_close_delay_then_ships(tmp_path: Path) -> None:
    chunks = [c.path for c in spool_from(TRACE, tmp_path / "spool", per_chunk=1000).chunks()]
    w, out, _ = worker()
    end = last_ts(chunks[0])
    w.run_batch(Batch((chunks[0],), end + 1))
    early = len(out.conns())
    w.run_batch(Batch((), end + 7 * NS + EXPIRE_MARGIN_NS))
    assert len(out.conns()) > early, "nothing shipped once the close delay had passed"


def test_damaged_chunk_is_reported_and_the_rest_processed(tmp_path: Path) -> None:
    chunks = [c.path for c in spool_from(TRACE, tmp_path / "spool", per_chunk=20).chunks()]
    garbage = chunks[1].with_name("chunk-1-999998.pcap")
    garbage.write_bytes(b"this is not a capture file at all" * 10)
    truncated = chunks[2]
    truncated.write_bytes(truncated.read_bytes()[:-7])
    w, out, warnings = worker()
    damaged, packets = [], 0
    for chunk in [chunks[0], garbage, *chunks[1:]]:
        done = w.run_batch(Batch((chunk,), last_ts(chunks[0])))
        damaged += done.damaged
        packets += done.packets
        warnings += done.warnings
    w.finish()
    assert damaged == [garbage]
    assert any("damaged chunk skipped" in m for m in warnings)
    assert any("truncat" in m.lower() for m in warnings), warnings
    assert packets == sum(1 for _ in read_capture(TRACE)) - 1  # only the cut record of the truncated chunk
    assert out.conns()


def test_backlog_batch_is_one_deep_pass_with_the_same_documents(tmp_path: Path) -> None:
    assert shutil.which("tshark"), "tshark is needed for the deep path (.ci/setup installs it)"
    chunks = [c.path for c in spool_from(TRACE, tmp_path / "spool", per_chunk=30).chunks()]
    w, out, _ = worker(deep=True)
    done = w.run_batch(Batch(tuple(chunks), last_ts(chunks[-1]) + 1))
    w.finish()
    assert done.packets == sum(1 for _ in read_capture(TRACE)) and not list((tmp_path / "spool").glob(".batch-*"))
    want = offline(TRACE, deep=True)
    assert Counter(map(key, out.conns())) == Counter(map(key, [d for d in want if d["event"]["dataset"] ==
                                                               "secops.conn"]))
    assert Counter(d["event"]["dataset"] for d in out.docs) == Counter(d["event"]["dataset"] for d in want)


def test_sensor_run_help_explains_the_options() -> None:
    import os
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "secops", "sensor", "run", "--help"], capture_output=True, text=True,
                         env=dict(os.environ, COLUMNS="200"), timeout=60, check=True)
    for option in ("--interface", "--workers", "--rotate-seconds", "--bpf", "--no-deep", "--output", "--duration"):
        assert option in res.stdout
    assert "dumpcap" in res.stdout and "secops.sensor" in res.stdout and "backlog" in res.stdout


class HeldWriter:
    """A writer whose every add waits until ``release`` is set (a bulk request hanging on a cut link)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.docs: list[dict] = []
        self.closed = False

    def add(self, doc: dict) -> None:
        self.release.wait()
        self.docs.append(doc)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_a_non_waiting_output_never_blocks_its_caller_and_loses_nothing():
    writer = HeldWriter()
    out = BackgroundOut(writer, depth=1, wait=False, close_writer=False)
    started = time.monotonic()
    for i in range(20):  # the writer holds its first batch, the queue (depth 1) is full after the second
        out.add({"n": i})
        out.flush()
    assert time.monotonic() - started < 1.0, "flush waited for the writer"
    writer.release.set()
    out.close()  # hands over what the full queue made it keep
    assert [d["n"] for d in writer.docs] == list(range(20)) and not writer.closed
