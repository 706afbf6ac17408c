"""CoinGecko's /api/v3 semantics: routing, parameter checks, keys, and response payloads.

Pure given (universe, settings, now): no sockets, no sleeping, no rate limiting, no faults.
The server wraps this with the infrastructure behaviour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mts.emulator import bodies
from mts.emulator.clock import iso_ms, parse_iso
from mts.emulator.dataset import HOUR_MS
from mts.emulator.universe import (
    DAY_MS,
    GENESIS_MS,
    HALF_HOUR_MS,
    Series,
    Universe,
)

PLANS = ("public", "demo", "paid")
RATE_LIMIT_STYLES = ("retry_after", "reset", "cloudflare")
ENDPOINTS = ("ping", "markets", "market_chart", "range", "ohlc", "list")
VS_FACTORS = {"usd": 1.0, "eur": 0.92, "btc": 1 / 65000}
OHLC_DAYS = {1: HALF_HOUR_MS, 7: 4 * HOUR_MS, 14: 4 * HOUR_MS, 30: 4 * HOUR_MS}
OHLC_DAYS |= {90: 4 * DAY_MS, 180: 4 * DAY_MS, 365: 4 * DAY_MS}
DEMO_HEADER = "x-cg-demo-api-key"
PRO_HEADER = "x-cg-pro-api-key"
DEMO_QUERY = "x_cg_demo_api_key"
PRO_QUERY = "x_cg_pro_api_key"
KEY_PARAMS = (DEMO_QUERY, PRO_QUERY)
CACHE_CONTROL = "max-age=30, public, must-revalidate, s-maxage=60"

_COIN_PATH = re.compile(r"^/api/v3/coins/([^/]+)/(market_chart/range|market_chart|ohlc)/?$")


@dataclass
class Settings:
    """Runtime-changeable emulator settings (the admin endpoint edits them)."""

    plan: str = "demo"
    rate_limit_per_min: int | None = None
    rate_limit_style: str = "retry_after"
    latency_s: float = 0.0
    history_days: int = 365
    api_keys: frozenset[str] | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.plan not in PLANS:
            raise ValueError(f"plan must be one of {PLANS}, not {self.plan!r}")
        if self.rate_limit_style not in RATE_LIMIT_STYLES:
            raise ValueError(f"rate_limit_style must be one of {RATE_LIMIT_STYLES}")
        if self.rate_limit_per_min is not None and self.rate_limit_per_min < 1:
            raise ValueError("rate_limit_per_min must be >= 1 or None")
        if self.latency_s < 0 or self.history_days < 1:
            raise ValueError("latency_s must be >= 0 and history_days >= 1")


@dataclass
class Response:
    """What to answer. `payload` is serialised by the server, after any bad_data mutation."""

    status: int
    payload: Any = None
    body: bytes | None = None
    content_type: str = bodies.JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    kind: str | None = None  # "chart", "ohlc", "markets": payloads a bad_data fault may mutate


@dataclass(frozen=True, slots=True)
class Route:
    endpoint: str | None  # one of ENDPOINTS, or None for an unknown path
    asset: str | None = None


@dataclass(frozen=True, slots=True)
class Key:
    """Which API key arrived and how; `value` must never be logged."""

    kind: str | None  # "demo", "pro" or None
    source: str | None = None  # the header or query parameter name
    value: str = field(default="", repr=False)


def route(path: str) -> Route:
    """Map a URL path (no query string) to an endpoint name and asset id."""
    path = path.rstrip("/") if path != "/" else path
    if path == "/api/v3/ping":
        return Route("ping")
    if path == "/api/v3/coins/markets":
        return Route("markets")
    if path == "/api/v3/coins/list":
        return Route("list")
    m = _COIN_PATH.match(path)
    if m:
        name = {"market_chart/range": "range", "market_chart": "market_chart", "ohlc": "ohlc"}
        return Route(name[m.group(2)], m.group(1))
    return Route(None)


def find_key(headers: dict[str, str], params: dict[str, str]) -> Key:
    """The key a request carries, header first (a paid key wins if both are sent)."""
    for kind, header, query in (("pro", PRO_HEADER, PRO_QUERY), ("demo", DEMO_HEADER, DEMO_QUERY)):
        if headers.get(header):
            return Key(kind, header, headers[header])
        if params.get(query):
            return Key(kind, query, params[query])
    return Key(None)


def json_response(status: int, payload: Any, kind: str | None = None) -> Response:
    headers = {"Cache-Control": CACHE_CONTROL} if status == 200 else {}
    return Response(status, payload=payload, headers=headers, kind=kind)


class Api:
    """Answers /api/v3 requests from a Universe under the given Settings."""

    def __init__(self, universe: Universe, settings: Settings) -> None:
        self.universe = universe
        self.settings = settings

    def handle(self, rt: Route, params: dict[str, str], key: Key, now_ms: int) -> Response:
        denied = self.check_key(key, now_ms)
        if denied is not None:
            return denied
        if rt.endpoint is None:
            return json_response(404, bodies.INCORRECT_PATH)
        handler = getattr(self, "_" + rt.endpoint)
        return handler(rt.asset, params, now_ms)

    def check_key(self, key: Key, now_ms: int) -> Response | None:
        """Host/plan/key mismatches, as api.coingecko.com and pro-api.coingecko.com answer."""
        s = self.settings
        if s.plan == "paid":
            if key.kind == "demo":
                return json_response(400, bodies.demo_key_on_pro_host(now_ms))
            if key.kind is None:
                return json_response(401, bodies.key_missing(now_ms))
        elif key.kind == "pro":
            return json_response(400, bodies.pro_key_on_public_host(now_ms))
        if key.kind is not None and s.api_keys is not None and key.value not in s.api_keys:
            return json_response(401, bodies.key_invalid(now_ms))
        return None

    # ----- endpoints -----

    def _ping(self, asset: str | None, params: dict[str, str], now_ms: int) -> Response:
        return json_response(200, bodies.PING)

    def _list(self, asset: str | None, params: dict[str, str], now_ms: int) -> Response:
        u = self.universe
        items = [
            {"id": a, "symbol": u.series(a).symbol, "name": u.series(a).name}
            for a in sorted(u.all_ids())
        ]
        return json_response(200, items)

    def _markets(self, asset: str | None, params: dict[str, str], now_ms: int) -> Response:
        vs = params.get("vs_currency", "").lower()
        if not vs:
            return json_response(422, bodies.missing_parameter("vs_currency"))
        factor = VS_FACTORS.get(vs)
        if factor is None:
            return json_response(400, bodies.INVALID_VS_CURRENCY)
        order = params.get("order") or "market_cap_desc"
        if order not in _ORDERS:
            return json_response(400, {"error": "invalid order"})
        per_page = min(250, max(1, _int_or(params.get("per_page"), 100)))
        page = max(1, _int_or(params.get("page"), 1))
        rows = self.universe.snapshot(now_ms)
        ranks: dict[str, int] = {}
        for r in rows:
            if r.market_cap > 0:
                ranks[r.asset_id] = len(ranks) + 1
        if params.get("ids"):
            wanted = {i.strip() for i in params["ids"].split(",") if i.strip()}
            rows = [r for r in rows if r.asset_id in wanted]
        rows = _ORDERS[order](rows)
        rows = rows[(page - 1) * per_page : page * per_page]
        items = [_market_item(r, ranks.get(r.asset_id), factor) for r in rows]
        return json_response(200, items, kind="markets")

    def _market_chart(self, asset: str | None, params: dict[str, str], now_ms: int) -> Response:
        assert asset is not None
        vs = params.get("vs_currency", "").lower()
        if not vs:
            return json_response(422, bodies.missing_parameter("vs_currency"))
        days_text = params.get("days", "").strip().lower()
        if not days_text:
            return json_response(422, bodies.missing_parameter("days"))
        factor = VS_FACTORS.get(vs)
        if factor is None:
            return json_response(400, bodies.INVALID_VS_CURRENCY)
        paid = self.settings.plan == "paid"
        days = None if days_text == "max" else _int_or(days_text, 0)
        if days is not None and days < 1:
            return json_response(400, bodies.INVALID_DAYS)
        if not self.universe.has(asset):
            return json_response(404, bodies.COIN_NOT_FOUND)
        if not paid and (days is None or days > self.settings.history_days):
            return json_response(401, bodies.history_limit(now_ms, self.settings.history_days))
        interval = params.get("interval", "").lower() or None
        bad = self._check_interval(interval)
        if bad is not None:
            return bad
        start_ms = GENESIS_MS - 1 if days is None else now_ms - days * DAY_MS
        span_days = None if days is None else days
        if interval == "daily" or span_days is None:
            gran = "daily"
        elif interval == "hourly" and span_days <= 100:
            gran = "hourly"
        elif interval == "5m" and span_days <= 10:
            gran = "5m"
        else:
            gran = "5m" if span_days == 1 else "hourly" if span_days <= 90 else "daily"
        ts, pr, mc, tv = self._series(asset, gran, start_ms + 1, now_ms, now_ms)
        latest = self.universe.latest_point(asset, now_ms)
        if latest is not None:
            now_s = now_ms // 1000
            # Real "now" points are whole seconds and can precede the sample before them.
            ts.append((now_s - (now_s * 2654435761 >> 11) % 3) * 1000)
            pr.append(latest[1])
            mc.append(latest[2])
            tv.append(latest[3])
        return json_response(200, _chart(ts, pr, mc, tv, factor), kind="chart")

    def _range(self, asset: str | None, params: dict[str, str], now_ms: int) -> Response:
        assert asset is not None
        vs = params.get("vs_currency", "").lower()
        if not vs:
            return json_response(422, bodies.missing_parameter("vs_currency"))
        for name in ("from", "to"):
            if not params.get(name, "").strip():
                return json_response(422, bodies.missing_parameter(name))
        factor = VS_FACTORS.get(vs)
        if factor is None:
            return json_response(400, bodies.INVALID_VS_CURRENCY)
        try:
            from_s = parse_unix_seconds(params["from"])
            to_s = parse_unix_seconds(params["to"])
        except ValueError as exc:
            return json_response(400, {"error": str(exc)})
        if not self.universe.has(asset):
            return json_response(404, bodies.COIN_NOT_FOUND)
        paid = self.settings.plan == "paid"
        # Whole seconds: a client passing int(now) - 365 days must not be refused for the ms.
        if not paid and from_s < now_ms // 1000 - self.settings.history_days * 86400:
            return json_response(401, bodies.history_limit(now_ms, self.settings.history_days))
        interval = params.get("interval", "").lower() or None
        bad = self._check_interval(interval)
        if bad is not None:
            return bad
        from_ms = max(round(from_s * 1000), GENESIS_MS)
        to_ms = min(round(to_s * 1000), now_ms)
        span_s = to_s - from_s
        if interval == "daily":
            gran = "daily"
        elif interval == "hourly" and span_s <= 100 * 86400:
            gran = "hourly"
        elif interval == "5m" and span_s <= 10 * 86400:
            gran = "5m"
        elif span_s < 2 * 86400 and to_s * 1000 >= now_ms - DAY_MS:
            gran = "5m"
        else:
            gran = "hourly" if span_s <= 90 * 86400 else "daily"
        empty: Series = ([], [], [], [])
        series = self._series(asset, gran, from_ms, to_ms, now_ms) if from_ms <= to_ms else empty
        return json_response(200, _chart(*series, factor), kind="chart")

    def _ohlc(self, asset: str | None, params: dict[str, str], now_ms: int) -> Response:
        assert asset is not None
        vs = params.get("vs_currency", "").lower()
        days_text = params.get("days", "").strip().lower()
        if not vs or not days_text:
            # Recorded: /coins/bitcoin/ohlc without parameters answered a bare 500.
            return json_response(500, bodies.INTERNAL_ERROR)
        factor = VS_FACTORS.get(vs)
        if factor is None:
            return json_response(400, bodies.INVALID_VS_CURRENCY)
        paid = self.settings.plan == "paid"
        if days_text == "max":
            days = None
            if not paid:
                return json_response(401, bodies.history_limit(now_ms, self.settings.history_days))
        else:
            days = _int_or(days_text, 0)
            if days not in OHLC_DAYS:
                return json_response(400, bodies.INVALID_DAYS)
        if not self.universe.has(asset):
            return json_response(404, bodies.COIN_NOT_FOUND)
        interval = params.get("interval", "").lower() or None
        bad = self._check_interval(interval, allowed=("daily", "hourly"), free=())
        if bad is not None:
            return bad
        length = 4 * DAY_MS if days is None else OHLC_DAYS[days]
        if interval == "daily" and (days is None or days <= 180):
            length = DAY_MS
        elif interval == "hourly" and days is not None and days <= 90:
            length = HOUR_MS
        start_ms = GENESIS_MS if days is None else now_ms - days * DAY_MS
        u = self.universe
        candles = u.final_candles(asset, length, start_ms, now_ms + 1, now_ms)
        forming = u.forming_candle(asset, length, now_ms)
        if forming is not None and forming[0] - length >= start_ms:
            candles.append(forming)
        if factor != 1.0:
            candles = [
                (t, o * factor, h * factor, lo * factor, c * factor) for t, o, h, lo, c in candles
            ]
        return json_response(200, candles, kind="ohlc")

    # ----- helpers -----

    def _check_interval(
        self,
        interval: str | None,
        allowed: tuple[str, ...] = ("daily", "hourly", "5m"),
        free: tuple[str, ...] = ("daily",),
    ) -> Response | None:
        """None if `interval` may be used on this plan, else the error to answer."""
        if interval is None:
            return None
        if interval not in allowed:
            return json_response(400, {"error": "invalid interval"})
        if interval not in free and self.settings.plan != "paid":
            return json_response(401, bodies.paid_only())
        return None

    def _series(self, asset: str, gran: str, from_ms: int, to_ms: int, now_ms: int) -> Series:
        """Points of one granularity with from_ms <= t <= to_ms (and t <= now)."""
        u = self.universe
        if gran == "daily":
            return u.daily(asset, -(-from_ms // DAY_MS), to_ms // DAY_MS + 1, now_ms)
        fetch = u.hourly if gran == "hourly" else u.five_minute
        ts, pr, mc, tv = fetch(asset, from_ms // HOUR_MS, to_ms // HOUR_MS + 1, now_ms)
        # Timestamps increase, so only the ends can fall outside the window.
        lo = 0
        while lo < len(ts) and ts[lo] < from_ms:
            lo += 1
        hi = len(ts)
        while hi > lo and ts[hi - 1] > to_ms:
            hi -= 1
        if lo or hi < len(ts):
            ts, pr, mc, tv = ts[lo:hi], pr[lo:hi], mc[lo:hi], tv[lo:hi]
        return ts, pr, mc, tv


def parse_unix_seconds(text: str) -> float:
    """UNIX seconds (int or float) or an ISO date/datetime, as /market_chart/range accepts."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_iso(text).timestamp()
    except ValueError:
        raise ValueError(f"invalid date: {text}") from None


def _int_or(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _chart(
    ts: list[int], pr: list[float], mc: list[float], tv: list[float], factor: float
) -> dict[str, list]:
    if factor != 1.0:
        pr = [v * factor for v in pr]
        mc = [v * factor for v in mc]
        tv = [v * factor for v in tv]
    # orjson writes tuples as arrays: zip avoids building 3 x n small lists.
    return {
        "prices": list(zip(ts, pr, strict=True)),
        "market_caps": list(zip(ts, mc, strict=True)),
        "total_volumes": list(zip(ts, tv, strict=True)),
    }


def _pct(new: float, old: float | None) -> float | None:
    if old is None or old == 0:
        return None
    return round((new - old) / old * 100, 5)


def _market_item(r: Any, rank: int | None, f: float) -> dict[str, Any]:
    """One /coins/markets item, every field in the real order."""
    price = r.price * f
    known_cap = r.supply is not None
    cap = r.market_cap * f
    p24 = r.price_24h_ago * f if r.price_24h_ago is not None else None
    m24 = r.market_cap_24h_ago * f if r.market_cap_24h_ago is not None else None
    ath, atl = r.ath * f, r.atl * f
    return {
        "id": r.asset_id,
        "symbol": r.symbol,
        "name": r.name,
        "image": f"https://coin-images.coingecko.com/coins/images/{_image_no(r.asset_id)}/large/"
        f"{r.asset_id}.png",
        "current_price": price,
        "market_cap": round(cap),
        "market_cap_rank": rank,
        "fully_diluted_valuation": round(cap) if known_cap else None,
        "total_volume": round(r.total_volume * f),
        "high_24h": r.high_24h * f,
        "low_24h": r.low_24h * f,
        "price_change_24h": price - p24 if p24 is not None else None,
        "price_change_percentage_24h": _pct(price, p24),
        "market_cap_change_24h": cap - m24 if m24 is not None else None,
        "market_cap_change_percentage_24h": _pct(cap, m24) if known_cap else None,
        "circulating_supply": r.supply,
        "total_supply": r.supply,
        "max_supply": None,
        "ath": ath,
        "ath_change_percentage": _pct(price, ath),
        "ath_date": iso_ms(r.ath_ms),
        "atl": atl,
        "atl_change_percentage": _pct(price, atl),
        "atl_date": iso_ms(r.atl_ms),
        "roi": None,
        "last_updated": iso_ms(r.sample_ms),
    }


def _image_no(asset_id: str) -> int:
    return sum(ord(ch) * (i + 1) for i, ch in enumerate(asset_id)) % 40000 + 1


def _by_cap(rows: list, reverse: bool) -> list:
    return rows[::-1] if reverse else rows  # the snapshot is already in market_cap_desc order


_ORDERS = {
    "market_cap_desc": lambda rows: _by_cap(rows, False),
    "market_cap_asc": lambda rows: _by_cap(rows, True),
    "volume_desc": lambda rows: sorted(rows, key=lambda r: -r.total_volume),
    "volume_asc": lambda rows: sorted(rows, key=lambda r: r.total_volume),
    "id_asc": lambda rows: sorted(rows, key=lambda r: r.asset_id),
    "id_desc": lambda rows: sorted(rows, key=lambda r: r.asset_id, reverse=True),
}
