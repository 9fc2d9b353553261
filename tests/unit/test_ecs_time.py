"""``secops.ecs.iso`` and the flow path's ``collectors.conn.iso_ns`` format times without a datetime on the hot
path: the text must equal what ``datetime.fromtimestamp`` gives (``iso``: the same half-even microsecond rounding;
``iso_ns``: microseconds truncated from nanoseconds), for every time and at the edges."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from collectors.conn import iso_ns
from secops.ecs import iso


def reference(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@given(st.floats(min_value=0, max_value=253402300799, allow_nan=False, allow_infinity=False))
def test_any_epoch_time_reads_as_datetime_reads_it(ts: float) -> None:
    assert iso(ts) == reference(ts)


def test_half_microseconds_and_the_end_of_a_second() -> None:
    for ts in (0.0, 0.0000005, 1700000000.0000005, 1700000000.0000015, 1700000000.9999995, 1700000000.9999999,
               2**31 + 0.9999999, 253402300799.0, 1):
        assert iso(ts) == reference(ts), ts
    assert iso(-1.5) == reference(-1.5)  # outside the fast range: the datetime path


@given(st.lists(st.integers(min_value=0, max_value=253402300798_999_999_999), min_size=1, max_size=50))
def test_nanosecond_times_read_as_datetime_reads_them(times: list[int]) -> None:
    for ns in times + [t + 1_000 for t in times]:  # a second time in the same second: the cached prefix
        second = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        assert iso_ns(ns) == f"{second}.{ns % 1_000_000_000 // 1000:06d}Z", ns
