"""Markets year files take each newer snapshot as one more row group (and are compacted by a
streamed rewrite once a day's worth pile up), with the same rows, order and schema as the
ordinary in-memory merge gives, readable by polars, pyarrow and DuckDB."""

from __future__ import annotations

import errno
import logging
import os
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from mts import parquet_append, schemas, store
from mts.errors import StorageError
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


def row_groups(path) -> list[int]:
    meta = pq.read_metadata(path)
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def test_each_hourly_snapshot_is_one_more_row_group_and_every_reader_agrees(tmp_path):
    st = Store(Layout(tmp_path))
    st.merge(None, "markets", snapshot(0))
    path = st.layout.markets_file(2026)
    expected = snapshot(0)
    for h in range(1, 6):
        new = snapshot(h, price=float(h))
        Store(Layout(tmp_path)).merge(None, "markets", new)
        expected = pl.concat([expected, new])
        assert row_groups(path) == [50] * (h + 1)  # appended, not rewritten into one group
    assert pl.read_parquet(path).equals(expected)
    assert pl.DataFrame(pq.read_table(path)).equals(expected)
    got = duckdb.sql(f"select count(*), sum(price), max(timestamp) from '{path}'").fetchall()[0]
    assert got[0] == expected.height and got[1] == pytest.approx(expected["price"].sum())
    assert got[2] == expected["timestamp"].max()
    # Statistics of the appended groups work: a filter on the last hour finds exactly its rows.
    last = pl.scan_parquet(path).filter(pl.col("timestamp") == expected["timestamp"].max()).collect()
    assert last.equals(snapshot(5, price=5.0))


def test_a_days_worth_of_small_row_groups_is_compacted_by_a_rewrite(tmp_path):
    st = Store(Layout(tmp_path))
    path = st.layout.markets_file(2026)
    expected = _fill(st, store._MAX_SMALL_ROW_GROUPS)
    assert len(row_groups(path)) == store._MAX_SMALL_ROW_GROUPS
    new = snapshot(store._MAX_SMALL_ROW_GROUPS)
    Store(Layout(tmp_path)).merge(None, "markets", new)
    assert row_groups(path) == [expected.height + new.height]  # < _APPEND_ROW_GROUP: one group
    assert pl.read_parquet(path).equals(pl.concat([expected, new]))


def test_an_append_that_does_not_read_back_falls_back_to_a_rewrite(tmp_path, monkeypatch, caplog):
    st = Store(Layout(tmp_path))
    before = _fill(st, 3)
    path = st.layout.markets_file(2026)

    def forgets_the_new_rows(src, table, out, **kw):  # a wrong splice: the old file, unchanged
        out.write_bytes(src.read_bytes())

    monkeypatch.setattr(parquet_append, "append_row_group", forgets_the_new_rows)
    new = snapshot(3)
    with caplog.at_level(logging.WARNING, logger="mts.store"):
        Store(Layout(tmp_path)).merge(None, "markets", new)
    assert pl.read_parquet(path).equals(pl.concat([before, new]))
    assert "could not append a row group" in caplog.text
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_during_an_append_keeps_the_file_and_is_the_runs_error(tmp_path, monkeypatch):
    st = Store(Layout(tmp_path))
    before = _fill(st, 3)
    path = st.layout.markets_file(2026)
    data_before = path.read_bytes()

    def disk_full(src, dst, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(parquet_append, "_copy_range", disk_full)
    with pytest.raises(StorageError):
        Store(Layout(tmp_path)).merge(None, "markets", snapshot(3))
    assert path.read_bytes() == data_before
    assert pl.read_parquet(path).equals(before)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
