"""`mts verify`: is the data folder what mts promises? And `--repair`: make it so.

Checks, file by file: readable; the dataset's exact columns and types; rows sorted by the key;
no duplicate keys; no row outside its `year=` partition; no stray file in the data tree. Series
by series: the gaps inside the stored span, and whether the checkpoint agrees with the files.

Repair sets unreadable, foreign and stray files aside (kept under _quarantine/corrupt_files),
rewrites files that are unsorted, duplicated or hold rows of another year, fetches exactly the
gaps through the collector (the fewest calls the plan allows; what the API no longer serves is
reported as lost) and rebuilds the checkpoint from the files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import orjson
import polars as pl

from . import schemas
from . import store as store_mod
from .checkpoint import VERSION, Checkpoint, Span, fingerprints
from .errors import CorruptFileError, ExitCode
from .intervals import INTERVAL_MS, OHLC_DAYS, iso_minutes
from .inventory import saved_last_run
from .layout import Layout, SeriesKey
from .planner import DAY, HOUR, OhlcCall, RangeCall, split_span, window_start
from .plans import Plan
from .settings import Settings
from .transforms import sort_dedupe

log = logging.getLogger(__name__)

# Problem kinds, in the order they are reported.
KINDS = (
    "unreadable",
    "foreign_schema",
    "stray_file",
    "unsorted",
    "duplicate_keys",
    "wrong_year",
    "gap",
    "checkpoint",
)
FILE_KINDS = frozenset({"unreadable", "foreign_schema", "stray_file"})
ROW_KINDS = frozenset({"unsorted", "duplicate_keys", "wrong_year"})
# CoinGecko answers ranges shorter than about an hour with empty arrays: ask at least this much.
MIN_RANGE_MS = 2 * HOUR


@dataclass(frozen=True)
class Problem:
    kind: str
    where: str  # a path relative to the data folder, or a series "dataset/interval/asset"
    detail: str
    series: SeriesKey | None = None
    start: int | None = None  # gaps: the missing [start, end) in ms
    end: int | None = None

    def as_dict(self) -> dict:
        d: dict = {"kind": self.kind, "where": self.where, "detail": self.detail}
        if self.start is not None and self.end is not None:
            d["from"], d["to"] = iso_minutes(self.start), iso_minutes(self.end)
        return d


@dataclass
class VerifyReport:
    data_dir: str
    files: int = 0
    series: int = 0
    problems: list[Problem] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # what --repair did
    lost: list[str] = field(default_factory=list)  # gaps the API no longer serves
    fetch: dict | None = None  # the run_summary of the gap fetch

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.PARTIAL if self.problems else ExitCode.OK

    def counts(self) -> dict[str, int]:
        return {k: n for k in KINDS if (n := sum(p.kind == k for p in self.problems))}

    def as_dict(self) -> dict:
        return {
            "data_dir": self.data_dir,
            "ok": not self.problems,
            "exit_code": int(self.exit_code),
            "files": self.files,
            "series": self.series,
            "counts": self.counts(),
            "problems": [p.as_dict() for p in self.problems],
            "repaired": self.repaired,
            "lost": self.lost,
            "fetch": self.fetch,
        }


# --- checking (read-only) -----------------------------------------------------------------------


def check_file(
    path: Path, dataset: str, fmt: str, year: int | None, rel: str
) -> tuple[pl.DataFrame | None, list[Problem]]:
    """The rows of one data file and what is wrong with it (unreadable or foreign: no rows)."""
    expected = schemas.SCHEMAS[dataset]
    found: dict[str, object]
    try:
        if fmt == "parquet":
            found = dict(pl.read_parquet_schema(path))
        else:
            found = {c: None for c in pl.read_csv(path, n_rows=0, infer_schema=False).columns}
    except (OSError, pl.exceptions.PolarsError, ValueError) as exc:
        return None, [Problem("unreadable", rel, _first_line(exc))]
    foreign = list(found) != list(expected) or (fmt == "parquet" and found != expected)
    if foreign:
        return None, [
            Problem(
                "foreign_schema",
                rel,
                f"columns {_describe(found)} are not the {dataset} schema {_describe(expected)}",
            )
        ]
    try:
        df = store_mod.read_file(path, dataset, fmt)
    except CorruptFileError as exc:
        return None, [Problem("unreadable", rel, _first_line(exc.__cause__ or exc))]
    return df, check_rows(df, dataset, year, rel)


def check_rows(df: pl.DataFrame, dataset: str, year: int | None, rel: str) -> list[Problem]:
    """Order, duplicate keys and year partition of one file's rows."""
    problems = []
    keys = schemas.KEYS[dataset]
    k = df.select(keys)
    if not k.equals(k.sort(keys, nulls_last=True)):
        problems.append(Problem("unsorted", rel, f"rows are not sorted by {', '.join(keys)}"))
    dups = k.height - k.unique().height
    if dups:
        problems.append(
            Problem("duplicate_keys", rel, f"{dups} rows repeat a key ({', '.join(keys)})")
        )
    if year is not None:
        outside = int((df["timestamp"].dt.year() != year).sum())
        if outside:
            problems.append(
                Problem("wrong_year", rel, f"{outside} rows belong to another year than {year}")
            )
    return problems


def find_gaps(ts_ms: list[int], step: int) -> list[tuple[int, int]]:
    """The missing [start, end) runs between sorted, distinct bucket starts `ts_ms`."""
    return [(a + step, b) for a, b in zip(ts_ms, ts_ms[1:], strict=False) if b - a > step]


def read_checkpoint(layout: Layout) -> tuple[dict[SeriesKey, Span] | None, list[str], str | None]:
    """What the saved checkpoint says, from one read: the spans it claims (None, and why, when
    they cannot be used as they are) and the data files it records (paths under the root; the
    entries a load would use, no others)."""
    path = layout.checkpoint_path
    if not path.exists():
        return None, [], "missing"
    try:
        doc = orjson.loads(path.read_bytes())
        files = sorted(fingerprints(doc.get("files")))
    except (ValueError, AttributeError, OSError) as exc:
        return None, [], f"unreadable ({_first_line(exc)})"
    try:
        if doc.get("version") != VERSION:
            return None, files, f"version {doc.get('version')!r} is not {VERSION}"
        return {
            SeriesKey(ds, iv, asset): Span(int(s["from"]), int(s["to"]))
            for ds, by_iv in doc.get("series", {}).items()
            for iv, by_asset in by_iv.items()
            for asset, s in by_asset.items()
        }, files, None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return None, files, f"unreadable ({_first_line(exc)})"


def check(layout: Layout, now: datetime, plan: Plan | None = None) -> VerifyReport:
    """Every check, nothing changed."""
    report = VerifyReport(str(layout.root))
    expected: set[Path] = set()
    spans, recorded_files, cp_error = read_checkpoint(layout)
    now_ms = _ms(now)
    oldest_ms = (
        window_start(now_ms, 100_000, plan) if plan is not None and plan.history_days else None
    )
    seen_series: set[SeriesKey] = set()

    for dataset in ("market_chart", "ohlc"):
        for key in layout.iter_series(dataset):
            report.series += 1
            seen_series.add(key)
            frames = []
            for year, path in layout.series_years(key):
                expected.add(path)
                report.files += 1
                df, found = check_file(path, dataset, layout.fmt, year, _rel(layout, path))
                report.problems += found
                if df is not None:
                    frames.append(df.select("timestamp"))
            ts = pl.concat(frames)["timestamp"] if frames else pl.Series([], dtype=schemas.TS)
            report.problems += _series_problems(key, ts, spans, oldest_ms)
    for year, path in layout.markets_years():
        expected.add(path)
        report.files += 1
        report.problems += check_file(path, "markets", layout.fmt, year, _rel(layout, path))[1]

    for rel in recorded_files:
        if not (layout.root / rel).exists():
            report.problems.append(
                Problem("checkpoint", rel, "recorded by the checkpoint but gone: the next collect fetches it again")
            )

    for path in layout.data_files():
        if path not in expected:
            report.problems.append(
                Problem(
                    "stray_file", _rel(layout, path), "not a data file of this layout and format"
                )
            )

    if spans is None:
        if cp_error != "missing" or seen_series:
            report.problems.append(
                Problem(
                    "checkpoint", _rel(layout, layout.checkpoint_path), f"checkpoint {cp_error}"
                )
            )
    else:
        for key in sorted(set(spans) - seen_series, key=str):
            report.problems.append(
                Problem(
                    "checkpoint",
                    str(key),
                    "the checkpoint records a span but no file is stored",
                    key,
                )
            )
    report.problems.sort(key=lambda p: (KINDS.index(p.kind), p.where, p.start or 0))
    return report


def _series_problems(
    key: SeriesKey, ts: pl.Series, spans: dict[SeriesKey, Span] | None, oldest_ms: int | None
) -> list[Problem]:
    out = []
    step = INTERVAL_MS.get(key.interval)
    ms = ts.dt.epoch("ms").unique().sort().to_list()
    if step:
        for start, end in find_gaps(ms, step):
            n = (end - start) // step
            detail = f"{n} {key.interval} bucket{'s' if n != 1 else ''} missing"
            if key.dataset == "market_chart" and oldest_ms is not None and start < oldest_ms:
                detail += " (older than the plan's history: cannot be fetched again)"
            out.append(Problem("gap", str(key), detail, key, start, end))
    if spans is not None and ms:
        span = spans.get(key)
        if span is None:
            out.append(
                Problem(
                    "checkpoint", str(key), f"{len(ms)} stored rows but no checkpoint entry", key
                )
            )
        elif step:
            outside = sum(1 for t in ms if t < span.start or t + step > span.end)
            if outside:
                out.append(
                    Problem(
                        "checkpoint",
                        str(key),
                        f"{outside} stored rows outside the checkpoint's span "
                        f"{iso_minutes(span.start)}..{iso_minutes(span.end)}",
                        key,
                    )
                )
    return out


# --- repair -------------------------------------------------------------------------------------


def plan_repair(
    gaps: list[Problem], now_ms: int, plan: Plan
) -> tuple[list[RangeCall | OhlcCall], list[str]]:
    """The fewest calls that fetch `gaps` on `plan`, and the parts it can no longer serve. Pure."""
    calls: list[RangeCall | OhlcCall] = []
    lost: list[str] = []
    by_series: dict[SeriesKey, list[tuple[int, int]]] = {}
    for g in gaps:
        if g.kind == "gap" and g.series is not None and g.start is not None and g.end is not None:
            by_series.setdefault(g.series, []).append((g.start, g.end))
    for key, runs in sorted(by_series.items(), key=lambda kv: str(kv[0])):
        runs.sort()
        if key.dataset == "market_chart":
            ranges, gone = _range_calls(key, runs, now_ms, plan)
            calls += ranges
        else:
            ohlc, gone = _ohlc_call(key, runs, now_ms)
            calls += ohlc
        lost += gone
    return calls, lost


def _range_calls(
    key: SeriesKey, runs: list[tuple[int, int]], now_ms: int, plan: Plan
) -> tuple[list[RangeCall], list[str]]:
    oldest = window_start(now_ms, 100_000, plan) if plan.history_days else None
    lost, wanted = [], []
    for start, end in runs:
        if oldest is not None and start < oldest:
            lost.append(
                f"{key}: {iso_minutes(start)} to {iso_minutes(min(end, oldest))} is older than the plan's "
                f"{plan.history_days}-day history and cannot be fetched again"
            )
            start = oldest
        if start < end:
            wanted.append((start, end))
    # Gaps close together share one call (a range of up to the plan's hourly maximum).
    max_ms = plan.max_hourly_span_days * DAY
    groups: list[list[int]] = []
    for start, end in wanted:
        if groups and end - groups[-1][0] <= max_ms:
            groups[-1][1] = end
        else:
            groups.append([start, end])
    calls = []
    for start, end in groups:
        if end - start < MIN_RANGE_MS:
            start = max(end - MIN_RANGE_MS, oldest if oldest is not None else end - MIN_RANGE_MS)
        calls += [
            RangeCall(key.asset_id, s, e)
            for s, e in split_span(start, end, plan.max_hourly_span_days)
        ]
    return calls, lost


def _ohlc_call(
    key: SeriesKey, runs: list[tuple[int, int]], now_ms: int
) -> tuple[list[OhlcCall], list[str]]:
    """/ohlc only takes `days`: one call with the smallest `days` of this candle length that
    reaches back to the oldest gap, or the largest there is."""
    allowed = sorted(d for d, iv in OHLC_DAYS.items() if iv == key.interval)
    if not allowed:
        return [], [f"{key}: no `days` value of /ohlc serves {key.interval} candles on this plan"]
    oldest_gap = runs[0][0]
    fitting = [d for d in allowed if now_ms - d * DAY <= oldest_gap]
    days = fitting[0] if fitting else allowed[-1]
    served_from = now_ms - days * DAY
    lost = [
        f"{key}: {key.interval} candles from {iso_minutes(s)} to {iso_minutes(min(e, served_from))} "
        f"are older than "
        f"{days} days and are no longer served"
        for s, e in runs
        if s < served_from
    ]
    if all(e <= served_from for _, e in runs):
        return [], lost
    return [OhlcCall(key.asset_id, key.interval, days, max(oldest_gap, served_from))], lost


def set_aside_files(layout: Layout, problems: list[Problem]) -> list[str]:
    done = []
    for p in problems:
        if p.kind in FILE_KINDS:
            target = store_mod.set_aside(layout, layout.root / p.where, p.detail)
            done.append(f"moved {p.where} aside to {_rel(layout, target)} ({p.kind})")
    return done


def rewrite_files(layout: Layout, problems: list[Problem]) -> list[str]:
    """Rewrite the series (or markets) whose files are unsorted, duplicated or hold rows of
    another year: every row in its year's file, sorted, one per key."""
    targets: dict[tuple[str, SeriesKey | None], None] = {}
    for p in problems:
        if p.kind in ROW_KINDS:
            targets[_owner(layout, layout.root / p.where)] = None
    done = []
    for dataset, key in targets:
        files = layout.series_years(key) if key else layout.markets_years()
        frames, span = [], None
        for _, path in files:
            frames.append(store_mod.read_file(path, dataset, layout.fmt))
            span = _union(span, _embedded_span(path))
        rows = pl.concat(frames)
        years = rows["timestamp"].dt.year()
        written = set()
        for year in years.unique().sort().to_list():
            part = sort_dedupe(rows.filter(years == year), dataset)
            path = layout.series_file(key, year) if key else layout.markets_file(year)
            written.add(path)
            if path.exists() and store_mod.read_file(path, dataset, layout.fmt).equals(part):
                continue
            store_mod.write_file(part, path, layout.fmt, dataset, span)
        for _, path in files:  # data first: a year file left empty goes only once the rows are home
            if path not in written:
                path.unlink()
        where = str(key) if key else "markets"
        done.append(
            f"rewrote {where}: {rows.height} rows -> {rows.height - _dropped(rows, dataset)} rows, "
            "sorted, one per key, each in its year"
        )
    return done


def repair(
    settings: Settings,
    now: datetime,
    *,
    clock: Callable[[], datetime] | None = None,
) -> VerifyReport:
    """Check, fix what can be fixed (holding the data lock), and check again."""
    from .collector import Collector  # HTTP-heavy; only a repair needs it

    layout = Layout(settings.data_dir, settings.fmt)
    kw: dict = {"clock": clock or (lambda: now)}
    collector = Collector(settings, **kw)
    collector.lock.acquire()
    try:
        before = check(layout, now, settings.plan)
        actions = set_aside_files(layout, before.problems)
        actions += rewrite_files(layout, before.problems)
        middle = check(layout, now, settings.plan)
        calls, lost = plan_repair(middle.problems, _ms(now), settings.plan)
        fetch = None
        if calls:
            result = collector.fetch_calls(calls)
            fetch = result.summary()
            actions.append(
                f"fetched {len(calls)} gap call{'s' if len(calls) != 1 else ''}: "
                f"{fetch['rows_stored']} rows stored, {fetch['assets_failed']} assets failed"
            )
        if before.problems:
            old, _, _ = read_checkpoint(layout)
            last_run = saved_last_run(layout)
            cp = Checkpoint.rebuild(layout)
            cp.last_run = last_run
            cp.save()
            actions.append(
                f"rebuilt the checkpoint from the files ({len(cp.spans())} series"
                f"{'' if old is not None else ', the old one was unusable'})"
            )
        after = check(layout, now, settings.plan)
    finally:
        collector.lock.release()
    asked = [(c.asset_id, c.start, c.end) for c in calls if isinstance(c, RangeCall)]
    for i, p in enumerate(after.problems):
        if (
            p.kind == "gap"
            and p.series
            and p.start is not None
            and p.end is not None
            and any(a == p.series.asset_id and s <= p.start and p.end <= e for a, s, e in asked)
        ):
            after.problems[i] = Problem(
                p.kind,
                p.where,
                p.detail + " (asked again: the API has no data there)",
                p.series,
                p.start,
                p.end,
            )
    after.repaired, after.lost, after.fetch = actions, lost, fetch
    return after


def verify(settings: Settings, now: datetime, *, repair_: bool = False, **kw) -> VerifyReport:
    """`mts verify`: the report of every check; with `repair_`, after repairing."""
    if repair_:
        return repair(settings, now, **kw)
    return check(Layout(settings.data_dir, settings.fmt), now, settings.plan)


def render_verify(report: dict, out=None) -> None:
    import sys

    out = out or sys.stdout
    for action in report["repaired"]:
        print(f"repaired: {action}", file=out)
    for lost in report["lost"]:
        print(f"lost: {lost}", file=out)
    for p in report["problems"]:
        span = f" {p['from']}..{p['to']}" if "from" in p else ""
        print(f"{p['kind']:<15} {p['where']}{span}: {p['detail']}", file=out)
    counts = ", ".join(f"{n} {k}" for k, n in report["counts"].items())
    verdict = "clean" if report["ok"] else f"{len(report['problems'])} problems ({counts})"
    print(
        f"verify: {report['files']} files, {report['series']} series "
        f"in {report['data_dir']}: {verdict}",
        file=out,
    )
    if not report["ok"] and not report["repaired"]:
        print("run `mts verify --repair` to fix what can be fixed", file=out)


# --- helpers ------------------------------------------------------------------------------------


def _owner(layout: Layout, path: Path) -> tuple[str, SeriesKey | None]:
    parts = path.relative_to(layout.root).parts
    if parts[0] == "markets":
        return "markets", None
    from .layout import decode_asset_id

    return parts[0], SeriesKey(
        parts[0], parts[1].split("=", 1)[1], decode_asset_id(parts[2].split("=", 1)[1])
    )


def _dropped(rows: pl.DataFrame, dataset: str) -> int:
    return rows.height - rows.select(schemas.KEYS[dataset]).unique().height


def _embedded_span(path: Path) -> tuple[int, int] | None:
    read_span = getattr(store_mod, "read_span", None)
    return read_span(path) if read_span is not None and path.suffix == ".parquet" else None


def _union(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    if a is None or b is None:
        return a or b
    return min(a[0], b[0]), max(a[1], b[1])


def _rel(layout: Layout, path: Path) -> str:
    return os.path.relpath(path, layout.root)


def _describe(schema: dict) -> str:
    return "{" + ", ".join(f"{c}: {t}" if t is not None else c for c, t in schema.items()) + "}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


