"""`mts plan`: the calls a collect would make, their time at the plan's rate, and the monthly
cost of running the same command hourly from cron. No API call beyond discovery."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from .checkpoint import Checkpoint
from .layout import Layout
from .planner import HOUR, MONTH_RUNS, markets_calls, plan_collect, steady_calls_per_run
from .ratelimit import RateLimiter
from .settings import Settings
from .stats import RunStats


def dry_run(settings: Settings, now: datetime, client=None) -> dict:
    now_ms = int(now.timestamp() * 1000)
    layout = Layout(settings.data_dir, settings.fmt)
    checkpoint = Checkpoint.load(layout) if settings.data_dir.exists() else Checkpoint(layout)
    discovery = markets_calls(None if settings.assets else settings.top, settings.assets)
    with_snapshot = settings.assets is None or "markets" in settings.datasets or "market_chart" in settings.datasets
    if settings.assets is None:
        from .client import CoinGeckoClient
        from .universe import fetch_snapshot, snapshot_hours

        client = client or CoinGeckoClient(settings, RateLimiter(settings.rate_per_min), RunStats())
        snapshot, _ = fetch_snapshot(client, settings)
        universe = snapshot["asset_id"].to_list()
        hours = snapshot_hours(snapshot) if "market_chart" in settings.datasets else None
    else:
        universe = list(settings.assets)
        # Without asking, assume each asset's snapshot sample is of the current hour.
        hours = {a: now_ms - now_ms % HOUR for a in universe} if "market_chart" in settings.datasets else None
        if not with_snapshot:
            discovery = []
    plan = plan_collect(
        universe=universe,
        datasets=settings.datasets,
        days=settings.days,
        now_ms=now_ms,
        plan=settings.plan,
        spans=checkpoint.spans(),
        snapshot_hours=hours,
        markets=discovery if with_snapshot else [],
    )
    by_endpoint = plan.calls_by_endpoint()
    total = plan.total_calls
    per_run = steady_calls_per_run(len(universe), settings.datasets, settings.days, with_snapshot)
    monthly = math.ceil(per_run * MONTH_RUNS)
    credits = settings.plan.monthly_credits
    report: dict[str, Any] = {
        "plan": settings.plan.name,
        "rate_per_min": settings.rate_per_min,
        "assets": len(universe),
        "datasets": list(settings.datasets),
        "days": settings.days,
        "ohlc_interval": plan.ohlc_interval if "ohlc" in settings.datasets else None,
        "calls": {"total": total, **by_endpoint},
        "minutes_at_rate": round(total / settings.rate_per_min, 2),
        "lost": [f"{lost.key}: {lost.reason}" for lost in plan.lost],
        "hourly_cron": {
            "calls_per_run": round(per_run, 2),
            "calls_per_month": monthly,
            "monthly_credits": credits,
            "fits": credits is None or monthly <= credits,
        },
    }
    if credits is not None and monthly > credits:
        report["hourly_cron"]["suggestion"] = cheapest_fit(settings, credits, with_snapshot)
    return report


def cheapest_fit(settings: Settings, credits: int, with_snapshot: bool) -> str:
    """The largest --top that fits the monthly credits with the same datasets and days."""
    best = 0
    for n in range(1, 1001):
        if steady_calls_per_run(n, settings.datasets, settings.days, with_snapshot) * MONTH_RUNS <= credits:
            best = n
        else:
            break
    if best:
        return f"--top {best} with the same datasets fits {credits:,} calls/month"
    return "drop ohlc (--datasets market_chart,markets) to fit the monthly credits"


def render_dry_run(report: dict) -> None:
    c = report["calls"]
    print(
        f"plan {report['plan']} at {report['rate_per_min']:g} calls/min: {report['assets']} assets, "
        f"{report['days']} days, datasets {','.join(report['datasets'])}"
    )
    print(
        f"calls: {c['total']} (markets {c['markets']}, market_chart/range {c['range']}, ohlc {c['ohlc']})"
        f" ≈ {report['minutes_at_rate']:.1f} min at the plan's rate"
    )
    for lost in report["lost"]:
        print(f"lost: {lost}")
    h = report["hourly_cron"]
    limit = f"{h['monthly_credits']:,}" if h["monthly_credits"] else "no cap"
    verdict = "fits" if h["fits"] else "EXCEEDS"
    print(f"hourly cron: {h['calls_per_run']} calls/run, {h['calls_per_month']:,} calls/month ({verdict} {limit})")
    if "suggestion" in h:
        print(f"suggestion: {h['suggestion']}")
