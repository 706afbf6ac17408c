"""A sliding-window request limiter on real (monotonic) time.

It deliberately ignores the emulator's data clock: tests and benchmarks measure real rates.
"""

from __future__ import annotations

import threading
import time
from collections import deque

WINDOW_S = 60.0


class RateLimiter:
    """Admit at most `per_min` requests in any 60 s window; None admits everything."""

    def __init__(self, per_min: int | None = None) -> None:
        self._lock = threading.Lock()
        self._per_min = per_min
        self._admitted: deque[float] = deque()

    @property
    def per_min(self) -> int | None:
        return self._per_min

    def set_limit(self, per_min: int | None) -> None:
        with self._lock:
            self._per_min = per_min

    def reset(self) -> None:
        with self._lock:
            self._admitted.clear()

    def acquire(self, now: float | None = None) -> tuple[float | None, int]:
        """Try to admit one request.

        Returns (None, remaining) when admitted, or (seconds until a slot frees, 0) when not.
        Refused requests do not take a slot.
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            limit = self._per_min
            if limit is None:
                return None, 0
            q = self._admitted
            while q and q[0] <= now - WINDOW_S:
                q.popleft()
            if len(q) < limit:
                q.append(now)
                return None, limit - len(q)
            return q[len(q) - limit] + WINDOW_S - now, 0
