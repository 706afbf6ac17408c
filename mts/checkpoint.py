"""Resume state: which span of each series has been fetched. Versioned JSON, written atomically
after the data it describes, and rebuildable from the data files alone."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import orjson

from .atomic import write_bytes_atomic
from .errors import CorruptFileError
from .intervals import INTERVAL_MS
from .layout import Layout, SeriesKey
from .schemas import first_last_ms

log = logging.getLogger(__name__)

VERSION = 1


@dataclass(frozen=True)
class Span:
    """[start_ms, end_ms): every hour/candle in it was asked for and answered (holes the API
    itself has are inside a span too)."""

    start: int
    end: int

    def union(self, other: Span) -> Span:
        return Span(min(self.start, other.start), max(self.end, other.end))


class Checkpoint:
    """Thread-safe in memory; `save()` persists it atomically."""

    def __init__(self, layout: Layout, spans: dict[SeriesKey, Span] | None = None, last_run: dict | None = None):
        self.layout = layout
        self._spans: dict[SeriesKey, Span] = dict(spans or {})
        self.last_run: dict | None = last_run
        # The quote currency of every price in the folder: one folder never mixes two.
        self.vs_currency: str | None = None
        # Files whose footer shows they are torn or foreign: (series, path, why). Their series
        # claims nothing here, so the period is fetched again once the collector sets them aside.
        self.corrupt: list[tuple[SeriesKey, Path, str]] = []
        # Each Parquet file as last seen, (size, mtime_ns, span start, span end) by path under
        # the root: a load trusts the span of a file that has not changed since and reads the
        # footers of the others only (an hourly run otherwise reads every footer). No inode:
        # a folder restored with its times (cp -a, rsync -a) is still known.
        self._files: dict[str, tuple[int, int, int, int]] = {}
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()  # serialise+write as one step: newest state wins
        # Group commit: save() calls are numbered on entry; a write covers every call numbered
        # before it began serialising, so callers queued behind it need not write again.
        self._save_calls = 0
        self._saved_calls = 0

    # --- reading ------------------------------------------------------------------------------

    @classmethod
    def load(cls, layout: Layout) -> Checkpoint:
        """The saved checkpoint, reconciled with files written after it; rebuilt from the files
        when it is missing or unreadable."""
        path = layout.checkpoint_path
        if not path.exists():
            return (
                cls.rebuild(layout)
                if (layout.root / "market_chart").exists() or (layout.root / "ohlc").exists()
                else cls(layout)
            )
        cp = cls._read(layout)
        if cp is None:
            return cls.rebuild(layout)
        cp.reconcile()
        return cp

    @classmethod
    def _read(cls, layout: Layout) -> Checkpoint | None:
        path = layout.checkpoint_path
        try:
            doc = orjson.loads(path.read_bytes())
            if doc.get("version") != VERSION:
                raise ValueError(f"version {doc.get('version')!r}")
            spans = {}
            for dataset, by_interval in doc.get("series", {}).items():
                for interval, by_asset in by_interval.items():
                    for asset, span in by_asset.items():
                        spans[SeriesKey(dataset, interval, asset)] = Span(int(span["from"]), int(span["to"]))
            cp = cls(layout, spans, doc.get("last_run"))
            cp.vs_currency = doc.get("vs_currency")
            cp._files = _fingerprints(doc.get("files"))
            return cp
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            log.warning("checkpoint %s unreadable (%s): rebuilding it from the data files", path, exc)
            return None

    def reconcile(self) -> None:
        """Take in the spans the Parquet files record about themselves: a run killed between
        writing data and saving the checkpoint must not fetch that data again. Every file is
        looked at (footers only), not just those newer than the checkpoint: with parallel
        workers, a file written just before another worker's save is older than the save."""
        from .store import read_footer

        if self.layout.fmt != "parquet":
            return
        seen: dict[str, tuple[int, int, int, int]] = {}
        for dataset in ("market_chart", "ohlc"):
            for key in self.layout.iter_series(dataset):
                for _, path in self.layout.series_years(key):
                    try:
                        st = path.stat()
                    except OSError:
                        continue
                    rel = self._rel(path)
                    known = self._files.get(rel)
                    if known is not None and known[:2] == (st.st_size, st.st_mtime_ns):
                        span: tuple[int, int] | None = (known[2], known[3])
                    else:
                        problem, span = read_footer(path, dataset)
                        if problem is not None:
                            self.corrupt.append((key, path, problem))
                            self.forget(key)
                            continue
                    if span is not None:
                        seen[rel] = (st.st_size, st.st_mtime_ns, *span)
                        self.extend(key, Span(*span))
        with self._lock:
            self._files = seen

    def note_file(self, path: Path, span: tuple[int, int] | None) -> None:
        """`path` was just written with `span` in its footer: the next load can trust it unread."""
        if span is None or self.layout.fmt != "parquet":
            return
        try:
            st = path.stat()
        except OSError:
            return
        with self._lock:
            self._files[self._rel(path)] = (st.st_size, st.st_mtime_ns, *span)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.layout.root).as_posix()

    @classmethod
    def rebuild(cls, layout: Layout) -> Checkpoint:
        """Spans from the files: first stored row to the end of the last one. Read-only: an
        unreadable file is listed in `corrupt` (for a collect to set aside under the lock)."""
        import polars as pl

        from .store import read_file, read_span  # polars-heavy; only needed here

        spans = {}
        corrupt = []
        for dataset in ("market_chart", "ohlc"):
            for key in layout.iter_series(dataset):
                frames = []
                for _, path in layout.series_years(key):
                    try:
                        frames.append(read_file(path, dataset, layout.fmt))
                    except CorruptFileError as exc:
                        corrupt.append((key, path, str(exc)))
                if not frames:
                    continue
                df = pl.concat(frames)
                found = [read_span(p) for _, p in layout.series_years(key)] if layout.fmt == "parquet" else []
                embedded = [e for e in found if e is not None]
                if embedded:
                    spans[key] = Span(min(e[0] for e in embedded), max(e[1] for e in embedded))
                    continue
                if df.is_empty() or key.interval not in INTERVAL_MS:
                    continue
                first, last = first_last_ms(df["timestamp"])
                spans[key] = Span(first, last + INTERVAL_MS[key.interval])
        cp = cls(layout, spans)
        cp.corrupt = corrupt
        return cp

    def span(self, key: SeriesKey) -> Span | None:
        with self._lock:
            return self._spans.get(key)

    def spans(self) -> dict[SeriesKey, Span]:
        with self._lock:
            return dict(self._spans)

    # --- writing ------------------------------------------------------------------------------

    def extend(self, key: SeriesKey, span: Span) -> None:
        """Record that `span` of `key` is stored. Callers extend contiguously."""
        with self._lock:
            old = self._spans.get(key)
            self._spans[key] = old.union(span) if old else span

    def forget(self, key: SeriesKey) -> None:
        with self._lock:
            self._spans.pop(key, None)

    def to_json(self) -> bytes:
        with self._lock:
            series: dict = {}
            for key, span in sorted(
                self._spans.items(), key=lambda kv: (kv[0].dataset, kv[0].interval, kv[0].asset_id)
            ):
                series.setdefault(key.dataset, {}).setdefault(key.interval, {})[key.asset_id] = {
                    "from": span.start,
                    "to": span.end,
                }
            doc = {
                "version": VERSION,
                "vs_currency": self.vs_currency,
                "series": series,
                "last_run": self.last_run,
                "files": {rel: list(fp) for rel, fp in sorted(self._files.items())},
            }
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2)

    def save(self) -> None:
        """Persist the state, including every change made before this call, atomically."""
        with self._lock:
            self._save_calls += 1
            ticket = self._save_calls
        with self._save_lock:
            if self._saved_calls >= ticket:
                return  # a write that began after this call already holds its changes
            with self._lock:
                covers = self._save_calls
            write_bytes_atomic(self.layout.checkpoint_path, self.to_json())
            self._saved_calls = covers


def _fingerprints(raw) -> dict[str, tuple[int, int, int, int]]:
    """The saved file fingerprints; anything malformed is dropped (its footer is read instead)."""
    out: dict[str, tuple[int, int, int, int]] = {}
    if isinstance(raw, dict):
        for rel, fp in raw.items():
            if isinstance(rel, str) and isinstance(fp, list) and len(fp) == 4 and all(type(v) is int for v in fp):
                out[rel] = (fp[0], fp[1], fp[2], fp[3])
    return out
