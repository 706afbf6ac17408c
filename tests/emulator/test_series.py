"""The emulated market as pure functions: no HTTP here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from mts.emulator import Clock, Universe
from mts.emulator.dataset import DATA_FILE, HOUR_MS, load_slice
from mts.emulator.universe import split_bar

NOW = datetime(2026, 11, 25, 12, 34, 56, 789000, tzinfo=UTC)


@pytest.fixture(scope="module")
def universe() -> Universe:
    return Universe(Clock(NOW))


def test_slice_hour_zero_is_the_parquet_row_zero(universe: Universe) -> None:
    table = pq.read_table(DATA_FILE, filters=[("asset_id", "=", "bitcoin")]).to_pylist()
    btc = sorted(table, key=lambda r: r["ts"])
    h0 = load_slice().first_hour
    assert h0 * HOUR_MS == int(btc[0]["ts"].timestamp() * 1000)
    assert universe.bar("bitcoin", h0) == tuple(btc[0][c] for c in ("open", "high", "low", "close"))
    # One period later the same hour comes back; in the reversed half bars run backwards.
    period = load_slice().period
    assert universe.bar("bitcoin", h0 + period) == universe.bar("bitcoin", h0)
    o, h, lo, c = universe.bar("bitcoin", h0 + 720)  # row 718, reversed
    assert (o, h, lo, c) == (btc[718]["close"], btc[718]["high"], btc[718]["low"], btc[718]["open"])
    price, cap, _ = universe.values_at("bitcoin", h0 + 5)
    assert price == btc[5]["open"]
    assert cap == pytest.approx(btc[5]["open"] * btc[5]["circulating_supply"])


def test_total_volume_is_the_sum_of_the_24_hours_before(universe: Universe) -> None:
    s = universe.series("ethereum")
    for k in (0, 10, 24, 700, 1437):
        expected = sum(s.volume[(k - i) % len(s.volume)] for i in range(1, 25))
        assert s.total_volume[k] == pytest.approx(expected, rel=1e-9)


def test_hourly_jitter_is_within_five_minutes_after_the_hour_and_varies(universe: Universe) -> None:
    start = NOW - timedelta(days=120)
    points = universe.hourly_points("bitcoin", start, NOW)
    offsets = [t % HOUR_MS for t, *_ in points]
    assert all(0 <= off < 300_000 for off in offsets)
    assert len(set(offsets)) == len(offsets)  # never the same drift twice in 120 days
    assert all(a != b for a, b in zip(offsets, offsets[1:], strict=False))
    assert any(off % 1000 for off in offsets)  # millisecond drift, like the real samples


def test_hourly_points_stop_at_now(universe: Universe) -> None:
    points = universe.hourly_points("bitcoin", NOW - timedelta(hours=5), NOW + timedelta(hours=5))
    now_ms = int(NOW.timestamp() * 1000)
    assert points and all(t <= now_ms for t, *_ in points)
    assert len(points) in (5, 6)


def test_values_do_not_change_when_the_clock_moves() -> None:
    clock = Clock(NOW)
    u = Universe(clock)
    start, end = NOW - timedelta(days=10), NOW - timedelta(days=1)
    points = u.hourly_points("solana", start, end)
    candles = u.candles("solana", timedelta(hours=4), start, end)
    halves = u.candles("solana", timedelta(minutes=30), start, end)
    clock.advance(timedelta(days=3, minutes=17))
    assert u.hourly_points("solana", start, end) == points
    assert u.candles("solana", timedelta(hours=4), start, end) == candles
    assert u.candles("solana", timedelta(minutes=30), start, end) == halves


def test_split_bar_gives_valid_halves_that_aggregate_back(universe: Universe) -> None:
    s = universe.series("dogecoin")
    for k in range(0, len(s.price), 7):
        bar = (s.price[k], s.high[k], s.low[k], s.close[k])
        first, second = split_bar(*bar)
        for o, h, lo, c in (first, second):
            assert lo <= min(o, c) <= max(o, c) <= h
            assert bar[2] <= lo and h <= bar[1]
        assert first[0] == bar[0] and second[3] == bar[3] and first[3] == second[0]
        assert max(first[1], second[1]) == bar[1] and min(first[2], second[2]) == bar[2]


def test_four_hour_candles_aggregate_their_hourly_bars(universe: Universe) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    candles = universe.candles("bitcoin", timedelta(hours=4), start, start + timedelta(days=1))
    assert len(candles) == 6
    for close_ms, o, h, lo, c in candles:
        first = close_ms // HOUR_MS - 4
        bars = [universe.bar("bitcoin", first + i) for i in range(4)]
        assert (o, c) == (bars[0][0], bars[-1][3])
        assert h == max(b[1] for b in bars) and lo == min(b[2] for b in bars)


def test_candles_are_only_final_ones(universe: Universe) -> None:
    candles = universe.candles("bitcoin", timedelta(hours=4), NOW - timedelta(days=1), NOW)
    now_ms = int(NOW.timestamp() * 1000)
    assert candles[-1][0] <= now_ms < candles[-1][0] + 4 * HOUR_MS


def test_listing_and_holes_remove_samples() -> None:
    listed = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
    hole = datetime(2026, 11, 22, 3, tzinfo=UTC)
    u = Universe(Clock(NOW), listed_at={"cardano": listed}, holes={"cardano": [hole]})
    assert u.hourly_points("cardano", NOW - timedelta(days=30), listed) == []
    points = u.hourly_points("cardano", NOW - timedelta(days=30), NOW)
    hours = [t // HOUR_MS for t, *_ in points]
    assert hours[0] * HOUR_MS == int(datetime(2026, 11, 20, 11, tzinfo=UTC).timestamp() * 1000)
    assert int(hole.timestamp() * 1000) // HOUR_MS not in hours
    assert len(hours) == hours[-1] - hours[0]  # exactly one hour missing
    four_h = u.candles("cardano", timedelta(hours=4), NOW - timedelta(days=30), NOW)
    assert four_h[0][0] == int(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp() * 1000)


def test_not_yet_listed_asset_is_out_of_the_market() -> None:
    u = Universe(Clock(NOW), listed_at={"bitcoin": NOW + timedelta(days=1)})
    ids = u.asset_ids()
    assert "bitcoin" not in ids and "ethereum" == ids[0]


def test_universe_can_be_restricted() -> None:
    u = Universe(Clock(NOW), assets=["solana", "bitcoin"])
    assert u.asset_ids() == ["bitcoin", "solana"]
    with pytest.raises(ValueError, match="no-such-coin"):
        Universe(Clock(NOW), assets=["no-such-coin"])


def test_a_90_day_hourly_range_is_cheap_to_build() -> None:
    """A loose guard (the target is ~2 ms): benchmarks must not be bound by the emulator."""
    from mts.emulator.bench import in_process

    ms, size = in_process(30)
    assert size > 150_000
    assert ms < 25
