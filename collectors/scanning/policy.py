"""Scan policy scheduling: maintenance windows and when a policy is due.

Windows look like ``Mon-Fri 22:00-06:00``, ``Sat,Sun 00:00-24:00``, ``daily 01:00-03:00`` or just
``22:00-06:00`` (every day), in UTC. A window that ends before it starts runs past midnight and
belongs to the day it starts on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from secops.config import ScanPolicy

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WINDOW_RE = re.compile(r"^(?:(?P<days>[A-Za-z,\-]+)\s+)?(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})$")


class PolicyError(ValueError):
    """A maintenance window that cannot be parsed."""


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after midnight
    end: int  # minutes after midnight, may be <= start (crosses midnight), 1440 = end of day

    def contains(self, when: datetime) -> bool:
        minute = when.hour * 60 + when.minute
        today, yesterday = when.weekday(), (when.weekday() - 1) % 7
        if self.start < self.end:
            return today in self.days and self.start <= minute < self.end
        return (today in self.days and minute >= self.start) or (yesterday in self.days and minute < self.end)


def _minutes(text: str, spec: str) -> int:
    h, m = (int(x) for x in text.split(":"))
    if h == 24 and m == 0:
        return 1440
    try:
        return time(h, m).hour * 60 + m
    except ValueError:
        raise PolicyError(f"maintenance window {spec!r}: {text} is not a time of day") from None


def _days(text: str | None, spec: str) -> frozenset[int]:
    if not text or text.lower() in ("daily", "every"):
        return frozenset(range(7))
    out: set[int] = set()
    for part in text.lower().split(","):
        a, _, b = part.partition("-")
        if a[:3] not in DAYS or (b and b[:3] not in DAYS):
            raise PolicyError(f"maintenance window {spec!r}: unknown day in {part!r} (use Mon..Sun)")
        i, j = DAYS.index(a[:3]), DAYS.index((b or a)[:3])
        out.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
    return frozenset(out)


def parse_window(spec: str) -> Window:
    m = WINDOW_RE.match(spec.strip())
    if not m:
        raise PolicyError(f"maintenance window {spec!r}: expected e.g. 'Mon-Fri 22:00-06:00'")
    start, end = _minutes(m["start"], spec), _minutes(m["end"], spec)
    if start == end:
        raise PolicyError(f"maintenance window {spec!r} is empty")
    return Window(_days(m["days"], spec), start, end)


def in_window(policy: ScanPolicy, when: datetime) -> bool:
    """True when the policy may scan now (no windows = always)."""
    if not policy.maintenance_windows:
        return True
    return any(parse_window(w).contains(when) for w in policy.maintenance_windows)


def is_due(policy: ScanPolicy, last_run: datetime | None, now: datetime) -> bool:
    if not in_window(policy, now):
        return False
    return last_run is None or now - last_run >= timedelta(minutes=policy.every_minutes)
