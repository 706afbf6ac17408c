"""The emulator's data clock: what "now" is for every response.

Real time by default; tests set, freeze and advance it. The rate limiter does NOT use this clock
(it measures real request rates with time.monotonic).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


def to_utc(dt: datetime) -> datetime:
    """Return `dt` as an aware UTC datetime; a naive datetime is taken to be UTC."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 date or datetime ('Z' allowed) into an aware UTC datetime."""
    return to_utc(datetime.fromisoformat(text.strip().replace("z", "Z")))


class Clock:
    """A settable clock. Running: it ticks with real time from the last `set`. Frozen: it stands.

    `Clock()` runs on real time. `Clock(start)` starts frozen at `start` so tests are
    deterministic; call `run()` to let it tick from there.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._frozen = start is not None
        # now = _base_ms + (monotonic elapsed since _anchor) when running; _base_ms when frozen.
        self._base_ms = _ms(to_utc(start)) if start is not None else time.time_ns() // 1_000_000
        self._anchor = time.monotonic_ns()

    def now_ms(self) -> int:
        """Current emulated time in integer milliseconds since the unix epoch."""
        with self._lock:
            return self._now_ms_locked()

    def now(self) -> datetime:
        """Current emulated time as an aware UTC datetime (millisecond precision)."""
        return datetime.fromtimestamp(self.now_ms() / 1000, tz=UTC)

    def set(self, dt: datetime) -> None:
        """Jump to `dt`; a frozen clock stays frozen, a running one ticks on from `dt`."""
        with self._lock:
            self._base_ms = _ms(to_utc(dt))
            self._anchor = time.monotonic_ns()

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward (or back, with a negative delta) by `delta`."""
        with self._lock:
            self._base_ms = self._now_ms_locked() + round(delta.total_seconds() * 1000)
            self._anchor = time.monotonic_ns()

    def freeze(self) -> None:
        """Stop the clock at the current time."""
        with self._lock:
            self._base_ms = self._now_ms_locked()
            self._frozen = True

    def run(self) -> None:
        """Let a frozen clock tick with real time again, from where it stands."""
        with self._lock:
            self._base_ms = self._now_ms_locked()
            self._anchor = time.monotonic_ns()
            self._frozen = False

    @property
    def frozen(self) -> bool:
        return self._frozen

    def _now_ms_locked(self) -> int:
        if self._frozen:
            return self._base_ms
        return self._base_ms + (time.monotonic_ns() - self._anchor) // 1_000_000


def _ms(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_ms(ms: int) -> str:
    """Format epoch milliseconds like CoinGecko's last_updated: 2025-03-04T14:45:37.123Z."""
    dt = _EPOCH + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def iso_ms_offset(ms: int) -> str:
    """Format epoch milliseconds like CoinGecko error timestamps: 2024-04-20T22:00:05.123+00:00."""
    return iso_ms(ms)[:-1] + "+00:00"


def dt_ms(dt: datetime) -> int:
    """Epoch milliseconds of a datetime (naive = UTC)."""
    return _ms(to_utc(dt))
