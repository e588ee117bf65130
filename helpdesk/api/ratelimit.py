"""The per-token rate limit (the ``limits`` package, moving window, in memory).

Each web process counts on its own: with N processes behind a proxy a token
may make up to N times the limit. ``HELPDESK_API_RATE_LIMIT`` sets it, in the
``limits`` notation ("600/minute", "20/second;600/minute").
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class RateLimit:
    def __init__(self, spec: str) -> None:
        self.items: list[RateLimitItem] = parse_many(spec) if spec.strip() else []
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, key: str) -> int | None:
        """Count one request for ``key``; None if allowed, else the seconds to wait."""
        for item in self.items:
            if not self._limiter.hit(item, key):
                reset = self._limiter.get_window_stats(item, key).reset_time
                return max(1, math.ceil(reset - time.time()))
        return None
