"""Every way the API fails, served by the emulator on 127.0.0.1: healthy assets are stored, bad
rows go to _quarantine/ with the rule they broke, an asset that keeps failing is named and the
run exits 3, and nothing stored before is damaged."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import orjson
import polars as pl
import pytest

from mts.collector import Collector
from mts.emulator import Emulator, FaultRule
from mts.errors import ExitCode, UsageError
from mts.layout import Layout, SeriesKey
from mts.settings import resolve_settings
from mts.store import read_file

from .conftest import FAST, NOW, run_cli

EARLIER = NOW - timedelta(hours=5)
TOP = ["bitcoin", "ethereum", "ripple", "binancecoin"]
VICTIM = "ethereum"


@pytest.fixture(scope="module")
def emu():
    with Emulator(now=NOW) as e:
        yield e


@pytest.fixture(scope="module")
def reference(emu, tmp_path_factory) -> dict[str, pl.DataFrame]:
    """The folder a clean run produces."""
    root = tmp_path_factory.mktemp("reference")
    result = Collector(settings_for(emu, root), clock=lambda: NOW).run()
    assert result.exit_code == ExitCode.OK
    return tree(root)


@pytest.fixture
def api(emu):
    emu.clear_faults()
    emu.reset_log()
    emu.clock.set(NOW)
    yield emu
    emu.clear_faults()
    emu.clock.set(NOW)


def settings_for(emu, root: Path, attempts: int = 3, **env):
    base = {
        "COINGECKO_BASE_URL": emu.base_url,
        "MTS_RATE_LIMIT": FAST,
        "MTS_DATA_DIR": str(root / "data"),
        "MTS_LOG_DIR": str(root / "logs"),
    }
    # Fewer attempts than the default six keep an asset that keeps failing to a second of back-off.
    return resolve_settings({**base, **env}, days=3, top=len(TOP)).replace(max_attempts=attempts)


def collect(emu, root: Path, at=NOW, attempts: int = 3, **env):
    emu.clock.set(at)
    return Collector(settings_for(emu, root, attempts, **env), clock=lambda: at).run()


def same_rows(got: pl.DataFrame, want: pl.DataFrame, key: list[str]) -> bool:
    """`got` holds exactly `want`'s rows on want's keys, value for value (nulls equal)."""
    sub = got.join(want.select(key), on=key, how="semi").sort(key)
    return sub.equals(want.sort(key))


def key_of(rel: str) -> list[str]:
    return ["asset_id", "timestamp"] if rel.startswith("markets") else ["timestamp"]


def tree(root: Path) -> dict[str, pl.DataFrame]:
    data = root / "data" if (root / "data").is_dir() else root
    out = {}
    for path in sorted(data.rglob("*.parquet")):
        rel = path.relative_to(data)
        if not any(p.startswith(("_", ".")) for p in rel.parts):
            out[str(rel)] = read_file(path, rel.parts[0], "parquet")
    return out


def quarantined(root: Path) -> list[dict]:
    rows = []
    for path in sorted((root / "data" / "_quarantine").glob("*.jsonl")):
        rows += [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return rows


def series_path(dataset: str, interval: str, asset: str) -> str:
    return str(Layout(Path(".")).series_file(SeriesKey(dataset, interval, asset), 2026))


def assert_same_as_reference(root: Path, reference: dict[str, pl.DataFrame]) -> None:
    got = tree(root)
    assert sorted(got) == sorted(reference)
    for rel, df in reference.items():
        if rel.startswith("markets"):
            continue  # each snapshot's `fetched` moment is the run's own
        assert got[rel].equals(df), rel


# --- throttling ---------------------------------------------------------------------------------


def test_a_429_storm_with_retry_after_or_x_ratelimit_reset_is_waited_out(api, tmp_path, reference):
    api.add_fault(FaultRule("status", endpoint="range", status=429, headers={"Retry-After": "1"}, times=1))
    api.add_fault(FaultRule("status", endpoint="ohlc", status=429, headers={"x-ratelimit-reset": "1"}, times=1))
    result = collect(api, tmp_path)
    assert result.exit_code == ExitCode.OK, result.summary()
    assert result.summary()["rate_limited"] == 2
    assert_same_as_reference(tmp_path, reference)


def test_a_429_without_any_hint_json_or_cloudflare_1015_text_is_backed_off_and_retried(api, tmp_path, reference):
    api.add_fault(FaultRule("status", endpoint="range", asset=VICTIM, status=429, times=1))
    api.add_fault(
        FaultRule(
            "status",
            endpoint="ohlc",
            asset="ripple",
            status=429,
            body=b"error code: 1015",
            content_type="text/plain; charset=UTF-8",
            times=1,
        )
    )
    result = collect(api, tmp_path)
    assert result.exit_code == ExitCode.OK, result.summary()
    assert result.summary()["rate_limited"] == 2
    assert_same_as_reference(tmp_path, reference)


def test_the_cloudflare_1015_page_counts_as_rate_limiting_whatever_its_status():
    from datetime import UTC, datetime

    from mts.client import classify
    from mts.errors import RateLimited

    for status in (429, 403, 503):
        err = classify(status, {}, b"error code: 1015", datetime.now(UTC), "ethereum ohlc")
        assert isinstance(err, RateLimited), status


# --- server errors, timeouts, broken connections ---------------------------------------------------


@pytest.mark.parametrize(
    "status,body,ctype",
    [
        (500, None, None),  # JSON {"error": "Internal Server Error"}
        (500, b"<html><body><h1>500 Internal Server Error</h1></body></html>", "text/html"),
        (502, None, None),  # Cloudflare's HTML page
        (502, b'{"error":"bad gateway"}', "application/json"),
        (503, None, None),  # HTML
        (503, b'{"status":{"error_code":503,"error_message":"maintenance"}}', "application/json"),
    ],
    ids=["500-json", "500-html", "502-html", "502-json", "503-html", "503-json"],
)
def test_server_errors_are_retried_and_every_asset_stored(api, tmp_path, reference, status, body, ctype):
    api.add_fault(
        FaultRule("status", endpoint="range", asset=VICTIM, status=status, body=body, content_type=ctype, times=1)
    )
    api.add_fault(FaultRule("status", endpoint="ohlc", status=status, body=body, content_type=ctype, times=1))
    result = collect(api, tmp_path)
    assert result.exit_code == ExitCode.OK, result.summary()
    assert result.summary()["retries"] >= 2
    assert_same_as_reference(tmp_path, reference)


def test_a_slow_answer_times_out_after_MTS_HTTP_TIMEOUT_and_is_retried(api, tmp_path, reference):
    api.add_fault(FaultRule("delay", endpoint="range", asset=VICTIM, delay_s=2.0, times=1))
    settings = settings_for(api, tmp_path, MTS_HTTP_TIMEOUT="0.4")
    assert settings.read_timeout == 0.4
    result = Collector(settings, clock=lambda: NOW).run()
    assert result.exit_code == ExitCode.OK, result.summary()
    assert result.summary()["calls_by_endpoint_status"].get("range error") == 1
    assert_same_as_reference(tmp_path, reference)


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_MTS_HTTP_TIMEOUT_is_a_usage_error(value):
    with pytest.raises(UsageError, match="MTS_HTTP_TIMEOUT"):
        resolve_settings({"MTS_HTTP_TIMEOUT": value})


@pytest.mark.parametrize("endpoint", ["markets", "range", "ohlc"])
def test_connection_resets_are_retried(api, tmp_path, reference, endpoint):
    api.add_fault(FaultRule("reset", endpoint=endpoint, times=1))
    result = collect(api, tmp_path)
    assert result.exit_code == ExitCode.OK, result.summary()
    assert_same_as_reference(tmp_path, reference)


def test_a_body_cut_off_in_transit_is_retried(api, tmp_path, reference):
    api.add_fault(FaultRule("truncate", endpoint="range", asset=VICTIM, times=1))
    result = collect(api, tmp_path)
    assert result.exit_code == ExitCode.OK, result.summary()
    assert_same_as_reference(tmp_path, reference)


def test_a_complete_answer_holding_truncated_json_is_retried(api, tmp_path, reference):
    api.add_fault(
        FaultRule("status", endpoint="ohlc", asset=VICTIM, status=200, body=b"[[1763640000000,91000.5,9", times=1)
    )
    result = collect(api, tmp_path)
    assert result.exit_code == ExitCode.OK, result.summary()
    assert_same_as_reference(tmp_path, reference)


# --- bad data -----------------------------------------------------------------------------------

RANGE_RULES = {
    "null_price": "price_positive",
    "nan_price": "price_positive",
    "zero_price": "price_positive",
    "negative_price": "price_positive",
    "string_price": "numeric_type",
    "duplicate_ts": "duplicate_sample",
    "out_of_order": None,
}
OHLC_RULES = {
    "null_price": "close_positive",
    "nan_price": "close_positive",
    "zero_price": "close_positive",
    "negative_price": "close_positive",
    "string_price": "numeric_type",
    "duplicate_ts": "duplicate_candle",
    "out_of_order": None,
    "high_lt_low": {"high_ge_open_close", "low_le_open_close"},
}
CASES = [("range", m, r) for m, r in RANGE_RULES.items()] + [("ohlc", m, r) for m, r in OHLC_RULES.items()]


@pytest.mark.parametrize("endpoint,mutation,rule", CASES, ids=[f"{e}-{m}" for e, m, _ in CASES])
def test_bad_rows_are_quarantined_with_their_rule_and_the_rest_stored(
    api, tmp_path, reference, endpoint, mutation, rule
):
    api.add_fault(FaultRule("bad_data", endpoint=endpoint, asset=VICTIM, mutation=mutation))
    result = collect(api, tmp_path)
    assert result.exit_code == ExitCode.OK, result.summary()  # quarantined rows are not a failure

    rejects = quarantined(tmp_path)
    dataset, interval = ("market_chart", "1h") if endpoint == "range" else ("ohlc", "4h")
    rel = series_path(dataset, interval, VICTIM)
    got, want = tree(tmp_path)[rel], reference[rel]
    if rule is None:  # reordering is not an error: sorted on the way in
        assert rejects == []
        assert got.equals(want)
    else:
        assert rejects, "no row was quarantined"
        assert {r["asset_id"] for r in rejects} == {VICTIM}
        assert {r["dataset"] for r in rejects} == {dataset}
        assert {r["rule"] for r in rejects} <= ({rule} if isinstance(rule, str) else rule)
        assert not any(k.startswith("_") for r in rejects for k in r["row"]), "bookkeeping columns leaked"
        assert result.summary()["rows_quarantined"] == len(rejects)
        # What is stored is the reference minus the rejected buckets, value for value.
        assert same_rows(want, got, ["timestamp"])
        assert want.height - got.height == (0 if "duplicate" in mutation else len(rejects))
        assert got["timestamp"].is_unique().all() and got["timestamp"].is_sorted()
    for other in TOP:  # the healthy assets are complete
        if other != VICTIM:
            other_rel = series_path(dataset, interval, other)
            assert tree(tmp_path)[other_rel].equals(reference[other_rel])


# --- an asset that keeps failing, and what was stored before ----------------------------------------


def stored_before(emu, root: Path) -> dict[str, pl.DataFrame]:
    result = collect(emu, root, at=EARLIER)
    assert result.exit_code == ExitCode.OK
    return tree(root)


def assert_not_damaged(before: dict[str, pl.DataFrame], root: Path) -> None:
    after = tree(root)
    for rel, df in before.items():
        assert rel in after, f"{rel} disappeared"
        assert same_rows(after[rel], df, key_of(rel)), f"rows of {rel} changed or vanished"


@pytest.mark.parametrize(
    "rule",
    [
        FaultRule("status", endpoint="range", asset=VICTIM, status=503),
        FaultRule("reset", endpoint="ohlc", asset=VICTIM),
        FaultRule("status", endpoint="ohlc", asset=VICTIM, status=200, body=b'{"not": "candles"}'),
    ],
    ids=["503-forever", "reset-forever", "unusable-answer"],
)
def test_an_asset_that_keeps_failing_is_named_the_run_exits_3_and_nothing_stored_is_damaged(api, tmp_path, rule):
    before = stored_before(api, tmp_path)
    api.add_fault(rule)
    result = collect(api, tmp_path, attempts=2)
    summary = result.summary()
    assert result.exit_code == ExitCode.PARTIAL
    assert summary["exit_code"] == 3 and summary["outcome"] == "partial"
    assert list(summary["failed"]) == [VICTIM]
    assert summary["assets_succeeded"] == len(TOP) - 1
    assert_not_damaged(before, tmp_path)
    for other in TOP:  # the others are up to NOW
        if other != VICTIM:
            df = tree(tmp_path)[series_path("market_chart", "1h", other)]
            assert df["timestamp"].max() == NOW.replace(minute=0, second=0, microsecond=0)


def test_the_cli_names_the_failing_asset_and_exits_3(api, tmp_path):
    """The same through `python main.py --collect`, as cron sees it (stdout and exit code)."""
    env = {
        "COINGECKO_BASE_URL": api.base_url,
        "MTS_RATE_LIMIT": FAST,
        "MTS_DATA_DIR": str(tmp_path / "data"),
        "MTS_LOG_DIR": str(tmp_path / "logs"),
        "MTS_NOW": NOW.isoformat(),
    }
    api.add_fault(FaultRule("status", endpoint="range", asset=VICTIM, status=200, body=b'"gone"'))
    proc = run_cli(["--collect", "--days", "3", "--top", str(len(TOP))], env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.startswith("partial: 3/4 assets ok")
    assert f"failed {VICTIM}: bad_answer" in proc.stdout
    summary = [orjson.loads(line) for line in (tmp_path / "logs" / "mts.jsonl").read_bytes().splitlines()]
    run = [e for e in summary if e.get("message") == "run_summary"][-1]
    assert run["exit_code"] == 3 and list(run["failed"]) == [VICTIM]


def test_bad_data_on_every_endpoint_never_damages_what_is_stored(api, tmp_path):
    before = stored_before(api, tmp_path)
    for endpoint in ("markets", "range", "ohlc"):
        api.add_fault(FaultRule("bad_data", endpoint=endpoint, mutation="negative_price"))
    result = collect(api, tmp_path)
    assert result.exit_code == ExitCode.OK, result.summary()
    assert result.summary()["rows_quarantined"] > 0
    assert_not_damaged(before, tmp_path)
    rules = {r["rule"] for r in quarantined(tmp_path)}
    assert {"price_positive", "close_positive"} <= rules
