"""The readers setup.py compiles with mypyc run compiled, from their current source (a silent fallback to the
interpreter would hide a measured slowdown, and a stale build would run code that is no longer in the tree)."""

from __future__ import annotations

import gc
import importlib
import os
import subprocess
import sys
import tracemalloc
from importlib.machinery import EXTENSION_SUFFIXES, ExtensionFileLoader
from pathlib import Path

import pytest

from collectors.ingest import Pipeline
from tests.support import REPO, TESTDATA
from tests.support.compiled import compiled_sources

# TLS, HTTP (with bodies and 100-continue), DNS and FTP: each reader's reassembly buffers grow and are let go
CAPTURES = [TESTDATA / "zeek/traces" / name for name in (
    "tls/tls1.2.pcap", "tls/tls-conn-with-extensions.pcap", "http/100-continue.pcap", "http/multipart-form-data.pcap",
    "dns-txt-multiple.pcap", "ipv6-fragmented-dns.pcap", "globus-url-copy.pcap")]


@pytest.mark.parametrize("source", compiled_sources())
def test_the_reader_runs_compiled_from_its_current_source(source: str) -> None:
    assert '__name__ == "__main__"' not in (REPO / source).read_text(), (
        f"{source} has a command-line entry: an extension module cannot run with `python3 -m`")
    module = importlib.import_module(source.removesuffix(".py").replace("/", "."))
    assert isinstance(module.__loader__, ExtensionFileLoader), (
        f"{source} runs interpreted: run `pip install -e .` or `python3 setup.py build_ext --inplace` (needs gcc)")
    # the module's extension is a shim; the compiled code of every reader is in the group's library (setup.py)
    built = REPO / f"collectors/readers__mypyc{EXTENSION_SUFFIXES[0]}"
    assert built.stat().st_mtime >= (REPO / source).stat().st_mtime, (
        f"{built.name} is older than {source}: rebuild with `python3 setup.py build_ext --inplace`")


def test_the_compiled_readers_hold_no_memory_once_their_connections_are_logged() -> None:
    """mypy before 2.4.1 compiled ``bytes + bytes`` to code that kept a reference to the left operand: every
    reassembly buffer a reader grew stayed in memory (1.2 KB a TLS connection). Reading the same captures again
    must not hold more memory than the first reading left."""
    docs: list[dict] = []

    def read_all() -> int:
        pipe = Pipeline(docs.append, deep=True, on_warning=lambda _: None)
        for capture in CAPTURES:
            pipe.process_file(capture)
        pipe.finish()
        count = len(docs)
        docs.clear()
        gc.collect()
        return count

    assert read_all() > 0
    tracemalloc.start()
    try:
        read_all()
        after_one = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            read_all()
        growth = tracemalloc.get_traced_memory()[0] - after_one
    finally:
        tracemalloc.stop()
    assert growth < 64 * 1024, f"{growth} bytes more after three more readings"


def test_compiled_and_interpreted_readers_make_the_same_documents(tmp_path: Path) -> None:
    """The differential oracle for the compiler: every shared capture read by the compiled build and by the same
    sources interpreted gives the same documents and warnings (mypyc adds runtime type checks and its own
    implementations of Python operations; one of those leaked)."""
    captures = sorted(str(p) for p in [*TESTDATA.glob("zeek/traces/**/*.pcap*"), *TESTDATA.glob("attacks/**/*.pcap*")])
    assert len(captures) > 100
    outputs = {mode: tmp_path / f"{mode}.jsonl" for mode in ("compiled", "interpreted")}
    with outputs["compiled"].open("wb") as compiled_out, outputs["interpreted"].open("wb") as interpreted_out:
        runs = [subprocess.Popen([sys.executable, "-m", "tests.support.read_docs", *flags, *captures], cwd=REPO,
                                 env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=out, stderr=subprocess.PIPE)
                for flags, out in (([], compiled_out), (["--from-source"], interpreted_out))]
        errors = [run.communicate(timeout=600)[1] for run in runs]  # both read at once (2 cores)
    assert [run.returncode for run in runs] == [0, 0], b"".join(errors)[-3000:]
    compiled_head, compiled = outputs["compiled"].read_bytes().split(b"\n", 1)
    interpreted_head, interpreted = outputs["interpreted"].read_bytes().split(b"\n", 1)
    assert (compiled_head, interpreted_head) == (b'{"compiled":true}', b'{"compiled":false}')
    assert compiled.count(b"\n") > 1000
    assert compiled == interpreted


def test_the_rust_engines_run_built_from_their_current_source() -> None:
    """collectors._rs (setup.py, setuptools-rust) is imported, and no source of its crate is newer than it."""
    module = importlib.import_module("collectors._rs")
    built = Path(module.__file__ or "")
    crate = REPO / "collectors/rust"
    stale = [str(source.relative_to(REPO)) for source in [*crate.glob("src/**/*.rs"), crate / "Cargo.toml",
                                                          crate / "Cargo.lock"]
             if source.stat().st_mtime > built.stat().st_mtime]
    assert not stale, f"{built.name} is older than {stale}: rebuild with `python3 setup.py build_ext --inplace`"
