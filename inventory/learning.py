"""The learning period of a new zone: its first assets are recorded without a 'new asset' alert each.

A zone starts learning at the first merge that finds it empty; the moment is kept as a checkpoint
(`inventory.learning.<zone>`). Assets created while the zone learns are recorded as usual, and their
`new_asset` change carries `learning: true`, which the "New Asset On The Network" rule leaves out.
The period lasts `inventory.learning_hours` from that first merge (0: the first merge only). A zone that
already holds assets when no checkpoint exists (an inventory older than this feature) has learned.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from inventory.store import AssetStore
from secops.audit import write_audit
from secops.ecs import iso, parse_time
from secops.es.store import Store

CHECKPOINT_PREFIX = "inventory.learning."


class ZoneLearning:
    """Answers 'is this zone still learning?' once per zone and merge run, and counts what it learned."""

    def __init__(self, store: Store, assets: AssetStore, hours: float, now: datetime):
        self.store, self.assets, self.hours, self.now = store, assets, hours, now
        self._learning: dict[str, bool] = {}
        self._until: dict[str, str] = {}
        self.learned: Counter[str] = Counter()  # assets recorded without an alert, by zone

    def is_learning(self, zone: str) -> bool:
        if zone not in self._learning:
            self._learning[zone] = self._decide(zone)
        return self._learning[zone]

    def _decide(self, zone: str) -> bool:
        key = CHECKPOINT_PREFIX + zone
        started = self.store.read_checkpoint(key)
        if started is None:
            if self.assets.count(zone):
                return False
            self.store.write_checkpoint(key, iso(self.now))
            self._until[zone] = iso(self.now + timedelta(hours=self.hours))
            return True  # this merge is the zone's first: it learns whatever the period
        until = parse_time(started) + timedelta(hours=self.hours)
        self._until[zone] = iso(until)
        return self.now < until

    def record(self, zone: str) -> None:
        self.learned[zone] += 1

    def audit(self) -> None:
        """One audit line per zone that learned assets in this run: 'zone X learned N assets'."""
        for zone, n in sorted(self.learned.items()):
            write_audit(self.store.es, self.store.prefix, "inventory.zone_learned", zone, "success", actor="inventory",
                        details={"assets": n, "learning_until": self._until.get(zone)})
