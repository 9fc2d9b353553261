"""Durable on-disk spool for documents Elasticsearch could not take (yet).

One file per spooled batch, named by a monotonic sequence so replay preserves order. A file is
written to a temporary name, fsync'd, renamed and its directory fsync'd, so it is either complete
or absent (a write that fails, e.g. on a full disk, removes its temporary file; one left by a crash is
counted as partial by :meth:`Spool.summary`). Its last line is a trailer with the record count and a
BLAKE2b digest of the records, so corruption on disk is detected; a corrupt file is moved to
``corrupt/`` and reported, and the other files still replay.
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
class SpoolSummary:
    """What the spool holds, read without changing anything."""

    pending_files: int
    pending_documents: int
    pending_bytes: int
    partial_files: int  # temporary files of writes that never completed (a crash): not replayable
    quarantined_files: int
    dead_letter_files: int
    dead_letter_documents: int
    unreadable_files: int  # pending files whose trailer cannot be read (quarantined at replay)


@dataclass(frozen=True)
class SpoolRecord:
    index: str
    id: str
    source: dict


class Spool:
    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.corrupt_dir = self.dir / "corrupt"
        self.dead_dir = self.dir / "dead"  # directories are made by the first write: reading changes nothing
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
        final = directory / name
        try:
            with open(tmp, "wb") as fh:
                fh.writelines(lines)
                fh.write(trailer)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            # Never leave a partial file behind (ENOSPC, EIO, EDQUOT), nor one whose rename is not durable:
            # the caller counts the batch as not kept, so the disk must agree.
            tmp.unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            raise
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

    def partial_files(self) -> list[Path]:
        return sorted(p for p in self.dir.glob(".*.ndjson.tmp") if p.is_file())

    def remove_stale_partials(self) -> int:
        """Delete temporary files left by writers that died mid-write (their process is gone); count them."""
        removed = 0
        for path in self.partial_files():
            try:
                pid = int(path.name.split("-")[1])
                os.kill(pid, 0)
                continue  # its writer is still running
            except (IndexError, ValueError, ProcessLookupError):
                pass
            except PermissionError:
                continue  # alive, another user's
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    @staticmethod
    def trailer_count(path: Path) -> int | None:
        """The record count a file's trailer announces (reads only its tail), None when unreadable."""
        try:
            with path.open("rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - 256))
                tail = fh.read().rstrip(b"\n").rpartition(b"\n")[2]
            return int(orjson.loads(tail)["end"])
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def summary(self) -> SpoolSummary:
        files = self.files()
        counts = [self.trailer_count(p) for p in files]
        dead = sorted(self.dead_dir.glob("*.ndjson")) if self.dead_dir.is_dir() else []
        return SpoolSummary(
            pending_files=len(files), pending_documents=sum(c for c in counts if c is not None),
            pending_bytes=sum(p.stat().st_size for p in files), partial_files=len(self.partial_files()),
            quarantined_files=len(list(self.corrupt_dir.glob("*"))) if self.corrupt_dir.is_dir() else 0,
            dead_letter_files=len(dead), dead_letter_documents=sum(self.trailer_count(p) or 0 for p in dead),
            unreadable_files=sum(c is None for c in counts))

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

