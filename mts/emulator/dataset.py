"""Load the real hourly slice once and unfold it into one ping-pong period per asset.

The slice holds N full hours per asset. Hour H maps to k = (H - H0) mod P with P = 2N - 2, and
to row r = k (forward) or P - k (reversed). Every per-hour value is stored here for k in
[0, P), so any hour's value is a list lookup and any window is a slice.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from array import array
from dataclasses import dataclass
from pathlib import Path

HOUR_MS = 3_600_000
JITTER_SIZE = 4096  # per-asset hourly jitter table; distinct values within any 4096 hours
JITTER_MAX_MS = 300_000
ROLLING_HOURS = 24

DATA_FILE = Path(__file__).with_name("data") / "hourly_slice.parquet"


@dataclass(frozen=True, slots=True)
class AssetSeries:
    """One asset's values over one period (index k). Prices in USD.

    Stored as typed arrays, not lists: the garbage collector never walks them, which would
    otherwise cost milliseconds per full collection once a few million floats are loaded.
    """

    asset_id: str
    symbol: str
    name: str
    price: array  # bar open = the hourly sample's price
    high: array
    low: array
    close: array
    volume: array  # that hour's USD volume
    total_volume: array  # rolling USD volume of the 24 hours before
    market_cap: array  # price * supply, 0.0 when the supply is unknown
    supply: array  # NaN when unknown; see supply_at
    jitter: array  # ms after the hour, indexed by hour & (JITTER_SIZE - 1)
    has_supply: bool

    def supply_at(self, k: int) -> float | None:
        """Circulating supply at period index k, None when unknown."""
        v = self.supply[k]
        return None if math.isnan(v) else v


@dataclass(frozen=True, slots=True)
class Slice:
    """All assets, in the slice's alphabetical order, sharing one period."""

    first_hour: int  # H0, hours since the unix epoch
    rows: int  # N
    period: int  # P
    assets: dict[str, AssetSeries]


@functools.lru_cache(maxsize=4)
def load_slice(path: Path = DATA_FILE) -> Slice:
    """Read the parquet slice (cached per process: it never changes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path).sort_by([("asset_id", "ascending"), ("ts", "ascending")])
    cols = {name: table.column(name).to_pylist() for name in table.column_names if name != "ts"}
    ts_ms = table.column("ts").cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()).to_pylist()
    ids = cols["asset_id"]
    n_total = len(ids)
    starts = [0] + [i for i in range(1, n_total) if ids[i] != ids[i - 1]] + [n_total]
    rows = starts[1] - starts[0]
    first_hour = ts_ms[0] // HOUR_MS
    period = 2 * rows - 2
    base = random.Random("mts-emulator-jitter").sample(range(JITTER_MAX_MS), JITTER_SIZE)
    mask = JITTER_SIZE - 1
    # Odd multipliers permute the table: a few distinct sequences, each asset a rotation of one.
    tables = [
        [base[(i * m) & mask] for i in range(JITTER_SIZE)] for m in (1, 3, 5, 7, 11, 13, 2049, 1025)
    ]

    assets: dict[str, AssetSeries] = {}
    for a, b in itertools.pairwise(starts):
        if b - a != rows or ts_ms[a] // HOUR_MS != first_hour:
            raise ValueError(f"slice for {ids[a]} is not {rows} hours from the common start")
        window = ts_ms[a:b]
        if window[-1] - window[0] != (rows - 1) * HOUR_MS or len(set(window)) != rows:
            raise ValueError(f"slice for {ids[a]} has a gap or a duplicate hour")
        assets[ids[a]] = _unfold(
            ids[a],
            cols["symbol"][a],
            cols["name"][a],
            [cols[c][a:b] for c in ("open", "high", "low", "close", "volume_usd")],
            cols["circulating_supply"][a:b],
            period,
            tables,
        )
    return Slice(first_hour=first_hour, rows=rows, period=period, assets=assets)


def _unfold(
    asset_id: str,
    symbol: str,
    name: str,
    ohlcv: list[list[float]],
    supply_rows: list[float | None],
    period: int,
    jitter_tables: list[list[int]],
) -> AssetSeries:
    o, h, lo, c, v = ohlcv
    n = len(o)
    rows = list(range(n)) + list(range(n - 2, 0, -1))  # r for k = 0..P-1
    fwd = n  # k < n: forward segment
    price = o + [c[r] for r in rows[fwd:]]
    close = c + [o[r] for r in rows[fwd:]]
    high = [h[r] for r in rows]
    low = [lo[r] for r in rows]
    volume = [v[r] for r in rows]
    supply = [supply_rows[r] for r in rows]
    # Rolling 24 h volume over the cyclic period via prefix sums: O(1) per hour.
    ext = volume[-ROLLING_HOURS:] + volume
    pre = [0.0, *itertools.accumulate(ext)]
    total_volume = [pre[k + ROLLING_HOURS] - pre[k] for k in range(period)]
    market_cap = [p * s if s is not None else 0.0 for p, s in zip(price, supply, strict=True)]
    rnd = random.Random(f"mts-emulator-jitter:{asset_id}")
    table = jitter_tables[rnd.randrange(len(jitter_tables))]
    off = rnd.randrange(JITTER_SIZE)
    jitter = table[off:] + table[:off]
    return AssetSeries(
        asset_id=asset_id,
        symbol=symbol,
        name=name,
        price=array("d", price),
        high=array("d", high),
        low=array("d", low),
        close=array("d", close),
        volume=array("d", volume),
        total_volume=array("d", total_volume),
        market_cap=array("d", market_cap),
        supply=array("d", [math.nan if v is None else v for v in supply]),
        jitter=array("q", jitter),
        has_supply=any(s is not None for s in supply_rows),
    )
