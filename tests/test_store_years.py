"""A merge cuts rows into their UTC year files: by slicing sorted rows, the same as filtering."""

from datetime import UTC, datetime

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from mts import schemas
from mts.store import _by_year

Y2024 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
Y2028 = int(datetime(2028, 1, 1, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000
# Timestamps near the year boundaries as often as inside a year.
edges = [int(datetime(y, 1, 1, tzinfo=UTC).timestamp() * 1000) for y in range(2024, 2028)]
stamp = st.one_of(
    st.integers(Y2024, Y2028),
    st.sampled_from(edges).flatmap(lambda e: st.integers(e - 2 * HOUR, e + 2 * HOUR)),
    st.none(),
)


def _rows(stamps: list[int | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {"timestamp": stamps, "price": [float(i) for i in range(len(stamps))]},
        schema={"timestamp": pl.Int64, "price": pl.Float64},
    ).with_columns(pl.col("timestamp").cast(schemas.TS))


@settings(max_examples=200, deadline=None)
@given(st.lists(stamp, max_size=60))
def test_by_year_holds_exactly_the_rows_a_year_filter_would(stamps):
    rows = _rows(stamps)
    got = _by_year(rows)
    years = rows["timestamp"].dt.year()
    want = [(y, rows.filter(years == y)) for y in years.drop_nulls().unique().sort().to_list()]
    assert [y for y, _ in got] == [y for y, _ in want]
    for (_, part), (_, expected) in zip(got, want, strict=True):
        # The same rows (a cut may come back sorted by time, which a merge does anyway).
        assert part.sort("timestamp", "price").equals(expected.sort("timestamp", "price"))


def test_one_year_comes_back_whole_and_unsorted_rows_are_sorted_before_cutting():
    one = _rows([Y2024 + 5 * HOUR, Y2024 + HOUR])
    assert [(y, p.height) for y, p in _by_year(one)] == [(2024, 2)]
    boundary = edges[1]
    mixed = _rows([boundary + HOUR, boundary - HOUR, boundary, boundary - 1])
    assert [(y, p["timestamp"].dt.epoch("ms").to_list()) for y, p in _by_year(mixed)] == [
        (2024, [boundary - HOUR, boundary - 1]),
        (2025, [boundary, boundary + HOUR]),
    ]
