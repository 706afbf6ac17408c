"""The emulator over real HTTP: shapes, granularity, candles, errors, as CoinGecko answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from mts.emulator import Emulator

NOW = datetime(2026, 11, 25, 14, 42, 25, 321000, tzinfo=UTC)
NOW_S = NOW.timestamp()
NOW_MS = int(NOW_S * 1000)
HOUR_MS = 3_600_000
DAY_S = 86_400
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "coingecko"  # copied from shared/


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    listed = {"cardano": NOW - timedelta(days=3, hours=2)}
    holes = {"ripple": [datetime(2026, 11, 20, h, tzinfo=UTC) for h in (3, 4, 5, 6, 7)]}
    with Emulator(now=NOW, listed_at=listed, holes=holes) as e:
        yield e


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def get(http: requests.Session, emu: Emulator, path: str, **params: object) -> requests.Response:
    return http.get(emu.base_url + path, params=params, timeout=10)


def chart_range(http, emu, asset: str, frm: float, to: float) -> requests.Response:
    return get(
        http,
        emu,
        f"/coins/{asset}/market_chart/range",
        vs_currency="usd",
        **{"from": frm, "to": to},
    )


def steps(points: list) -> list[int]:
    return [b[0] - a[0] for a, b in zip(points, points[1:], strict=False)]


def test_ping(http, emu) -> None:
    r = get(http, emu, "/ping")
    assert r.status_code == 200
    assert r.json() == {"gecko_says": "(V3) To the Moon!"}
    assert r.headers["Content-Type"].startswith("application/json")
    assert not any(h.lower().startswith("x-ratelimit") for h in r.headers)


@pytest.mark.parametrize(
    ("frm", "to", "granularity"),
    [
        (NOW_S - DAY_S, NOW_S, "5m"),
        (NOW_S - 25 * 3600, NOW_S - 3600, "5m"),
        (NOW_S - 8 * DAY_S, NOW_S - 7 * DAY_S, "hourly"),  # 1 day, but not recent
        (NOW_S - 2 * DAY_S, NOW_S, "hourly"),
        (NOW_S - 90 * DAY_S, NOW_S, "hourly"),
        (NOW_S - 91 * DAY_S, NOW_S, "daily"),
        (NOW_S - 365 * DAY_S, NOW_S, "daily"),
    ],
)
def test_range_granularity_follows_the_span(http, emu, frm, to, granularity) -> None:
    data = chart_range(http, emu, "bitcoin", frm, to).json()
    prices = data["prices"]
    assert [p[0] for p in data["market_caps"]] == [p[0] for p in prices]
    assert [p[0] for p in data["total_volumes"]] == [p[0] for p in prices]
    assert frm * 1000 <= prices[0][0] and prices[-1][0] <= min(to * 1000, NOW_MS)
    gaps = steps(prices)
    if granularity == "5m":
        # j=0 is the hourly sample (0..5 min late), j=1..11 sit at j*5 min + 0..60 s.
        assert all(0 < g < 600_000 for g in gaps)
        assert len(prices) >= 12 * 23
    elif granularity == "hourly":
        assert all(3_300_000 <= g <= 3_900_000 for g in gaps)
        assert all(0 <= p[0] % HOUR_MS < 300_000 for p in prices)
        assert len(prices) == pytest.approx((to - frm) / 3600, abs=1)
    else:
        assert all(p[0] % (DAY_S * 1000) == 0 for p in prices)
        assert set(gaps) == {DAY_S * 1000}
    assert all(isinstance(p[0], int) and isinstance(p[1], float) for p in prices)


def test_range_has_no_now_point_and_matches_the_truth(http, emu) -> None:
    start, end = NOW - timedelta(days=90), NOW
    data = chart_range(http, emu, "ethereum", start.timestamp(), end.timestamp()).json()
    truth = emu.universe.hourly_points("ethereum", start, end + timedelta(hours=1))
    assert [tuple(p) for p in data["prices"]] == [(t, p) for t, p, _, _ in truth]
    assert [tuple(p) for p in data["market_caps"]] == [(t, m) for t, _, m, _ in truth]
    assert [tuple(p) for p in data["total_volumes"]] == [(t, v) for t, _, _, v in truth]
    assert all(p[0] % 1000 for p in data["prices"][-3:])  # jittered samples, not a now point


def test_range_accepts_iso_dates_and_float_seconds(http, emu) -> None:
    iso = chart_range(http, emu, "bitcoin", "2026-10-01", "2026-10-05T00:00:00Z").json()
    secs = chart_range(http, emu, "bitcoin", 1790812800.0, 1791158400).json()
    assert iso == secs and len(iso["prices"]) == 96


@pytest.mark.parametrize(("days", "step_ms"), [(1, 300_000), (30, HOUR_MS), (91, 24 * HOUR_MS)])
def test_market_chart_granularity_and_now_point(http, emu, days, step_ms) -> None:
    data = get(http, emu, "/coins/bitcoin/market_chart", vs_currency="usd", days=days).json()
    prices = data["prices"]
    *series, now_point = prices
    assert NOW_MS - days * DAY_S * 1000 < series[0][0]
    assert now_point[0] % 1000 == 0 and NOW_MS - 3000 <= now_point[0] <= NOW_MS
    median = sorted(steps(series))[len(series) // 2]
    assert abs(median - step_ms) < step_ms * 0.1
    assert len(prices) == pytest.approx(days * DAY_S * 1000 / step_ms + 1, abs=2)
    assert len(data["market_caps"]) == len(data["total_volumes"]) == len(prices)


def test_five_minute_points_start_with_the_hourly_sample(http, emu) -> None:
    five = get(http, emu, "/coins/bitcoin/market_chart", vs_currency="usd", days=1).json()
    hourly = chart_range(http, emu, "bitcoin", NOW_S - 3 * DAY_S, NOW_S).json()
    on_the_hour = {p[0]: p[1] for p in hourly["prices"]}
    shared = [p for p in five["prices"][:-1] if p[0] in on_the_hour]
    assert len(shared) >= 23
    assert all(on_the_hour[t] == v for t, v in shared)


def test_history_limit_answers_the_nested_10012(http, emu) -> None:
    limit = int(NOW_S) - 365 * DAY_S
    r = chart_range(http, emu, "bitcoin", limit - 1, limit + 30 * DAY_S)
    assert r.status_code == 401
    body = r.json()
    assert list(body) == ["error"] and list(body["error"]) == ["status"]
    status = body["error"]["status"]
    assert status["error_code"] == 10012
    assert status["timestamp"] == "2026-11-25T14:42:25.321+00:00"
    observed = _observed_json("## 10012")
    assert status["error_message"] == observed["error"]["status"]["error_message"]
    assert chart_range(http, emu, "bitcoin", limit, limit + 30 * DAY_S).status_code == 200
    assert (
        get(http, emu, "/coins/bitcoin/market_chart", vs_currency="usd", days=366).status_code
        == 401
    )
    assert (
        get(http, emu, "/coins/bitcoin/market_chart", vs_currency="usd", days="max").status_code
        == 401
    )


def test_range_before_listing_is_empty(http, emu) -> None:
    listed = NOW_S - 3 * DAY_S - 2 * 3600
    data = chart_range(http, emu, "cardano", listed - 20 * DAY_S, listed - 1).json()
    assert data == {"prices": [], "market_caps": [], "total_volumes": []}
    data = chart_range(http, emu, "cardano", listed - 20 * DAY_S, NOW_S).json()
    assert data["prices"][0][0] >= listed * 1000
    assert (
        get(http, emu, "/coins/cardano/ohlc", vs_currency="usd", days=7).json()[0][0]
        > listed * 1000
    )


def test_holes_leave_gaps_in_hourly_series(http, emu) -> None:
    frm = datetime(2026, 11, 19, tzinfo=UTC).timestamp()
    prices = chart_range(http, emu, "ripple", frm, frm + 3 * DAY_S).json()["prices"]
    assert len(prices) == 72 - 5
    assert max(steps(prices)) > 5 * HOUR_MS


def test_served_values_do_not_change_when_the_clock_moves() -> None:
    frm, to = NOW_S - 20 * DAY_S, NOW_S - 10 * DAY_S
    with Emulator(now=NOW, assets=["bitcoin"]) as e:
        url = e.base_url + "/coins/bitcoin/market_chart/range"
        params = {"vs_currency": "usd", "from": frm, "to": to}
        before = requests.get(url, params=params, timeout=5).json()
        e.clock.advance(timedelta(days=2, hours=7, minutes=13))
        after = requests.get(url, params=params, timeout=5).json()
    assert before == after and len(before["prices"]) == 240


def test_ohlc_days_whitelist(http, emu) -> None:
    for days in (2, 3, 50, 364, 0):
        r = get(http, emu, "/coins/bitcoin/ohlc", vs_currency="usd", days=days)
        assert r.status_code == 400 and r.json() == {"error": "Invalid days parameter"}
    r = get(http, emu, "/coins/bitcoin/ohlc")
    assert r.status_code == 500 and r.json() == {"status": 500, "error": "Internal Server Error"}


def test_ohlc_4h_candles_like_the_recording(http, emu) -> None:
    candles = get(http, emu, "/coins/bitcoin/ohlc", vs_currency="usd", days=7).json()
    assert len(candles) == 42
    closes = [datetime.fromtimestamp(c[0] / 1000, UTC) for c in candles]
    assert {c.hour for c in closes} <= {0, 4, 8, 12, 16, 20}
    assert all(c.minute == c.second == 0 for c in closes)
    assert candles[-1][0] > NOW_MS >= candles[-2][0]  # the last one is still forming
    assert candles[0][0] - 4 * HOUR_MS >= NOW_MS - 7 * DAY_S * 1000
    truth = emu.universe.candles("bitcoin", timedelta(hours=4), NOW - timedelta(days=7), NOW)
    assert [tuple(c) for c in candles[:-1]] == truth
    for _, o, h, lo, c in candles:
        assert lo <= min(o, c) <= max(o, c) <= h


@pytest.mark.parametrize(
    ("days", "length_ms", "count"), [(1, 1_800_000, 48), (90, 4 * DAY_S * 1000, 23)]
)
def test_ohlc_candle_length(http, emu, days, length_ms, count) -> None:
    candles = get(http, emu, "/coins/solana/ohlc", vs_currency="usd", days=days).json()
    assert all(c[0] % length_ms == 0 for c in candles)
    assert set(steps(candles)) == {length_ms}
    assert len(candles) == pytest.approx(count, abs=1)
    assert candles[-1][0] > NOW_MS


def test_forming_candle_moves_with_the_clock() -> None:
    with Emulator(now=datetime(2026, 11, 25, 13, 5, tzinfo=UTC), assets=["bitcoin"]) as e:
        url = e.base_url + "/coins/bitcoin/ohlc"

        def ohlc() -> list:
            return requests.get(url, params={"vs_currency": "usd", "days": 7}, timeout=5).json()

        before = ohlc()
        e.clock.advance(timedelta(hours=2))
        during = ohlc()
        e.clock.advance(timedelta(hours=2))
        after = ohlc()
        truth = e.universe.candles(
            "bitcoin", timedelta(hours=4), e.clock.now() - timedelta(days=7), e.clock.now()
        )
    assert before[-1][0] == during[-1][0]  # the same 12:00-16:00 candle, still forming
    assert before[-1][1] == during[-1][1]  # same open
    assert before[-1][4] != during[-1][4]  # its close moved
    assert before[:-1] == during[:-1]  # final candles never change
    assert after[-2][0] == before[-1][0] and after[-2][1] == before[-1][1]  # now final
    assert [tuple(c) for c in after[:-1]] == truth
    assert after[:-2] == before[1:-1]  # the window slid by one candle


def test_unknown_coin_path_and_missing_parameters(http, emu) -> None:
    r = get(http, emu, "/coins/no-such-coin/market_chart", vs_currency="usd", days=1)
    assert (r.status_code, r.json()) == (404, {"error": "coin not found"})
    r = get(
        http,
        emu,
        "/coins/no-such-coin/market_chart/range",
        vs_currency="usd",
        **{"from": NOW_S - 3600, "to": NOW_S},
    )
    assert (r.status_code, r.json()) == (404, {"error": "coin not found"})
    assert get(http, emu, "/no/such/path").status_code == 404
    for path in ("/coins/markets", "/coins/bitcoin/market_chart"):
        r = get(http, emu, path, days=1)
        assert (r.status_code, r.json()) == (422, {"error": "Missing parameter vs_currency"})
    r = get(http, emu, "/coins/markets", vs_currency="usdt")
    assert (r.status_code, r.json()) == (400, {"error": "invalid vs_currency"})


def test_vs_currency_scales_prices(http, emu) -> None:
    frm, to = NOW_S - 5 * DAY_S, NOW_S
    usd = chart_range(http, emu, "bitcoin", frm, to).json()
    eur = get(
        http, emu, "/coins/bitcoin/market_chart/range", vs_currency="eur", **{"from": frm, "to": to}
    ).json()
    for name in ("prices", "market_caps", "total_volumes"):
        assert [p[1] for p in eur[name]] == pytest.approx([p[1] * 0.92 for p in usd[name]])


def test_markets_order_keys_paging_and_ids(http, emu) -> None:
    first = get(http, emu, "/coins/markets", vs_currency="usd", per_page=250, page=1).json()
    second = get(http, emu, "/coins/markets", vs_currency="usd", per_page=250, page=2).json()
    items = first + second
    assert len(first) == 250 and len(items) == 347
    ids = [i["id"] for i in items]
    assert ids == emu.universe.asset_ids()
    known = [i for i in items if i["market_cap"] > 0]
    unknown = items[len(known) :]
    assert all(i["market_cap"] == 0 and i["market_cap_rank"] is None for i in unknown)
    assert [i["market_cap"] for i in known] == sorted(
        (i["market_cap"] for i in known), reverse=True
    )
    assert [i["market_cap_rank"] for i in known] == list(range(1, len(known) + 1))
    assert [i["total_volume"] for i in unknown] == sorted(
        (i["total_volume"] for i in unknown), reverse=True
    )
    real = json.loads((FIXTURES / "coins_markets__monkey__2025-03-04.json").read_text())
    assert all(list(i) == list(real[0]) for i in items)
    page = get(http, emu, "/coins/markets", vs_currency="usd", per_page=10, page=3).json()
    assert [i["id"] for i in page] == ids[20:30]
    some = get(http, emu, "/coins/markets", vs_currency="usd", ids="solana,bitcoin,nope").json()
    assert [i["id"] for i in some] == ["bitcoin", "solana"]
    assert some[0]["market_cap_rank"] == 1
    btc = some[0]
    truth = emu.universe.hourly_points("bitcoin", NOW - timedelta(hours=2), NOW)[-1]
    assert btc["current_price"] == truth[1]
    assert (
        btc["last_updated"]
        == datetime.fromtimestamp(truth[0] / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    )
    assert btc["low_24h"] <= btc["current_price"] <= btc["high_24h"]


def _observed_json(heading: str) -> dict:
    """The first JSON body under `heading` in error_bodies_observed.txt."""
    text = (FIXTURES / "error_bodies_observed.txt").read_text()
    block = text.split(heading, 1)[1]
    line = next(ln for ln in block.splitlines() if ln.startswith("{"))
    return json.loads(line)
