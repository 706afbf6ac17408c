"""An asset's windows are stored together when the API answers back to back, one at a time
when the run is paced, and never lost when a later window fails."""

from __future__ import annotations

import errno
import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from mts.checkpoint import Checkpoint
from mts.collector import Collector
from mts.emulator import Emulator, FaultRule
from mts.errors import StorageError
from mts.layout import Layout, SeriesKey
from mts.settings import resolve_settings

from .conftest import NOW

HOUR_MS = 3_600_000


def _run(make_settings, **kw):
    s = make_settings(datasets="market_chart", **kw)
    return s, Collector(s, clock=lambda: NOW).run()


def _chart(layout: Layout, asset: str) -> pl.DataFrame:
    files = [p for _, p in layout.series_years(SeriesKey("market_chart", "1h", asset))]
    return pl.concat([pl.read_parquet(p) for p in files])


def test_a_fast_backfill_writes_each_year_file_once(make_settings):
    # 365 days on Demo = 5 range calls per asset, over two calendar years.
    s, result = _run(make_settings, days=365, top=2)
    assert result.exit_code == 0
    layout = Layout(s.data_dir)
    year_files = sum(len(layout.series_years(SeriesKey("market_chart", "1h", a))) for a in result.outcomes)
    assert year_files == 4
    assert result.stats.calls_by_endpoint()["range"] == 10
    assert result.summary()["files_written"] == year_files  # not one per answer


def test_a_paced_run_stores_each_answer_before_waiting_for_the_next_call(make_settings, env):
    # 40 calls/min: every call waits ~1.5 s for its slot, longer than answers are held.
    env["MTS_RATE_LIMIT"] = "40"
    s, result = _run(make_settings, days=200, top=1)
    assert result.exit_code == 0
    assert result.stats.calls_by_endpoint()["range"] == 3  # 200 days, all in 2026: one file
    assert result.summary()["files_written"] == 3


def test_windows_answered_before_a_failing_one_are_stored_and_covered(make_settings, emulator):
    victim = emulator.universe.asset_ids()[0]
    emulator.add_fault(FaultRule("status", endpoint="range", asset=victim, status=404, skip=2))
    s, result = _run(make_settings, days=365, top=1)
    assert result.failed[victim].category == "not_found"
    layout = Layout(s.data_dir)
    rows = _chart(layout, victim)
    span = Checkpoint.load(layout).span(SeriesKey("market_chart", "1h", victim))
    assert span is not None
    # two of five windows: the oldest 146 days or so, every hour of which is stored
    assert 2 * 73 * 24 - 2 <= rows.height <= 2 * 73 * 24 + 2
    ts = rows["timestamp"].dt.epoch("ms")
    assert ts.min() == span.start and ts.max() + HOUR_MS == span.end


def test_a_write_failing_between_two_year_files_leaves_no_claim_beyond_the_stored_rows(tmp_path, monkeypatch):
    # A window across new year lands in two files, 2025 first. If the 2026 one never lands
    # (kill, full disk), the 2025 file's footer must not claim its hours.
    now = datetime(2026, 1, 2, 5, 30, tzinfo=UTC)
    with Emulator(now=now) as emu:
        env = {"COINGECKO_BASE_URL": emu.base_url, "MTS_RATE_LIMIT": "100000"}
        s = resolve_settings(env, days=7, top=1, datasets="market_chart", data_dir=tmp_path / "data")
        layout = Layout(s.data_dir)
        key = SeriesKey("market_chart", "1h", emu.universe.asset_ids()[0])
        victim = layout.series_file(key, 2026)
        real_replace = os.replace

        def replace(src, dst, *a, **kw):
            if Path(dst) == victim:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real_replace(src, dst, *a, **kw)

        with monkeypatch.context() as m:
            m.setattr(os, "replace", replace)
            with pytest.raises(StorageError):
                Collector(s, clock=lambda: now).run()
    assert not victim.exists()
    stored = pl.read_parquet(layout.series_file(key, 2025))["timestamp"].dt.epoch("ms")
    span = Checkpoint.load(layout).span(key)
    assert span is None or span.end <= stored.max() + HOUR_MS
