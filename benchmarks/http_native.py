#!/usr/bin/env python3
"""The natively read HTTP connections: the Python reference (``http_native.PythonHttp``) against the Rust engine
(``RustHttp``), per connection, on the same calls.

    python3 benchmarks/http_native.py [--repeat N] [CAPTURE ...]   (default: every shared capture with HTTP)

Each capture goes once through the native TCP path (``TcpNative``, documents as JSON text as in the analyzer
process) with a recorder in front of the HTTP face: the calls it gets (open, feed of each reassembled chunk or
hole, end, expire, finish). Those calls are then replayed ``--repeat`` times on a fresh ``PythonHttp`` and a fresh
``RustHttp`` (raw documents), timing only the face: reassembly and the other readers are out of the figure. Prints
the connections, documents, microseconds per connection of each and the ratio, and whether both gave the same
documents (their JSON, in order).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from benchmarks.common import print_table  # noqa: E402
from collectors.decode import PROTO, Decoder  # noqa: E402
from collectors.flowconst import TCP  # noqa: E402
from collectors.pcapio import CaptureError, read_capture  # noqa: E402
from collectors.protocols import http_native  # noqa: E402
from collectors.protocols.native_tcp import TcpNative  # noqa: E402

Call = tuple[str, tuple[Any, ...]]


class Recorder:
    """The HTTP face, passing every call on to the reference and noting it."""

    def __init__(self, inner: http_native.PythonHttp) -> None:
        self.inner = inner
        self.calls: list[Call] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name not in ("open", "feed", "end", "expire", "finish", "forget"):
            return target

        def call(*args: Any) -> Any:
            self.calls.append((name, args))
            return target(*args)
        return call


def record(capture: Path) -> tuple[list[Call], int]:
    """The calls the native TCP path makes to the HTTP face over a capture, and its connections."""
    native = TcpNative("b", lambda _m: None, None, raw=True)
    recorder = Recorder(http_native.PythonHttp(lambda _m: None, True))
    native.http = recorder  # type: ignore[assignment]
    decoder = Decoder()
    docs: list[Any] = []
    try:
        for ts_ns, linktype, buf, off, caplen, _wire in read_capture(capture, lambda _m: None):
            packets = decoder.decode(linktype, buf, off, caplen, ts_ns)
            if packets and packets[-1][PROTO] == TCP:
                native.take(packets[-1], ts_ns / 1e9, docs)
    except CaptureError:
        pass
    try:
        native.finish()
    except OSError:  # a time datetime cannot write (a capture with broken timestamps)
        return [], 0
    return recorder.calls, sum(1 for name, _ in recorder.calls if name == "open")


def replay(calls: list[Call], rust: bool) -> tuple[float, list[bytes]]:
    """(seconds, documents as JSON) of one replay on a fresh face."""
    face: Any = (http_native.RustHttp(http_native.ENGINE, lambda _m: None, True) if rust  # type: ignore[arg-type]
                 else http_native.PythonHttp(lambda _m: None, True))
    out: list[Any] = []
    started = time.perf_counter()
    for name, args in calls:
        got = getattr(face, name)(*args)
        if got:
            out += got
    elapsed = time.perf_counter() - started
    return elapsed, [orjson.dumps(d) for d in out]


def shared_http_captures() -> list[Path]:
    from tests.support import TESTDATA
    found = sorted(p for p in TESTDATA.rglob("*") if p.is_file() and (".pcap" in p.name or p.suffix == ".cap"))
    return [p for p in found if record(p)[1]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("captures", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    if http_native.ENGINE is None:
        print("collectors._rs has no HttpEngine: nothing to compare")
        return 1
    captures = args.captures or shared_http_captures()
    rows = []
    total = {"py": 0.0, "rs": 0.0, "conns": 0, "docs": 0}
    all_same = True
    for path in captures:
        calls, conns = record(path)
        if not conns:
            continue
        best: dict[bool, float] = {}
        docs: dict[bool, list[bytes]] = {}
        for _ in range(args.repeat):
            for rust in (False, True):
                elapsed, out = replay(calls, rust)
                best[rust] = min(best.get(rust, elapsed), elapsed)
                docs[rust] = out
        same = docs[False] == docs[True]
        all_same = all_same and same
        total["py"] += best[False]
        total["rs"] += best[True]
        total["conns"] += conns
        total["docs"] += len(docs[False])
        rows.append([path.name, conns, len(docs[False]), best[False] / conns * 1e6, best[True] / conns * 1e6,
                     best[False] / best[True], "same" if same else "DIFFERENT"])
    rows.append(["ALL", total["conns"], total["docs"], total["py"] / total["conns"] * 1e6,
                 total["rs"] / total["conns"] * 1e6, total["py"] / total["rs"], "same" if all_same else "DIFFERENT"])
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print_table(f"natively read HTTP, per connection, best of {args.repeat} (load {' '.join(load)})",
                ["capture", "connections", "documents", "Python us/conn", "Rust us/conn", "speed-up", "documents"],
                [[c if not isinstance(c, float) else round(c, 2) for c in row] for row in rows])
    return 0 if all_same else 2


if __name__ == "__main__":
    sys.exit(main())
