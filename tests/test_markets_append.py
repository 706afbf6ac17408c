"""Markets year files take each newer snapshot by a streaming append, with the same rows,
order and schema as the ordinary in-memory merge gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from mts import schemas, store
from mts.layout import Layout
from mts.store import Store
from mts.transforms import sort_dedupe

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def snapshot(hour: int, assets: int = 50, price: float = 1.0) -> pl.DataFrame:
    at = T0 + timedelta(hours=hour)
    rows = []
    for i in range(assets):
        row = {c: None for c in schemas.MARKETS}
        row.update(timestamp=at, asset_id=f"coin-{i:03d}", symbol=f"c{i}", name=f"Coin {i}",
                   market_cap_rank=i + 1, price=price + i, last_updated=at + timedelta(minutes=3))
        rows.append(row)
    return pl.DataFrame(rows, schema=schemas.MARKETS)


def _fill(st: Store, hours: int) -> pl.DataFrame:
    for h in range(hours):
        st.merge(None, "markets", snapshot(h))
    return pl.read_parquet(st.layout.markets_file(2026))


def test_a_newer_snapshot_is_appended_and_equals_the_ordinary_merge(tmp_path, monkeypatch):
    st = Store(Layout(tmp_path))
    before = _fill(st, 12)
    path = st.layout.markets_file(2026)
    new = snapshot(12, price=9.0)
    expected = sort_dedupe(pl.concat([before, new]), "markets")

    def no_full_rewrite(*a, **kw):
        raise AssertionError("the ordinary merge ran")

    monkeypatch.setattr(store, "write_file", no_full_rewrite)
    result = Store(Layout(tmp_path)).merge(None, "markets", new)  # a new process: nothing cached

    got = pl.read_parquet(path)
    assert result.rows_added == 50 and result.files_written == 1
    assert got.equals(expected)
    assert dict(got.schema) == schemas.MARKETS
    assert got.select(schemas.KEYS["markets"]).is_duplicated().sum() == 0


def test_a_snapshot_of_a_stored_hour_goes_through_the_ordinary_merge(tmp_path):
    st = Store(Layout(tmp_path))
    before = _fill(st, 12)
    again = snapshot(11, price=5.0)  # the same hour, other values: dedupe must decide
    expected = sort_dedupe(pl.concat([before, again]), "markets")
    Store(Layout(tmp_path)).merge(None, "markets", again)
    assert pl.read_parquet(st.layout.markets_file(2026)).equals(expected)


def test_a_file_sorted_asset_first_by_an_older_version_is_rewritten_time_first(tmp_path):
    st = Store(Layout(tmp_path))
    path = st.layout.markets_file(2026)
    old = pl.concat([snapshot(h) for h in range(12)]).sort("asset_id", "timestamp")
    path.parent.mkdir(parents=True)
    old.write_parquet(path)
    Store(Layout(tmp_path)).merge(None, "markets", snapshot(12))
    got = pl.read_parquet(path)
    assert got.equals(sort_dedupe(pl.concat([old, snapshot(12)]), "markets"))
    assert got["timestamp"].is_sorted()
