"""Run one fuzz harness: coverage-guided under atheris (libFuzzer driving instrumented Python), or as a replay of
corpus folders with random mutations (no coverage feedback: for sanitizer builds and for the test suite).

    python3 -m tests.fuzz.run TARGET CORPUS_DIR [libFuzzer flags ...]
        e.g. python3 -m tests.fuzz.run dns /tmp/corpus-dns -max_total_time=300 -artifact_prefix=/tmp/
    python3 -m tests.fuzz.run TARGET --replay SECONDS CORPUS_DIR ...

TARGET names ``tests/fuzz/fuzz_TARGET.py``: its ``TestOneInput(data: bytes)`` asserts the parser's contract, so
any exception it lets out is a finding (atheris prints the traceback and saves the input as ``crash-*``). An
empty CORPUS_DIR is first filled with the harness's ``seeds()``; new inputs that reach new coverage are added to
it. The committed regression inputs of ``tests/fuzz/corpus/TARGET`` (crashes found and fixed) are read too.
Only the target's own modules (``TARGETS``) are instrumented: they must not be imported before ``fuzz`` runs.
The readers setup.py compiles with mypyc have no bytecode to instrument, so under atheris every one of them is
imported from its source (the same code; compiled and interpreted modules of one build do not mix); ``--replay``
runs whatever the install built, so replaying a campaign's corpus checks the compiled readers on its inputs.
"""

from __future__ import annotations

import hashlib
import importlib
import random
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tests.support.compiled import import_from_source

# target -> the modules whose coverage guides it
TARGETS: dict[str, tuple[str, ...]] = {
    "dns": ("collectors.protocols.dns_wire", "collectors.protocols.dns", "collectors.protocols.base"),
    "dns_rs": ("collectors.protocols.dns_wire", "collectors.protocols.dns", "collectors.protocols.base",
               "collectors.protocols.documents", "secops.ecs", "collectors.community_id"),
    "http_rs": ("collectors.protocols.http_wire", "collectors.protocols.http", "collectors.protocols.http_native",
                "collectors.protocols.base", "collectors.protocols.documents"),
    "ftp_rs": ("collectors.protocols.ftp", "collectors.protocols.ftp_native", "collectors.protocols.base",
               "collectors.protocols.documents"),
    "ssh": ("collectors.protocols.ssh", "collectors.protocols.reread"),
    "dhcp": ("collectors.protocols.dhcp_wire", "collectors.protocols.dhcp"),
    "detect": ("collectors.protocols.detect",),
    "decode": ("collectors.decode",),
    "pcapio": ("collectors.pcapio",),
    "flowcore": ("collectors.flowpath", "collectors.flows", "collectors.decode", "collectors.selection",
                 "collectors.protocols.detect", "collectors.pcapio", "collectors.protocols.deep_fanout"),
    "x509": ("collectors.protocols.x509", "secops.ecs"),
    "ja4": ("collectors.protocols.ja4",),
    "http_wire": ("collectors.protocols.http_wire", "collectors.protocols.http"),
    "tls_wire": ("collectors.protocols.tls_wire", "collectors.protocols.tls"),
    "tls_rs": ("collectors.protocols.tls_wire", "collectors.protocols.tls", "collectors.protocols.ja4",
               "collectors.protocols.tls_heartbeat", "collectors.protocols.tls_native"),
    "s7comm_rs": ("collectors.protocols.s7comm_wire", "collectors.protocols.s7comm",
                  "collectors.protocols.s7comm_native"),
    "dnp3_rs": ("collectors.protocols.dnp3_wire", "collectors.protocols.dnp3", "collectors.protocols.dnp3_native"),
    "dtls_wire": ("collectors.protocols.dtls_wire", "collectors.protocols.tls_wire", "collectors.protocols.tls"),
    "quic_wire": ("collectors.protocols.quic_wire", "collectors.protocols.tls_wire", "collectors.protocols.tls"),
    "ics_wire": ("collectors.protocols.modbus_wire", "collectors.protocols.dnp3_wire",
                 "collectors.protocols.s7comm_wire", "collectors.protocols.modbus", "collectors.protocols.dnp3",
                 "collectors.protocols.s7comm", "collectors.protocols.iec104_wire", "collectors.protocols.iec104"),
    "smb_wire": ("collectors.protocols.smb_wire", "collectors.protocols.smb", "collectors.protocols.base"),
    "native_tcp": ("collectors.protocols.native_tcp", "collectors.protocols.tcp_reassembly", "collectors.protocols.ftp",
                   "collectors.protocols.http_wire", "collectors.protocols.tls_wire"),
}
CORPUS = Path(__file__).resolve().parent / "corpus"  # committed regression inputs, one folder per target
MAX_INPUT = 8192  # replay mutations grow an input to at most this many bytes


def write_seeds(seeds: Iterable[bytes], folder: Path) -> int:
    """Each seed as a file named by its SHA-1 (libFuzzer's corpus naming); how many were written."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for seed in seeds:
        (folder / hashlib.sha1(seed, usedforsecurity=False).hexdigest()).write_bytes(seed)
        n += 1
    return n


def corpus_inputs(folders: Iterable[Path]) -> list[bytes]:
    return [f.read_bytes() for folder in folders if folder.is_dir() for f in sorted(folder.iterdir()) if f.is_file()]


def mutate(data: bytes, rng: random.Random, other: bytes) -> bytes:
    """A few libFuzzer-like edits: flip, set or insert bytes, erase or duplicate a run, splice with ``other``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randint(0, len(out))
        kind = rng.randrange(6)
        if kind == 0 and pos < len(out):
            out[pos] ^= 1 << rng.randrange(8)
        elif kind == 1 and pos < len(out):
            out[pos] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif kind == 2:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif kind == 3:
            del out[pos:pos + rng.randint(1, 16)]
        elif kind == 4:
            out[pos:pos] = out[pos:pos + rng.randint(1, 64)]
        else:
            cut = rng.randint(0, len(other))
            out = out[:pos] + bytearray(other[cut:])
    return bytes(out[:MAX_INPUT])


def replay(test: Callable[[bytes], None], inputs: list[bytes], seconds: float, seed: int = 0,
           crash_dir: Path | None = None) -> tuple[int, int]:
    """Run ``test`` on every input, then on random mutations of them until ``seconds`` have passed; (inputs,
    mutations) run. The input that fails is saved to ``crash_dir`` (when given) before the error propagates."""
    rng = random.Random(seed)
    runs = 0
    deadline = time.monotonic() + seconds
    data = b""
    try:
        for data in inputs:
            test(data)
        while inputs and time.monotonic() < deadline:
            for _ in range(100):
                data = mutate(rng.choice(inputs), rng, rng.choice(inputs))
                test(data)
                runs += 1
    except BaseException:
        if crash_dir is not None:
            write_seeds([data], crash_dir)
            print(f"failing input saved as {crash_dir}/{hashlib.sha1(data, usedforsecurity=False).hexdigest()}",
                  file=sys.stderr)
        raise
    return len(inputs), runs


def fuzz(target: str, corpus: Path, flags: list[str]) -> None:
    import atheris

    import_from_source()
    with atheris.instrument_imports(include=list(TARGETS[target])):
        harness = importlib.import_module(f"tests.fuzz.fuzz_{target}")
    if not corpus.is_dir() or not any(corpus.iterdir()):
        print(f"#seeds {write_seeds(harness.seeds(), corpus)} written to {corpus}", flush=True)
    dirs = [str(corpus)] + ([str(CORPUS / target)] if (CORPUS / target).is_dir() else [])
    atheris.Setup([sys.argv[0], *flags, *dirs], harness.TestOneInput)
    atheris.Fuzz()


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] not in TARGETS:
        sys.exit(f"usage: python3 -m tests.fuzz.run {{{','.join(TARGETS)}}} CORPUS_DIR [libFuzzer flags]\n"
                 f"       python3 -m tests.fuzz.run TARGET --replay SECONDS CORPUS_DIR ...")
    target = argv[1]
    if argv[2] != "--replay":
        fuzz(target, Path(argv[2]), argv[3:])
        return
    harness = importlib.import_module(f"tests.fuzz.fuzz_{target}")
    inputs = corpus_inputs([*(Path(a) for a in argv[4:]), CORPUS / target]) or list(harness.seeds())
    start = time.monotonic()
    n, runs = replay(harness.TestOneInput, inputs, float(argv[3]), crash_dir=Path.cwd())
    took = time.monotonic() - start
    print(f"{target}: {n} corpus inputs and {runs} mutations in {took:.0f} s ({(n + runs) / took:.0f} exec/s), "
          "no failure")


if __name__ == "__main__":
    main(sys.argv)
