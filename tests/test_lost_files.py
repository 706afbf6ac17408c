"""A data file lost after it was stored (torn, scribbled over, deleted, or set aside by a run
killed before it saved its checkpoint) never leaves a hole the checkpoint goes on claiming: the
next collect fetches its period again, in either format and in any year of a multi-year series.

Before this, a series of two year files whose older file was torn lost that year for good: the
newer file's footer still vouched for the series from its first hour."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from mts.checkpoint import Span, latest_run
from mts.collector import Collector
from mts.emulator import Emulator
from mts.errors import CorruptFileError, ExitCode
from mts.layout import Layout, SeriesKey
from mts.settings import resolve_settings
from mts.store import read_file
from mts.verify import check

from .conftest import FAST, NOW

DAYS = 365  # from 2025-11-20: every series has a 2025 and a 2026 file
TOP = 3
VICTIM = SeriesKey("market_chart", "1h", "ethereum")
LATER = NOW + timedelta(hours=1)


@pytest.fixture(scope="module")
def emu():
    with Emulator(now=NOW) as e:
        yield e


def collect(emu, data: Path, fmt: str, at=NOW, datasets: str = "market_chart"):
    emu.clock.set(at)
    env = {
        "COINGECKO_BASE_URL": emu.base_url,
        "MTS_RATE_LIMIT": FAST,
        "MTS_DATA_DIR": str(data),
        "MTS_LOG_DIR": str(data.parent / "logs"),
    }
    settings = resolve_settings(env, days=DAYS, top=TOP, datasets=datasets, fmt=fmt)
    return Collector(settings, clock=lambda: at).run()


def series_rows(data: Path, fmt: str) -> dict[str, pl.DataFrame]:
    base = data / "market_chart"
    return {str(p.relative_to(data)): read_file(p, "market_chart", fmt) for p in sorted(base.rglob(f"*.{fmt}"))}


@pytest.fixture(scope="module")
def stored(emu, tmp_path_factory):
    """{fmt: (a folder collected at NOW, its series rows, its rows once collected again at LATER)}."""
    out = {}
    for fmt in ("parquet", "csv"):
        data = tmp_path_factory.mktemp(fmt) / "data"
        assert collect(emu, data, fmt).exit_code == ExitCode.OK
        later = tmp_path_factory.mktemp(f"{fmt}-later") / "data"
        shutil.copytree(data, later)
        assert collect(emu, later, fmt, LATER).exit_code == ExitCode.OK
        out[fmt] = (data, series_rows(data, fmt), series_rows(later, fmt))
    return out


def copy_of(stored, fmt: str, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(stored[fmt][0], data)
    return data


def tear(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def scribble_keeping_identity(path: Path) -> None:
    """Same size and mtime, other bytes: what a load cannot see without reading the file."""
    st = path.stat()
    path.write_bytes(b"\0" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def assert_rows(data: Path, fmt: str, want: dict[str, pl.DataFrame], cols: list[str] | None = None) -> None:
    got = series_rows(data, fmt)
    assert sorted(got) == sorted(want)
    for rel, df in want.items():
        assert got[rel][cols or df.columns].equals(df[cols or df.columns]), rel


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("year", [2025, 2026])
@pytest.mark.parametrize("loss", ["torn", "deleted"])
@pytest.mark.parametrize("checkpoint", ["kept", "deleted"], ids=["checkpoint-kept", "checkpoint-deleted"])
def test_a_lost_year_file_is_fetched_again_by_the_next_collect(emu, stored, tmp_path, fmt, year, loss, checkpoint):
    data = copy_of(stored, fmt, tmp_path)
    layout = Layout(data, fmt)
    victim = layout.series_file(VICTIM, year)
    tear(victim) if loss == "torn" else victim.unlink()
    if checkpoint == "deleted":  # rebuilt from the files that are left
        layout.checkpoint_path.unlink()

    result = collect(emu, data, fmt)

    assert result.exit_code == ExitCode.OK
    assert_rows(data, fmt, stored[fmt][1])


def test_a_lost_year_of_candles_is_fetched_again(emu, tmp_path):
    """OHLC is asked for by `days` back from now: a series that kept only its newer year still
    gets its older candles back, though no candle closed since its newest one."""
    data = tmp_path / "data"
    assert collect(emu, data, "parquet", datasets="ohlc").exit_code == ExitCode.OK
    files = sorted((data / "ohlc").rglob("*.parquet"))
    want = {p: pl.read_parquet(p) for p in files}
    victim = Layout(data, "parquet").series_file(SeriesKey("ohlc", "4d", VICTIM.asset_id), 2025)
    assert victim in want
    victim.unlink()

    assert collect(emu, data, "parquet", datasets="ohlc").exit_code == ExitCode.OK
    assert sorted((data / "ohlc").rglob("*.parquet")) == files
    assert all(pl.read_parquet(p).equals(df) for p, df in want.items())


def test_verify_names_a_recorded_file_that_is_gone_until_the_next_collect(emu, stored, tmp_path):
    data = copy_of(stored, "parquet", tmp_path)
    layout = Layout(data, "parquet")
    victim = layout.series_file(VICTIM, 2025)
    victim.unlink()

    problems = check(layout, NOW).problems
    assert [(p.kind, p.where) for p in problems] == [("checkpoint", str(victim.relative_to(data)))]
    assert collect(emu, data, "parquet").exit_code == ExitCode.OK
    assert check(layout, NOW).problems == []


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_series_whose_folder_was_deleted_is_fetched_again(emu, stored, tmp_path, fmt):
    data = copy_of(stored, fmt, tmp_path)
    shutil.rmtree(Layout(data, fmt).series_dir(VICTIM))

    assert collect(emu, data, fmt).exit_code == ExitCode.OK
    assert_rows(data, fmt, stored[fmt][1])


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("checkpoint_saved", [True, False], ids=["saved", "killed-before-save"])
def test_a_file_found_unreadable_while_merging_is_fetched_again_by_the_next_run(
    emu, stored, tmp_path, fmt, checkpoint_saved
):
    """The load trusts a file whose size and mtime are unchanged; the merge of the next hour
    finds it unreadable, sets it aside and stores that hour alone. The run says the asset
    failed, and the next run fetches the lost year again, even when the first was killed
    before its checkpoint reached the disk."""
    data = copy_of(stored, fmt, tmp_path)
    layout = Layout(data, fmt)
    victim = layout.series_file(VICTIM, 2026)
    size = victim.stat().st_size
    scribble_keeping_identity(victim)
    before = layout.checkpoint_path.read_bytes()

    first = collect(emu, data, fmt, LATER)

    assert first.exit_code == ExitCode.PARTIAL
    failed = first.outcomes[VICTIM.asset_id]
    assert (failed.ok, failed.category) == (False, "corrupt_file")
    assert str(victim) in failed.reason
    kept = list(layout.corrupt_dir.rglob(f"data.{fmt}.*"))
    assert [p.read_bytes() for p in kept] == [b"\0" * size]  # kept, byte for byte, out of the data tree
    if not checkpoint_saved:
        layout.checkpoint_path.write_bytes(before)

    assert collect(emu, data, fmt, LATER).exit_code == ExitCode.OK
    # Every hour and sample is back. (The hour that was current at NOW took its market cap and
    # volume from that run's /coins/markets snapshot; fetched again, they come from the chart.)
    assert_rows(data, fmt, stored[fmt][2], ["timestamp", "sampled_at", "price"])


def test_a_csv_file_cut_inside_a_row_is_unreadable_not_a_row_of_wrong_numbers(stored, tmp_path):
    """polars reads a last line cut short as nulls and a number missing its digits."""
    path = tmp_path / "data.csv"
    body = next(stored["csv"][0].rglob("data.csv")).read_bytes()
    path.write_bytes(body[: body.rindex(b",") + 3])  # inside the last row's last field but one
    with pytest.raises(CorruptFileError, match="cut short"):
        read_file(path, "market_chart", "csv")
    path.write_bytes(body[: body.rindex(b"\n", 0, -1) + 1])  # a whole row fewer: still a CSV file
    assert read_file(path, "market_chart", "csv").height > 0


def test_the_latest_contiguous_run_of_spans_is_kept():
    assert latest_run([]) is None
    assert latest_run([Span(5, 9), Span(0, 5)]) == Span(0, 9)  # touching pieces join
    assert latest_run([Span(0, 4), Span(2, 6), Span(8, 9)]) == Span(8, 9)  # a hole: the newer part
    assert latest_run([Span(0, 10), Span(3, 4), Span(10, 12)]) == Span(0, 12)  # inside and after
