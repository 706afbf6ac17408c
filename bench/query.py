"""Query benchmark: market breadth (per day, the share of assets whose daily close is above its
50-day average) with DuckDB and with polars, over the Parquet folder vs the same data as CSV.

    .venv/bin/python bench/query.py            # 300 assets x 365 days
    .venv/bin/python bench/query.py --small    # CI smoke form

mts stores the same backfill twice (`--format parquet` and `--format csv`); each query runs
`--repeat` times per engine and format in this process and the best time is reported. Both
formats must give the same answer, which the script checks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import both_formats, common_args, ratio, workdir  # noqa: E402

WINDOW = 50
# "Above" means above by more than float noise: a flat price (a stablecoin) equals its average,
# and the engines' running sums differ in the last bits.
ABOVE = 1 + 1e-9

DUCKDB_SQL = """
WITH hourly AS (SELECT asset_id, timestamp, price FROM {source}),
daily AS (
    SELECT asset_id, date_trunc('day', timestamp) AS day, arg_max(price, timestamp) AS close
    FROM hourly GROUP BY ALL
),
ma AS (
    SELECT day, close,
        avg(close) OVER w AS sma, count(close) OVER w AS n
    FROM daily
    WINDOW w AS (PARTITION BY asset_id ORDER BY day ROWS BETWEEN {w1} PRECEDING AND CURRENT ROW)
)
SELECT day, avg(CASE WHEN close > sma * {above} THEN 1.0 ELSE 0.0 END) AS share, count(*) AS assets
FROM ma WHERE n = {w} GROUP BY day ORDER BY day
"""


def duckdb_source(data: Path, fmt: str) -> str:
    """The rows as a DuckDB table expression: the data folder's files, or one file ("one")."""
    if fmt == "one":
        return f"read_parquet('{data}')"
    glob = str(data / "market_chart" / "**" / f"*.{fmt}")
    if fmt == "parquet":
        return f"read_parquet('{glob}', hive_partitioning = true)"
    return (f"read_csv('{glob}', hive_partitioning = true, header = true, "
            "columns = {'timestamp': 'TIMESTAMPTZ', 'price': 'DOUBLE', 'market_cap': 'DOUBLE', "
            "'total_volume': 'DOUBLE', 'sampled_at': 'TIMESTAMPTZ'})")


def duckdb_breadth(data: Path, fmt: str):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    sql = DUCKDB_SQL.format(source=duckdb_source(data, fmt), w=WINDOW, w1=WINDOW - 1, above=ABOVE)
    rows = con.execute(sql).fetchall()
    con.close()
    return [(d.date() if hasattr(d, "date") else d, round(s, 12), n) for d, s, n in rows]


def duckdb_scan(data: Path, fmt: str):
    """The least any query over the folder costs: DuckDB reading one column of every file."""
    import duckdb

    glob = str(data / "market_chart" / "**" / f"*.{fmt}")
    reader = "read_parquet" if fmt == "parquet" else "read_csv"
    con = duckdb.connect()
    total = con.execute(f"SELECT sum(price) FROM {reader}('{glob}', hive_partitioning = true)").fetchone()
    con.close()
    return total


def polars_source(data: Path, fmt: str):
    """The columns the breadth query needs (asset_id, timestamp, price), as a lazy frame: from
    the data folder's files, or from one file ("one")."""
    import polars as pl

    if fmt == "one":
        return pl.scan_parquet(data).select("asset_id", "timestamp", "price")
    glob = str(data / "market_chart" / "**" / f"*.{fmt}")
    if fmt == "parquet":
        return pl.scan_parquet(glob, hive_partitioning=True).select("asset_id", "timestamp", "price")
    # CSV has no hive support in polars' reader: the asset comes from the file's path.
    return pl.scan_csv(glob, include_file_paths="path", schema_overrides={"timestamp": pl.String}).select(
        asset_id=pl.col("path").str.extract(r"asset_id=([^/]+)"),
        timestamp=pl.col("timestamp").str.to_datetime("%Y-%m-%dT%H:%M:%S%.3fZ", time_unit="ms", time_zone="UTC"),
        price=pl.col("price").cast(pl.Float64),
    )


def polars_scan(data: Path, fmt: str):
    """The least the polars query costs: reading its three columns, with next to no computing."""
    import polars as pl

    return polars_source(data, fmt).select(
        pl.col("asset_id").n_unique(), pl.col("timestamp").max(), pl.col("price").sum()
    ).collect()


def polars_breadth(data: Path, fmt: str):
    import polars as pl

    daily = (
        polars_source(data, fmt).group_by("asset_id", pl.col("timestamp").dt.truncate("1d").alias("day"))
        .agg(close=pl.col("price").sort_by("timestamp").last())
        .sort("asset_id", "day")
        .with_columns(
            sma=pl.col("close").rolling_mean(WINDOW).over("asset_id"),
        )
        .filter(pl.col("sma").is_not_null())
        .group_by("day")
        .agg(share=(pl.col("close") > pl.col("sma") * ABOVE).mean(), assets=pl.len())
        .sort("day")
    )
    df = daily.collect()
    return [(d.date(), round(s, 12), n) for d, s, n in df.iter_rows()]


def best_of(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(p, assets=300, days=365)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    if args.small:
        args.assets, args.days, args.repeat = 3, 60, 1
    work = workdir(args.workdir, "query")
    print(f"query: breadth over {args.assets} assets x {args.days} days (work dir {work})")
    folders = both_formats(work, args.assets, args.days)
    import duckdb  # noqa: F401 - imported before timing: the query, not the import, is measured
    import polars  # noqa: F401

    times, answers = {}, {}
    for engine, fn in (("duckdb", duckdb_breadth), ("polars", polars_breadth)):
        for fmt in ("parquet", "csv"):
            t, out = best_of(lambda fn=fn, fmt=fmt: fn(folders[fmt], fmt), args.repeat)
            times[engine, fmt], answers[engine, fmt] = t, out
            print(f"{engine:<7} {fmt:<8} {t * 1000:9.1f} ms  ({len(out)} days)")
    if len({tuple(a) for a in answers.values()}) != 1:
        for k, a in answers.items():
            print(k, a[:3], file=sys.stderr)
        raise SystemExit("the engines or formats disagree on the answer")
    for engine in ("duckdb", "polars"):
        print(f"{engine}: csv/parquet time {ratio(times[engine, 'csv'], times[engine, 'parquet'])}  (target >= 10x)")
    # The layout (one file per asset and year) sets a floor under any Parquet query: reading
    # the files at all. The CSV query over that floor bounds what any query could show.
    scan = {fmt: best_of(lambda fmt=fmt: duckdb_scan(folders[fmt], fmt), args.repeat)[0] for fmt in ("parquet", "csv")}
    print(f"duckdb bare scan (sum of one column): parquet {scan['parquet'] * 1000:.1f} ms,"
          f" csv {scan['csv'] * 1000:.1f} ms; csv query / parquet scan {ratio(times['duckdb', 'csv'], scan['parquet'])}"
          " (the most any Parquet query could gain here)")
    cols = {fmt: best_of(lambda fmt=fmt: polars_scan(folders[fmt], fmt), args.repeat)[0] for fmt in ("parquet", "csv")}
    print(f"polars reading the query's three columns: parquet {cols['parquet'] * 1000:.1f} ms,"
          f" csv {cols['csv'] * 1000:.1f} ms; csv query / parquet read {ratio(times['polars', 'csv'], cols['parquet'])}"
          " (the most any Parquet query could gain here)")
    # What the layout costs: the same rows as one Parquet file (not mts's layout, which SPEC
    # fixes at one file per asset and year). The gap between the two is the per-file cost; what
    # is left of the query over one file is the query's own computing, which no storage removes.
    one = work / "one.parquet"
    polars_source(folders["parquet"], "parquet").collect().write_parquet(one, compression="zstd")
    for engine, fn in (("duckdb", duckdb_breadth), ("polars", polars_breadth)):
        t, out = best_of(lambda fn=fn: fn(one, "one"), args.repeat)
        if out != answers[engine, "parquet"]:
            raise SystemExit(f"{engine} over one file disagrees with the folder")
        print(f"{engine:<7} one file {t * 1000:9.1f} ms  (all rows in one Parquet file, not mts's layout):"
              f" csv/one file {ratio(times[engine, 'csv'], t)}")
    if answers["duckdb", "parquet"]:
        d, s, n = answers["duckdb", "parquet"][-1]
        print(f"last day {d}: {s:.1%} of {n} assets above their {WINDOW}-day average")
    return 0


if __name__ == "__main__":
    sys.exit(main())
