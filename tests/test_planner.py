"""The planner is pure: literal tables in, calls out."""

from datetime import UTC, datetime

import pytest

from mts.checkpoint import Span
from mts.layout import SeriesKey
from mts.planner import (
    DAY,
    HOUR,
    markets_calls,
    plan_collect,
    plan_ohlc,
    split_span,
    steady_calls_per_run,
    window_start,
)
from mts.plans import PLANS

NOW = int(datetime(2026, 11, 20, 12, 34, 56, tzinfo=UTC).timestamp() * 1000)
NOW_H = NOW - NOW % HOUR


@pytest.mark.parametrize(("days", "pieces"), [(1, 1), (90, 1), (91, 2), (180, 2), (181, 3), (365, 5)])
def test_split_span_uses_the_fewest_windows_of_at_most_90_days(days, pieces):
    cuts = split_span(NOW_H - days * DAY, NOW_H, 90)
    assert len(cuts) == pieces
    assert all(e - s <= 90 * DAY and s % HOUR == 0 for s, e in cuts)
    assert cuts[0][0] == NOW_H - days * DAY and cuts[-1][1] == NOW_H
    assert all(a[1] == b[0] for a, b in zip(cuts, cuts[1:], strict=False))


def test_100_day_windows_when_the_plan_has_interval_hourly():
    assert len(split_span(NOW_H - 200 * DAY, NOW_H, 100)) == 2


def test_window_never_reaches_past_the_history_depth():
    demo = PLANS["demo"]
    start = window_start(NOW, 365, demo)
    assert start >= NOW - 365 * DAY + HOUR
    assert start % HOUR == 0
    assert window_start(NOW, 7, demo) == NOW_H - 167 * HOUR
    assert window_start(NOW, 400, PLANS["basic"]) == NOW_H - (400 * 24 - 1) * HOUR


def test_backfill_then_next_hour_then_missed_hours():
    demo = PLANS["demo"]
    universe = ["a", "b"]
    p = plan_collect(
        universe=universe,
        datasets=("market_chart", "markets"),
        days=365,
        now_ms=NOW,
        plan=demo,
        spans={},
        snapshot_hours={"a": NOW_H, "b": NOW_H},
        markets=markets_calls(2, None),
    )
    assert p.calls_by_endpoint() == {"markets": 1, "range": 10, "ohlc": 0}
    spans = {SeriesKey("market_chart", "1h", a): Span(p.window_start, NOW_H + HOUR) for a in universe}
    nxt = plan_collect(
        universe=universe,
        datasets=("market_chart", "markets"),
        days=365,
        now_ms=NOW + HOUR,
        plan=demo,
        spans=spans,
        snapshot_hours={"a": NOW_H + HOUR, "b": NOW_H + HOUR},
        markets=[],
    )
    assert nxt.calls_by_endpoint()["range"] == 0
    assert all(a.snapshot_hour == NOW_H + HOUR for a in nxt.assets)
    later = plan_collect(
        universe=universe,
        datasets=("market_chart",),
        days=365,
        now_ms=NOW + 7 * HOUR,
        plan=demo,
        spans=spans,
        snapshot_hours={"a": NOW_H + 7 * HOUR, "b": NOW_H + 7 * HOUR},
        markets=[],
    )
    calls = [c for a in later.assets for c in a.ranges]
    assert [(c.start, c.end) for c in calls] == [(NOW_H + HOUR, NOW_H + 7 * HOUR)] * 2


def test_a_longer_window_extends_the_stored_span_backwards():
    demo = PLANS["demo"]
    key = SeriesKey("market_chart", "1h", "a")
    stored = Span(NOW_H - 10 * DAY, NOW_H + HOUR)
    p = plan_collect(
        universe=["a"],
        datasets=("market_chart",),
        days=200,
        now_ms=NOW,
        plan=demo,
        spans={key: stored},
        snapshot_hours={"a": NOW_H},
        markets=[],
    )
    ranges = p.assets[0].ranges
    assert all(r.backward for r in ranges) and len(ranges) == 3
    assert ranges[0].end == stored.start  # newest first, so the span stays contiguous
    assert p.assets[0].snapshot_hour is None  # already stored


@pytest.mark.parametrize(
    ("interval", "last_close_ago_h", "expect_days"),
    [("4h", 3, None), ("4h", 4, 7), ("4h", 8 * 24, 14), ("4h", 40 * 24, 30), ("30m", 1, 1), ("4d", 24 * 8, 90)],
)
def test_ohlc_only_when_a_candle_closed_and_with_the_smallest_days(interval, last_close_ago_h, expect_days):
    last_close = NOW - last_close_ago_h * HOUR
    span = Span(NOW - 3650 * DAY, last_close)  # stored since the window's start
    call, lost = plan_ohlc("a", interval, span, days=3650, now_ms=NOW)
    assert (call.days if call else None) == expect_days
    if interval == "4h" and last_close_ago_h == 40 * 24:
        assert lost is not None and "older than 30 days" in lost.reason


def test_ohlc_candles_missing_before_the_stored_span_are_asked_for_from_the_window_start():
    """A series that kept only its newer part (it lost its older year file) is filled from the
    window's start, though no candle closed since its newest one."""
    span = Span(NOW - 100 * DAY, NOW - 2 * HOUR)
    call, lost = plan_ohlc("a", "4d", span, days=365, now_ms=NOW)
    assert (call.days, call.need_from, lost) == (365, NOW - 365 * DAY, None)
    # What the API no longer serves is not asked for again and again.
    assert plan_ohlc("a", "4h", Span(NOW - 30 * DAY, NOW - 2 * HOUR), days=3650, now_ms=NOW) == (None, None)


def test_30_minute_candles_older_than_a_day_are_reported_lost_not_requested():
    span = Span(NOW - 5 * DAY, NOW - 3 * DAY)
    call, lost = plan_ohlc("a", "30m", span, days=1, now_ms=NOW)
    assert call.days == 1
    # The window is 1 day, so only the last day was wanted: nothing lost.
    assert lost is None
    call, lost = plan_ohlc("a", "30m", span, days=7, now_ms=NOW)
    assert lost is not None and lost.start == NOW - 3 * DAY and lost.end == NOW - 1 * DAY


def test_markets_pages():
    assert [(c.page, c.per_page) for c in markets_calls(300, None)] == [(1, 250), (2, 250)]
    assert [(c.page, c.per_page) for c in markets_calls(10, None)] == [(1, 10)]
    ids = tuple(f"x{i}" for i in range(251))
    assert [len(c.ids) for c in markets_calls(None, ids)] == [250, 1]


def test_default_hourly_cron_fits_the_demo_budget():
    from mts.settings import DATASETS, DEFAULT_DAYS, DEFAULT_TOP

    per_run = steady_calls_per_run(DEFAULT_TOP, DATASETS, DEFAULT_DAYS, with_snapshot=True)
    assert per_run * 24 * 31 <= PLANS["demo"].monthly_credits
