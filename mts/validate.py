"""Named validation rules as polars expressions; validation returns valid rows and rejects."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class Rule:
    name: str
    ok: pl.Expr  # true where the row passes
    # A cheaper test that passes only rows `ok` passes: when it holds on every row, so does
    # `ok`, and apply_rules' one-pass check for a clean frame can use it instead.
    quick: pl.Expr | None = None


def _finite_positive(col: str) -> pl.Expr:
    return pl.col(col).is_not_null() & pl.col(col).is_finite() & (pl.col(col) > 0)


def _null_or_non_negative(col: str) -> pl.Expr:
    return pl.col(col).is_null() | (pl.col(col).is_finite() & (pl.col(col) >= 0))


def _numeric_types() -> Rule:
    return Rule("numeric_type", pl.col("type_error").is_null())


def market_chart_rules(
    window_start_ms: int | pl.Expr, window_end_ms: int | pl.Expr, now_ms: int | pl.Expr,
    per: str | list[str] | None = None,
) -> list[Rule]:
    """Bounds are numbers, or expressions when each row carries its own. `per`: the column(s)
    naming the answer each row came from, when one frame holds several."""
    t = pl.col("sampled_at")
    first_of_series = t.is_first_distinct() if per is None else t.is_first_distinct().over(per)
    # Distinct across the frame implies distinct within each answer, and costs a third of .over().
    quick = None if per is None else t.is_first_distinct()
    return [
        _numeric_types(),
        Rule("timestamp_present", t.is_not_null()),
        Rule("price_positive", _finite_positive("price")),
        Rule("market_cap_non_negative", _null_or_non_negative("market_cap")),
        Rule("volume_non_negative", _null_or_non_negative("total_volume")),
        Rule("inside_window", (t >= window_start_ms) & (t <= window_end_ms)),
        Rule("not_in_future", t <= now_ms),
        Rule("duplicate_sample", first_of_series, quick),
    ]


def ohlc_rules(length_ms: int, window_start_ms: int, now_ms: int) -> list[Rule]:
    close_t = pl.col("close_time")
    prices = ("open", "high", "low", "close")
    rules = [_numeric_types(), Rule("timestamp_present", close_t.is_not_null())]
    rules += [Rule(f"{c}_positive", _finite_positive(c)) for c in prices]
    rules += [
        Rule("high_ge_open_close", pl.col("high") >= pl.max_horizontal("open", "close")),
        Rule("low_le_open_close", pl.col("low") <= pl.min_horizontal("open", "close")),
        # A candle off the grid of its length belongs to another series: never mix them.
        Rule("aligned_to_interval", (close_t % length_ms) == 0),
        Rule("inside_window", close_t - length_ms >= window_start_ms),
        Rule("not_in_future", close_t <= now_ms),
        Rule("duplicate_candle", close_t.is_first_distinct()),
    ]
    return rules


def markets_rules() -> list[Rule]:
    return [
        Rule("asset_id_storable", pl.col("id_error").is_null()),
        # "." and ".." cannot be sent as a URL path segment: HTTP clients and servers resolve
        # them away, so /coins/../ohlc would ask for another resource.
        Rule("asset_id_addressable", ~pl.col("asset_id").is_in([".", ".."])),
        _numeric_types(),
        Rule("last_updated_present", pl.col("last_updated").is_not_null()),
        Rule("price_positive_or_null", pl.col("price").is_null() | _finite_positive("price")),
        Rule("duplicate_asset", pl.col("asset_id").is_first_distinct()),
    ]


def apply_rules(df: pl.DataFrame, rules: list[Rule]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split `df` into (rows passing every rule, rows failing one with a `rule` column naming
    the first rule each broke). Nothing is dropped silently."""
    if df.is_empty():
        return df, _no_rejects(df)
    # The common case, every row clean, costs one boolean pass instead of tagging each row.
    quick = [(r.ok if r.quick is None else r.quick).fill_null(False) for r in rules]
    if df.select(pl.all_horizontal(quick).all()).item():
        return df, _no_rejects(df)
    broken = pl.lit(None, pl.String)
    for rule in reversed(rules):
        broken = pl.when(rule.ok.fill_null(False).not_()).then(pl.lit(rule.name)).otherwise(broken)
    tagged = df.with_columns(rule=broken)
    valid = tagged.filter(pl.col("rule").is_null()).drop("rule")
    rejects = tagged.filter(pl.col("rule").is_not_null())
    return valid, rejects


def _no_rejects(df: pl.DataFrame) -> pl.DataFrame:
    # hstack, not with_columns: an eager with_columns runs a query plan (~60 µs) for no rows.
    return df.clear().hstack([pl.Series("rule", [], pl.String)])
