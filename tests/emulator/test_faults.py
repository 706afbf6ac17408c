"""Fault injection over real HTTP: each kind fails the way the real service fails."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest
import requests

from mts.emulator import Emulator, FaultRule

NOW = datetime(2026, 11, 25, 12, 34, 56, tzinfo=UTC)
NOW_S = NOW.timestamp()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(now=NOW, assets=["bitcoin", "ethereum", "solana"]) as e:
        yield e


def range_(emu: Emulator, asset: str = "bitcoin", **kw: object) -> requests.Response:
    params = {"vs_currency": "usd", "from": NOW_S - 3 * 86400, "to": NOW_S}
    return requests.get(
        f"{emu.base_url}/coins/{asset}/market_chart/range",
        params=params,
        timeout=kw.get("timeout", 5),
    )


def test_status_fault_hits_times_then_lets_through(emu) -> None:
    emu.add_fault(FaultRule(kind="status", endpoint="range", asset="bitcoin", status=500, times=2))
    assert range_(emu, "ethereum").status_code == 200  # other asset: untouched
    r = range_(emu)
    assert (r.status_code, r.json()) == (500, {"status": 500, "error": "Internal Server Error"})
    assert range_(emu).status_code == 500
    assert range_(emu).status_code == 200
    assert emu.count("range", status=500) == 2 and emu.count("range") == 4


def test_skip_lets_the_first_matches_through(emu) -> None:
    emu.add_fault(FaultRule(kind="status", endpoint="range", status=503, skip=2, times=1))
    codes = [range_(emu).status_code for _ in range(4)]
    assert codes == [200, 200, 503, 200]
    r = emu.requests("range")[2]
    assert r.status == 503


def test_duration_limits_a_fault_in_real_time(emu) -> None:
    emu.add_fault(FaultRule(kind="status", status=502, duration_s=0.3))
    r = range_(emu)
    assert r.status_code == 502 and b"Bad Gateway" in r.content
    assert r.headers["Content-Type"].startswith("text/html")
    time.sleep(0.4)
    assert range_(emu).status_code == 200


def test_status_fault_bodies_and_headers(emu) -> None:
    emu.add_fault(FaultRule(kind="status", status=429, headers={"Retry-After": "5"}, times=1))
    emu.add_fault(
        FaultRule(
            kind="status", status=429, body=b"error code: 1015", content_type="text/plain", times=1
        )
    )
    emu.add_fault(FaultRule(kind="status", status=403, times=1))
    r = range_(emu)
    assert r.status_code == 429 and r.headers["Retry-After"] == "5"
    assert r.json()["status"]["error_code"] == 429
    r = range_(emu)
    assert (r.status_code, r.text) == (429, "error code: 1015")
    r = range_(emu)
    assert r.status_code == 403
    assert "Access denied | api.coingecko.com used Cloudflare to restrict access" in r.text


def test_delay_fault_trips_a_client_timeout(emu) -> None:
    emu.add_fault(FaultRule(kind="delay", endpoint="range", delay_s=0.6, times=1))
    with pytest.raises(requests.exceptions.ReadTimeout):
        range_(emu, timeout=0.2)
    t = time.monotonic()
    assert range_(emu).status_code == 200
    assert time.monotonic() - t < 0.5


def test_reset_closes_the_connection_without_an_answer(emu) -> None:
    emu.add_fault(FaultRule(kind="reset", endpoint="range", times=1))
    with pytest.raises(requests.exceptions.ConnectionError):
        range_(emu)
    assert range_(emu).status_code == 200
    assert [r.status for r in emu.requests("range")] == [0, 200]


def test_truncate_sends_half_the_body(emu) -> None:
    emu.add_fault(FaultRule(kind="truncate", endpoint="range", times=1))
    with pytest.raises(requests.exceptions.RequestException) as info:
        range_(emu)
    assert "IncompleteRead" in str(info.value)
    assert range_(emu).status_code == 200


def _raw(emu: Emulator, path: str, **params: object) -> bytes:
    r = requests.get(emu.base_url + path, params=params, timeout=5)
    assert r.status_code == 200
    return r.content


@pytest.mark.parametrize(
    "mutation",
    [
        "null_price",
        "nan_price",
        "string_price",
        "zero_price",
        "negative_price",
        "duplicate_ts",
        "out_of_order",
        "empty",
    ],
)
def test_bad_data_on_charts(emu, mutation) -> None:
    path = "/coins/bitcoin/market_chart/range"
    params = {"vs_currency": "usd", "from": NOW_S - 3 * 86400, "to": NOW_S}
    good = orjson.loads(_raw(emu, path, **params))
    emu.add_fault(FaultRule(kind="bad_data", endpoint="range", mutation=mutation, times=1))
    raw = _raw(emu, path, **params)
    if mutation == "nan_price":
        assert b"NaN" in raw
        bad = orjson.loads(raw.replace(b"NaN", b"null"))
    else:
        bad = orjson.loads(raw)
    prices, good_prices = bad["prices"], good["prices"]
    if mutation == "empty":
        assert bad == {"prices": [], "market_caps": [], "total_volumes": []}
        return
    if mutation == "duplicate_ts":
        assert len(prices) == len(good_prices) + 1
        ts = [p[0] for p in prices]
        assert len(set(ts)) == len(ts) - 1
        assert [p[0] for p in bad["market_caps"]] == ts
        return
    if mutation == "out_of_order":
        ts = [p[0] for p in prices]
        assert ts != sorted(ts) and sorted(ts) == [p[0] for p in good_prices]
        return
    changed = [i for i, (a, b) in enumerate(zip(prices, good_prices, strict=True)) if a != b]
    assert 1 <= len(changed) <= 3  # a few points, not all
    values = [prices[i][1] for i in changed]
    expected = {
        "null_price": lambda v: v is None,
        "nan_price": lambda v: v is None,  # NaN read back as null above
        "string_price": lambda v: isinstance(v, str) and float(v) > 0,
        "zero_price": lambda v: v == 0,
        "negative_price": lambda v: v < 0,
    }[mutation]
    assert all(expected(v) for v in values)
    assert orjson.loads(_raw(emu, path, **params)) == good  # times=1: next one is clean


def test_bad_data_high_below_low_on_ohlc(emu) -> None:
    emu.add_fault(FaultRule(kind="bad_data", endpoint="ohlc", mutation="high_lt_low", times=1))
    candles = orjson.loads(_raw(emu, "/coins/bitcoin/ohlc", vs_currency="usd", days=7))
    broken = [c for c in candles if c[2] < c[3]]
    assert len(broken) == 1


def test_bad_data_on_markets(emu) -> None:
    emu.add_fault(FaultRule(kind="bad_data", endpoint="markets", mutation="null_price", times=1))
    items = orjson.loads(_raw(emu, "/coins/markets", vs_currency="usd"))
    assert sum(i["current_price"] is None for i in items) in (1, 2)


def test_faults_over_http(emu) -> None:
    admin = emu.base_url.removesuffix("/api/v3") + "/_emulator"
    rules = [
        {
            "kind": "status",
            "endpoint": "ping",
            "status": 503,
            "body": "<html>down</html>",
            "content_type": "text/html",
            "times": 1,
        }
    ]
    r = requests.post(admin + "/faults", json=rules, timeout=5)
    assert r.status_code == 200 and r.json()[0]["status"] == 503
    r = requests.get(emu.base_url + "/ping", timeout=5)
    assert (r.status_code, r.text) == (503, "<html>down</html>")
    assert requests.post(admin + "/faults", json=[{"kind": "nope"}], timeout=5).status_code == 400
    requests.post(admin + "/faults", json=[{"kind": "status", "status": 500}], timeout=5)
    assert requests.get(emu.base_url + "/ping", timeout=5).status_code == 500
    assert requests.delete(admin + "/faults", timeout=5).json() == []
    assert requests.get(emu.base_url + "/ping", timeout=5).status_code == 200


def test_fault_rule_validation() -> None:
    with pytest.raises(ValueError):
        FaultRule(kind="explode")
    with pytest.raises(ValueError):
        FaultRule(kind="bad_data", mutation="weird")
    with pytest.raises(ValueError):
        FaultRule(kind="status", endpoint="charts")
    rule = FaultRule(kind="status", endpoint="ohlc", status=502, body=b"x", times=3)
    assert FaultRule.from_dict(rule.to_dict()) == rule
