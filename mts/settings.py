"""Settings resolved once, from flags > environment > defaults, into a frozen object."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError
from .plans import PLANS, Plan

DATASETS = ("market_chart", "ohlc", "markets")
FORMATS = ("parquet", "csv")

# The default `collect`, run hourly from cron on a Demo key, must stay under 10,000 calls a month:
# 1 markets call + 1 ohlc call per asset (two 30-minute candles close every hour) = 11 calls a run,
# 744 runs in a 31-day month = 8,184 calls. See README "Budget".
DEFAULT_TOP = 10
DEFAULT_DAYS = 1
MAX_TOP = 1000


class Secret:
    """A value that never shows itself in a repr, a log line or an f-string."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    plan: Plan
    base_url: str
    api_key: Secret | None = field(default=None, repr=False)
    rate_per_min: float = 30.0
    data_dir: Path = Path("data")
    log_dir: Path = Path("logs")
    fmt: str = "parquet"
    vs_currency: str = "usd"
    days: int = DEFAULT_DAYS
    top: int = DEFAULT_TOP
    assets: tuple[str, ...] | None = None
    datasets: tuple[str, ...] = DATASETS
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 6
    workers: int = 8
    verbose: bool = False
    # From the environment as other HTTP tools read it (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE).
    proxy: str | None = field(default=None, repr=False)  # may hold credentials
    ca_bundle: str | None = None

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)


def _proxy_for(base_url: str, env: Mapping[str, str]) -> str | None:
    """The proxy for `base_url` by the usual variables: <scheme>_proxy or all_proxy (either
    case), unless no_proxy names the host."""
    from urllib.parse import urlsplit

    def var(name: str) -> str | None:
        return env.get(name) or env.get(name.upper()) or None

    url = urlsplit(base_url)
    proxy = var(f"{url.scheme}_proxy") or var("all_proxy")
    if proxy and _no_proxy_matches((url.hostname or "").lower(), var("no_proxy") or ""):
        return None
    return proxy


def _no_proxy_matches(host: str, no_proxy: str) -> bool:
    """no_proxy as curl and requests read it: '*', host names (a leading dot optional, matching
    subdomains too), IP addresses and CIDR networks, separated by commas."""
    import ipaddress

    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = entry.lstrip(".").rsplit(":", 1)[0] if entry.count(":") == 1 else entry.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def _positive(env: Mapping[str, str], name: str, default: float, unit: str) -> float:
    """A positive number from `env[name]`, or `default` when unset; UsageError otherwise."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1
    if value <= 0:
        raise UsageError(f"{name}={raw!r} must be a positive number of {unit}")
    return value


def _split_csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def resolve_settings(
    env: Mapping[str, str],
    *,
    days: int | None = None,
    top: int | None = None,
    assets: str | None = None,
    datasets: str | None = None,
    fmt: str | None = None,
    vs_currency: str | None = None,
    data_dir: str | Path | None = None,
    log_dir: str | Path | None = None,
    verbose: bool = False,
) -> Settings:
    """Resolve every setting once. Raises UsageError with a one-line fix for bad values."""
    key_value = (
        env.get("COINGECKO_API_KEY") or env.get("COINGECKO_PRO_API_KEY") or env.get("COINGECKO_DEMO_API_KEY") or None
    )
    plan_name = (env.get("COINGECKO_PLAN") or "").strip().lower()
    if not plan_name:
        if env.get("COINGECKO_API_KEY") or env.get("COINGECKO_DEMO_API_KEY"):
            plan_name = "demo"
        elif env.get("COINGECKO_PRO_API_KEY"):
            plan_name = "basic"  # the cheapest paid plan: the safe assumption for rate and credits
        else:
            plan_name = "public"
    if plan_name not in PLANS:
        raise UsageError(f"COINGECKO_PLAN={plan_name!r} is not a plan; use one of {', '.join(PLANS)}")
    plan = PLANS[plan_name]
    if env.get("MTS_HOURLY_INTERVAL", "").strip() in ("1", "true", "yes") and plan.paid:
        plan = dataclasses.replace(plan, hourly_interval_param=True)
    if plan.key_header and not key_value:
        raise UsageError(f"plan {plan.name!r} needs a key: set COINGECKO_API_KEY (or unset COINGECKO_PLAN)")

    base_url = (env.get("COINGECKO_BASE_URL") or plan.base_url).rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise UsageError(f"COINGECKO_BASE_URL={base_url!r} must start with http:// or https://")

    rate = _positive(env, "MTS_RATE_LIMIT", float(plan.rate_per_min), "calls/min")
    read_timeout = _positive(env, "MTS_HTTP_TIMEOUT", Settings.read_timeout, "seconds")

    days = DEFAULT_DAYS if days is None else days
    if days < 1:
        raise UsageError(f"--days {days}: give a whole number of days, 1 or more")
    if plan.history_days is not None and days > plan.history_days:
        raise UsageError(
            f"--days {days} reaches past the {plan.name} plan's {plan.history_days}-day history;"
            f" use --days {plan.history_days} or a paid plan"
        )

    top = DEFAULT_TOP if top is None else top
    if not 1 <= top <= MAX_TOP:
        raise UsageError(f"--top {top}: give a number from 1 to {MAX_TOP}")

    asset_ids = _split_csv(assets) if assets is not None else None
    if asset_ids is not None and not asset_ids:
        raise UsageError("--assets is empty: give CoinGecko ids separated by commas, e.g. bitcoin,ethereum")

    chosen = _split_csv(datasets) if datasets is not None else DATASETS
    unknown = [d for d in chosen if d not in DATASETS]
    if unknown or not chosen:
        raise UsageError(f"--datasets {datasets!r}: choose from {','.join(DATASETS)}")

    fmt = (fmt or "parquet").lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: use parquet or csv")

    vs = (vs_currency or "usd").strip().lower()
    if not vs.isalnum():
        raise UsageError(f"--vs-currency {vs_currency!r}: give a currency code such as usd")

    return Settings(
        plan=plan,
        base_url=base_url,
        api_key=Secret(key_value) if key_value else None,
        rate_per_min=rate,
        data_dir=Path(data_dir or env.get("MTS_DATA_DIR") or "data"),
        log_dir=Path(log_dir or env.get("MTS_LOG_DIR") or "logs"),
        fmt=fmt,
        vs_currency=vs,
        days=days,
        top=top,
        assets=asset_ids,
        datasets=tuple(d for d in DATASETS if d in chosen),
        read_timeout=read_timeout,
        verbose=verbose,
        proxy=_proxy_for(base_url, env),
        ca_bundle=env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE") or None,
    )
