"""Pure planning: from the universe, what is stored and the plan's rules, the fewest calls that
fetch exactly what is missing. No I/O, no clock: `now_ms` comes in."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .checkpoint import Span
from .intervals import INTERVAL_MS, OHLC_DAYS, ohlc_interval_for_days
from .layout import SeriesKey
from .plans import Plan

HOUR = INTERVAL_MS["1h"]
DAY = 24 * HOUR
MARKETS_PAGE = 250
# Start a window this far inside the plan's history depth: the limit is checked when the call
# arrives, which may be a while after planning.
HISTORY_MARGIN_MS = HOUR
MONTH_RUNS = 24 * 31  # hourly runs in the longest month


def floor_hour(ms: int) -> int:
    return ms - ms % HOUR


@dataclass(frozen=True)
class RangeCall:
    """One /market_chart/range call for [start, end) of an asset's hourly series."""

    asset_id: str
    start: int
    end: int
    backward: bool = False  # extends the stored span back in time rather than forward


@dataclass(frozen=True)
class OhlcCall:
    asset_id: str
    interval: str
    days: int
    need_from: int  # candles opening from here on are what is missing


@dataclass(frozen=True)
class MarketsCall:
    page: int
    per_page: int
    ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Lost:
    """Data the API no longer serves on this plan, reported instead of requested."""

    key: SeriesKey
    start: int
    end: int
    reason: str


@dataclass
class AssetPlan:
    asset_id: str
    ranges: list[RangeCall] = field(default_factory=list)
    ohlc: OhlcCall | None = None
    snapshot_hour: int | None = None  # the markets snapshot supplies this hour's sample


@dataclass
class CollectPlan:
    markets: list[MarketsCall]
    assets: list[AssetPlan]
    lost: list[Lost]
    ohlc_interval: str
    window_start: int

    def calls_by_endpoint(self) -> dict[str, int]:
        return {
            "markets": len(self.markets),
            "range": sum(len(a.ranges) for a in self.assets),
            "ohlc": sum(1 for a in self.assets if a.ohlc),
        }

    @property
    def total_calls(self) -> int:
        return sum(self.calls_by_endpoint().values())


def markets_calls(top: int | None, ids: tuple[str, ...] | None) -> list[MarketsCall]:
    """Pages of /coins/markets covering the top N, or the explicit ids in groups of 250."""
    if ids is not None:
        return [
            MarketsCall(1, min(MARKETS_PAGE, len(ids[i : i + MARKETS_PAGE])), tuple(ids[i : i + MARKETS_PAGE]))
            for i in range(0, len(ids), MARKETS_PAGE)
        ]
    assert top is not None
    if top <= MARKETS_PAGE:
        return [MarketsCall(1, top)]
    return [MarketsCall(p, MARKETS_PAGE) for p in range(1, math.ceil(top / MARKETS_PAGE) + 1)]


def history_start(now_ms: int, plan: Plan) -> int | None:
    """The first whole hour a call made at `now_ms` may ask for on this plan (None: no limit)."""
    if plan.history_days is None:
        return None
    limit = now_ms - plan.history_days * DAY + HISTORY_MARGIN_MS
    return limit if limit % HOUR == 0 else floor_hour(limit) + HOUR


def window_start(now_ms: int, days: int, plan: Plan) -> int:
    """First hour of the window: the `days*24` hours ending with the current one, never past
    the plan's history depth."""
    start = floor_hour(now_ms) - (days * 24 - 1) * HOUR
    earliest = history_start(now_ms, plan)
    return start if earliest is None else max(start, earliest)


def split_span(start: int, end: int, max_days: int) -> list[tuple[int, int]]:
    """[start, end) cut into the fewest whole-hour pieces of at most `max_days` days,
    as even as whole hours allow."""
    if end <= start:
        return []
    n = math.ceil((end - start) / (max_days * DAY))
    hours = math.ceil((end - start) / HOUR)
    per = math.ceil(hours / n)
    cuts = []
    s = start
    while s < end:
        e = min(end, s + per * HOUR)
        cuts.append((s, e))
        s = e
    return cuts


def plan_market_chart(
    asset_id: str, span: Span | None, w_start: int, now_ms: int, snapshot_hour: int | None, plan: Plan
) -> tuple[list[RangeCall], int | None]:
    """Range calls for what is missing of [w_start, now]; the snapshot supplies its own hour."""
    end = snapshot_hour if snapshot_hour is not None else floor_hour(now_ms) + HOUR
    use_snapshot = snapshot_hour is not None and snapshot_hour >= w_start
    max_days = plan.max_hourly_span_days
    calls: list[RangeCall] = []
    if span is None or span.end < w_start or span.start > end:
        pieces = split_span(w_start, end, max_days)
        calls += [RangeCall(asset_id, s, e) for s, e in pieces]
    else:
        back = split_span(w_start, span.start, max_days)
        calls += [RangeCall(asset_id, s, e, backward=True) for s, e in reversed(back)]
        calls += [RangeCall(asset_id, s, e) for s, e in split_span(max(span.end, w_start), end, max_days)]
    if use_snapshot and span is not None and snapshot_hour is not None and span.end > snapshot_hour:
        use_snapshot = False  # already stored
    return calls, (snapshot_hour if use_snapshot else None)


def plan_ohlc(
    asset_id: str, interval: str, span: Span | None, days: int, now_ms: int
) -> tuple[OhlcCall | None, Lost | None]:
    """The smallest allowed `days` that reaches back to the first missing candle, or nothing
    when no candle of this length has closed since the last stored one and none is missing
    before it."""
    length = INTERVAL_MS[interval]
    w_start = now_ms - days * DAY
    allowed = sorted(d for d, i in OHLC_DAYS.items() if i == interval)
    # Candles before the stored span that the API still serves are missing too (a series that
    # kept only its newer part after losing a file, or a longer --days): ask from the start.
    older_missing = span is not None and span.start > max(w_start, now_ms - allowed[-1] * DAY)
    need_from = w_start if span is None or older_missing else max(span.end, w_start)
    if span is not None and not older_missing and now_ms < span.end + length:
        return None, None
    needed_days = (now_ms - need_from) / DAY
    fitting = [d for d in allowed if d >= needed_days]
    lost = None
    if fitting:
        chosen = fitting[0]
    else:
        chosen = allowed[-1]
        oldest_served = now_ms - chosen * DAY
        lost = Lost(
            SeriesKey("ohlc", interval, asset_id),
            need_from,
            oldest_served,
            f"{interval} candles older than {chosen} days are no longer served",
        )
    return OhlcCall(asset_id, interval, chosen, need_from), lost


def plan_collect(
    *,
    universe: list[str],
    datasets: tuple[str, ...],
    days: int,
    now_ms: int,
    plan: Plan,
    spans: dict[SeriesKey, Span],
    snapshot_hours: dict[str, int] | None,
    markets: list[MarketsCall],
) -> CollectPlan:
    """Every call a collect makes after discovery. `snapshot_hours` maps each asset to the hour
    its /coins/markets sample belongs to (None when no snapshot is taken)."""
    w_start = window_start(now_ms, days, plan)
    interval = ohlc_interval_for_days(days)
    assets, lost = [], []
    for asset_id in universe:
        ap = AssetPlan(asset_id)
        if "market_chart" in datasets:
            snap = snapshot_hours.get(asset_id) if snapshot_hours is not None else None
            ap.ranges, ap.snapshot_hour = plan_market_chart(
                asset_id, spans.get(SeriesKey("market_chart", "1h", asset_id)), w_start, now_ms, snap, plan
            )
        if "ohlc" in datasets:
            ap.ohlc, gone = plan_ohlc(
                asset_id, interval, spans.get(SeriesKey("ohlc", interval, asset_id)), days, now_ms
            )
            if gone:
                lost.append(gone)
        assets.append(ap)
    return CollectPlan(markets=markets, assets=assets, lost=lost, ohlc_interval=interval, window_start=w_start)


def steady_calls_per_run(n_assets: int, datasets: tuple[str, ...], days: int, with_snapshot: bool) -> float:
    """Average calls of one hourly run once the backfill is done."""
    calls = 0.0
    if with_snapshot:
        calls += math.ceil(n_assets / MARKETS_PAGE)
    if "market_chart" in datasets and not with_snapshot:
        calls += n_assets  # without a snapshot every hour needs a range call per asset
    if "ohlc" in datasets:
        length = INTERVAL_MS[ohlc_interval_for_days(days)]
        calls += n_assets * min(1.0, HOUR / length)
    return calls
