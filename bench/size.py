"""Size benchmark: bytes per stored row, Parquet vs CSV, for the same backfill.

    .venv/bin/python bench/size.py            # 300 assets x 365 days of hourly market_chart
    .venv/bin/python bench/size.py --small    # CI smoke form
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import both_formats, common_args, count_rows, dir_bytes, workdir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(p, assets=300, days=365)
    args = p.parse_args(argv)
    if args.small:
        args.assets, args.days = 3, 10
    work = workdir(args.workdir, "size")
    print(f"size: {args.assets} assets x {args.days} days of hourly market_chart (work dir {work})")
    folders = both_formats(work, args.assets, args.days)
    rows = count_rows(folders["parquet"])
    sizes = {fmt: dir_bytes(folders[fmt] / "market_chart", f".{fmt}") for fmt in ("parquet", "csv")}
    for fmt, b in sizes.items():
        print(f"{fmt:<8} {b:>14,} bytes  {b / rows:7.2f} bytes/row  ({rows:,} rows)")
    print(f"parquet/csv: {sizes['parquet'] / sizes['csv']:.1%} (target <= 20%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
