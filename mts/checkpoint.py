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
from .intervals import INTERVAL_MS, iso_minutes, year_start_ms
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
        # Files found torn or foreign: (series, path, why). Their series keeps only what its
        # other files hold, so the period is fetched again once the collector sets them aside.
        self.corrupt: list[tuple[SeriesKey, Path, str]] = []
        # Each data file as last written, (size, mtime_ns) and for Parquet the span its footer
        # records, by path under the root: a load trusts a file that has not changed since and
        # reads the others only (an hourly run otherwise reads every footer), and a recorded
        # file that is gone or claims less tells it the series lost rows. No inode: a folder
        # restored with its times (cp -a, rsync -a) is still known.
        self._files: dict[str, tuple[int, ...]] = {}
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
            cp._files = fingerprints(doc.get("files"))
            return cp
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            log.warning("checkpoint %s unreadable (%s): rebuilding it from the data files", path, exc)
            return None

    def reconcile(self) -> None:
        """Check the files against what the checkpoint says of them, and take in the spans the
        Parquet files record about themselves: a run killed between writing data and saving the
        checkpoint must not fetch that data again. Every file is looked at (footers only, for
        Parquet; a changed CSV file is read whole), not just those newer than the checkpoint:
        with parallel workers, a file written just before another worker's save is older than
        the save.

        A series whose stored period may have shrunk since it was recorded (a file recorded
        here is gone, torn, or claims less than it did) keeps only what its files still show:
        otherwise the checkpoint would go on claiming hours no file holds, and they would never
        be fetched again."""
        by_series = _by_series(self._files)
        on_disk: set[SeriesKey] = set()
        seen: dict[str, tuple[int, ...]] = {}
        for dataset in ("market_chart", "ohlc"):
            for key in self.layout.iter_series(dataset):
                on_disk.add(key)
                seen.update(self._scan(key, dataset, by_series.get(self._series_rel(key), {})))
        with self._lock:
            for key in [k for k in self._spans if k not in on_disk and self._series_rel(k) in by_series]:
                del self._spans[key]  # every file it had is gone
            self._files = seen

    def rescan(self, key: SeriesKey) -> None:
        """A file of `key` was found unreadable and set aside while merging: its period is no
        longer stored, so the series keeps only what its remaining files show."""
        with self._lock:
            recorded = _by_series(self._files).get(self._series_rel(key), {})
        fresh = self._scan(key, key.dataset, recorded, trust=False)
        with self._lock:
            for rel in recorded:
                self._files.pop(rel, None)
            self._files.update(fresh)

    def _scan(
        self, key: SeriesKey, dataset: str, recorded: dict[str, tuple[int, ...]], trust: bool = True
    ) -> dict[str, tuple[int, ...]]:
        """Check the year files of `key` against their `recorded` fingerprints and set its span
        from them (with the recorded span, unless the files show it cannot be trusted). Returns
        the files' fingerprints as they are now."""
        from .store import read_file, read_footer

        recorded = dict(recorded)
        seen: dict[str, tuple[int, ...]] = {}
        claims: list[Span] = []
        for year, path in self.layout.series_years(key):
            try:
                st = path.stat()
            except OSError:
                continue
            rel = self._rel(path)
            known = recorded.pop(rel, None)
            identity = (st.st_size, st.st_mtime_ns)
            if known is not None and known[:2] == identity:
                claim = known[2:] or None
            elif self.layout.fmt == "parquet":
                problem, claim = read_footer(path, dataset)
                if problem is not None:
                    self.corrupt.append((key, path, problem))
                    trust = False
                    continue
                # mts only ever rewrites a file to claim more than it did: less means rows lost.
                # (No claim at all: written by another tool, which says nothing either way.)
                if known is not None and claim is not None and not _contains(claim, known[2:]):
                    trust = False
            else:
                try:
                    read_file(path, dataset, "csv")
                except CorruptFileError as exc:
                    self.corrupt.append((key, path, str(exc)))
                    trust = False
                    continue
                claim = None
                if known is not None:  # a CSV file records nothing of itself: changed is unknown
                    trust = False
            seen[rel] = (*identity, *(claim or ()))
            if claim is not None:
                part = _within_year(Span(*claim), year)
                if part is not None:
                    claims.append(part)
        if recorded:  # files recorded here that are gone (set aside, deleted)
            trust = False
        with self._lock:
            old = self._spans.pop(key, None)
            if trust and old is not None:
                claims.append(old)
            latest = latest_run(claims)
            if latest is not None:
                self._spans[key] = latest
        if not trust and old is not None and latest != old:
            log.warning(
                "%s: its files no longer hold all of the recorded span; keeping %s, the rest is fetched again",
                key, "nothing" if latest is None else f"{iso_minutes(latest.start)}..{iso_minutes(latest.end)}",
            )
        return seen

    def _series_rel(self, key: SeriesKey) -> str:
        return self._rel(self.layout.series_dir(key))

    def note_file(self, path: Path, span: tuple[int, int] | None) -> None:
        """`path` was just written with `span` in its footer (None: no span, or a CSV file): the
        next load can trust it unread while its size and mtime are these."""
        try:
            st = path.stat()
        except OSError:
            return
        claim = span if self.layout.fmt == "parquet" and span is not None else ()
        with self._lock:
            self._files[self._rel(path)] = (st.st_size, st.st_mtime_ns, *claim)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.layout.root).as_posix()

    @classmethod
    def rebuild(cls, layout: Layout) -> Checkpoint:
        """Spans from the files: what their footers record, else first stored row to the end of
        the last one; never across an unreadable file (only the years after it count). Read-only:
        an unreadable file is listed in `corrupt` (for a collect to set aside under the lock)."""
        import polars as pl

        from .store import read_file, read_span  # polars-heavy; only needed here

        spans = {}
        corrupt = []
        for dataset in ("market_chart", "ohlc"):
            for key in layout.iter_series(dataset):
                frames: list[tuple[int, Path, pl.DataFrame]] = []
                for year, path in layout.series_years(key):
                    try:
                        frames.append((year, path, read_file(path, dataset, layout.fmt)))
                    except CorruptFileError as exc:
                        corrupt.append((key, path, str(exc)))
                        frames.clear()  # what an unreadable year held is unknown: start after it
                if not frames:
                    continue
                claims = []
                for year, path, _ in frames if layout.fmt == "parquet" else ():
                    claim = read_span(path)
                    part = _within_year(Span(*claim), year) if claim is not None else None
                    if part is not None:
                        claims.append(part)
                latest = latest_run(claims)
                if latest is not None:
                    spans[key] = latest
                    continue
                df = pl.concat([f for _, _, f in frames])
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


def fingerprints(raw) -> dict[str, tuple[int, ...]]:
    """The saved file fingerprints, (size, mtime_ns) and for a Parquet file the span its footer
    records; anything malformed is dropped (the file is read instead)."""
    out: dict[str, tuple[int, ...]] = {}
    if isinstance(raw, dict):
        for rel, fp in raw.items():
            if isinstance(rel, str) and isinstance(fp, list) and len(fp) in (2, 4) and all(type(v) is int for v in fp):
                out[rel] = tuple(fp)
    return out


def _by_series(files: dict[str, tuple[int, ...]]) -> dict[str, dict[str, tuple[int, ...]]]:
    """Fingerprints grouped by their series folder ("<dataset>/interval=…/asset_id=…")."""
    out: dict[str, dict[str, tuple[int, ...]]] = {}
    for rel, fp in files.items():
        out.setdefault(rel.rsplit("/", 2)[0], {})[rel] = fp
    return out


def latest_run(spans: list[Span]) -> Span | None:
    """The latest contiguous run of `spans` (overlapping or touching ones join). A series'
    coverage is one span: where its pieces no longer meet, the older part is fetched again."""
    run = None
    for span in sorted(spans, key=lambda s: s.start):
        run = Span(run.start, max(run.end, span.end)) if run is not None and span.start <= run.end else span
    return run


def _within_year(span: Span, year: int) -> Span | None:
    """The part of `span` inside UTC `year`: all that a year file's rows can vouch for (its
    footer records the series' span from its start, which earlier files hold)."""
    lo, hi = year_start_ms(year), year_start_ms(year + 1)
    start, end = max(span.start, lo), min(span.end, hi)
    return Span(start, end) if start < end else None


def _contains(outer: tuple[int, ...], inner: tuple[int, ...]) -> bool:
    return not inner or (outer[0] <= inner[0] and outer[1] >= inner[1])
