"""/health and /metrics through a real HTTP client, against data a real collect stored."""

from __future__ import annotations

import signal
from datetime import timedelta

import orjson
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from mts.emulator import FaultRule
from mts.health import HealthServer, assess
from mts.inventory import SeriesInfo
from mts.layout import Layout

from .conftest import NOW, popen_cli, run_cli

TOP = ["--top", "3", "--days", "7"]


class Clock:
    """The server's injected clock: tests move it to age the data."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def server(env, tmp_path):
    clock = Clock(NOW)
    with HealthServer(Layout(tmp_path / "data"), port=0, now=clock, cache_s=0) as srv:
        srv.clock = clock
        yield srv


def metrics(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_healthy_after_a_fresh_collect_then_503_once_the_data_is_stale(server, env, emulator):
    assert run_cli(["collect", *TOP], env).returncode == 0
    assets = emulator.universe.asset_ids()[:3]

    r = requests.get(server.url + "/health", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    doc = r.json()
    assert doc["status"] == "healthy" and doc["healthy"] is True
    assert doc["checked_at"] == NOW.isoformat()
    fresh = doc["components"]["data_freshness"]
    assert (fresh["overall_status"], fresh["fresh_count"], fresh["total_count"]) == (
        "healthy",
        3,
        3,
    )
    assert sorted(fresh["assets"]) == sorted(assets)
    btc = fresh["assets"][assets[0]]
    assert set(btc) == {"status", "age_hours", "last_update", "records_count"}
    assert btc["status"] == "fresh"
    assert btc["last_update"] == NOW.replace(minute=0, second=0).isoformat()
    assert btc["records_count"] == 168 + 41  # hourly rows + 4-hour candles
    assert doc["components"]["last_run"]["outcome"] == "ok"
    assert set(doc) == {"status", "healthy", "message", "checked_at", "components"}

    server.clock.now = NOW + timedelta(hours=3)  # older than twice the hourly interval
    r = requests.get(server.url + "/health", timeout=10)
    assert r.status_code == 503
    doc = r.json()
    assert doc["status"] == "unhealthy" and doc["healthy"] is False
    assert doc["components"]["data_freshness"]["fresh_count"] == 0
    assert {a["status"] for a in doc["components"]["data_freshness"]["assets"].values()} == {
        "stale"
    }


def test_metrics_parse_and_carry_the_last_runs_numbers(server, env, emulator, tmp_path):
    assert run_cli(["collect", *TOP], env).returncode == 0
    summary = [
        orjson.loads(line)
        for line in (tmp_path / "logs" / "mts.jsonl").read_text().splitlines()
        if '"run_summary"' in line
    ][-1]

    r = requests.get(server.url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain; version=")
    m = metrics(r.text)
    assert m[("mts_last_run_rows_stored", ())] == summary["rows_stored"] > 0
    assert m[("mts_last_run_rows_quarantined", ())] == summary["rows_quarantined"]
    assert m[("mts_last_run_api_calls", ())] == summary["calls"] == emulator.count()
    assert m[("mts_last_run_rate_limited", ())] == 0
    assert m[("mts_last_run_retries", ())] == summary["retries"]
    assert m[("mts_last_run_exit_code", ())] == 0
    assert m[("mts_last_run_outcome", (("outcome", "ok"),))] == 1
    assert m[("mts_last_run_assets", (("state", "succeeded"),))] == 3
    for endpoint in ("markets", "range", "ohlc"):
        key = ("mts_last_run_api_calls_by_status", (("endpoint", endpoint), ("status", "200")))
        assert m[key] == emulator.count(endpoint=endpoint, status=200)
    assert m[("mts_last_run_timestamp_seconds", ())] == NOW.timestamp()
    btc = emulator.universe.asset_ids()[0]
    age = (
        "mts_data_age_seconds",
        (("asset_id", btc), ("dataset", "market_chart"), ("interval", "1h")),
    )
    assert m[age] == 34 * 60 + 56  # NOW is 12:34:56, the newest hour starts at 12:00
    assert m[("mts_health_status", (("status", "healthy"),))] == 1


def test_429s_and_retries_reach_the_metrics(server, env, emulator):
    emulator.add_fault(
        FaultRule(
            kind="status", endpoint="range", status=429, times=2, headers={"Retry-After": "0"}
        )
    )
    assert run_cli(["collect", *TOP], env).returncode == 0
    m = metrics(requests.get(server.url + "/metrics", timeout=10).text)
    assert m[("mts_last_run_rate_limited", ())] == 2
    assert m[("mts_last_run_api_calls_by_status", (("endpoint", "range"), ("status", "429")))] == 2
    assert m[("mts_last_run_retries", ())] >= 2


def test_a_partial_run_is_degraded_but_still_200(server, env, emulator):
    victim = emulator.universe.asset_ids()[2]
    emulator.add_fault(FaultRule(kind="status", endpoint="range", asset=victim, status=404))
    emulator.add_fault(FaultRule(kind="status", endpoint="ohlc", asset=victim, status=404))
    assert run_cli(["collect", *TOP], env).returncode == 3

    r = requests.get(server.url + "/health", timeout=10)
    assert r.status_code == 200
    doc = r.json()
    assert doc["status"] == "degraded" and doc["healthy"] is True
    fresh = doc["components"]["data_freshness"]
    assert (fresh["fresh_count"], fresh["total_count"]) == (2, 3)
    assert fresh["assets"][victim]["status"] in ("stale", "missing")
    assert doc["components"]["last_run"]["status"] == "degraded"
    m = metrics(requests.get(server.url + "/metrics", timeout=10).text)
    assert m[("mts_last_run_failed_assets", (("category", "not_found"),))] == 1


def test_only_get_on_health_and_metrics_is_served(server):
    assert requests.get(server.url + "/health", timeout=10).status_code == 503  # no data yet
    assert requests.get(server.url + "/", timeout=10).status_code == 404
    assert requests.get(server.url + "/healthz", timeout=10).status_code == 404
    for method in ("POST", "PUT", "DELETE", "PATCH", "HEAD"):
        r = requests.request(method, server.url + "/health", timeout=10)
        assert r.status_code == 405 and r.headers["Allow"] == "GET", method
    assert requests.post(server.url + "/nope", timeout=10).status_code == 404
    assert server.host == "127.0.0.1"


def test_serve_cli_binds_loopback_honours_mts_now_and_stops_on_sigterm(env, tmp_path):
    assert run_cli(["collect", *TOP], env).returncode == 0
    stale = {**env, "MTS_NOW": (NOW + timedelta(days=2)).isoformat()}
    proc = popen_cli(["--server", "--port", "0"], stale)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[1].removesuffix("/health")
        r = requests.get(url + "/health", timeout=10)
        assert (
            r.status_code == 503 and r.json()["checked_at"] == (NOW + timedelta(days=2)).isoformat()
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (tmp_path / "logs" / "mts.jsonl").read_text().count("GET /")  # nothing per request


def info(asset, age_h, interval="1h", dataset="market_chart", rows=10):
    last = NOW - timedelta(hours=age_h)
    return SeriesInfo(dataset, interval, asset, rows, last - timedelta(hours=rows), last, 0, 1, [])


@pytest.mark.parametrize(
    ("ages", "last_code", "status", "http"),
    [
        ([0.5, 0.5, 0.5], 0, "healthy", 200),
        ([0.5, 0.5, 5.0], 0, "degraded", 200),  # some stale
        ([0.5, 5.0, 5.0], 0, "unhealthy", 503),  # most stale
        ([0.5, 0.5, 0.5], 3, "degraded", 200),  # partial last run
        ([0.5, 0.5, 0.5], 130, "degraded", 200),  # interrupted last run
        ([0.5, 0.5, 0.5], 1, "unhealthy", 503),  # failed last run
        ([0.5, 0.5, 0.5], None, "degraded", 200),  # no run recorded
    ],
)
def test_status_rules(ages, last_code, status, http):
    series = [info(f"a{i}", age) for i, age in enumerate(ages)]
    run = (
        None
        if last_code is None
        else {"exit_code": last_code, "outcome": "x", "finished_at": NOW.isoformat()}
    )
    code, doc = assess(series, run, NOW)
    assert (doc["status"], code) == (status, http)


def test_no_data_is_unhealthy_and_the_threshold_is_configurable():
    assert assess([], None, NOW)[0] == 503
    series = [info("a", 3.0)]
    run = {"exit_code": 0}
    assert assess(series, run, NOW)[1]["status"] == "unhealthy"  # 3 h > 2 x 1 h
    assert assess(series, run, NOW, factor=4)[1]["status"] == "healthy"
    candles = [info("b", 6.0, interval="4h", dataset="ohlc")]  # 6 h < 2 x 4 h
    assert assess(candles, run, NOW)[1]["status"] == "healthy"


def test_assets_that_left_the_universe_do_not_count():
    series = [info("kept", 0.5), info("dropped", 500.0)]
    _, doc = assess(series, {"exit_code": 0, "universe": ["kept"]}, NOW)
    assert doc["status"] == "healthy"
    assert list(doc["components"]["data_freshness"]["assets"]) == ["kept"]
    assert "universe" not in doc["components"]["last_run"]
