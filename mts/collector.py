"""The collect job: discover the universe, plan, fetch, validate, merge, checkpoint."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import polars as pl

from . import transforms as tf
from .atomic import remove_stale_temps, write_bytes_atomic
from .checkpoint import Checkpoint, Span
from .client import CoinGeckoClient
from .errors import (
    ApiError,
    ExitCode,
    HistoryLimit,
    MtsError,
    RetryLater,
    SkipAsset,
    StopRun,
    StorageError,
    Unreachable,
    UsageError,
)
from .intervals import INTERVAL_MS, iso_minutes
from .layout import Layout, SeriesKey
from .lock import DataLock
from .planner import (
    DAY,
    HOUR,
    AssetPlan,
    CollectPlan,
    OhlcCall,
    RangeCall,
    history_start,
    plan_collect,
)
from .ratelimit import RateLimiter
from .schemas import first_last_ms
from .settings import Settings
from .stats import RunStats
from .store import MergeResult, Store, set_aside
from .universe import fetch_snapshot
from .universe import snapshot_hours as snap_hours
from .validate import apply_rules, market_chart_rules, ohlc_rules

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


@dataclass
class AssetOutcome:
    asset_id: str
    ok: bool = True
    category: str | None = None  # not_found, server_errors, history_limit, bad_answer, corrupt_file, interrupted
    reason: str | None = None
    rows: int = 0
    quarantined: int = 0
    files_written: int = 0


@dataclass
class CollectResult:
    started_at: datetime
    finished_at: datetime | None = None
    universe: list[str] = field(default_factory=list)
    outcomes: dict[str, AssetOutcome] = field(default_factory=dict)
    markets_rows: int = 0
    markets_files: int = 0
    quarantined: int = 0
    lost: list[str] = field(default_factory=list)
    stats: RunStats = field(default_factory=RunStats)
    interrupted: bool = False
    error: str | None = None
    # Measured on the monotonic clock: the injected clock may be frozen (MTS_NOW).
    elapsed_s: float = 0.0

    @property
    def failed(self) -> dict[str, AssetOutcome]:
        return {a: o for a, o in self.outcomes.items() if not o.ok}

    @property
    def rows_stored(self) -> int:
        return self.markets_rows + sum(o.rows for o in self.outcomes.values())

    @property
    def rows_quarantined(self) -> int:
        return self.quarantined + sum(o.quarantined for o in self.outcomes.values())

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted:
            return ExitCode.INTERRUPTED
        if self.error:
            return ExitCode.FAILURE
        if self.failed:
            if len(self.failed) == len(self.outcomes) and self.rows_stored == 0:
                return ExitCode.FAILURE
            return ExitCode.PARTIAL
        return ExitCode.OK

    def summary(self) -> dict:
        """The run_summary event: machine-readable, one per run."""
        failed = self.failed
        categories: dict[str, int] = {}
        for o in failed.values():
            categories[o.category or "other"] = categories.get(o.category or "other", 0) + 1
        return {
            "event": "run_summary",
            "started_at": self.started_at.isoformat(),
            "finished_at": (self.finished_at or self.started_at).isoformat(),
            "duration_s": round(self.elapsed_s, 3),
            "outcome": self.exit_code.name.lower(),
            "exit_code": int(self.exit_code),
            "assets_attempted": len(self.outcomes),
            "assets_succeeded": len(self.outcomes) - len(failed),
            "assets_failed": len(failed),
            "failed": {a: {"category": o.category, "reason": o.reason} for a, o in sorted(failed.items())},
            "failure_categories": categories,
            "rows_stored": self.rows_stored,
            "rows_quarantined": self.rows_quarantined,
            # Each a whole-file rewrite: how much a run cost the disk beside its rows.
            "files_written": self.markets_files + sum(o.files_written for o in self.outcomes.values()),
            "lost": self.lost,
            **self.stats.as_dict(),
            "error": self.error,
        }


class Interrupted(Exception):
    """The stop event was set between two calls."""


class Collector:
    """One collect run. Built from plain values; `run()` returns a CollectResult."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = system_clock,
        stop: threading.Event | None = None,
        on_progress: Callable[[int, int, CollectResult], None] | None = None,
    ):
        self.settings = settings
        self.clock = clock
        self.layout = Layout(settings.data_dir, settings.fmt)
        self.store = Store(self.layout)
        self.stats = RunStats()
        self.limiter = RateLimiter(settings.rate_per_min)
        self.client = CoinGeckoClient(settings, self.limiter, self.stats)
        self.stop = stop or threading.Event()
        self.on_progress = on_progress
        self.lock = DataLock(self.layout.lock_path)
        self._rejects: list[dict] = []
        self._saved_at = 0.0  # monotonic time of the last checkpoint save
        self._rejects_lock = threading.Lock()

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> CollectResult:
        started = self.clock()
        t0 = time.monotonic()
        result = CollectResult(started_at=started, stats=self.stats)
        # Lock first when the folder is already ours (no file is created); on a fresh folder,
        # reach the API first so that a run without network touches nothing.
        if self.layout.state_dir.is_dir():
            self.lock.acquire()
        try:
            try:
                self._run(result)
            except MtsError as exc:
                result.error = str(exc)
                result.finished_at = self.clock()
                result.elapsed_s = time.monotonic() - t0
                if self.lock.held:
                    self._save_last_run(result)
                raise
            except Interrupted:
                result.interrupted = True
            except KeyboardInterrupt:
                self.stop.set()
                result.interrupted = True
            finally:
                self.limiter.stop()
                self._write_quarantine(started)
            result.finished_at = self.clock()
            result.elapsed_s = time.monotonic() - t0
            if self.lock.held:
                self._save_last_run(result)
            return result
        finally:
            self.lock.release()

    def _run(self, result: CollectResult) -> None:
        s = self.settings
        now_ms = _ms(self.clock())
        snapshot = None
        ids = s.assets
        wants_snapshot = s.assets is None or "markets" in s.datasets or "market_chart" in s.datasets
        if wants_snapshot:
            snapshot = self._discover(result)
            universe = snapshot["asset_id"].to_list() if s.assets is None else list(s.assets)
        else:
            universe = list(ids or [])
        result.universe = universe

        if not self.lock.held:
            self.lock.acquire()
        remove_stale_temps(self.layout.root)
        checkpoint = self._load_checkpoint()
        self.checkpoint = checkpoint
        if checkpoint.vs_currency not in (None, s.vs_currency):
            raise UsageError(
                f"{self.layout.root} holds prices in {checkpoint.vs_currency}; collect {s.vs_currency}"
                " into another --data-dir (one folder never mixes currencies)"
            )
        checkpoint.vs_currency = s.vs_currency

        if snapshot is not None and "markets" in s.datasets and not snapshot.is_empty():
            merged = self.store.merge(None, "markets", snapshot.drop("id_error", "type_error"))
            result.markets_rows, result.markets_files = merged.rows_added, merged.files_written

        snapshot_hours = None
        if snapshot is not None and "market_chart" in s.datasets:
            snapshot_hours = snap_hours(snapshot)

        plan = plan_collect(
            universe=universe, datasets=s.datasets, days=s.days, now_ms=now_ms, plan=s.plan,
            spans=checkpoint.spans(), snapshot_hours=snapshot_hours, markets=[],
        )
        for lost in plan.lost:
            gone = f"{iso_minutes(lost.start)} to {iso_minutes(lost.end)}"
            msg = f"{lost.key}: {lost.reason} ({gone} cannot be fetched again)"
            result.lost.append(msg)
            log.warning(msg)
        snap_rows = {}
        if snapshot_hours is not None and snapshot is not None:
            snap_rows = self._snapshot_rows(snapshot, plan, result)
        self._execute(plan, snap_rows, result)

    def fetch_calls(self, calls: list[RangeCall | OhlcCall]) -> CollectResult:
        """Fetch exactly `calls` (the gaps `mts verify --repair` found) with the same
        validation, merge and checkpoint as a collect. Takes the data lock unless held already."""
        result = CollectResult(started_at=self.clock(), stats=self.stats)
        t0 = time.monotonic()
        owns_lock = not self.lock.held
        if owns_lock:
            self.lock.acquire()
        try:
            self.checkpoint = self._load_checkpoint()
            for call in calls:
                outcome = result.outcomes.setdefault(call.asset_id, AssetOutcome(call.asset_id))
                if not outcome.ok:
                    continue
                try:
                    self._check_stop()
                    if isinstance(call, RangeCall):
                        batch = _Batch(SeriesKey("market_chart", "1h", call.asset_id))
                        got = self._fetch_range(call, outcome)
                        if got is not None:
                            batch.add_samples(*got)
                            self._store_batch(batch, outcome)
                    else:
                        self._fetch_ohlc(call, outcome)
                except (SkipAsset, RetryLater, HistoryLimit) as exc:
                    outcome.ok, outcome.category, outcome.reason = False, _category(exc), str(exc)
                    log.error("%s: %s", call.asset_id, exc)
        except (Interrupted, InterruptedError):
            result.interrupted = True
        finally:
            self.limiter.stop()
            self._write_quarantine(result.started_at)
            result.finished_at = self.clock()
            result.elapsed_s = time.monotonic() - t0
            if getattr(self, "checkpoint", None) is not None:
                self.checkpoint.save()
            if owns_lock:
                self.lock.release()
        return result

    def _load_checkpoint(self) -> Checkpoint:
        """The checkpoint, with torn or foreign files moved aside (kept) under the lock; their
        series claim nothing, so this run fetches their period again."""
        checkpoint = Checkpoint.load(self.layout)
        for _, path, reason in checkpoint.corrupt:
            set_aside(self.layout, path, reason)
        return checkpoint

    # --- discovery ----------------------------------------------------------------------------

    def _discover(self, result: CollectResult) -> pl.DataFrame:
        valid, rejects = fetch_snapshot(self.client, self.settings)
        self._quarantine("markets", None, None, rejects)
        result.quarantined += rejects.height
        return valid

    # --- execution ----------------------------------------------------------------------------

    def _execute(self, plan: CollectPlan, snap_rows: dict[str, pl.DataFrame], result: CollectResult) -> None:
        total = len(plan.assets)
        done = 0
        fatal: BaseException | None = None
        workers = max(1, min(self.settings.workers, total))
        recorded: set = set()

        def record(fut) -> None:
            nonlocal done, fatal
            recorded.add(fut)
            try:
                outcome = fut.result()
            except (StopRun, Unreachable, StorageError) as exc:
                # Every further call or write would fail alike: stop the others.
                if fatal is None:
                    fatal = exc
                self.stop.set()
                self.limiter.stop()
                return
            except Interrupted:
                outcome = AssetOutcome(futures[fut], ok=False, category="interrupted", reason="interrupted")
            result.outcomes[outcome.asset_id] = outcome
            done += 1
            if self.on_progress:
                self.on_progress(done, total, result)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mts") as pool:
            futures = {
                pool.submit(self._collect_asset, ap, snap_rows.get(ap.asset_id)): ap.asset_id
                for ap in plan.assets
            }
            try:
                for fut in _as_completed_interruptibly(futures):
                    record(fut)
            except KeyboardInterrupt:
                # Skip the assets not started; the ones in hand finish, and the summary says
                # what they stored.
                self.stop.set()
                for f in futures:
                    f.cancel()
                for f in futures:
                    if f not in recorded and not f.cancelled():
                        record(f)
                raise Interrupted() from None
        if fatal is not None:
            raise fatal
        if self.stop.is_set():
            raise Interrupted()

    def _collect_asset(self, ap: AssetPlan, snap: pl.DataFrame | None) -> AssetOutcome:
        outcome = AssetOutcome(ap.asset_id)
        if self.stop.is_set():
            raise Interrupted()
        # Once started, an asset is finished even when a stop is asked for (Ctrl-C, SIGTERM):
        # only assets not yet started are skipped. A fatal error stops the limiter instead.
        try:
            self._collect_chart(ap, snap, outcome)
            if ap.ohlc is not None:
                self._fetch_ohlc(ap.ohlc, outcome)
        except InterruptedError:
            raise Interrupted() from None
        except (SkipAsset, RetryLater, HistoryLimit) as exc:
            outcome.ok = False
            outcome.category = _category(exc)
            outcome.reason = str(exc)
            log.error("%s: %s", ap.asset_id, exc)
        return outcome

    def _collect_chart(
        self, ap: AssetPlan, snap: pl.DataFrame | None, outcome: AssetOutcome
    ) -> None:
        """The asset's hourly windows, then the snapshot's hour. Answers that arrive back to back
        are stored in one write per year file (a backfill's five windows: one rewrite, not five);
        anything held is stored before a call that would wait, so a kill loses at most
        HOLD_S of API work per worker."""
        batch = _Batch(SeriesKey("market_chart", "1h", ap.asset_id))
        snapshot = None
        if ap.snapshot_hour is not None and snap is not None:
            snapshot = (snap, Span(ap.snapshot_hour, ap.snapshot_hour + HOUR))
        try:
            for call in ap.ranges:
                if batch.age() >= HOLD_S or self.limiter.expected_wait() >= HOLD_S:
                    self._store_batch(batch, outcome)
                got = self._fetch_range(call, outcome)
                if got is not None:
                    batch.add_samples(*got)
        except StorageError:
            raise
        except BaseException:
            self._store_batch(batch, outcome)  # answers in hand are valid whatever stopped the rest
            raise
        if snapshot is not None:
            # The snapshot's hour follows the newest window: it rides in the same write.
            batch.add(*snapshot)
        self._store_batch(batch, outcome)

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Interrupted()

    def _fetch_range(self, call: RangeCall, outcome: AssetOutcome) -> tuple[pl.DataFrame, Span | None] | None:
        """Fetch one window: its raw samples, each tagged with the window asked and the time of
        asking (_WINDOW_COLUMNS), and the span they cover (None when the window lies beyond the
        history depth once clamped, so no call was made)."""
        start = call.start
        for _ in range(2):
            now_ms = _ms(self.clock())
            # The depth limit is checked when the call arrives: re-clamp at call time.
            earliest = history_start(now_ms, self.settings.plan)
            if earliest is not None:
                start = max(start, earliest)
            if start >= call.end:
                return None
            try:
                payload = self.client.market_chart_range(call.asset_id, start // 1000, call.end // 1000)
                break
            except HistoryLimit:
                start += DAY  # the server's clock or limit differs from ours: clamp harder, once
        else:
            raise HistoryLimit(f"{call.asset_id}: window still beyond the history depth after clamping")
        # Usually already a frame (decoded typed, tf.decode_market_chart); else the JSON as sent.
        samples = (
            payload if isinstance(payload, pl.DataFrame)
            else self._parse(tf.market_chart_samples, payload, call.asset_id)
        )
        # Validated with the rest of the batch (_store_batch): each polars query costs ~0.1 ms
        # whatever its size, and a backfill asset's five windows are then one query, not five.
        # (hstack of repeated values: ~30 µs; with_columns of three literals: ~200 µs.)
        window = samples.hstack([
            pl.Series(name, [value], dtype=pl.Int64).new_from_index(0, samples.height)
            for name, value in zip(_WINDOW_COLUMNS, (start, call.end, now_ms), strict=True)
        ])
        # The current hour is never "covered": its sample may not be published yet.
        covered_end = min(call.end, now_ms - now_ms % HOUR)
        return window, (Span(start, covered_end) if covered_end > start else None)

    def _snapshot_rows(
        self, snapshot: pl.DataFrame, plan: CollectPlan, result: CollectResult
    ) -> dict[str, pl.DataFrame]:
        """The snapshot's sample as a market_chart row for each asset whose hour it supplies,
        validated for all at once (rejects quarantined)."""
        now_ms = _ms(self.clock())
        wanted = [ap.asset_id for ap in plan.assets if ap.snapshot_hour is not None]
        samples = tf.markets_to_samples(snapshot).filter(pl.col("asset_id").is_in(wanted))
        valid, rejects = apply_rules(samples, market_chart_rules(plan.window_start, now_ms, now_ms, per="asset_id"))
        self._quarantine("market_chart", "1h", None, rejects)
        result.quarantined += rejects.height
        # Stamped with their hour once for all assets; each merge picks its hour's winner.
        rows = tf.hourly_rows(valid).with_columns(asset_id=valid["asset_id"])
        return {
            asset_id: part
            for (asset_id,), part in rows.partition_by("asset_id", as_dict=True, include_key=False).items()
        }

    def _store_batch(self, batch: _Batch, outcome: AssetOutcome) -> None:
        """Store the held rows, each file recording the series' span with them, then the spans."""
        if batch.empty():
            return
        samples, rows, spans = batch.take()
        if samples is not None:
            valid, rejects = apply_rules(samples, _WINDOW_RULES)
            if rejects.height:  # (a drop costs a query plan, ~0.15 ms: not for no rows)
                self._quarantine("market_chart", "1h", batch.key.asset_id, rejects.drop(_WINDOW_COLUMNS))
                outcome.quarantined += rejects.height
            # One row per hour is picked when the batch is merged (the same winner, one sort).
            rows.insert(0, tf.hourly_rows(valid))
        merged = self.store.merge(batch.key, "market_chart", pl.concat(rows), self._next_span(batch.key, spans))
        self._record(batch.key, merged, spans, outcome)

    def _fetch_ohlc(self, call: OhlcCall, outcome: AssetOutcome) -> None:
        key = SeriesKey("ohlc", call.interval, call.asset_id)
        length = INTERVAL_MS[call.interval]
        payload = self.client.ohlc(call.asset_id, call.days)
        now_ms = _ms(self.clock())
        candles = self._parse(tf.ohlc_candles, payload, call.asset_id)
        final, forming = tf.split_forming(candles, now_ms)
        valid, rejects = apply_rules(final, ohlc_rules(length, now_ms - call.days * DAY, now_ms))
        self._quarantine("ohlc", call.interval, call.asset_id, rejects)
        outcome.quarantined += rejects.height
        rows = tf.candles_to_rows(valid, length)
        if rows.is_empty():
            return
        first, last = first_last_ms(rows["timestamp"])
        span = Span(min(first, call.need_from), last + length)
        merged = self.store.merge(key, "ohlc", rows, self._next_span(key, [span]))
        self._record(key, merged, [span], outcome)

    def _parse(self, parser, payload, asset_id: str) -> pl.DataFrame:
        try:
            return parser(payload)
        except ValueError as exc:
            raise SkipAsset(f"{asset_id}: unusable answer ({exc})") from None

    def _next_span(self, key: SeriesKey, spans: list[Span]) -> tuple[int, int] | None:
        """The series' span once `spans` are added in order, as _extend will add them: what
        the data file records about itself."""
        grown = self.checkpoint.span(key)
        for span in spans:
            grown = span if grown is None or _disjoint(grown, span) else grown.union(span)
        return (grown.start, grown.end) if grown else None

    def _record(self, key: SeriesKey, merged: MergeResult, spans: list[Span], outcome: AssetOutcome) -> None:
        """What a merge wrote: file fingerprints and the series' new spans for the checkpoint,
        counts for the summary. When the merge found a stored file unreadable (and set it
        aside), the series keeps only what its files still hold and the asset counts as failed:
        the next run fetches the rest again."""
        for path, claim in merged.written:
            self.checkpoint.note_file(path, claim)
        outcome.rows += merged.rows_added
        outcome.files_written += merged.files_written
        if merged.lost:
            self.checkpoint.rescan(key)
            self.checkpoint.save()
            outcome.ok, outcome.category = False, "corrupt_file"
            outcome.reason = (
                f"{', '.join(str(p) for p in merged.lost)} was unreadable: moved aside,"
                " its period is fetched again by the next run"
            )
            log.error("%s: %s", key.asset_id, outcome.reason)
            return
        for span in spans:
            self._extend(key, span)

    def _extend(self, key: SeriesKey, span: Span) -> None:
        # Data first (already on disk), checkpoint second.
        old = self.checkpoint.span(key)
        if old is not None and _disjoint(old, span):
            self.checkpoint.forget(key)  # not contiguous: keep the newer span only
        self.checkpoint.extend(key, span)
        # A Parquet file records its span in its own footer (read back at load), so the JSON is
        # a cache: saving it after every chunk costs an fsync and a full serialisation each
        # time for nothing a crash could lose. CSV files carry no span: save every time.
        now = time.monotonic()
        if self.layout.fmt != "parquet" or now - self._saved_at >= CHECKPOINT_EVERY_S:
            self._saved_at = now
            self.checkpoint.save()

    # --- quarantine and last run -----------------------------------------------------------------

    def _quarantine(self, dataset: str, interval: str | None, asset_id: str | None, rejects: pl.DataFrame) -> None:
        if rejects.is_empty():
            return
        fetched = self.clock().isoformat()
        rows = []
        for rec in rejects.to_dicts():
            rule = rec.pop("rule")
            rows.append({
                "dataset": dataset, "interval": interval,
                "asset_id": asset_id if asset_id is not None else rec.get("asset_id"),
                "rule": rule, "fetched_at": fetched, "row": rec,
            })
        with self._rejects_lock:
            self._rejects.extend(rows)

    def _write_quarantine(self, started: datetime) -> None:
        if not self._rejects:
            return
        name = f"{started.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.jsonl"
        body = b"".join(orjson.dumps(r, default=str) + b"\n" for r in self._rejects)
        try:
            write_bytes_atomic(self.layout.quarantine_dir / name, body)
        except StorageError as exc:
            log.error("could not write quarantined rows: %s", exc)

    def _save_last_run(self, result: CollectResult) -> None:
        cp = getattr(self, "checkpoint", None) or Checkpoint.load(self.layout)
        summary = result.summary()
        cp.last_run = {k: summary[k] for k in (
            "started_at", "finished_at", "duration_s", "outcome", "exit_code", "assets_attempted",
            "assets_succeeded", "assets_failed", "rows_stored", "rows_quarantined", "calls", "rate_limited", "retries",
        )} | {"failed": summary["failed"], "calls_by_endpoint_status": summary["calls_by_endpoint_status"],
              "universe": list(result.universe)}  # health judges freshness over these assets
        try:
            cp.save()
        except StorageError as exc:
            log.error("could not save the checkpoint: %s", exc)


CHECKPOINT_EVERY_S = 0.5
HOLD_S = 1.0  # longest that answers in hand wait to be stored together


_WINDOW_COLUMNS = ["_from", "_to", "_now"]
# market_chart's rules with each row's own window and time of asking; a duplicate sample is one
# repeated inside its own answer (windows may share their boundary sample).
_WINDOW_RULES = market_chart_rules(pl.col("_from"), pl.col("_to"), pl.col("_now"), per=["_from", "_to"])


class _Batch:
    """What one series fetched but did not store yet, in call order: raw samples still to be
    validated (tagged with their window), rows ready to merge, and the spans they cover."""

    def __init__(self, key: SeriesKey):
        self.key = key
        self._samples: list[pl.DataFrame] = []
        self._rows: list[pl.DataFrame] = []
        self._spans: list[Span] = []
        self._since: float | None = None

    def add_samples(self, samples: pl.DataFrame, span: Span | None) -> None:
        self._samples.append(samples)
        self._cover(span)

    def add(self, rows: pl.DataFrame, span: Span | None) -> None:
        self._rows.append(rows)
        self._cover(span)

    def _cover(self, span: Span | None) -> None:
        if self._since is None:
            self._since = time.monotonic()
        if span is not None:
            self._spans.append(span)

    def empty(self) -> bool:
        return self._since is None

    def age(self) -> float:
        return 0.0 if self._since is None else time.monotonic() - self._since

    def take(self) -> tuple[pl.DataFrame | None, list[pl.DataFrame], list[Span]]:
        samples = pl.concat(self._samples) if self._samples else None
        taken = samples, self._rows, self._spans
        self._samples, self._rows, self._spans, self._since = [], [], [], None
        return taken


def _disjoint(a: Span, b: Span) -> bool:
    return b.start > a.end or b.end < a.start


def _as_completed_interruptibly(futures) -> Iterator[Future]:
    """as_completed that wakes every 0.2 s. Python runs signal handlers (Ctrl-C, SIGTERM) only
    when the main thread executes code, and a main thread blocked in a plain wait may not get
    the signal until a whole asset has finished. Each future reports itself on a queue once:
    wait(FIRST_COMPLETED) in a loop re-arms every pending future per completion, which cost
    the main thread a fifth of an hourly run's GIL time at 300 assets."""
    finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
    futures = list(futures)
    for fut in futures:
        fut.add_done_callback(finished.put)
    for _ in futures:
        while True:
            try:
                yield finished.get(timeout=0.2)
                break
            except queue.Empty:
                continue


def _category(exc: ApiError) -> str:
    if isinstance(exc, HistoryLimit):
        return "history_limit"
    if isinstance(exc, RetryLater):
        return "rate_limited" if "rate limited" in str(exc) else "server_errors"
    if exc.status == 404:
        return "not_found"
    return "bad_answer"


def collect(settings: Settings, **kw) -> CollectResult:
    """Run one collect with `settings`; the same function the CLI calls."""
    return Collector(settings, **kw).run()


