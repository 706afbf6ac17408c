"""CoinGecko HTTP client: key in the plan's header only, timeouts on every call, the shared rate
limiter, retries with backoff on 429/5xx/network errors, each API error mapped to what the
caller should do."""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import urllib3

from . import __version__
from .errors import (
    ApiError,
    HistoryLimit,
    RateLimited,
    RetryLater,
    SkipAsset,
    StopRun,
    Unreachable,
)
from .ratelimit import RateLimiter
from .settings import Settings
from .stats import RunStats
from .transforms import decode_market_chart, parse_json

log = logging.getLogger(__name__)


def _error_code(doc: Any) -> tuple[int | None, str]:
    """(error_code, message) from any of CoinGecko's inconsistent error bodies."""
    if not isinstance(doc, dict):
        return None, ""
    if isinstance(doc.get("error"), dict):  # 10012 wraps the usual shape in {"error": {...}}
        doc = doc["error"]
    status = doc.get("status")
    code = doc.get("error_code")
    message = ""
    if isinstance(status, dict):
        code = status.get("error_code", code)
        message = status.get("error_message") or ""
    if isinstance(doc.get("error"), str):
        message = doc["error"]
    try:
        code = int(code) if code is not None else None
    except (TypeError, ValueError):
        code = None
    return code, str(message)


def retry_after_seconds(headers: Any, now: datetime) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or HTTP date) or `x-ratelimit-reset`
    ('2025-07-25 14:54:00 +0000' or epoch seconds)."""
    value = headers.get("Retry-After")
    if value:
        value = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", value):
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, (when - now).total_seconds())
        except (TypeError, ValueError):
            pass
    reset = headers.get("x-ratelimit-reset")
    if reset:
        reset = reset.strip()
        if re.fullmatch(r"\d+", reset):
            n = int(reset)
            return float(n) if n < 10**9 else max(0.0, n - now.timestamp())
        try:
            when = datetime.strptime(reset, "%Y-%m-%d %H:%M:%S %z")
            return max(0.0, (when - now).total_seconds())
        except ValueError:
            pass
    return None


def classify(status: int, headers: Any, body: bytes, now: datetime, what: str) -> ApiError:
    """The exception for a non-200 answer: what the caller should do about it."""
    text = body[:2000].decode("utf-8", "replace")
    try:
        doc = parse_json(body)
    except ValueError:
        doc = None
    code, message = _error_code(doc)
    kw = {"status": status, "error_code": code}
    short = (message or text.strip().splitlines()[0] if text.strip() else "")[:160]
    if status == 429 or code == 429 or "error code: 1015" in text:
        return RateLimited(f"{what}: rate limited (HTTP {status})", retry_after=retry_after_seconds(headers, now), **kw)
    if code == 10012:
        return HistoryLimit(f"{what}: beyond the plan's history depth (CoinGecko 10012)", **kw)
    if code == 10011:
        return StopRun(
            "a Demo key was sent to the pro host: set COINGECKO_BASE_URL to https://api.coingecko.com/api/v3"
            " or COINGECKO_PLAN to your paid plan (CoinGecko 10011)",
            **kw,
        )
    if code == 10010:
        return StopRun(
            "a paid key was sent to the public host: set COINGECKO_PLAN to your paid plan or"
            " COINGECKO_BASE_URL to https://pro-api.coingecko.com/api/v3 (CoinGecko 10010)",
            **kw,
        )
    if code in (10002, 10001) or (status == 401 and code is None):
        return StopRun(
            f"the API refused the key (HTTP {status}, {code}): check COINGECKO_API_KEY and COINGECKO_PLAN", **kw
        )
    if code == 10005:
        return StopRun(f"{what} needs a paid plan (CoinGecko 10005): set COINGECKO_PLAN to match your key", **kw)
    if code == 20000:
        return StopRun(f"CoinGecko blocked this network (20000): {short}", **kw)
    if status == 403 and ("cloudflare" in text.lower() or "access denied" in text.lower()):
        return RateLimited(
            f"{what}: throttled by the CDN (HTTP 403)", retry_after=retry_after_seconds(headers, now), **kw
        )
    if status == 404:
        return SkipAsset(f"{what}: not found (HTTP 404: {short})", **kw)
    if status == 400 and "vs_currency" in message:
        return StopRun(f"the API does not know this vs_currency ({message}): use e.g. --vs-currency usd", **kw)
    if status >= 500:
        return RetryLater(f"{what}: server error HTTP {status}", **kw)
    return SkipAsset(f"{what}: HTTP {status} {short}", **kw)


class CoinGeckoClient:
    """GET calls to one CoinGecko base URL through a shared RateLimiter."""

    MAX_THROTTLED = 20  # 429s one call waits out before it counts them as failed attempts

    def __init__(
        self,
        settings: Settings,
        limiter: RateLimiter,
        stats: RunStats,
        *,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.settings = settings
        self.limiter = limiter
        self.stats = stats
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._reached = threading.Event()  # set once any answer came back
        self._headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": f"mts/{__version__}",
        }
        if settings.plan.key_header and settings.api_key is not None:
            self._headers[settings.plan.key_header] = settings.api_key.reveal()
        self._http = _pool(settings)
        self._timeout = urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout)

    def get(
        self, endpoint: str, path: str, params: dict[str, Any], what: str, decode: Callable[[bytes], Any] = parse_json
    ) -> Any:
        """A 200 answer's body through `decode` (its JSON by default; ValueError from it means a
        body cut off or not JSON, retried), after retries. Raises an ApiError subclass."""
        url = f"{self.settings.base_url}{path}"
        attempts = self.settings.max_attempts
        last: ApiError | None = None
        attempt = 0
        throttled = 0  # 429s are waited out by the limiter and counted apart from failures
        while attempt < attempts:
            attempt += 1
            if attempt > 1 or throttled:
                self.stats.record_retry()
            is_probe = self.limiter.acquire()
            try:
                resp = self._http.request("GET", url, fields=params, headers=self._headers, timeout=self._timeout)
                body = resp.data
            except urllib3.exceptions.HTTPError as raised:
                # With no retries here, a failed connection comes wrapped: report its cause.
                exc: BaseException = raised
                if isinstance(raised, urllib3.exceptions.MaxRetryError) and raised.reason is not None:
                    exc = raised.reason
                if is_probe:
                    self.limiter.release_probe()
                self.stats.record_call(endpoint, "error")
                # Fail fast only when the host cannot be reached at all (no DNS, nothing
                # listening) and nothing has answered yet: a reset is a server that answered.
                if not self._reached.is_set() and _reason(exc) in ("DNS lookup failed", "connection refused"):
                    if attempt >= 2:
                        raise Unreachable(
                            f"cannot reach the CoinGecko API at {self.settings.base_url} ({_reason(exc)});"
                            " check the network, or point COINGECKO_BASE_URL at a reachable API"
                            " (e.g. the bundled emulator: python -m mts.emulator)"
                        ) from None
                    self._sleep(0.5)
                    continue
                last = RetryLater(f"{what}: {_reason(exc)}")
                self._backoff(attempt)
                continue
            self._reached.set()
            self.stats.record_call(endpoint, resp.status, len(body))
            if resp.status == 200:
                try:
                    doc = decode(body)
                except ValueError:
                    # A 200 with a body that is not JSON: cut off in transit, or a CDN page.
                    if is_probe:
                        self.limiter.succeeded()
                    last = RetryLater(f"{what}: the answer was not complete JSON ({len(body)} bytes)")
                    self._backoff(attempt)
                    continue
                self.limiter.succeeded()
                return doc
            err = classify(resp.status, resp.headers, body, self._wall_clock(), what)
            if isinstance(err, RateLimited):
                pause = self.limiter.rate_limited(err.retry_after)
                log.warning("%s; all workers pause %.0f s", err, pause)
                last = err
                throttled += 1
                if throttled <= self.MAX_THROTTLED:
                    attempt -= 1
                continue
            self.limiter.succeeded()
            if isinstance(err, RetryLater):
                last = err
                self._backoff(attempt)
                continue
            raise err
        assert last is not None
        raise type(last)(f"{last} (gave up after {attempts} attempts)", status=last.status, error_code=last.error_code)

    def _backoff(self, attempt: int) -> None:
        # Exponential with full jitter, so retrying workers do not fire together.
        self._sleep(min(30.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))

    # --- endpoints -------------------------------------------------------------------------------

    def markets(self, page: int, per_page: int, ids: list[str] | None = None) -> Any:
        params: dict[str, Any] = {
            "vs_currency": self.settings.vs_currency,
            "order": "market_cap_desc",
            "per_page": per_page,
            "page": page,
        }
        if ids:
            params["ids"] = ",".join(ids)
        return self.get("markets", "/coins/markets", params, f"/coins/markets page {page}")

    def market_chart_range(self, asset_id: str, start_s: int, end_s: int, hourly: bool = False) -> Any:
        params: dict[str, Any] = {"vs_currency": self.settings.vs_currency, "from": start_s, "to": end_s}
        if hourly:
            params["interval"] = "hourly"
        return self.get(
            "range", f"/coins/{_quote(asset_id)}/market_chart/range", params, f"{asset_id} market_chart/range",
            decode=decode_market_chart,
        )

    def ohlc(self, asset_id: str, days: int | str) -> Any:
        params = {"vs_currency": self.settings.vs_currency, "days": days}
        return self.get("ohlc", f"/coins/{_quote(asset_id)}/ohlc", params, f"{asset_id} ohlc days={days}")


def _quote(asset_id: str) -> str:
    from urllib.parse import quote

    if asset_id in (".", ".."):
        raise SkipAsset(f"{asset_id!r} cannot be sent as a URL path segment (it would address another resource)")
    return quote(asset_id, safe="")


def _pool(settings: Settings) -> urllib3.PoolManager:
    """One connection pool shared by every worker, through the settings' proxy if any, with
    their CA bundle or else certifi's (as requests does). urllib3 directly: requests' per-call
    machinery (hooks, cookies, settings merging) cost more CPU than parsing the answer.
    Redirects are followed; nothing is retried here (the client retries with the shared limiter)."""
    import certifi

    kw: dict[str, Any] = {
        "num_pools": 4,
        "maxsize": max(1, settings.workers),
        "retries": urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5),
        "ca_certs": settings.ca_bundle or certifi.where(),
    }
    if settings.proxy:
        return urllib3.ProxyManager(settings.proxy, **kw)
    return urllib3.PoolManager(**kw)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, urllib3.exceptions.NameResolutionError) or (
        "Name or service not known" in text
        or "Temporary failure in name resolution" in text
        or "NameResolution" in text
    ):
        return "DNS lookup failed"
    if "Connection refused" in text:
        return "connection refused"
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(exc, urllib3.exceptions.ProtocolError) and "IncompleteRead" in text:
        return "connection broken mid-answer"
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return "connection reset"
    return type(exc).__name__
