"""Incremental benchmark: one hourly cron run over a data folder that already holds a full year.

    .venv/bin/python bench/incremental.py            # 300 assets, 365 days already stored
    .venv/bin/python bench/incremental.py --small    # CI smoke form

A backfill fills the folder (not measured), the markets year file gets the snapshots an hourly
cron would have stored since January 1 (synthetic values), one hourly run primes the per-run series (the
30-minute candles of `--days 1`), then the emulator's clock moves one more hour and the measured
run is `mts collect --top N` exactly as cron would start it. The emulator runs in its own process
with no latency; its own CPU during the run is read from /proc and reported beside the client's,
so "wall excluding the emulator" is the wall time minus the emulator's busy time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    NOW,
    EmulatorProcess,
    common_args,
    later,
    mts_cmd,
    run_measured,
    seed_markets,
    workdir,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(p, assets=300, days=365)
    p.add_argument("--runs", type=int, default=3, help="measured hourly runs, one hour apart (default 3)")
    args = p.parse_args(argv)
    if args.small:
        args.assets, args.days, args.runs = 3, 10, 1
    work = workdir(args.workdir, "incremental")
    data, logs = work / "data", work / "logs"
    print(f"incremental: hourly run over {args.assets} assets holding {args.days} days (work dir {work})")
    with EmulatorProcess() as emu:
        backfill = mts_cmd("collect", "--days", str(args.days), "--top", str(args.assets))
        fill = run_measured(backfill, emu.env(data, logs))
        if fill.rc != 0:
            raise SystemExit(f"backfill exited {fill.rc}: {fill.stderr[-2000:]}")
        print(fill.line("backfill (not the target)"))
        # A folder cron has kept all year also holds an hourly markets snapshot since January
        # 1, and every hourly run rewrites that file: the backfill alone stores only one.
        rows = seed_markets(data, args.assets)
        print(f"markets year file seeded with the snapshots since {NOW.year}-01-01: {rows:,} rows")
        for h in range(1, args.runs + 2):
            now = later(h, NOW)
            emu.set_clock(now)
            emu.reset_log()
            cpu0 = emu.cpu_seconds()
            r = run_measured(mts_cmd("collect", "--top", str(args.assets)), emu.env(data, logs, now))
            emu_cpu = emu.cpu_seconds() - cpu0
            calls = len(emu.requests_log())
            if r.rc != 0:
                raise SystemExit(f"hourly run exited {r.rc}: {r.stderr[-2000:]}")
            label = "hourly run (priming)" if h == 1 else f"hourly run {h - 1}"
            print(r.line(label) + f"  calls {calls}  emulator cpu {emu_cpu:.2f} s"
                  f"  wall excl. emulator {r.wall - emu_cpu:.2f} s")
    print("target: wall excluding the emulator <= 3 s at 300 assets x 365 days")
    return 0


if __name__ == "__main__":
    sys.exit(main())
