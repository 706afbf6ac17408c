"""Read, merge and atomically rewrite the data files (one per dataset, interval, asset, year)."""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import polars as pl

from . import parquet_append, schemas
from .atomic import write_atomic
from .errors import CorruptFileError, StorageError
from .intervals import INTERVAL_MS, year_start_ms
from .layout import Layout, SeriesKey
from .parquet_append import FooterError
from .transforms import sort_dedupe

# polars' Parquet reader decodes many row groups ahead of a streaming sink: all 53 of a
# December markets file, 2.6 M rows in memory, the very thing streaming it is meant to avoid
# (peak RSS 420 MB; 150 MB with one ahead, in the same 2.2 s: bench/markets_growth.py).
# mts's other files hold one row group each. Set here, at import, before any thread runs
# (setenv is not thread-safe), and only if the user has not chosen a value.
os.environ.setdefault("POLARS_ROW_GROUP_PREFETCH_SIZE", "1")

log = logging.getLogger(__name__)

_CSV_TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.3fZ"
_RECENT_FILES = 32  # > workers x files a chunk touches


def read_file(path: Path, dataset: str, fmt: str) -> pl.DataFrame:
    """The rows of one data file, in the dataset's schema. Raises CorruptFileError when it is
    unreadable or its columns or types are not the dataset's."""
    schema = schemas.SCHEMAS[dataset]
    try:
        if fmt == "parquet":
            df = pl.read_parquet(path)
        else:
            _check_csv_ends_with_a_row(path)
            df = pl.read_csv(path, schema={c: (pl.String if t == schemas.TS else t) for c, t in schema.items()})
            df = df.with_columns(
                pl.col(c).str.to_datetime(_CSV_TS_FORMAT, time_unit="ms", time_zone="UTC")
                for c, t in schema.items() if t == schemas.TS
            )
    except FileNotFoundError:
        return schemas.empty(dataset)
    except (OSError, pl.exceptions.PolarsError, ValueError) as exc:
        raise CorruptFileError(f"{path}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from exc
    if dict(df.schema) != schema:
        raise CorruptFileError(f"{path}: columns {dict(df.schema)} are not the {dataset} schema")
    return df


def _check_csv_ends_with_a_row(path: Path) -> None:
    """A CSV file cut short (a crash of another tool, a full disk, a partial copy) ends inside a
    row, which polars reads without complaint as nulls and a number missing its last digits."""
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) != b"\n":
            raise ValueError("the file ends inside a row: cut short")


SPAN_KEY = "mts.span"


def write_file(df: pl.DataFrame, path: Path, fmt: str, dataset: str, span: tuple[int, int] | None = None) -> None:
    """Atomically replace `path`, a file of `dataset`, with `df`. A Parquet file also carries the
    span of its series that was covered when it was written, so data and coverage land in one
    atomic step."""

    def _write(tmp: Path) -> None:
        if fmt == "parquet":
            # zstd: the best size/speed trade-off for float series (its level per dataset:
            # schemas.ZSTD_LEVEL); statistics let readers skip row groups by timestamp.
            meta = {SPAN_KEY: f"{span[0]},{span[1]}"} if span else None
            df.write_parquet(
                tmp, compression="zstd", compression_level=schemas.ZSTD_LEVEL[dataset], statistics=True, metadata=meta
            )
        else:
            df.write_csv(tmp, datetime_format=_CSV_TS_FORMAT)

    write_atomic(path, _write)


def read_span(path: Path) -> tuple[int, int] | None:
    """The covered span a Parquet file was written with, if any (reads the footer only)."""
    return read_footer(path, None)[1]


def read_footer(path: Path, dataset: str | None) -> tuple[str | None, tuple[int, int] | None]:
    """(why the file is not a whole file of `dataset`, or None; the span it records, if any),
    from its Parquet footer alone: the cheap check a load runs on every file. (polars, not
    pyarrow.parquet: importing that costs more time and ~45 MB than the reads it would save.)"""
    try:
        if dataset is not None:
            schema = dict(pl.read_parquet_schema(path))
            if schema != schemas.SCHEMAS[dataset]:
                return f"{path}: columns {schema} are not the {dataset} schema", None
        raw = pl.read_parquet_metadata(path).get(SPAN_KEY)
    except (OSError, pl.exceptions.PolarsError) as exc:
        return f"{path}: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})", None
    try:
        start, end = raw.split(",") if raw else (None, None)
        return None, ((int(start), int(end)) if start is not None and end is not None else None)
    except ValueError:
        return None, None


def set_aside(layout: Layout, path: Path, reason: str) -> Path:
    """Move a corrupt or foreign file out of the data tree, keeping it, and say where."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    target = layout.corrupt_dir / path.relative_to(layout.root).parent / f"{path.name}.{stamp}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    except OSError as exc:
        raise StorageError(f"cannot move corrupt file {path} aside: {exc.strerror or exc}") from exc
    # (Not "fetched again" here: a series is, by its checkpoint; a markets snapshot cannot be.)
    log.warning("moved %s aside to %s (%s)", path, target, reason)
    return target


@dataclass
class MergeResult:
    rows_added: int = 0
    written: list[tuple[Path, tuple[int, int] | None]] = field(default_factory=list)  # (file, span it records)
    lost: list[Path] = field(default_factory=list)  # files found unreadable and set aside

    @property
    def files_written(self) -> int:
        return len(self.written)


class Store:
    """Merges new rows into the stored files of a series, one file per year."""

    def __init__(self, layout: Layout):
        self.layout = layout
        # The last frames this Store wrote, keyed by path and checked against the file's
        # identity: the next chunk of a backfill merges without reading the file back.
        # Bounded, so memory does not grow with the number of series.
        self._recent: OrderedDict[Path, tuple[tuple[int, int, int], pl.DataFrame]] = OrderedDict()
        self._recent_lock = threading.Lock()

    def _existing(self, path: Path, dataset: str) -> tuple[pl.DataFrame, bool]:
        """The rows stored in `path`, and whether it had to be set aside as unreadable."""
        try:
            st = path.stat()
        except OSError:
            return self._read_or_set_aside(path, dataset) if path.exists() else (schemas.empty(dataset), False)
        with self._recent_lock:
            hit = self._recent.get(path)
        if hit is not None and hit[0] == (st.st_ino, st.st_size, st.st_mtime_ns):
            return hit[1], False
        return self._read_or_set_aside(path, dataset)

    def _remember(self, path: Path, df: pl.DataFrame) -> None:
        if self.layout.fmt != "parquet":  # only Parquet round-trips bit for bit
            return
        try:
            st = path.stat()
        except OSError:
            return
        with self._recent_lock:
            self._recent[path] = ((st.st_ino, st.st_size, st.st_mtime_ns), df)
            self._recent.move_to_end(path)
            while len(self._recent) > _RECENT_FILES:
                self._recent.popitem(last=False)

    def _read_or_set_aside(self, path: Path, dataset: str) -> tuple[pl.DataFrame, bool]:
        try:
            return read_file(path, dataset, self.layout.fmt), False
        except CorruptFileError as exc:
            set_aside(self.layout, path, str(exc))
            return schemas.empty(dataset), True

    def merge(
        self, key: SeriesKey | None, dataset: str, rows: pl.DataFrame, span: tuple[int, int] | None = None
    ) -> MergeResult:
        """Merge `rows` into the files of `key` (or the markets files when key is None). Files
        whose rows would not change are not rewritten. Files are written oldest year first;
        the last records `span`, the series' coverage including these rows, and each one before
        it that span cut at the end of its own year: a kill between two year files must not
        leave a footer claiming hours whose file was never written."""
        result = MergeResult()
        if rows.is_empty():
            return result
        # (Columns by name through [], not select: an eager select runs a query plan, ~0.15 ms.)
        by_year = _by_year(rows[list(schemas.SCHEMAS[dataset])])
        if key is None and self.layout.fmt == "parquet" and len(by_year) == 1:
            year, part = by_year[0]
            path = self.layout.markets_file(year)
            appended = _append_if_newer(path, sort_dedupe(part, dataset))
            if appended:
                result.rows_added = appended
                result.written.append((path, None))
                return result
        changed = []
        for year, part in by_year:
            path = self.layout.series_file(key, year) if key else self.layout.markets_file(year)
            existing, lost = self._existing(path, dataset)
            if lost:
                result.lost.append(path)
            merged = sort_dedupe(pl.concat([existing, part]), dataset)
            if merged.height != existing.height or not merged.equals(existing):
                changed.append((year, path, merged, existing.height))
        for i, (year, path, merged, had) in enumerate(changed):
            claim = span if i == len(changed) - 1 else _until_year_end(span, year)
            if path in result.lost and key is not None:
                # It holds only these rows now: it vouches for their hours, not the series' span
                # (less than it recorded before, which tells a load the series lost rows).
                first, last = schemas.first_last_ms(merged["timestamp"])
                claim = (first, last + INTERVAL_MS[key.interval])
            write_file(merged, path, self.layout.fmt, dataset, claim)
            self._remember(path, merged)
            result.rows_added += merged.height - had
            result.written.append((path, claim))
        return result


def _by_year(rows: pl.DataFrame) -> list[tuple[int, pl.DataFrame]]:
    """`rows` cut into their UTC years, oldest first (rows without a timestamp dropped). Slices
    of the rows sorted by time, found by bisection: filtering by a year column cost ~1 ms an
    answer, a slice ~2 µs (and polars' own search_sorted ~0.5 ms)."""
    ts = rows["timestamp"]
    if ts.null_count():
        rows = rows.filter(pl.col("timestamp").is_not_null())
        ts = rows["timestamp"]
    if ts.is_empty():
        return []
    oldest, newest = cast(dt.datetime, ts.min()), cast(dt.datetime, ts.max())
    first, last = oldest.year, newest.year
    if first == last:
        return [(first, rows)]
    if not ts.is_sorted():
        rows = rows.sort("timestamp", maintain_order=True)
        ts = rows["timestamp"]
    parts, lo = [], 0
    for year in range(first, last + 1):
        if year == last:
            hi = rows.height
        else:
            hi = bisect.bisect_left(range(rows.height), dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC), key=ts.__getitem__)
        if hi > lo:
            parts.append((year, rows.slice(lo, hi - lo)))
        lo = hi
    return parts


def _until_year_end(span: tuple[int, int] | None, year: int) -> tuple[int, int] | None:
    """`span` cut at the first instant of `year + 1` (None when nothing of it is left)."""
    if span is None:
        return None
    end = year_start_ms(year + 1)
    return (span[0], min(span[1], end)) if span[0] < end else None


# A markets year file gains every hourly snapshot of the universe (300 rows an hour at 300
# assets, 2.6 M by December) and SPEC keeps it one file. Rewritten whole each hour it costs more
# every month; so a snapshot newer than every stored row (every hourly one) is appended as one
# more row group, the stored ones copied byte for byte (mts/parquet_append.py). Small row groups
# slow readers and grow the footer, so once a day's worth have piled up the file is rewritten
# into row groups of _APPEND_ROW_GROUP rows, streamed by polars (bench/markets_growth.py).
_APPEND_ROW_GROUP = 50_000
_MAX_SMALL_ROW_GROUPS = 24


def _append_if_newer(path: Path, rows: pl.DataFrame) -> int:
    """Add `rows` (sorted, deduplicated) to the end of the markets file `path` when every one
    is later than every stored row, so the file stays sorted by the key. Returns the rows
    added, or 0 when the ordinary merge should run."""
    try:
        if not path.is_file() or dict(pl.read_parquet_schema(path)) != schemas.SCHEMAS["markets"]:
            return 0
        ts = pl.col("timestamp")
        sorted_by_time = (ts.dt.epoch("ms").diff().fill_null(0) >= 0).all().alias("sorted_by_time")
        newest, in_order = pl.scan_parquet(path).select(ts.max(), sorted_by_time).collect().row(0)
    except (OSError, pl.exceptions.PolarsError):
        return 0  # the ordinary merge reads it and sets it aside if it is corrupt
    # in_order: written time-major (older versions sorted markets by asset first; the ordinary
    # merge rewrites such a file in the new order once).
    if not in_order or newest is None or rows["timestamp"].min() <= newest:
        return 0
    rows = rows.cast(pl.Schema(schemas.MARKETS))
    if _small_row_groups(path) < _MAX_SMALL_ROW_GROUPS:
        try:
            write_atomic(path, lambda tmp: _write_appended(path, rows, tmp))
            return rows.height
        except FooterError as exc:
            log.warning("%s: could not append a row group (%s); rewriting the file instead", path, exc)
    combined = pl.concat([pl.scan_parquet(path), rows.lazy()])

    def _write_streamed(tmp: Path) -> None:
        combined.sink_parquet(
            tmp, compression="zstd", compression_level=schemas.ZSTD_LEVEL["markets"], statistics=True,
            row_group_size=_APPEND_ROW_GROUP,
        )

    write_atomic(path, _write_streamed)
    return rows.height


def _small_row_groups(path: Path) -> int:
    """How many row groups at the end of `path` hold fewer than _APPEND_ROW_GROUP rows."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path)
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    small = 0
    for n in reversed(sizes):
        if n >= _APPEND_ROW_GROUP:
            break
        small += 1
    return small


def _write_appended(path: Path, rows: pl.DataFrame, tmp: Path) -> None:
    """`path` plus `rows` as one more row group, at `tmp`, read back before it is trusted.
    A failure of the disk stays an OSError (the run's StorageError); anything else is a
    FooterError, and the caller rewrites the file instead."""
    import pyarrow.parquet as pq

    try:
        stored = pq.read_metadata(path).num_rows
        table = rows.to_arrow().cast(pq.read_schema(path))
        parquet_append.append_row_group(
            path, table, tmp, compression="zstd", compression_level=schemas.ZSTD_LEVEL["markets"]
        )
        written = pq.ParquetFile(tmp)
        last = written.read_row_group(written.num_row_groups - 1)
        if written.metadata.num_rows != stored + rows.height or not pl.DataFrame(last).equals(rows):
            raise FooterError("the appended rows do not read back")
    except FooterError:
        raise
    except OSError as exc:
        if exc.errno is not None:
            raise  # the disk's (ENOSPC, EIO): no other way of writing would fare better
        raise FooterError(str(exc)) from exc  # pyarrow's errors carry no errno
    except Exception as exc:
        raise FooterError(f"{type(exc).__name__}: {exc}") from exc
