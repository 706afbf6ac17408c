"""The emulated market: every sample and candle as a pure function of (asset, time).

Nothing here knows about HTTP. Internal methods take `now_ms` explicitly so one request sees
one instant; the public "truth" methods (`asset_ids`, `hourly_points`, `candles`) read the clock.
All values are USD; the API layer applies the vs_currency factor.
"""

from __future__ import annotations

import bisect
import operator
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mts.emulator.clock import Clock, dt_ms
from mts.emulator.dataset import HOUR_MS, JITTER_SIZE, AssetSeries, Slice, load_slice

FIVE_MIN_MS = 300_000
HALF_HOUR_MS = 1_800_000
DAY_MS = 86_400_000
FIVE_MIN_JITTER_MS = 60_000
# CoinGecko's oldest data (bitcoin, 2013-04-28): nothing exists before it, even on paid plans.
GENESIS_MS = dt_ms(datetime(2013, 4, 28, tzinfo=UTC))
_MASK = JITTER_SIZE - 1
# How far back to look for an asset's latest sample before calling it absent (holes).
_LOOKBACK_HOURS = 24 * 30

Point = tuple[int, float, float, float]  # (sample_ms, price, market_cap, total_volume)
Candle = tuple[int, float, float, float, float]  # (close_ms, open, high, low, close)
Series = tuple[list[int], list[float], list[float], list[float]]


@dataclass(frozen=True, slots=True)
class MarketRow:
    """One asset's /coins/markets snapshot, in USD."""

    asset_id: str
    symbol: str
    name: str
    sample_ms: int
    price: float
    market_cap: float  # 0.0 when unknown
    total_volume: float
    high_24h: float
    low_24h: float
    price_24h_ago: float | None
    market_cap_24h_ago: float | None
    supply: float | None
    ath: float
    ath_ms: int
    atl: float
    atl_ms: int


def _cyc(arr: Any, start: int, n: int) -> Any:
    """`n` items of the cyclic sequence `arr` from index `start` (already reduced mod len)."""
    period = len(arr)
    if start + n <= period:
        return arr[start : start + n]
    out = arr[start:]
    n -= period - start
    while n > period:
        out += arr
        n -= period
    return out + arr[:n]


def split_bar(o: float, h: float, lo: float, c: float) -> tuple[tuple, tuple]:
    """Split an hourly bar into two valid half-hour bars that aggregate back to it.

    The halves meet at mid = (o + c) / 2. A falling bar makes its high in the first half and its
    low in the second; a rising (or flat) bar the other way round.
    """
    mid = (o + c) / 2
    if c < o:
        return (o, h, mid, mid), (mid, mid, lo, c)
    return (o, mid, lo, mid), (mid, h, mid, c)


class Universe:
    """The assets, their listing times and holes, and every derived series."""

    def __init__(
        self,
        clock: Clock,
        assets: Iterable[str] | None = None,
        listed_at: dict[str, datetime] | None = None,
        holes: Mapping[str, Iterable[datetime]] | None = None,
        data: Slice | None = None,
    ) -> None:
        data = data if data is not None else load_slice()
        ids = list(data.assets) if assets is None else list(dict.fromkeys(assets))
        unknown = [a for a in ids if a not in data.assets]
        if unknown:
            raise ValueError(f"unknown asset ids (not in the emulator's data): {unknown}")
        for name, mapping in (("listed_at", listed_at), ("holes", holes)):
            extra = [a for a in (mapping or {}) if a not in ids]
            if extra:
                raise ValueError(f"{name} names assets outside the universe: {extra}")
        self.clock = clock
        self._series: dict[str, AssetSeries] = {a: data.assets[a] for a in ids}
        self._h0 = data.first_hour
        self._period = data.period
        genesis_hour = GENESIS_MS // HOUR_MS
        self._first_hour: dict[str, int] = {a: genesis_hour for a in ids}
        for a, when in (listed_at or {}).items():
            self._first_hour[a] = max(genesis_hour, -(-dt_ms(when) // HOUR_MS))
        self._holes: dict[str, list[int]] = {}
        for a, hours in (holes or {}).items():
            self._holes[a] = sorted({dt_ms(h) // HOUR_MS for h in hours})
        self._extremes: dict[str, tuple] = {}
        self._lock = threading.Lock()

    # ----- public truth (reads the clock) -----

    def asset_ids(self) -> list[str]:
        """Listed asset ids in /coins/markets order (market cap desc) at the clock's now."""
        return [row.asset_id for row in self.snapshot(self.clock.now_ms())]

    def hourly_points(self, asset_id: str, start: datetime, end: datetime) -> list[Point]:
        """Hourly samples (sample_ms, price, market_cap, total_volume) in USD for hours whose
        start is in [start, end) and whose sample time is <= now."""
        self._require(asset_id)
        ha = -(-dt_ms(start) // HOUR_MS)
        hb = -(-dt_ms(end) // HOUR_MS)
        return list(zip(*self.hourly(asset_id, ha, hb, self.clock.now_ms()), strict=True))

    def candles(
        self, asset_id: str, length: timedelta, start: datetime, end: datetime
    ) -> list[Candle]:
        """Final candles (close_ms <= now) of `length` whose open time is in [start, end)."""
        self._require(asset_id)
        length_ms = round(length.total_seconds() * 1000)
        return self.final_candles(
            asset_id, length_ms, dt_ms(start), dt_ms(end), self.clock.now_ms()
        )

    def has(self, asset_id: str) -> bool:
        return asset_id in self._series

    def series(self, asset_id: str) -> AssetSeries:
        return self._series[asset_id]

    def first_hour(self, asset_id: str) -> int:
        """The first hour (since the epoch) with data for this asset."""
        return self._first_hour[asset_id]

    def all_ids(self) -> list[str]:
        return list(self._series)

    # ----- samples -----

    def sample_ms(self, asset_id: str, hour: int) -> int:
        """When the hourly sample of `hour` was taken: a deterministic 0..5 min after the hour."""
        return hour * HOUR_MS + self._series[asset_id].jitter[hour & _MASK]

    def values_at(self, asset_id: str, hour: int) -> tuple[float, float, float]:
        """(price, market_cap, total_volume) of the hourly sample of `hour`, in USD."""
        s = self._series[asset_id]
        k = (hour - self._h0) % self._period
        return s.price[k], s.market_cap[k], s.total_volume[k]

    def bar(self, asset_id: str, hour: int) -> tuple[float, float, float, float]:
        """The hourly OHLC bar that opens at `hour`, in USD."""
        s = self._series[asset_id]
        k = (hour - self._h0) % self._period
        return s.price[k], s.high[k], s.low[k], s.close[k]

    def has_sample(self, asset_id: str, hour: int) -> bool:
        """True if the hour exists for the asset (listed, not a hole); ignores now."""
        if hour < self._first_hour[asset_id]:
            return False
        holes = self._holes.get(asset_id)
        if holes:
            i = bisect.bisect_left(holes, hour)
            return i == len(holes) or holes[i] != hour
        return True

    def runs(self, asset_id: str, ha: int, hb: int) -> list[tuple[int, int]]:
        """Maximal [a, b) runs of existing hours within [ha, hb)."""
        ha = max(ha, self._first_hour[asset_id])
        if ha >= hb:
            return []
        holes = self._holes.get(asset_id)
        if not holes:
            return [(ha, hb)]
        out = []
        i = bisect.bisect_left(holes, ha)
        a = ha
        while i < len(holes) and holes[i] < hb:
            if holes[i] > a:
                out.append((a, holes[i]))
            a = holes[i] + 1
            i += 1
        if a < hb:
            out.append((a, hb))
        return out

    def sample_limit(self, asset_id: str, now_ms: int) -> int:
        """One past the last hour whose sample time is <= now (holes ignored)."""
        hn = now_ms // HOUR_MS
        if hn * HOUR_MS + self._series[asset_id].jitter[hn & _MASK] <= now_ms:
            return hn + 1
        return hn

    def hourly(self, asset_id: str, ha: int, hb: int, now_ms: int) -> Series:
        """Hourly samples for existing hours in [ha, hb) taken at or before now."""
        s = self._series[asset_id]
        hb = min(hb, self.sample_limit(asset_id, now_ms))
        jit = s.jitter
        period, h0 = self._period, self._h0
        ts: list[int] = []
        pr: list[float] = []
        mc: list[float] = []
        tv: list[float] = []
        for a, b in self.runs(asset_id, ha, hb):
            k, n = (a - h0) % period, b - a
            # C-level map over a range and a slice: this is the hot loop of every chart.
            ts += map(
                operator.add, range(a * HOUR_MS, b * HOUR_MS, HOUR_MS), _cyc(jit, a & _MASK, n)
            )
            pr += _cyc(s.price, k, n)
            mc += _cyc(s.market_cap, k, n)
            tv += _cyc(s.total_volume, k, n)
        return ts, pr, mc, tv

    def five_minute(self, asset_id: str, ha: int, hb: int, now_ms: int) -> Series:
        """5-minute samples for existing hours in [ha, hb), taken at or before now.

        j = 0 is the hourly sample itself; j = 1..11 sit at j * 5 min + 0..60 s and interpolate
        linearly between this hour's sample and the next one's.
        """
        s = self._series[asset_id]
        jit = s.jitter
        hb = min(hb, now_ms // HOUR_MS + 1)
        ts: list[int] = []
        pr: list[float] = []
        mc: list[float] = []
        tv: list[float] = []
        for a, b in self.runs(asset_id, ha, hb):
            for h in range(a, b):
                base = h * HOUR_MS
                p0, m0, v0 = self.values_at(asset_id, h)
                p1, m1, v1 = self.values_at(asset_id, h + 1)
                ts.append(base + jit[h & _MASK])
                pr.append(p0)
                mc.append(m0)
                tv.append(v0)
                for j in range(1, 12):
                    f = j / 12
                    ts.append(
                        base
                        + j * FIVE_MIN_MS
                        + jit[(h * 13 + j * 977) & _MASK] % FIVE_MIN_JITTER_MS
                    )
                    pr.append(p0 + (p1 - p0) * f)
                    mc.append(m0 + (m1 - m0) * f)
                    tv.append(v0 + (v1 - v0) * f)
        if ts and ts[-1] > now_ms:
            cut = bisect.bisect_right(ts, now_ms)
            del ts[cut:], pr[cut:], mc[cut:], tv[cut:]
        return ts, pr, mc, tv

    def daily(self, asset_id: str, da: int, db: int, now_ms: int) -> Series:
        """Daily points at exactly 00:00 UTC for days [da, db): the midnight hour's sample."""
        ts: list[int] = []
        pr: list[float] = []
        mc: list[float] = []
        tv: list[float] = []
        limit = self.sample_limit(asset_id, now_ms)
        first = self._first_hour[asset_id]
        da = max(da, -(-first // 24))
        for d in range(da, db):
            h = d * 24
            if h >= limit:
                break
            if not self.has_sample(asset_id, h):
                continue
            p, m, v = self.values_at(asset_id, h)
            ts.append(d * DAY_MS)
            pr.append(p)
            mc.append(m)
            tv.append(v)
        return ts, pr, mc, tv

    def latest_hour(self, asset_id: str, now_ms: int) -> int | None:
        """The last existing hour whose sample time is <= now, or None."""
        h = self.sample_limit(asset_id, now_ms) - 1
        stop = max(self._first_hour[asset_id], h - _LOOKBACK_HOURS)
        while h >= stop:
            if self.has_sample(asset_id, h):
                return h
            h -= 1
        return None

    def latest_point(self, asset_id: str, now_ms: int) -> Point | None:
        """The freshest 5-minute sample at or before now, or None (not listed yet)."""
        h = self.latest_hour(asset_id, now_ms)
        if h is None:
            return None
        ts, pr, mc, tv = self.five_minute(asset_id, h, h + 1, now_ms)
        return ts[-1], pr[-1], mc[-1], tv[-1]

    # ----- candles -----

    def _aggregate(self, asset_id: str, runs: list[tuple[int, int]]) -> tuple | None:
        if not runs:
            return None
        s = self._series[asset_id]
        period, h0 = self._period, self._h0
        hi = lo = None
        for a, b in runs:
            k, n = (a - h0) % period, b - a
            rh = max(_cyc(s.high, k, n))
            rl = min(_cyc(s.low, k, n))
            hi = rh if hi is None or rh > hi else hi
            lo = rl if lo is None or rl < lo else lo
        o = s.price[(runs[0][0] - h0) % period]
        c = s.close[(runs[-1][1] - 1 - h0) % period]
        return o, hi, lo, c

    def final_candles(
        self, asset_id: str, length_ms: int, start_ms: int, end_ms: int, now_ms: int
    ) -> list[Candle]:
        """Candles of `length_ms` (30 min or whole hours) that closed by now, open in
        [start_ms, end_ms), aligned so the close time is a multiple of the length."""
        if length_ms != HALF_HOUR_MS and length_ms % HOUR_MS:
            raise ValueError(f"unsupported candle length {length_ms} ms")
        first_ms = self._first_hour[asset_id] * HOUR_MS
        c_first = -(-max(start_ms, first_ms - length_ms + 1) // length_ms)
        c_last = min((end_ms - 1) // length_ms, now_ms // length_ms - 1)
        out: list[Candle] = []
        if length_ms == HALF_HOUR_MS:
            for c in range(c_first, c_last + 1):
                hour = c // 2
                if self.has_sample(asset_id, hour):
                    half = split_bar(*self.bar(asset_id, hour))[c % 2]
                    out.append(((c + 1) * HALF_HOUR_MS, *half))
            return out
        hours = length_ms // HOUR_MS
        for c in range(c_first, c_last + 1):
            agg = self._aggregate(asset_id, self.runs(asset_id, c * hours, (c + 1) * hours))
            if agg is not None:
                out.append(((c + 1) * length_ms, *agg))
        return out

    def forming_candle(self, asset_id: str, length_ms: int, now_ms: int) -> Candle | None:
        """The candle still open at now (its close time is the first boundary after now),
        built from what exists up to now; None when the asset has no data yet."""
        c = now_ms // length_ms
        open_ms = c * length_ms
        hn = now_ms // HOUR_MS
        agg = None
        if length_ms != HALF_HOUR_MS:
            agg = self._aggregate(asset_id, self.runs(asset_id, open_ms // HOUR_MS, hn))
        ts, pr, _, _ = self.five_minute(asset_id, hn, hn + 1, now_ms)
        partial = [p for t, p in zip(ts, pr, strict=True) if t >= open_ms]
        latest = self.latest_point(asset_id, now_ms)
        if latest is None:
            return None
        close = latest[1]
        if agg is not None:
            o, hi, lo = agg[0], max(agg[1], *partial, close), min(agg[2], *partial, close)
        elif partial:
            o, hi, lo = partial[0], max(*partial, close), min(*partial, close)
        else:
            o = hi = lo = close
        return (open_ms + length_ms, o, hi, lo, close)

    # ----- markets -----

    def snapshot(self, now_ms: int) -> list[MarketRow]:
        """Every listed asset's latest sample, in market-cap order (unknown caps last, by
        24 h volume)."""
        rows = []
        for aid in self._series:
            row = self._market_row(aid, now_ms)
            if row is not None:
                rows.append(row)
        rows.sort(
            key=lambda r: (
                (0, -r.market_cap, r.asset_id)
                if r.market_cap > 0
                else (1, -r.total_volume, r.asset_id)
            )
        )
        return rows

    def _market_row(self, aid: str, now_ms: int) -> MarketRow | None:
        h = self.latest_hour(aid, now_ms)
        if h is None:
            return None
        s = self._series[aid]
        price, cap, vol = self.values_at(aid, h)
        first = self._first_hour[aid]
        k = (h - self._h0) % self._period
        ha = max(first, h - 24)
        highs = [price]
        lows = [price]
        if ha < h:
            kk = (ha - self._h0) % self._period
            highs += _cyc(s.high, kk, h - ha)
            lows += _cyc(s.low, kk, h - ha)
        p24: float | None = None
        m24: float | None = None
        if h - 24 >= first:
            p24, m24, _ = self.values_at(aid, h - 24)
        ath, ath_h, atl, atl_h = self._ath_atl(aid, h)
        return MarketRow(
            asset_id=aid,
            symbol=s.symbol,
            name=s.name,
            sample_ms=self.sample_ms(aid, h),
            price=price,
            market_cap=cap,
            total_volume=vol,
            high_24h=max(highs),
            low_24h=min(lows),
            price_24h_ago=p24,
            market_cap_24h_ago=m24 if s.has_supply else None,
            supply=s.supply_at(k),
            ath=ath,
            ath_ms=self.sample_ms(aid, ath_h),
            atl=atl,
            atl_ms=self.sample_ms(aid, atl_h),
        )

    def _ath_atl(self, aid: str, h: int) -> tuple[float, int, float, int]:
        """All-time high/low (bar high/low) up to hour h and the last hour each was reached."""
        s = self._series[aid]
        first = self._first_hour[aid]
        period, h0 = self._period, self._h0
        if h - first + 1 < period:  # listed less than a period ago: scan what exists
            k0 = (first - h0) % period
            highs = _cyc(s.high, k0, h - first + 1)
            lows = _cyc(s.low, k0, h - first + 1)
            hi, lo = max(highs), min(lows)
            hi_h = first + len(highs) - 1 - highs[::-1].index(hi)
            lo_h = first + len(lows) - 1 - lows[::-1].index(lo)
            return hi, hi_h, lo, lo_h
        with self._lock:
            ext = self._extremes.get(aid)
            if ext is None:
                hi, lo = max(s.high), min(s.low)
                ext = (
                    hi,
                    [k for k, v in enumerate(s.high) if v == hi],
                    lo,
                    [k for k, v in enumerate(s.low) if v == lo],
                )
                self._extremes[aid] = ext
        hi, hi_ks, lo, lo_ks = ext
        hi_h = max(h - ((h - h0 - k) % period) for k in hi_ks)
        lo_h = max(h - ((h - h0 - k) % period) for k in lo_ks)
        return hi, hi_h, lo, lo_h

    def _require(self, asset_id: str) -> None:
        if asset_id not in self._series:
            raise KeyError(f"unknown asset id {asset_id!r}")
