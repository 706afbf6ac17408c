"""Interval names used in the layout, and their lengths."""

from __future__ import annotations

import datetime as dt

INTERVAL_MS = {"30m": 1_800_000, "1h": 3_600_000, "4h": 14_400_000, "4d": 345_600_000}

# /ohlc `days` values the API accepts, and the candle length each returns.
OHLC_DAYS = {1: "30m", 7: "4h", 14: "4h", 30: "4h", 90: "4d", 180: "4d", 365: "4d"}


def ohlc_interval_for_days(days: int) -> str:
    """The candle length a collect of `days` days stores: that of the smallest allowed `days`
    value covering the window (the finest candles that reach back far enough)."""
    for allowed in sorted(OHLC_DAYS):
        if allowed >= days:
            return OHLC_DAYS[allowed]
    return "4d"


def iso_minutes(ms: int) -> str:
    """Epoch milliseconds as a UTC time to the minute, for messages: 2026-11-20T12:00Z."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%MZ")


def year_start_ms(year: int) -> int:
    """The first instant of UTC `year`, in epoch milliseconds: where one year file ends."""
    return int(dt.datetime(year, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
