"""Memory benchmark: peak RSS of a backfill at 30, 100 and 300 assets (must not grow with N).

    .venv/bin/python bench/memory.py                 # 30, 100, 300 assets x 365 days
    .venv/bin/python bench/memory.py --small         # CI smoke form

Peak RSS is the kernel's ru_maxrss of the mts process alone (os.wait4); the emulator runs in
another process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import EmulatorProcess, fresh_dir, mts_cmd, run_measured, workdir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="30,100,300", help="asset counts (default 30,100,300)")
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--small", action="store_true", help="tiny sizes, for the CI smoke test")
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.small:
        sizes, args.days = [1, 3], 10
    work = workdir(args.workdir, "memory")
    print(f"memory: peak RSS of a {args.days}-day backfill (work dir {work})")
    peaks = {}
    with EmulatorProcess() as emu:
        for n in sizes:
            run = fresh_dir(work / str(n))
            r = run_measured(
                mts_cmd("collect", "--days", str(args.days), "--top", str(n), "--datasets", "market_chart"),
                emu.env(run / "data", run / "logs"),
            )
            if r.rc != 0:
                raise SystemExit(f"mts exited {r.rc}: {r.stderr[-2000:]}")
            peaks[n] = r.rss_mb
            print(r.line(f"{n} assets"))
    lo, hi = sizes[0], sizes[-1]
    print(f"peak RSS {hi} assets / {lo} assets: {peaks[hi] / peaks[lo]:.2f}x"
          f" ({(peaks[hi] / peaks[lo] - 1) * 100:+.0f}%; target within +20%, and <= 250 MB at 300)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
