"""Durable on-disk spool for documents Elasticsearch could not take (yet).

One file per spooled batch, named by a monotonic sequence so replay preserves order. A file is
written to a temporary name, fsync'd, renamed and its directory fsync'd, so it is either complete
or absent. Its last line is a trailer with the record count and a BLAKE2b digest of the records,
so corruption on disk is detected; a corrupt file is moved to ``corrupt/`` and reported, and the
other files still replay.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

log = logging.getLogger(__name__)


class SpoolCorrupt(ValueError):
    """A spool file failed its integrity check."""


@dataclass(frozen=True)
class SpoolRecord:
    index: str
    id: str
    source: dict


class Spool:
    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.corrupt_dir = self.dir / "corrupt"
        self.dead_dir = self.dir / "dead"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._seq = 0

    def _next_name(self) -> str:
        # time_ns keeps order across processes; the counter keeps it within one.
        self._seq += 1
        return f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.ndjson"

    def _write(self, directory: Path, lines: list[bytes]) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        digest = hashlib.blake2b(digest_size=16)
        for line in lines:
            digest.update(line)
        trailer = orjson.dumps({"end": len(lines), "blake2b": digest.hexdigest()}) + b"\n"
        name = self._next_name()
        tmp = directory / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            fh.writelines(lines)
            fh.write(trailer)
            fh.flush()
            os.fsync(fh.fileno())
        final = directory / name
        os.replace(tmp, final)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return final

    @staticmethod
    def encode(index: str, doc_id: str, source: bytes) -> bytes:
        """One record line; ``source`` is the already serialised JSON document."""
        return b'{"i":' + orjson.dumps(index) + b',"d":' + orjson.dumps(doc_id) + b',"s":' + source + b"}\n"

    def append(self, lines: list[bytes]) -> Path:
        """Durably store encoded records (see encode) as one batch file."""
        return self._write(self.dir, lines)

    def dead_letter(self, lines: list[bytes]) -> Path:
        """Documents Elasticsearch rejected for good (mapping errors): kept for an operator, never replayed."""
        return self._write(self.dead_dir, lines)

    def files(self) -> list[Path]:
        return sorted(p for p in self.dir.glob("*.ndjson") if p.is_file())

    def pending(self) -> int:
        return len(self.files())

    def read(self, path: Path) -> list[SpoolRecord]:
        """All records of one file, or SpoolCorrupt when the trailer does not verify."""
        data = path.read_bytes()
        body, sep, trailer_line = data.rstrip(b"\n").rpartition(b"\n")
        if not sep:
            body, trailer_line = b"", data.rstrip(b"\n")
        try:
            trailer = orjson.loads(trailer_line)
            count, expected = int(trailer["end"]), trailer["blake2b"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise SpoolCorrupt(f"{path.name}: missing or unreadable trailer") from None
        lines = [line + b"\n" for line in body.split(b"\n")] if body else []
        digest = hashlib.blake2b(digest_size=16)
        for line in lines:
            digest.update(line)
        if len(lines) != count or digest.hexdigest() != expected:
            raise SpoolCorrupt(f"{path.name}: {len(lines)} records / digest mismatch (trailer says {count})")
        records = []
        for n, line in enumerate(lines, 1):
            try:
                rec = orjson.loads(line)
                records.append(SpoolRecord(rec["i"], rec["d"], rec["s"]))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise SpoolCorrupt(f"{path.name}: record {n} unreadable") from None
        return records

    def quarantine(self, path: Path) -> Path:
        self.corrupt_dir.mkdir(parents=True, exist_ok=True)
        target = self.corrupt_dir / path.name
        os.replace(path, target)
        return target

