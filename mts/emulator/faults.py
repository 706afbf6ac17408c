"""Fault injection: rules that make chosen requests fail the ways the real service fails."""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from mts.emulator import bodies

FAULT_KINDS = ("status", "delay", "reset", "truncate", "bad_data")
FAULT_ENDPOINTS = ("ping", "markets", "market_chart", "range", "ohlc", "list")
MUTATIONS = (
    "null_price",
    "nan_price",
    "string_price",
    "zero_price",
    "negative_price",
    "duplicate_ts",
    "out_of_order",
    "high_lt_low",
    "empty",
)
# orjson writes NaN as null; this marker is swapped for a bare NaN token after serialising.
NAN_MARKER = "__mts_emulator_NaN__"
NAN_MARKER_JSON = b'"' + NAN_MARKER.encode() + b'"'

# What a status fault sends when no body is given: what CoinGecko / Cloudflare send.
_DEFAULT_BODIES: dict[int, tuple[bytes, str]] = {
    403: (bodies.ACCESS_DENIED_HTML, bodies.HTML_TYPE),
    502: (bodies.BAD_GATEWAY_HTML, bodies.HTML_TYPE),
    503: (bodies.SERVICE_UNAVAILABLE_HTML, bodies.HTML_TYPE),
    504: (bodies.GATEWAY_TIMEOUT_HTML, bodies.HTML_TYPE),
}


@dataclass(frozen=True)
class FaultRule:
    """Which requests to break, and how.

    Matches requests to `endpoint` (None: any, including unknown paths) and `asset` (None: any).
    The first `skip` matches pass; then `times` matches (None: all) are hit, for `duration_s`
    seconds of real time from when the rule was added (None: no limit).

    kind "status": answer `status` with `body` (default: the real body for that status),
    `content_type` and extra `headers`. "delay": sleep `delay_s`, then answer normally.
    "reset": close the connection without answering (TCP RST). "truncate": send the full
    Content-Length but only half the body. "bad_data": corrupt a few values with `mutation`.
    """

    kind: str
    endpoint: str | None = None
    asset: str | None = None
    status: int = 500
    body: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = None
    skip: int = 0
    duration_s: float | None = None
    delay_s: float | None = None
    mutation: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, not {self.kind!r}")
        if self.endpoint is not None and self.endpoint not in FAULT_ENDPOINTS:
            raise ValueError(f"fault endpoint must be None or one of {FAULT_ENDPOINTS}")
        if self.kind == "bad_data" and self.mutation not in MUTATIONS:
            raise ValueError(f"bad_data needs a mutation from {MUTATIONS}")
        if self.kind == "delay" and (self.delay_s is None or self.delay_s < 0):
            raise ValueError("a delay fault needs delay_s >= 0")
        if self.times is not None and self.times < 0 or self.skip < 0:
            raise ValueError("times and skip must be >= 0")

    def status_response(self) -> tuple[int, bytes, str, dict[str, str]]:
        """(status, body, content type, headers) for a "status" fault."""
        body, ctype = self.body, self.content_type
        if body is None:
            if self.status == 429:
                body = _json(bodies.RATE_LIMIT)
                ctype = ctype or bodies.JSON_TYPE
            elif self.status in _DEFAULT_BODIES:
                default_body, default_type = _DEFAULT_BODIES[self.status]
                body, ctype = default_body, ctype or default_type
            else:
                body = _json(bodies.INTERNAL_ERROR if self.status >= 500 else {"error": "error"})
        return self.status, body, ctype or bodies.JSON_TYPE, dict(self.headers)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (body as UTF-8 text) for the admin endpoint."""
        d = asdict(self)
        d["body"] = self.body.decode("utf-8", "replace") if self.body is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaultRule:
        """Inverse of to_dict; unknown keys are an error."""
        d = dict(d)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault rule fields: {sorted(unknown)}")
        if isinstance(d.get("body"), str):
            d["body"] = d["body"].encode("utf-8")
        return cls(**d)


@dataclass
class _Armed:
    rule: FaultRule
    added: float  # time.monotonic() when added
    seen: int = 0
    hits: int = 0


class FaultSet:
    """The active rules, in order; the first rule that fires on a request wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Armed] = []

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(_Armed(rule, time.monotonic()))

    def replace(self, rules: list[FaultRule]) -> None:
        now = time.monotonic()
        with self._lock:
            self._rules = [_Armed(r, now) for r in rules]

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{**a.rule.to_dict(), "seen": a.seen, "hits": a.hits} for a in self._rules]

    def match(self, endpoint: str | None, asset: str | None) -> FaultRule | None:
        """Count this request against the rules; return the rule that fires, if any."""
        now = time.monotonic()
        with self._lock:
            for armed in self._rules:
                r = armed.rule
                if r.endpoint is not None and r.endpoint != endpoint:
                    continue
                if r.asset is not None and r.asset != asset:
                    continue
                if r.duration_s is not None and now - armed.added > r.duration_s:
                    continue
                if r.times is not None and armed.hits >= r.times:
                    continue
                armed.seen += 1
                if armed.seen <= r.skip:
                    continue
                armed.hits += 1
                return r
        return None


def mutate(kind: str, payload: Any, mutation: str) -> Any:
    """A copy of a data payload with a few values corrupted, deterministically.

    kind is "chart" ({prices, market_caps, total_volumes}), "ohlc" ([[t,o,h,l,c]]) or
    "markets" ([item]). Prices are the chart price, the candle close, the item current_price.
    """
    if mutation == "empty":
        if kind == "chart":
            return {"prices": [], "market_caps": [], "total_volumes": []}
        return []
    if kind == "chart":
        names = ("prices", "market_caps", "total_volumes")
        arrays = [[list(p) for p in payload[n]] for n in names]
        _mutate_rows(arrays, price_rows=arrays[0], price_index=1, mutation=mutation)
        return dict(zip(names, arrays, strict=True))
    if kind == "ohlc":
        candles = [list(c) for c in payload]
        _mutate_rows([candles], price_rows=candles, price_index=4, mutation=mutation)
        if mutation == "high_lt_low" and candles:
            i = len(candles) // 2
            c = candles[i]
            c[2], c[3] = min(c[2], c[3]), max(c[2], c[3])
            if c[2] == c[3]:  # a flat candle: make the swap visible
                c[2] = c[3] * 0.99
        return candles
    if kind == "markets":
        items = [dict(item) for item in payload]
        _mutate_rows([items], price_rows=items, price_index="current_price", mutation=mutation)
        return items
    return payload


_PRICE_MUTATIONS = ("null_price", "nan_price", "string_price", "zero_price", "negative_price")


def _victims(n: int) -> list[int]:
    """Which rows a price mutation touches: a few, spread out, the same every time."""
    if n == 0:
        return []
    return sorted({n // 3, (2 * n) // 3})


def _bad_value(v: Any, mutation: str) -> Any:
    if mutation == "null_price":
        return None
    if mutation == "nan_price":
        return NAN_MARKER
    if mutation == "string_price":
        return repr(float(v)) if v is not None else "null"
    if mutation == "zero_price":
        return 0.0
    return -abs(v) if v else -1.0


def _mutate_rows(
    arrays: list[list], price_rows: list, price_index: int | str, mutation: str
) -> None:
    """Apply `mutation` in place to parallel row lists (the same positions in each)."""
    n = len(arrays[0])
    if mutation in _PRICE_MUTATIONS:
        for i in _victims(n):
            price_rows[i][price_index] = _bad_value(price_rows[i][price_index], mutation)
    elif mutation == "duplicate_ts" and n:
        i = n // 2
        for rows in arrays:
            rows.insert(i + 1, copy.copy(rows[i]))
    elif mutation == "out_of_order" and n >= 2:
        i = min(n // 2, n - 2)
        for rows in arrays:
            rows[i], rows[i + 1] = rows[i + 1], rows[i]


def _json(obj: Any) -> bytes:
    import orjson

    return orjson.dumps(obj)
