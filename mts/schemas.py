"""Column names and types of every dataset: the same in every file, Parquet or CSV."""

from __future__ import annotations

from typing import Any, cast

import polars as pl

TS: Any = pl.Datetime("ms", "UTC")

MARKET_CHART: dict[str, Any] = {
    "timestamp": TS,
    "price": pl.Float64,
    "market_cap": pl.Float64,
    "total_volume": pl.Float64,
    "sampled_at": TS,
}

OHLC: dict[str, Any] = {
    "timestamp": TS,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
}

# Numeric fields of a /coins/markets item we keep, as (API field, column) pairs.
MARKETS_NUMERIC = (
    ("current_price", "price"),
    ("market_cap", "market_cap"),
    ("total_volume", "total_volume"),
    ("circulating_supply", "circulating_supply"),
    ("total_supply", "total_supply"),
    ("max_supply", "max_supply"),
    ("fully_diluted_valuation", "fully_diluted_valuation"),
    ("high_24h", "high_24h"),
    ("low_24h", "low_24h"),
    ("price_change_24h", "price_change_24h"),
    ("price_change_percentage_24h", "price_change_percentage_24h"),
    ("market_cap_change_24h", "market_cap_change_24h"),
    ("market_cap_change_percentage_24h", "market_cap_change_percentage_24h"),
    ("ath", "ath"),
    ("ath_change_percentage", "ath_change_percentage"),
    ("atl", "atl"),
    ("atl_change_percentage", "atl_change_percentage"),
)

MARKETS: dict[str, Any] = {
    "timestamp": TS,
    "asset_id": pl.String,
    "symbol": pl.String,
    "name": pl.String,
    "market_cap_rank": pl.Int64,
    **{col: pl.Float64 for _, col in MARKETS_NUMERIC},
    "last_updated": TS,
}

SCHEMAS: dict[str, dict[str, Any]] = {"market_chart": MARKET_CHART, "ohlc": OHLC, "markets": MARKETS}
_EMPTY = {name: pl.DataFrame(schema=schema) for name, schema in SCHEMAS.items()}

# Merge key of each dataset inside one file, in the order its rows are sorted; the hive
# partition supplies asset and interval. markets is time-major so that each hourly snapshot
# lands at the end of its year file (see Store's append path).
KEYS = {"market_chart": ["timestamp"], "ohlc": ["timestamp"], "markets": ["timestamp", "asset_id"]}

# zstd level of each dataset's Parquet files. 3 for the series: written once an hour per asset,
# small, 10% smaller than at level 1. 1 for markets: its one year file takes every hourly
# snapshot and is re-encoded whole each hour (230 MB by December), where level 3 costs 2.5x the
# CPU of level 1 for a file 6% smaller (bench/markets_growth.py).
ZSTD_LEVEL = {"market_chart": 3, "ohlc": 3, "markets": 1}

# Which row of a key wins when several arrive: the earliest sample of the hour (for an hourly
# row, the one closest to the hour's start), then the other columns in order so the choice
# never depends on fetch order. Without it, 5-minute answers (windows under a day) would
# keep each hour's lowest price.
PREFER = {"market_chart": ["sampled_at"], "ohlc": [], "markets": ["last_updated"]}


def first_last_ms(ts: pl.Series) -> tuple[int, int]:
    """(min, max) of a non-empty timestamp column, as epoch milliseconds."""
    ms = ts.dt.epoch("ms")
    return int(cast(int, ms.min())), int(cast(int, ms.max()))


def empty(dataset: str) -> pl.DataFrame:
    # A clone of one made once: building a frame from a schema costs ~60 µs, a clone ~1 µs.
    return _EMPTY[dataset].clone()
