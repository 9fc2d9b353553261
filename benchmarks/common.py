"""Shared benchmark plumbing: a throwaway local Elasticsearch node and result tables."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table

from secops.devstack.stack import ElasticsearchNode

console = Console()


@contextlib.contextmanager
def local_node(heap: str = "2g") -> Iterator[ElasticsearchNode]:
    """A fresh single-node cluster for one benchmark run, removed afterwards (SECOPS_BENCH_ES_URL reuses one)."""
    if url := os.environ.get("SECOPS_BENCH_ES_URL"):
        yield type("External", (), {"url": url})()
        return
    base = Path(tempfile.mkdtemp(prefix="secops-bench-es-"))
    os.chmod(base, 0o755)
    node = ElasticsearchNode(base_dir=base, heap=heap).start()
    try:
        yield node
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def print_table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*(f"{c:,.1f}" if isinstance(c, float) else str(c) for c in row))
    console.print(table)
