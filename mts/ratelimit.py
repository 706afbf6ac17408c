"""One rate limiter shared by every worker: evenly spaced calls at the plan's rate, and on a
429 a pause for everyone, then a single probe call before the others resume at a lower rate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Spaces call starts `60/rate` seconds apart (no bursts: CoinGecko counts calls in a
    sliding minute, so a burst followed by steady calls overshoots it)."""

    # Aim slightly under the advertised limit: requests leave in order but reach the server
    # with a little latency jitter.
    HEADROOM = 0.97
    SLOWDOWN = 0.8  # after a 429, the rate drops to this fraction
    MIN_PAUSE_S = 1.0
    PAUSE_STEP_S = 0.25

    def __init__(
        self,
        rate_per_min: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.rate_per_min = rate_per_min * self.HEADROOM
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._pause_s = 0.0
        self._probing = False  # after a pause, one call goes first to see whether it is over
        self._probe_in_flight = False
        self._stopped = False
        self._epoch = 0  # bumped by every 429

    @property
    def interval(self) -> float:
        return 60.0 / self.rate_per_min

    def acquire(self) -> bool:
        """Block until this caller may start a call. True when the call is the probe."""
        while True:
            with self._cond:
                grant = self._try_grant()
            if grant is None:
                continue
            kind, wait_s, epoch, is_probe = grant
            if wait_s > 0:
                self._sleep(wait_s)
            if kind == "paused":
                continue
            with self._cond:
                # A 429 that arrived while this caller waited for its slot voids the slot:
                # firing anyway would only add to the storm.
                if self._epoch == epoch:
                    return is_probe
                if is_probe:
                    self._probe_in_flight = False

    def expected_wait(self) -> float:
        """Seconds a caller asking now would wait for its slot (a hint: others may come first)."""
        with self._cond:
            now = self._clock()
            return max(0.0, self._next_slot - now, self._paused_until - now)

    def _try_grant(self) -> tuple[str, float, int, bool] | None:
        """Under the lock: ("paused", step to sleep, ..) or ("slot", wait until it, epoch, probe?)."""
        if self._stopped:
            raise InterruptedError("rate limiter stopped")
        now = self._clock()
        if now < self._paused_until:
            # Short steps, so stop() ends a long pause quickly.
            return "paused", min(self._paused_until - now, self.PAUSE_STEP_S), self._epoch, False
        is_probe = False
        if self._probing:
            if self._probe_in_flight:
                self._cond.wait(0.5)  # woken when the probe's answer comes
                return None
            self._probe_in_flight = is_probe = True
        slot = max(now, self._next_slot)
        self._next_slot = slot + self.interval
        return "slot", slot - now, self._epoch, is_probe

    def succeeded(self) -> None:
        """A call got a non-429 answer: a probe that succeeds lets everyone go again."""
        with self._cond:
            if self._probing:
                self._probing = False
                self._probe_in_flight = False
                self._pause_s = 0.0
                self._cond.notify_all()

    def rate_limited(self, retry_after: float | None) -> float:
        """A call got a 429: pause every worker, then probe. Returns the pause in seconds."""
        with self._cond:
            # Without a server hint, back off exponentially from a few seconds.
            backoff = max(self.MIN_PAUSE_S * 5, self._pause_s * 2) if self._pause_s else 5.0
            pause = max(retry_after if retry_after is not None else backoff, self.MIN_PAUSE_S)
            pause = min(pause, 300.0)
            now = self._clock()
            if now + pause > self._paused_until:
                self._paused_until = now + pause
            self._pause_s = pause
            if not self._probing:
                self.rate_per_min *= self.SLOWDOWN
            self._probing = True
            self._probe_in_flight = False
            self._epoch += 1
            self._next_slot = max(self._next_slot, self._paused_until)
            self._cond.notify_all()
            return pause

    def release_probe(self) -> None:
        """A probe call ended without telling whether the limit is over (network error)."""
        with self._cond:
            self._probe_in_flight = False
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
