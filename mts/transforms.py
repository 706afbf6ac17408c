"""Pure transforms from API payloads to dataset rows: parse, coerce, bucket, drop forming.

Nothing here does I/O or reads the clock: `now` and windows come in as arguments.
"""

from __future__ import annotations

import gc
import json
import math
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import orjson
import polars as pl

from . import schemas
from .errors import InvalidAssetId
from .layout import encode_asset_id

HOUR_MS = 3_600_000


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextmanager
def _gc_paused():
    """Pause the cyclic GC while a decoder builds thousands of (acyclic) lists: otherwise each
    700 allocations trigger a collection, which cost two thirds of a market_chart decode.
    Counted across threads; the GC's state before the first pause is restored after the last."""
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def parse_json(body: bytes):
    """Decode a response body. Falls back to the stdlib for NaN/Infinity tokens orjson refuses.
    Raises ValueError on a body that is not JSON (truncated, HTML)."""
    with _gc_paused():
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return json.loads(body)  # raises ValueError (json.JSONDecodeError) when really broken


def _is_number(v) -> bool:
    return type(v) in (int, float)


def _column(values, dtype) -> tuple[pl.Series, list[bool] | None]:
    """A typed column, and which entries had a wrong type (None when all were fine)."""
    # Only numbers and nulls take the fast paths: polars turns a JSON true into 1.0 there.
    if not set(map(type, values)) <= _NUMERIC_OR_NULL:
        return _column_by_entry(values, dtype)
    try:
        # Fast path (≈10x): polars' own type inference. When it lands exactly on `dtype` the
        # values are those the strict constructor below would give; anything else goes there.
        inferred = pl.Series(values=values)
        if inferred.dtype == dtype:
            return inferred, None
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
        pass
    try:
        return pl.Series(values=values, dtype=dtype, strict=True), None
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
        return _column_by_entry(values, dtype)


_NUMERIC_OR_NULL = {int, float, type(None)}


def _column_by_entry(values, dtype) -> tuple[pl.Series, list[bool]]:
    bad = [not (v is None or _is_number(v)) for v in values]
    clean = [v if (v is None or _is_number(v)) else None for v in values]
    if dtype == pl.Int64:
        clean = [int(v) if v is not None and math.isfinite(v) else None for v in clean]
    return pl.Series(values=clean, dtype=dtype, strict=False), bad


def _pairs(arr) -> tuple[Sequence, Sequence, list[bool]]:
    """[[t, v], ...] → (ts, values, malformed-entry flags).

    The common case in one C-level transpose: zip(..., strict=True) raises unless every entry
    is iterable and of one length, and the unpacking unless that length is 2. An entry that is
    no list but a 2-item string or object yields strings, which the typed columns built from
    these (_column) reject, and the general path then flags the entry."""
    if not isinstance(arr, list) or not arr:
        return [], [], []
    try:
        times, values = zip(*arr, strict=True)
        return times, values, [False] * len(arr)
    except (TypeError, ValueError):
        pass
    ts: list = []
    vals: list = []
    bad: list[bool] = []
    for p in arr:
        ok = isinstance(p, list) and len(p) == 2
        ts.append(p[0] if ok else None)
        vals.append(p[1] if ok else None)
        bad.append(not ok)
    return ts, vals, bad


# msgspec hands over integers of any size; polars would saturate one beyond 64 bits silently.
_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _Chart(msgspec.Struct):
    """A market_chart answer of the usual shape, typed while it is decoded: a boolean, a string,
    a fractional timestamp or a malformed pair anywhere fails the decode."""

    prices: list[tuple[_Int64, float | None]] = []
    market_caps: list[tuple[_Int64, float | None]] = []
    total_volumes: list[tuple[_Int64, float | None]] = []


_CHART = msgspec.json.Decoder(_Chart)


def decode_market_chart(body: bytes):
    """A market_chart(/range) body as market_chart_samples would return it, when the answer has
    the usual shape (three arrays of [integer ms, number or null] on the same timestamps):
    typed decoding checks every entry's shape and types in C, which costs 20% less than
    decoding to lists and checking them in Python. Any other answer comes back as its decoded
    JSON, for market_chart_samples. Raises ValueError on a body that is not JSON."""
    try:
        with _gc_paused():
            chart = _CHART.decode(body)
        arrays = (chart.prices, chart.market_caps, chart.total_volumes)
        if all(arrays):
            (ts, price), (ts_cap, cap), (ts_vol, vol) = (zip(*a, strict=True) for a in arrays)
            if ts == ts_cap == ts_vol:
                return pl.DataFrame({
                    "sampled_at": pl.Series(ts, dtype=pl.Int64),
                    "price": pl.Series(price, dtype=pl.Float64),
                    "market_cap": pl.Series(cap, dtype=pl.Float64),
                    "total_volume": pl.Series(vol, dtype=pl.Float64),
                    "type_error": pl.Series([None], dtype=pl.String).new_from_index(0, len(ts)),
                })
    except (msgspec.DecodeError, pl.exceptions.PolarsError):
        pass  # not the usual shape (or not JSON): the general path decides
    return parse_json(body)


def market_chart_samples(payload) -> pl.DataFrame:
    """Raw samples of a market_chart(/range) payload: sampled_at (ms), price, market_cap,
    total_volume, type_error (null, or which field had a wrong type), raw (the entry as sent)."""
    if not isinstance(payload, dict):
        raise ValueError("market_chart payload is not a JSON object")
    names = (("prices", "price"), ("market_caps", "market_cap"), ("total_volumes", "total_volume"))
    parts = {}
    for api_name, col in names:
        ts, vals, malformed = _pairs(payload.get(api_name, []))
        t_series, t_bad = _column(ts, pl.Int64)
        v_series, v_bad = _column(vals, pl.Float64)
        err = None
        if t_bad or v_bad or any(malformed):
            err = [
                col if (m or (t_bad and t_bad[i]) or (v_bad and v_bad[i])) else None
                for i, m in enumerate(malformed)
            ]
        parts[col] = pl.DataFrame(
            {"sampled_at": t_series, col: v_series, f"err_{col}": pl.Series(err or [None] * len(ts), dtype=pl.String)}
        )
    price = parts["price"]
    same_ts = all(
        parts[c].height == price.height and parts[c]["sampled_at"].equals(price["sampled_at"])
        for c in ("market_cap", "total_volume")
    )
    if same_ts:
        df = pl.concat(
            [price, parts["market_cap"].drop("sampled_at"), parts["total_volume"].drop("sampled_at")],
            how="horizontal",
        )
    else:
        # The arrays are documented to share timestamps; when they do not, align on the time.
        df = price
        for c in ("market_cap", "total_volume"):
            other = (
                parts[c]
                .filter(pl.col("sampled_at").is_not_null())
                .unique("sampled_at", keep="first", maintain_order=True)
            )
            df = df.join(other, on="sampled_at", how="left")
    return df.with_columns(
        type_error=pl.coalesce("err_price", "err_market_cap", "err_total_volume")
    ).drop("err_price", "err_market_cap", "err_total_volume")


def hourly_rows(samples: pl.DataFrame) -> pl.DataFrame:
    """Every sample as a market_chart row stamped with its UTC hour, not yet one per hour: the
    merge's sort_dedupe keeps one row per hour, the sample closest to the hour's start (ties
    broken by value), so the winner does not depend on fetch order."""
    if samples.is_empty():
        return schemas.empty("market_chart")
    # Series arithmetic rather than a select: any eager select runs a query plan, ~0.2 ms and
    # dozens of thread hand-offs however small the frame; this is once per stored batch.
    t = samples["sampled_at"]
    return pl.DataFrame({
        "timestamp": (t - t % HOUR_MS).cast(schemas.TS),
        "price": samples["price"],
        "market_cap": samples["market_cap"],
        "total_volume": samples["total_volume"],
        "sampled_at": t.cast(schemas.TS),
    })


def sort_dedupe(df: pl.DataFrame, dataset: str) -> pl.DataFrame:
    """Sort by key, keep one row per key: the first in a total order over all columns that
    starts with the dataset's preference (schemas.PREFER)."""
    key = schemas.KEYS[dataset]
    if len(key) == 1:
        k = df[key[0]]
        # Already strictly increasing on its key (one answer's hours; a chunk after the stored
        # rows): sorting and deduplicating would return it unchanged, so skip both.
        if k.null_count() == 0 and k.is_sorted() and k.n_unique() == k.len():
            return df
    first = key + schemas.PREFER[dataset]
    order = first + [c for c in df.columns if c not in first]
    return df.sort(order, nulls_last=True).unique(subset=key, keep="first", maintain_order=True)


def ohlc_candles(payload) -> pl.DataFrame:
    """Raw candles of an /ohlc payload: close_time (ms), open, high, low, close, type_error."""
    if not isinstance(payload, list):
        raise ValueError("ohlc payload is not a JSON array")
    rows = payload
    cols: list[list[Any]]
    if all(type(r) is list and len(r) == 5 for r in rows):
        cols = [list(c) for c in zip(*rows, strict=True)] if rows else [[], [], [], [], []]
        malformed = [False] * len(rows)
    else:
        cols = [[], [], [], [], []]
        malformed = []
        for r in rows:
            ok = isinstance(r, list) and len(r) == 5
            for i in range(5):
                cols[i].append(r[i] if ok else None)
            malformed.append(not ok)
    names = ("close_time", "open", "high", "low", "close")
    series, bads = [], []
    for name, values in zip(names, cols, strict=True):
        s, bad = _column(list(values), pl.Int64 if name == "close_time" else pl.Float64)
        series.append(s.alias(name))
        bads.append(bad)
    err = [
        "ohlc" if (malformed[i] or any(b and b[i] for b in bads)) else None for i in range(len(malformed))
    ]
    return pl.DataFrame(series).with_columns(type_error=pl.Series(err, dtype=pl.String))


def split_forming(candles: pl.DataFrame, now_ms: int) -> tuple[pl.DataFrame, int]:
    """(candles whose close time has passed, how many were still forming)."""
    forming = candles.filter(pl.col("close_time") > now_ms)
    return candles.filter(pl.col("close_time").is_null() | (pl.col("close_time") <= now_ms)), forming.height


def candles_to_rows(candles: pl.DataFrame, length_ms: int) -> pl.DataFrame:
    """OHLC rows keyed by candle OPEN time (CoinGecko stamps the close)."""
    df = candles.select(
        timestamp=(pl.col("close_time") - length_ms).cast(schemas.TS),
        open="open", high="high", low="low", close="close",
    )
    return sort_dedupe(df, "ohlc")


def _iso_ms(value) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).timestamp() * 1000)
    except ValueError:
        return None


def markets_items(payload) -> pl.DataFrame:
    """Rows of a /coins/markets payload in the markets schema (timestamp = the UTC hour of the
    item's last_updated), plus `id_error`, `type_error` and `raw` for validation."""
    if not isinstance(payload, list):
        raise ValueError("markets payload is not a JSON array")
    records = []
    for item in payload:
        if not isinstance(item, dict):
            item = {}
        asset_id = item.get("id")
        id_error = None
        try:
            encode_asset_id(asset_id if isinstance(asset_id, str) else "")
        except InvalidAssetId as exc:
            id_error = str(exc)
        updated = _iso_ms(item.get("last_updated"))
        rec = {
            "asset_id": asset_id if isinstance(asset_id, str) else None,
            "symbol": item.get("symbol") if isinstance(item.get("symbol"), str) else None,
            "name": item.get("name") if isinstance(item.get("name"), str) else None,
            "market_cap_rank": item.get("market_cap_rank") if type(item.get("market_cap_rank")) is int else None,
            "last_updated": updated,
            "timestamp": updated - updated % HOUR_MS if updated is not None else None,
            "id_error": id_error,
            "type_error": None,
        }
        for api_name, col in schemas.MARKETS_NUMERIC:
            v = item.get(api_name)
            if v is not None and not _is_number(v):
                rec["type_error"] = api_name
                v = None
            rec[col] = float(v) if v is not None else None
        records.append(rec)
    schema = {**schemas.MARKETS, "id_error": pl.String, "type_error": pl.String}
    schema["timestamp"] = pl.Int64
    schema["last_updated"] = pl.Int64
    df = pl.DataFrame(records, schema=schema, orient="row") if records else pl.DataFrame(schema=schema)
    return df.with_columns(pl.col("timestamp").cast(schemas.TS), pl.col("last_updated").cast(schemas.TS))


def markets_to_samples(markets: pl.DataFrame) -> pl.DataFrame:
    """The snapshot as one market_chart sample per asset (what /range would return for that hour)."""
    return markets.select(
        "asset_id",
        sampled_at=pl.col("last_updated").dt.epoch("ms"),
        price="price",
        market_cap="market_cap",
        total_volume="total_volume",
        type_error=pl.lit(None, pl.String),
    )
