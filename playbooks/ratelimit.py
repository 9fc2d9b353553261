"""Per-action rate limits (``playbooks.rate_limits: {contain: 20}`` = at most 20 acts per hour), in Redis."""

from __future__ import annotations

import time

import redis

from playbooks.errors import PermanentError
from secops.i18n import N_, message

WINDOW = 3600


class RateLimited(PermanentError):
    pass


class RateLimiter:
    """Fixed one-hour windows shared by every worker through Redis."""

    def __init__(self, url: str):
        self.redis = redis.Redis.from_url(url, socket_timeout=5)

    def take(self, action: str, limit: int | None) -> None:
        if limit is None:
            return
        window = int(time.time()) // WINDOW
        key = f"secops:playbooks:rate:{action}:{window}"
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, WINDOW * 2)
        count = pipe.execute()[0]
        if count > limit:
            raise RateLimited(message(N_("rate limit: action %(action)s ran %(limit)s times this hour "
                                         "(playbooks.rate_limits)"), action=action, limit=limit))
