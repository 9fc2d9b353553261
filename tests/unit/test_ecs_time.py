"""``secops.ecs.iso`` formats epoch seconds without a datetime on the hot path: the text must equal what
``datetime.fromtimestamp`` gives (the same half-even microsecond rounding), for every time and at the edges."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

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
