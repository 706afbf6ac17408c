"""Issue 2's end-to-end promises, checked against the emulator through the real CLI."""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from mts.layout import Layout, SeriesKey
from mts.schemas import SCHEMAS

from .conftest import NOW, clean_env, popen_cli, run_cli

HOUR = timedelta(hours=1)
NOW_HOUR = NOW.replace(minute=0, second=0, microsecond=0)


def read_tree(root: Path) -> dict[str, pl.DataFrame]:
    """Every data file under root, by relative path."""
    return {
        str(p.relative_to(root)): pl.read_parquet(p)
        for p in sorted(root.rglob("*.parquet"))
        if not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)
    }


def test_collect_7_days_top_20_stores_every_hour_candle_and_snapshot(emulator, env, tmp_path):
    proc = run_cli(["--collect", "--days", "7", "--top", "20"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "20/20 assets ok" in proc.stdout

    layout = Layout(tmp_path / "data")
    top20 = emulator.universe.asset_ids()[:20]
    start = NOW_HOUR - (7 * 24 - 1) * HOUR
    for asset in top20:
        chart = pl.read_parquet(layout.series_file(SeriesKey("market_chart", "1h", asset), 2026))
        truth = emulator.universe.hourly_points(asset, start, NOW_HOUR + HOUR)
        assert chart.height == len(truth) == 168, asset
        assert chart["timestamp"].is_unique().all() and chart["timestamp"].is_sorted()
        assert chart["sampled_at"].dt.epoch("ms").to_list() == [p[0] for p in truth]
        assert chart["price"].to_list() == pytest.approx([p[1] for p in truth])

        candles = pl.read_parquet(layout.series_file(SeriesKey("ohlc", "4h", asset), 2026))
        closes = candles["timestamp"] + timedelta(hours=4)
        assert (closes <= NOW).all(), "a forming candle was stored"
        want = emulator.universe.candles(asset, timedelta(hours=4), NOW - timedelta(days=7), NOW)
        assert candles.height == len(want) == 41
        assert (candles["timestamp"].dt.epoch("ms") + 4 * 3_600_000).to_list() == [c[0] for c in want]

    markets = pl.read_parquet(layout.markets_file(2026))
    assert sorted(markets["asset_id"].to_list()) == sorted(top20)


def test_second_identical_run_changes_no_row_and_asks_only_for_the_snapshot(emulator, env, tmp_path):
    assert run_cli(["--collect", "--days", "7", "--top", "20"], env).returncode == 0
    before = read_tree(tmp_path / "data")
    emulator.reset_log()
    proc = run_cli(["--collect", "--days", "7", "--top", "20"], env)
    assert proc.returncode == 0, proc.stderr
    after = read_tree(tmp_path / "data")
    assert before.keys() == after.keys()
    for path in before:
        assert before[path].equals(after[path]), path
    # Nothing became available at a frozen clock: one markets call, no per-asset call.
    assert emulator.count() == emulator.count(endpoint="markets") == 1


def test_an_hour_later_only_new_data_is_fetched(emulator, env, tmp_path):
    assert (
        run_cli(["--collect", "--days", "7", "--top", "20", "--datasets", "market_chart,markets"], env).returncode == 0
    )
    emulator.clock.advance(HOUR)
    emulator.reset_log()
    later = {**env, "MTS_NOW": (NOW + HOUR).isoformat()}
    assert (
        run_cli(["--collect", "--days", "7", "--top", "20", "--datasets", "market_chart,markets"], later).returncode
        == 0
    )
    # The new hour of all 20 assets came with the one /coins/markets call.
    assert emulator.count() == 1
    layout = Layout(tmp_path / "data")
    for asset in emulator.universe.asset_ids()[:20]:
        chart = pl.read_parquet(layout.series_file(SeriesKey("market_chart", "1h", asset), 2026))
        assert chart["timestamp"].max() == NOW_HOUR + HOUR


def test_each_dataset_opens_in_one_line_with_polars_and_duckdb(env, tmp_path):
    assert run_cli(["--collect", "--days", "7", "--top", "5"], env).returncode == 0
    data = tmp_path / "data"
    for dataset, partitions in (("market_chart", 3), ("ohlc", 3), ("markets", 1)):
        glob = f"{data}/{dataset}/**/*.parquet"
        df = pl.scan_parquet(glob, hive_partitioning=True).collect()
        assert df.height > 0
        for col, dtype in SCHEMAS[dataset].items():
            assert df.schema[col] == dtype, (dataset, col)
        assert df.schema["year"] == pl.Int64 and len(df.columns) == len(SCHEMAS[dataset]) + partitions
        rel = duckdb.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true)")
        types = dict(zip(rel.columns, [str(t) for t in rel.types], strict=True))
        assert types["timestamp"] == "TIMESTAMP WITH TIME ZONE"
        assert (
            duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)").fetchall()[0][0]
            == df.height
        )
    schemas = {str(pl.read_parquet_schema(p)) for p in data.glob("market_chart/**/*.parquet")}
    assert len(schemas) == 1


def test_csv_format_has_the_same_tree_and_columns(env, tmp_path):
    assert run_cli(["--collect", "--days", "2", "--top", "3", "--format", "csv"], env).returncode == 0
    files = list((tmp_path / "data" / "market_chart").rglob("*.csv"))
    assert len(files) == 3
    header = files[0].read_text().splitlines()[0]
    assert header == "timestamp,price,market_cap,total_volume,sampled_at"
    assert files[0].read_text().splitlines()[1].split(",")[0].endswith("Z")


def test_sigkill_halfway_then_rerun_gives_the_rows_of_an_uninterrupted_run(emulator, env, tmp_path):
    args = ["--collect", "--days", "30", "--top", "12", "--datasets", "market_chart,ohlc,markets"]
    ref_env = {**env, "MTS_DATA_DIR": str(tmp_path / "ref")}
    assert run_cli(args, ref_env).returncode == 0

    emulator.configure(latency_s=0.05)
    env = {**env, "MTS_RATE_LIMIT": "600"}  # slow enough that the kill lands mid-run
    proc = popen_cli(args, env)
    data = tmp_path / "data"
    deadline = time.time() + 30
    while time.time() < deadline and len(list(data.glob("market_chart/**/*.parquet"))) < 4:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list(data.glob("market_chart/**/*.parquet")))
    assert 0 < written < 12, "the kill should land halfway"

    emulator.configure(latency_s=0.0)
    assert run_cli(args, env).returncode == 0
    ref, got = read_tree(tmp_path / "ref"), read_tree(data)
    assert ref.keys() == got.keys()
    for path in ref:
        assert ref[path].equals(got[path]), path
    assert not list(data.rglob("*.tmp"))


def test_without_network_fails_fast_with_one_line_and_touches_nothing(tmp_path):
    env = {"MTS_DATA_DIR": str(tmp_path / "data"), "MTS_LOG_DIR": str(tmp_path / "logs")}
    started = time.monotonic()
    proc = run_cli(["--collect"], {k: v for k, v in env.items()}, timeout=60, cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "api.coingecko.com" in lines[0] and "COINGECKO_BASE_URL" in lines[0]
    assert elapsed < 15
    assert list(tmp_path.iterdir()) == []


def test_refused_connection_is_reported_the_same_way(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    env = {"COINGECKO_BASE_URL": f"http://127.0.0.1:{port}/api/v3", "MTS_DATA_DIR": str(tmp_path / "data")}
    proc = run_cli(["--collect"], env, cwd=tmp_path)
    assert proc.returncode == 1
    assert "connection refused" in proc.stderr and f"127.0.0.1:{port}" in proc.stderr
    assert not (tmp_path / "data").exists()


def test_clean_env_does_not_leak_the_callers_settings(monkeypatch):
    monkeypatch.setenv("COINGECKO_BASE_URL", "http://example.invalid")
    assert "COINGECKO_BASE_URL" not in clean_env({})


def test_one_folder_never_mixes_quote_currencies(env, tmp_path):
    assert run_cli(["collect", "--days", "2", "--top", "2"], env).returncode == 0
    before = read_tree(tmp_path / "data")
    proc = run_cli(["collect", "--days", "2", "--top", "2", "--vs-currency", "eur"], env)
    assert proc.returncode == 2
    assert "holds prices in usd" in proc.stderr and "--data-dir" in proc.stderr
    after = read_tree(tmp_path / "data")
    assert before.keys() == after.keys() and all(before[k].equals(after[k]) for k in before)


def test_a_window_across_new_year_lands_in_two_year_files(tmp_path):
    from datetime import UTC, datetime

    from mts.collector import Collector
    from mts.emulator import Emulator
    from mts.settings import resolve_settings

    now = datetime(2026, 1, 2, 5, 30, tzinfo=UTC)
    with Emulator(now=now) as emu:
        env = {"COINGECKO_BASE_URL": emu.base_url, "MTS_RATE_LIMIT": "100000"}
        s = resolve_settings(env, days=7, top=2, datasets="market_chart,ohlc", data_dir=tmp_path / "data")
        assert Collector(s, clock=lambda: now).run().exit_code == 0
        layout = Layout(tmp_path / "data")
        asset = emu.universe.asset_ids()[0]
        key = SeriesKey("market_chart", "1h", asset)
        years = layout.series_years(key)
        assert [y for y, _ in years] == [2025, 2026]
        parts = [pl.read_parquet(p) for _, p in years]
        assert all(df["timestamp"].dt.year().unique().to_list() == [y] for (y, _), df in zip(years, parts, strict=True))
        assert sum(df.height for df in parts) == 168
