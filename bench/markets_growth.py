"""Markets growth benchmark: what adding one hourly snapshot costs as the markets year file fills.

SPEC keeps one markets file per year and every hourly run adds the universe's snapshot to it
(300 rows an hour at 300 assets, 2.6 M rows by December). For each fill level this builds the
year file, then merges one newer snapshot in a fresh process three ways, side by side: as
`Store.merge` does it every hour (one more row group, the stored bytes copied), as it does once
a day's worth of small row groups piled up (a compacting rewrite streamed by polars), and the
in-memory read-sort-rewrite of the ordinary merge. CPU, wall and peak RSS are the merging
process's own.

    .venv/bin/python bench/markets_growth.py            # 300 assets; 1, 6 and 12 months
    .venv/bin/python bench/markets_growth.py --small    # CI smoke form
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PY,
    YEAR_START_MS,
    fresh_dir,
    ratio,
    run_measured,
    synthetic_markets,
    workdir,
    write_as_compacted,
)

from mts.layout import Layout  # noqa: E402  (imports neither polars nor pyarrow)

# Runs in the child: merge the snapshot in `new` into the data folder, as an hourly run does.
MERGE = """
import sys
from pathlib import Path
import polars as pl
from mts import store
from mts.layout import Layout
data, new, mode = sys.argv[1:4]
if mode == "compact":
    store._small_row_groups = lambda path: store._MAX_SMALL_ROW_GROUPS
elif mode == "rewrite":
    store._append_if_newer = lambda path, rows: 0  # the in-memory read-sort-rewrite
result = store.Store(Layout(Path(data))).merge(None, "markets", pl.read_parquet(new))
assert result.rows_added > 0, result
"""


MODES = {"append": "hourly: one more row group", "compact": "daily: compacting rewrite",
         "rewrite": "in-memory rewrite (before)"}


def build(work: Path, hours: int, assets: int) -> None:
    """Child role: the year file of `hours` snapshots and the next hour's snapshot."""
    import polars as pl

    stored = synthetic_markets(YEAR_START_MS, hours + 1, assets)
    last = stored["timestamp"].max()
    stored.filter(pl.col("timestamp") == last).write_parquet(work / "snapshot.parquet")
    # Every mode starts from these bytes.
    write_as_compacted(stored.filter(pl.col("timestamp") < last), work / "seed.parquet")


def check(path: Path) -> None:
    """Child role: print the file's rows and whether its timestamps are in order."""
    import polars as pl

    n, in_order = pl.scan_parquet(path).select(pl.len(), pl.col("timestamp").is_sorted()).collect().row(0)
    print(n, in_order)


def parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq  # footer only: the driver must stay small (see _common)

    return pq.ParquetFile(path).metadata.num_rows


def measure(work: Path, hours: int, assets: int) -> dict[str, object]:
    """Build a year file of `hours` snapshots, then merge one more in each mode. Everything
    that holds the data runs in a child, so the driver's RSS stays below what it measures."""
    built = run_measured([PY, __file__, "_build", str(work), str(hours), str(assets)])
    if built.rc != 0:
        raise SystemExit(f"build failed: {built.stderr[-2000:]}")
    seed, new = work / "seed.parquet", work / "snapshot.parquet"
    expected = parquet_rows(seed) + parquet_rows(new)
    figures: dict[str, object] = {"rows": parquet_rows(seed), "mb": seed.stat().st_size / 1e6}
    for mode in MODES:
        data = fresh_dir(work / mode)
        target = Layout(data).markets_file(2026)
        target.parent.mkdir(parents=True)
        shutil.copyfile(seed, target)
        usage = run_measured([PY, "-c", MERGE, str(data), str(new), mode])
        if usage.rc != 0:
            raise SystemExit(f"merge ({mode}) exited {usage.rc}: {usage.stderr[-2000:]}")
        got = subprocess.run([PY, __file__, "_check", str(target)], capture_output=True, text=True, check=True)
        if got.stdout.split() != [str(expected), "True"]:
            raise SystemExit(f"merge ({mode}) left {got.stdout.strip()} (rows, sorted); expected {expected} rows")
        figures[mode] = usage
    return figures


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_build":  # child roles
        build(Path(argv[1]), int(argv[2]), int(argv[3]))
        return 0
    if argv and argv[0] == "_check":
        check(Path(argv[1]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--assets", type=int, default=300, help="universe size (default 300)")
    p.add_argument("--months", type=int, nargs="+", default=[1, 6, 12], help="fill levels (default 1 6 12)")
    p.add_argument("--small", action="store_true", help="tiny sizes, for the CI smoke test")
    p.add_argument("--workdir", default=None, help="scratch folder (default $TMPDIR/mts-bench)")
    args = p.parse_args(argv)
    if args.small:
        args.assets, args.months = 30, [1]
    work = workdir(args.workdir, "markets_growth")
    print(f"markets_growth: one hourly snapshot of {args.assets} assets merged into the markets year file")
    for months in args.months:
        hours = min(months * 730, 8759)  # the new snapshot still in the same year
        f = measure(work, hours, args.assets)
        print(f"after {months:>2} months ({f['rows']:,} rows, {f['mb']:.1f} MB file):")
        for mode, label in MODES.items():
            print("  " + f[mode].line(label))
        append, compact, rewrite = f["append"], f["compact"], f["rewrite"]
        print(f"  ratio rewrite/append  wall {ratio(rewrite.wall, append.wall)}"
              f"  peak RSS {ratio(rewrite.rss_mb, append.rss_mb)};"
              f"  rewrite/compact  wall {ratio(rewrite.wall, compact.wall)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
