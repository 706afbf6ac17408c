"""`mts verify` finds what is wrong with a data folder, one planted fault at a time, and
`--repair` fixes a gap with exactly the calls that gap needs."""

from __future__ import annotations

from datetime import timedelta

import orjson
import polars as pl
import pytest

from mts.checkpoint import Checkpoint
from mts.collector import Collector
from mts.layout import Layout, SeriesKey
from mts.planner import HOUR
from mts.plans import PLANS
from mts.verify import Problem, check, find_gaps, plan_repair, verify

from .conftest import NOW, run_cli

DAY = 24 * HOUR


@pytest.fixture
def collected(emulator, make_settings):
    """A 7-day, top-3 collect against the emulator: (settings, layout, the three asset ids)."""
    settings = make_settings(days=7, top=3)
    assert Collector(settings, clock=lambda: NOW).run().exit_code == 0
    assets = emulator.universe.asset_ids()[:3]
    return settings, Layout(settings.data_dir), assets


def chart(layout: Layout, asset: str):
    return layout.series_file(SeriesKey("market_chart", "1h", asset), NOW.year)


def kinds(report) -> list[str]:
    return [p.kind for p in report.problems]


def test_a_fresh_collect_verifies_clean_and_exits_0(collected, env):
    settings, layout, _ = collected
    assert check(layout, NOW, settings.plan).problems == []
    proc = run_cli(["verify"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "clean" in proc.stdout


def test_finds_a_planted_gap(collected, env):
    settings, layout, assets = collected
    path = chart(layout, assets[0])
    df = pl.read_parquet(path)
    hole = df.slice(50, 5)["timestamp"]
    pl.concat([df.head(50), df.slice(55)]).write_parquet(path)

    report = check(layout, NOW, settings.plan)
    assert kinds(report) == ["gap"]
    gap = report.problems[0]
    assert gap.series == SeriesKey("market_chart", "1h", assets[0])
    assert (gap.start, gap.end) == (hole.dt.epoch("ms")[0], hole.dt.epoch("ms")[-1] + HOUR)
    proc = run_cli(["verify"], env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"gap             market_chart/1h/{assets[0]}" in proc.stdout
    assert "5 1h buckets missing" in proc.stdout


def test_finds_a_planted_duplicate(collected, env):
    settings, layout, assets = collected
    path = chart(layout, assets[1])
    df = pl.read_parquet(path)
    pl.concat([df, df.slice(10, 1)]).sort("timestamp").write_parquet(path)

    assert kinds(check(layout, NOW, settings.plan)) == ["duplicate_keys"]
    proc = run_cli(["verify", "--json"], env)
    assert proc.returncode == 3
    doc = orjson.loads(proc.stdout)
    assert doc["counts"] == {"duplicate_keys": 1}
    assert doc["problems"][0]["where"].endswith(
        f"asset_id={assets[1]}/year={NOW.year}/data.parquet"
    )


def test_finds_a_file_with_a_foreign_schema(collected, env):
    settings, layout, assets = collected
    path = layout.series_file(SeriesKey("ohlc", "4h", assets[2]), NOW.year)
    pl.read_parquet(path).rename({"close": "last"}).write_parquet(path)

    assert kinds(check(layout, NOW, settings.plan)) == ["foreign_schema"]
    proc = run_cli(["verify"], env)
    assert proc.returncode == 3
    assert "foreign_schema" in proc.stdout and "are not the ohlc schema" in proc.stdout


def test_finds_an_unreadable_file(collected, env):
    settings, layout, assets = collected
    path = chart(layout, assets[2])
    path.write_bytes(b"PAR1 this is not parquet")

    report = check(layout, NOW, settings.plan)
    assert kinds(report) == ["unreadable"]
    proc = run_cli(["verify"], env)
    assert proc.returncode == 3
    assert "unreadable" in proc.stdout


def test_finds_rows_of_another_year_unsorted_rows_and_stray_files(collected):
    settings, layout, assets = collected
    path = chart(layout, assets[0])
    df = pl.read_parquet(path)
    df.reverse().write_parquet(path)
    other = layout.series_file(SeriesKey("market_chart", "1h", assets[1]), 2025)
    other.parent.mkdir(parents=True)
    pl.read_parquet(chart(layout, assets[1])).head(3).write_parquet(other)
    (path.parent / "copy.parquet").write_bytes(path.read_bytes())

    assert sorted(kinds(check(layout, NOW, settings.plan))) == [
        "stray_file",
        "unsorted",
        "wrong_year",
    ]


def test_finds_a_checkpoint_that_disagrees_with_the_files(collected):
    settings, layout, assets = collected
    cp = Checkpoint.load(layout)
    key = SeriesKey("market_chart", "1h", assets[0])
    cp.forget(key)
    cp.extend(
        SeriesKey("market_chart", "1h", "ghost-coin"),
        cp.span(SeriesKey("market_chart", "1h", assets[1])),
    )
    cp.save()

    found = {(p.kind, p.where) for p in check(layout, NOW, settings.plan).problems}
    assert found == {("checkpoint", str(key)), ("checkpoint", "market_chart/1h/ghost-coin")}


def test_repair_fetches_exactly_the_gap_and_rebuilds_the_checkpoint(collected, emulator):
    settings, layout, assets = collected
    path = chart(layout, assets[0])
    original = pl.read_parquet(path)
    pl.concat([original.head(50), original.slice(55)]).write_parquet(path)
    last_run = orjson.loads(layout.checkpoint_path.read_bytes())["last_run"]
    emulator.reset_log()

    report = verify(settings, NOW, repair_=True)

    assert report.problems == [], report.as_dict()
    assert report.exit_code == 0
    calls = emulator.requests()
    assert [(r.endpoint, r.asset) for r in calls] == [("range", assets[0])]
    gap_start = int(original["timestamp"][50].timestamp())
    gap_end = int(original["timestamp"][54].timestamp()) + 3600
    assert (calls[0].params["from"], calls[0].params["to"]) == (str(gap_start), str(gap_end))
    assert pl.read_parquet(path).equals(original)
    saved = orjson.loads(layout.checkpoint_path.read_bytes())
    assert saved["last_run"] == last_run
    assert Checkpoint.load(layout).spans() == Checkpoint.rebuild(layout).spans()
    assert check(layout, NOW, settings.plan).problems == []


def test_an_unusable_checkpoint_is_reported_and_rebuilt(collected, emulator):
    settings, layout, _ = collected
    spans = Checkpoint.load(layout).spans()
    layout.checkpoint_path.write_bytes(b"{ torn")
    assert [
        (p.kind, p.detail.split(" (")[0]) for p in check(layout, NOW, settings.plan).problems
    ] == [("checkpoint", "checkpoint unreadable")]
    emulator.reset_log()
    report = verify(settings, NOW, repair_=True)
    assert report.problems == [] and emulator.count() == 0
    assert Checkpoint.load(layout).spans().keys() == spans.keys()


def test_repair_rewrites_duplicates_and_sets_unreadable_files_aside(collected, emulator):
    settings, layout, assets = collected
    dup = chart(layout, assets[1])
    original = pl.read_parquet(dup)
    pl.concat([original, original.slice(10, 1)]).sort("timestamp").write_parquet(dup)
    bad = layout.series_file(SeriesKey("ohlc", "4h", assets[2]), NOW.year)
    bad.write_bytes(b"garbage")
    emulator.reset_log()

    report = verify(settings, NOW, repair_=True)

    assert report.problems == [], report.as_dict()
    assert pl.read_parquet(dup).equals(original)
    assert not bad.exists()
    assert list(layout.corrupt_dir.rglob("data.parquet.*"))  # kept, out of the data tree
    assert emulator.count() == 0  # nothing to fetch: the next collect refills the set-aside file
    assert any("moved" in a for a in report.repaired)


def test_gaps_the_api_no_longer_serves_are_reported_as_lost():
    now_ms = int(NOW.timestamp() * 1000)
    key = SeriesKey("ohlc", "30m", "bitcoin")
    old = Problem("gap", str(key), "", key, now_ms - 3 * DAY, now_ms - 3 * DAY + 4 * 1_800_000)
    calls, lost = plan_repair([old], now_ms, PLANS["demo"])
    assert calls == []
    assert lost and "no longer served" in lost[0]

    chart_key = SeriesKey("market_chart", "1h", "bitcoin")
    ancient = Problem("gap", str(chart_key), "", chart_key, now_ms - 400 * DAY, now_ms - 399 * DAY)
    calls, lost = plan_repair([ancient], now_ms, PLANS["demo"])
    assert calls == [] and "365-day history" in lost[0]


def test_nearby_gaps_share_one_call_and_long_ones_are_split():
    now_ms = (int(NOW.timestamp() * 1000) // HOUR) * HOUR
    key = SeriesKey("market_chart", "1h", "bitcoin")
    near = [
        Problem("gap", str(key), "", key, now_ms - d * DAY, now_ms - d * DAY + 3 * HOUR)
        for d in (20, 10)
    ]
    calls, lost = plan_repair(near, now_ms, PLANS["demo"])
    assert lost == [] and len(calls) == 1
    assert (calls[0].start, calls[0].end) == (now_ms - 20 * DAY, now_ms - 10 * DAY + 3 * HOUR)

    one_hour = [Problem("gap", str(key), "", key, now_ms - 5 * DAY, now_ms - 5 * DAY + HOUR)]
    (call,), _ = plan_repair(one_hour, now_ms, PLANS["demo"])
    assert call.end - call.start == 2 * HOUR  # the API answers shorter ranges with nothing

    long = [Problem("gap", str(key), "", key, now_ms - 200 * DAY, now_ms - 10 * DAY)]
    calls, _ = plan_repair(long, now_ms, PLANS["basic"])
    assert len(calls) == 3 and all(c.end - c.start <= 90 * DAY for c in calls)


def test_ohlc_gaps_take_the_smallest_days_that_reach_back():
    now_ms = int(NOW.timestamp() * 1000)
    key = SeriesKey("ohlc", "4h", "bitcoin")
    gap = Problem("gap", str(key), "", key, now_ms - 10 * DAY, now_ms - 9 * DAY)
    (call,), lost = plan_repair([gap], now_ms, PLANS["demo"])
    assert (call.interval, call.days, lost) == ("4h", 14, [])


@pytest.mark.parametrize(
    ("ts", "step", "gaps"),
    [
        ([], 1, []),
        ([0, 1, 2], 1, []),
        ([0, 1, 4, 5, 7], 1, [(2, 4), (6, 7)]),
        ([0, 10], 5, [(5, 10)]),
    ],
)
def test_find_gaps(ts, step, gaps):
    assert find_gaps(ts, step) == gaps


def test_a_gap_in_recent_ohlc_is_refetched_with_one_call(collected, emulator):
    settings, layout, assets = collected
    path = layout.series_file(SeriesKey("ohlc", "4h", assets[1]), NOW.year)
    original = pl.read_parquet(path)
    pl.concat([original.head(20), original.slice(22)]).write_parquet(path)
    emulator.reset_log()

    report = verify(settings, NOW, repair_=True)

    assert report.problems == []
    assert [(r.endpoint, r.params.get("days")) for r in emulator.requests()] == [("ohlc", "7")]
    assert pl.read_parquet(path).equals(original)
    assert NOW - timedelta(days=7) < original["timestamp"][20]
