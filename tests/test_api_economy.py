"""Issue 3: the fewest calls the plan allows, predicted exactly by `mts plan`."""

from __future__ import annotations

import json
import signal
import time
from datetime import timedelta

import polars as pl

from mts.emulator import FaultRule

from .conftest import NOW, popen_cli, run_cli

HOUR = timedelta(hours=1)
N = 12
ARGS = ["--days", "365", "--top", str(N), "--datasets", "market_chart,markets"]


def predicted(env) -> dict:
    proc = run_cli(["plan", *ARGS, "--json"], env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["calls"]


def collect_counting(emulator, env) -> dict:
    emulator.reset_log()
    proc = run_cli(["collect", *ARGS], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {
        "markets": emulator.count(endpoint="markets"),
        "range": emulator.count(endpoint="range"),
        "total": emulator.count(),
    }


def at(env, delta: timedelta) -> dict:
    return {**env, "MTS_NOW": (NOW + delta).isoformat()}


def test_backfill_next_hour_and_missed_hours_cost_the_minimum_and_plan_predicts_it(emulator, env):
    # (a) backfill: 1 markets call (N <= 250) + 5 range calls per asset for 365 days.
    plan = predicted(env)
    emulator.reset_log()  # plan's own discovery call is not the collect's
    got = collect_counting(emulator, env)
    assert got == {"markets": 1, "range": 5 * N, "total": 1 + 5 * N}
    assert plan["total"] == got["total"] and plan["range"] == got["range"]
    assert emulator.count(status=401) == 0, "the planner must never provoke a 10012"
    for rec in emulator.requests(endpoint="range"):
        span_days = (float(rec.params["to"]) - float(rec.params["from"])) / 86400
        assert span_days <= 90, "a longer window would silently turn daily"

    # (b) the next hourly run: the snapshot supplies the new hour for every asset.
    emulator.clock.advance(HOUR)
    plan = predicted(at(env, HOUR))
    got = collect_counting(emulator, at(env, HOUR))
    assert got == {"markets": 1, "range": 0, "total": 1} and plan["total"] == 1

    # (d) after 6 missed hours: one range call per asset for the hours the snapshot cannot give.
    emulator.clock.advance(6 * HOUR)
    plan = predicted(at(env, 7 * HOUR))
    got = collect_counting(emulator, at(env, 7 * HOUR))
    assert got == {"markets": 1, "range": N, "total": 1 + N} and plan["total"] == got["total"]


def test_a_killed_backfill_resumes_without_asking_again_for_stored_data(emulator, env, tmp_path):
    emulator.configure(latency_s=0.03)
    slow = {**env, "MTS_RATE_LIMIT": "1200"}
    proc = popen_cli(["collect", *ARGS], slow)
    data = tmp_path / "data"
    deadline = time.time() + 30
    while time.time() < deadline and len(list(data.glob("market_chart/**/*.parquet"))) < N // 2:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    emulator.configure(latency_s=0.0)

    stored = {}
    for p in data.glob("market_chart/**/*.parquet"):
        ts = pl.read_parquet(p)["timestamp"].dt.epoch("s")
        stored[p.parent.parent.name.split("=", 1)[1]] = (ts.min(), ts.max())
    assert 0 < len(stored) < N

    plan = predicted(env)
    emulator.reset_log()
    got = collect_counting(emulator, env)
    assert got["total"] == plan["total"]
    assert got["total"] < 1 + 5 * N
    for rec in emulator.requests(endpoint="range"):
        if rec.asset in stored:
            lo, hi = stored[rec.asset]
            assert float(rec.params["to"]) <= lo or float(rec.params["from"]) > hi, (
                f"{rec.asset}: asked {rec.params} again though {lo}..{hi} was stored"
            )


def test_a_429_storm_costs_no_data_and_at_most_one_failed_request_per_worker(emulator, env, tmp_path):
    args = ["collect", "--days", "30", "--top", "20", "--datasets", "market_chart,ohlc"]
    ref = {**env, "MTS_DATA_DIR": str(tmp_path / "ref")}
    assert run_cli(args, ref).returncode == 0
    emulator.configure(latency_s=0.02)
    emulator.reset_log()
    emulator.add_fault(
        FaultRule(
            kind="status",
            status=429,
            headers={"Retry-After": "5"},
            duration_s=20,
            skip=5,
            body=b'{"status":{"error_code":429,"error_message":"You\'ve exceeded the Rate Limit."}}',
        )
    )
    proc = run_cli(args, {**env, "MTS_RATE_LIMIT": "600"}, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    workers = 8
    assert 1 <= emulator.count(status=429) <= workers
    for p in (tmp_path / "ref").rglob("*.parquet"):
        got = pl.read_parquet(tmp_path / "data" / p.relative_to(tmp_path / "ref"))
        assert got.equals(pl.read_parquet(p))


def test_plan_warns_when_hourly_cron_would_exceed_the_monthly_credits(env):
    env = {**env, "COINGECKO_API_KEY": "demo-key-for-tests"}  # a Demo plan: 10,000 calls a month
    proc = run_cli(["plan", "--days", "1", "--assets", ",".join(f"a{i}" for i in range(300))], env)
    assert proc.returncode == 0, proc.stderr
    assert "EXCEEDS 10,000" in proc.stdout
    assert "suggestion: --top 12 with the same datasets fits 10,000 calls/month" in proc.stdout
    default = run_cli(["plan", "--json"], env)
    cron = json.loads(default.stdout)["hourly_cron"]
    assert cron["fits"] and cron["calls_per_run"] == 11 and cron["calls_per_month"] == 8184


def test_a_stricter_history_limit_than_expected_is_clamped_not_fatal(emulator, env):
    # The server's limit is a day shorter than the plan table says: each asset's oldest
    # window gets one 10012, mts moves the window a day later and carries on.
    emulator.configure(history_days=364)
    proc = run_cli(["collect", "--days", "365", "--top", "3", "--datasets", "market_chart"], env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert emulator.count(status=401) == 3
    assert emulator.count(endpoint="range", status=200) == 15
