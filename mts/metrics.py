"""`GET /metrics`: the last run and the stored data in the Prometheus text format.

Built fresh for every request in a private registry from what is on disk (the checkpoint's
last_run and the inventory), so the numbers are those of the last run, whichever process ran it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from .inventory import SeriesInfo

__all__ = ["CONTENT_TYPE", "render_metrics"]

_RUN_NUMBERS = (
    # (last_run field, metric, help)
    ("duration_s", "mts_last_run_duration_seconds", "Wall time of the last run."),
    (
        "exit_code",
        "mts_last_run_exit_code",
        "Exit code of the last run (0 ok, 1 failure, 3 partial, 130 interrupted).",
    ),
    ("rows_stored", "mts_last_run_rows_stored", "Rows the last run added to the data folder."),
    (
        "rows_quarantined",
        "mts_last_run_rows_quarantined",
        "Rows the last run set aside in _quarantine/ (failed validation).",
    ),
    ("calls", "mts_last_run_api_calls", "API calls the last run made, retries included."),
    ("rate_limited", "mts_last_run_rate_limited", "HTTP 429 answers the last run received."),
    ("retries", "mts_last_run_retries", "Retried API calls in the last run."),
)


def render_metrics(
    last_run: dict | None, series: Iterable[SeriesInfo], now: datetime, health: dict | None = None
) -> bytes:
    """The Prometheus exposition text of `last_run` and `series` at `now`. Pure."""
    reg = CollectorRegistry(auto_describe=True)

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=reg)

    if last_run:
        _last_run(last_run, gauge)

    age = gauge(
        "mts_data_age_seconds",
        "Age of the newest stored row of each series.",
        ("dataset", "interval", "asset_id"),
    )
    rows = gauge("mts_data_rows", "Rows stored per series.", ("dataset", "interval", "asset_id"))
    missing = gauge(
        "mts_data_missing_buckets",
        "Buckets missing inside the stored span of each series.",
        ("dataset", "interval", "asset_id"),
    )
    for s in series:
        labels = (s.dataset, s.interval, s.asset_id)
        rows.labels(*labels).set(s.rows)
        missing.labels(*labels).set(s.missing)
        if s.last is not None:
            age.labels(*labels).set((now - s.last).total_seconds())

    if health is not None:
        fresh = health["components"]["data_freshness"]
        gauge("mts_data_assets", "Assets whose freshness /health judges.").set(fresh["total_count"])
        gauge(
            "mts_data_fresh_assets", "Assets whose newest row is within the freshness threshold."
        ).set(fresh["fresh_count"])
        status = gauge("mts_health_status", "1 for the current /health status.", ("status",))
        for name in ("healthy", "degraded", "unhealthy"):
            status.labels(name).set(1 if health["status"] == name else 0)
    return generate_latest(reg)


def _last_run(run: dict, gauge) -> None:
    finished = _epoch(run.get("finished_at"))
    if finished is not None:
        gauge("mts_last_run_timestamp_seconds", "When the last run finished (Unix time).").set(
            finished
        )
    started = _epoch(run.get("started_at"))
    if started is not None:
        gauge("mts_last_run_start_timestamp_seconds", "When the last run started (Unix time).").set(
            started
        )
    for field, name, doc in _RUN_NUMBERS:
        if isinstance(run.get(field), int | float):
            gauge(name, doc).set(run[field])
    outcome = gauge(
        "mts_last_run_outcome",
        "1 for the outcome of the last run (ok, partial, failure, interrupted).",
        ("outcome",),
    )
    outcome.labels(str(run.get("outcome", "unknown"))).set(1)
    gauge("mts_last_run_success", "1 when the last run collected everything it was asked for.").set(
        1 if run.get("exit_code") == 0 else 0
    )
    assets = gauge("mts_last_run_assets", "Assets of the last run by state.", ("state",))
    for state in ("attempted", "succeeded", "failed"):
        if isinstance(run.get(f"assets_{state}"), int):
            assets.labels(state).set(run[f"assets_{state}"])
    by_category: dict[str, int] = {}
    for info in (run.get("failed") or {}).values():
        cat = (info or {}).get("category") or "other"
        by_category[cat] = by_category.get(cat, 0) + 1
    failed = gauge(
        "mts_last_run_failed_assets",
        "Assets the last run failed, by reason category.",
        ("category",),
    )
    for cat, n in sorted(by_category.items()):
        failed.labels(cat).set(n)
    calls = gauge(
        "mts_last_run_api_calls_by_status",
        "API calls of the last run by endpoint and HTTP status.",
        ("endpoint", "status"),
    )
    for key, n in sorted((run.get("calls_by_endpoint_status") or {}).items()):
        endpoint, _, status = key.partition(" ")
        calls.labels(endpoint, status or "unknown").set(n)


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
