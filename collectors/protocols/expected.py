"""Connections a protocol announced before they opened (Zeek's expected connections).

FTP names its data channels on the control connection: a 227/229 reply to PASV/EPSV (the client will connect to
that address and port) or a PORT/EPRT command (the server will connect to the client's). Zeek schedules the
FTP-data analyzer for such a connection for five minutes and logs its service as ``ftp-data``. The FTP analyzer
(deep path, the tshark reader's thread) announces them here; the pipeline claims them as each connection record is
emitted (its own thread), once per announcement.

Limits: at most ``MAX_EXPECTED`` announcements are kept (the oldest are dropped, counted); a record emitted before
the deep path read the announcement (a data connection that closed within the same read block as its control
reply, on a very quiet link) keeps only what was detected from its own payload.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import Counter, OrderedDict
from functools import lru_cache

EXPECT_SECONDS = 300.0  # Zeek: Analyzer::schedule_analyzer(..., 5mins)
MAX_EXPECTED = 10_000

Key = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ipaddress.IPv4Address | ipaddress.IPv6Address, int]


def _key(orig_h: str, resp_h: str, resp_p: int) -> Key | None:
    orig, resp = _address(orig_h), _address(resp_h)
    if orig is None or resp is None:
        return None
    try:
        return orig, resp, int(resp_p)
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address in any of its text forms (parsing IPv6 text was 2.6% of an ingest's main process: every
    connection to an announced port asks)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class ExpectedConnections:
    """Announced (originator, responder, responder port) -> (service, time announced); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[Key, tuple[str, float]] = OrderedDict()
        self._ports: Counter[int] = Counter()  # responder ports announced: most connections are ruled out by it
        self.dropped = 0

    def __bool__(self) -> bool:
        return bool(self._items)

    def expect(self, orig_h: str, resp_h: str, resp_p: int, service: str, ts: float) -> None:
        key = _key(orig_h, resp_h, resp_p)
        if key is None or not 0 < key[2] < 65536:
            return
        with self._lock:
            if key not in self._items:
                self._ports[key[2]] += 1
            self._items[key] = (service, ts)
            self._items.move_to_end(key)
            while len(self._items) > MAX_EXPECTED:
                self._forget(self._items.popitem(last=False)[0])
                self.dropped += 1

    def claim(self, orig_h: str, resp_h: str, resp_p: int, start: float) -> str | None:
        """The service announced for a connection that started at ``start`` (once; None when none was)."""
        if resp_p not in self._ports:  # every connection asks: no address parsing for the ones surely not announced
            return None
        key = _key(orig_h, resp_h, resp_p)
        with self._lock:
            found = self._items.get(key) if key is not None else None
            if found is None or not found[1] - 1.0 <= start <= found[1] + EXPECT_SECONDS:
                return None
            del self._items[key]
            self._forget(key)
        return found[0]

    def _forget(self, key: Key) -> None:
        self._ports[key[2]] -= 1
        if not self._ports[key[2]]:
            del self._ports[key[2]]
