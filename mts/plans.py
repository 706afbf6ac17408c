"""What each CoinGecko plan allows: host, key header, rate, credits, history depth."""

from __future__ import annotations

from dataclasses import dataclass

PUBLIC_HOST = "https://api.coingecko.com/api/v3"
PRO_HOST = "https://pro-api.coingecko.com/api/v3"


@dataclass(frozen=True)
class Plan:
    name: str
    base_url: str
    key_header: str | None
    rate_per_min: int
    # None: no monthly cap known (keyless is limited per IP, not by credits).
    monthly_credits: int | None
    # None: back to 2013 (hourly from 2018-01-30).
    history_days: int | None
    # `interval=hourly` lets one market_chart/range call span 100 days of hourly points.
    # The docs disagree on which tiers have it, so it is off unless MTS_HOURLY_INTERVAL=1.
    hourly_interval_param: bool = False
    paid: bool = False

    @property
    def max_hourly_span_days(self) -> int:
        return 100 if self.hourly_interval_param else 90


# Demo's rate is documented as 30/min (and a 2025 429 carried x-ratelimit-limit: 30); newer docs
# say 100. Take the safe figure; MTS_RATE_LIMIT raises it for keys known to allow more.
PLANS: dict[str, Plan] = {
    "public": Plan("public", PUBLIC_HOST, None, 10, None, 365),
    "demo": Plan("demo", PUBLIC_HOST, "x-cg-demo-api-key", 30, 10_000, 365),
    "basic": Plan("basic", PRO_HOST, "x-cg-pro-api-key", 250, 100_000, None, paid=True),
    "analyst": Plan("analyst", PRO_HOST, "x-cg-pro-api-key", 500, 500_000, None, paid=True),
    "lite": Plan("lite", PRO_HOST, "x-cg-pro-api-key", 500, 2_000_000, None, paid=True),
    "pro": Plan("pro", PRO_HOST, "x-cg-pro-api-key", 1000, 5_000_000, None, paid=True),
    "enterprise": Plan("enterprise", PRO_HOST, "x-cg-pro-api-key", 1000, None, None, paid=True),
}
