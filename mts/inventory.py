"""What is stored: per series first/last timestamp, rows, missing buckets, age. Read-only."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import polars as pl

from .errors import CorruptFileError
from .intervals import INTERVAL_MS
from .layout import Layout, SeriesKey
from .schemas import first_last_ms
from .store import read_file


@dataclass
class SeriesInfo:
    dataset: str
    interval: str
    asset_id: str
    rows: int
    first: datetime | None
    last: datetime | None
    missing: int  # buckets inside [first, last] with no row
    files: int
    unreadable: list[str]

    def age_hours(self, now: datetime) -> float | None:
        return None if self.last is None else (now - self.last).total_seconds() / 3600

    def is_fresh(self, now: datetime, factor: float = 2.0) -> bool:
        """Fresh while the last row is at most `factor` intervals old."""
        age = self.age_hours(now)
        return age is not None and age * 3_600_000 <= factor * INTERVAL_MS.get(self.interval, 3_600_000)

    def as_dict(self, now: datetime) -> dict:
        d = asdict(self)
        d["first"] = self.first.isoformat() if self.first else None
        d["last"] = self.last.isoformat() if self.last else None
        age = self.age_hours(now)
        d["age_hours"] = round(age, 3) if age is not None else None
        d["fresh"] = self.is_fresh(now)
        return d


def series_timestamps(layout: Layout, key: SeriesKey) -> tuple[pl.Series, int, list[str]]:
    """All stored timestamps of a series (sorted), the number of files, and unreadable files."""
    parts, bad = [], []
    files = layout.series_years(key)
    for _, path in files:
        try:
            parts.append(read_file(path, key.dataset, layout.fmt)["timestamp"])
        except CorruptFileError as exc:
            bad.append(str(exc))
    ts = pl.concat(parts).sort() if parts else pl.Series("timestamp", [], dtype=pl.Datetime("ms", "UTC"))
    return ts, len(files), bad


def describe_series(layout: Layout, key: SeriesKey) -> SeriesInfo:
    ts, nfiles, bad = series_timestamps(layout, key)
    if ts.is_empty():
        return SeriesInfo(key.dataset, key.interval, key.asset_id, 0, None, None, 0, nfiles, bad)
    first, last = ts[0], ts[-1]
    step = INTERVAL_MS.get(key.interval)
    expected = int((last - first).total_seconds() * 1000 // step) + 1 if step else ts.n_unique()
    return SeriesInfo(
        key.dataset,
        key.interval,
        key.asset_id,
        ts.len(),
        first,
        last,
        max(0, expected - ts.n_unique()),
        nfiles,
        bad,
    )


def scan(layout: Layout) -> list[SeriesInfo]:
    """Every stored series of market_chart and ohlc."""
    return [describe_series(layout, key) for ds in ("market_chart", "ohlc") for key in layout.iter_series(ds)]


def markets_info(layout: Layout) -> dict:
    frames, bad = [], []
    for _, path in layout.markets_years():
        try:
            frames.append(read_file(path, "markets", layout.fmt).select("timestamp", "asset_id"))
        except CorruptFileError as exc:
            bad.append(str(exc))
    if not frames:
        return {"rows": 0, "snapshots": 0, "first": None, "last": None, "unreadable": bad}
    df = pl.concat(frames)
    return {
        "rows": df.height,
        "snapshots": df["timestamp"].n_unique(),
        "assets": df["asset_id"].n_unique(),
        "first": _iso_ms(first_last_ms(df["timestamp"])[0]),
        "last": _iso_ms(first_last_ms(df["timestamp"])[1]),
        "unreadable": bad,
    }


def saved_last_run(layout: Layout) -> dict | None:
    """The last run the checkpoint records, read without rebuilding anything (None if none)."""
    import orjson

    try:
        doc = orjson.loads(layout.checkpoint_path.read_bytes())
    except (ValueError, OSError):
        return None
    run = doc.get("last_run") if isinstance(doc, dict) else None
    return run if isinstance(run, dict) else None


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()
