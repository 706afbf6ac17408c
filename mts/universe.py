"""Discovery: the /coins/markets snapshot that names the universe (top N or explicit ids)."""

from __future__ import annotations

import polars as pl

from . import transforms as tf
from .client import CoinGeckoClient
from .planner import markets_calls
from .settings import Settings
from .validate import apply_rules, markets_rules


def fetch_snapshot(client: CoinGeckoClient, settings: Settings) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid snapshot rows in market-cap order, cut to --top; rejected rows with their rule).
    An id that cannot name a folder is rejected here, before anything is written."""
    calls = markets_calls(None if settings.assets else settings.top, settings.assets)
    frames = [tf.markets_items(client.markets(c.page, c.per_page, list(c.ids) if c.ids else None)) for c in calls]
    raw = pl.concat(frames) if frames else tf.markets_items([])
    valid, rejects = apply_rules(raw, markets_rules())
    if settings.assets is None:
        valid = valid.head(settings.top)
    return valid, rejects


def snapshot_hours(snapshot: pl.DataFrame) -> dict[str, int]:
    """asset id → the UTC hour (ms) its snapshot sample belongs to."""
    out = {}
    for asset_id, ts in zip(snapshot["asset_id"].to_list(), snapshot["timestamp"].to_list(), strict=True):
        if ts is not None:
            out[asset_id] = int(ts.timestamp() * 1000)
    return out
