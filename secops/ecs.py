"""Elastic Common Schema helpers shared by every context: ids, timestamps, dotted access, datasets."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any


def doc_id(*parts: Any) -> str:
    """Deterministic document id from a document's content identity (replays never duplicate): BLAKE2b-128 of
    each part followed by a 0x1f separator."""
    text = "".join([f"{p}\x1f" for p in parts])
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime | float | int | None = None) -> str:
    """ISO-8601 UTC with microseconds and a Z, as Elasticsearch's date type reads it."""
    if ts is None:
        ts = utcnow()
    elif isinstance(ts, (int, float)):
        if 0 <= ts < 253402300800:  # the common case, without a datetime or a format spec (see conn.iso_ns)
            second = int(ts)
            micros = round((ts - second) * 1e6)  # the fraction is exact; rounded as datetime rounds (half even)
            if micros >= 1_000_000:
                second += 1
                micros -= 1_000_000
            return second_text(second) + str(micros + 1_000_000)[1:] + "Z"
        ts = datetime.fromtimestamp(ts, UTC)
    elif ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_SECOND_TEXT: dict[int, str] = {}  # "2024-01-01T00:00:00." by second since the epoch (documents share seconds)
_DAY_TEXT: dict[int, str] = {}  # "2024-01-01T" by day since the epoch
_TWO_DIGITS = [f"{n:02d}" for n in range(60)]


def second_text(second: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.`` of a non-negative epoch second, from caches: a datetime and strftime cost 2 us, and
    a 1M-packet capture's documents fall in about 17k different seconds."""
    text = _SECOND_TEXT.get(second)
    if text is not None:
        return text
    if len(_SECOND_TEXT) >= 65536:
        _SECOND_TEXT.clear()
    days, in_day = divmod(second, 86_400)
    day = _DAY_TEXT.get(days)
    if day is None:
        if len(_DAY_TEXT) >= 65536:
            _DAY_TEXT.clear()
        day = _DAY_TEXT[days] = datetime.fromtimestamp(days * 86_400, UTC).strftime("%Y-%m-%dT")
    hours, rest = divmod(in_day, 3600)
    minutes, seconds = divmod(rest, 60)
    text = _SECOND_TEXT[second] = day + _TWO_DIGITS[hours] + ":" + _TWO_DIGITS[minutes] + ":" + \
        _TWO_DIGITS[seconds] + "."
    return text


def parse_time(value: str | datetime | float | int) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def get(doc: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """Read ``a.b.c`` from nested dicts (or a flattened key of that name)."""
    if dotted in doc:
        return doc[dotted]
    cur: Any = doc
    for part in dotted.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            return default
    return cur


@lru_cache(maxsize=4096)
def _path(dotted: str) -> tuple[tuple[str, ...], str]:
    *parents, leaf = dotted.split(".")
    return tuple(parents), leaf


def put(doc: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested dicts, creating the levels."""
    cur = doc
    parents, leaf = _path(dotted)
    for part in parents:
        cur = cur.setdefault(part, {})
    cur[leaf] = value


def flatten(doc: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, leaf value) pairs; lists are leaves."""
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, name + ".")
        else:
            yield name, value


def dataset_short(dataset: str) -> str:
    """'secops.conn' -> 'conn' (index names use the short form)."""
    return dataset.split(".", 1)[1] if dataset.startswith("secops.") else dataset
