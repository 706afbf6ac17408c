"""API economy: calls made / theoretical minimum for the four runs of issue 3, and what
`mts plan` predicted for each, against the emulator (Demo plan rules).

    python bench/api_economy.py            # 300 assets, 365 days (about 1,500 calls)
    python bench/api_economy.py --small    # 12 assets: the CI smoke form

(a) backfill 365 days of hourly market_chart   minimum: ceil(N/250) markets + 5 range per asset
(b) the next hourly run                          minimum: ceil(N/250) markets
(c) a backfill killed halfway, then resumed      minimum: markets + the windows still missing
(d) a run after 6 missed hourly runs             minimum: ceil(N/250) markets + 1 range per asset
"""

from __future__ import annotations

import argparse
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import NOW, EmulatorProcess, later, mts_cmd, run_measured, workdir  # noqa: E402

DAY_S = 86_400


def calls(emu: EmulatorProcess) -> dict[str, int]:
    log = emu.requests_log()
    out = {"total": len(log), "markets": 0, "range": 0, "ohlc": 0, "429": 0}
    for r in log:
        out[r["endpoint"]] = out.get(r["endpoint"], 0) + 1
        out["429"] += r["status"] == 429
    return out


def plan_then_collect(emu, args, env) -> tuple[dict, dict, object]:
    p = subprocess.run(mts_cmd("plan", *args, "--json"), env=env, capture_output=True, text=True, check=True)
    predicted = orjson.loads(p.stdout)["calls"]
    emu.reset_log()
    run = run_measured(mts_cmd("collect", *args), env)
    if run.rc != 0:
        raise SystemExit(f"collect exited {run.rc}: {run.stderr[-1500:]}")
    return predicted, calls(emu), run


def stored_spans(data: Path) -> dict[str, tuple[int, int]]:
    spans = {}
    for p in data.glob("market_chart/**/*.parquet"):
        ts = pl.read_parquet(p)["timestamp"].dt.epoch("s")
        asset = p.parent.parent.name.split("=", 1)[1]
        lo, hi = spans.get(asset, (ts.min(), ts.max()))
        spans[asset] = (min(lo, ts.min()), max(hi, ts.max()))
    return spans


def minimum_calls(emu: EmulatorProcess, n: int, data: Path, now) -> int:
    """The fewest calls a collect can make, computed without the planner: the markets pages,
    then per asset of today's top N ceil(missing / 90 days) range windows between its last
    stored hour and the snapshot's hour (the snapshot supplies that hour itself). An asset
    that entered the top N since the last run has nothing stored and needs the whole year."""
    stored = stored_spans(data)
    snap_hour = (int(now.timestamp()) // 3600) * 3600
    window_start = snap_hour - (365 * 24 - 1) * 3600
    need = math.ceil(n / 250)
    for asset in [r["asset_id"] for r in emu_markets(emu, n)]:
        last = stored[asset][1] if asset in stored else window_start - 3600
        missing = snap_hour - (last + 3600)
        need += math.ceil(missing / (90 * DAY_S)) if missing > 0 else 0
    return need


def row(label: str, got: dict, minimum: int, predicted: dict) -> bool:
    ok = got["total"] == minimum == predicted["total"]
    print(
        f"{label:<34} calls {got['total']:>5} (markets {got['markets']}, range {got['range']})"
        f"  minimum {minimum:>5}  ratio {got['total'] / minimum:.2f}  plan predicted {predicted['total']:>5}"
        f"  429s {got['429']}  {'OK' if ok else 'MISMATCH'}"
    )
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", type=int, default=300)
    ap.add_argument("--small", action="store_true", help="12 assets, for the CI smoke test")
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    n = 12 if a.small else a.assets
    pages = math.ceil(n / 250)
    args = ["--days", "365", "--top", str(n), "--datasets", "market_chart,markets"]
    work = workdir(a.workdir, "api_economy")
    all_ok = True
    with EmulatorProcess() as emu:
        data, logs = work / "data", work / "logs"
        env = emu.env(data, logs)
        minimum = minimum_calls(emu, n, data, NOW)
        predicted, got, run = plan_then_collect(emu, args, env)
        all_ok &= row(f"(a) backfill {n} x 365 d", got, minimum, predicted)
        print(f"    wall {run.wall:.1f} s, client cpu {run.cpu:.1f} s")

        emu.set_clock(later(1))
        minimum = minimum_calls(emu, n, data, later(1))
        predicted, got, _ = plan_then_collect(emu, args, emu.env(data, logs, later(1)))
        all_ok &= row("(b) next hourly run", got, minimum, predicted)

        emu.set_clock(later(8))  # runs at +2h .. +7h were missed
        minimum = minimum_calls(emu, n, data, later(8))
        entered = minimum - pages - n
        predicted, got, _ = plan_then_collect(emu, args, emu.env(data, logs, later(8)))
        all_ok &= row("(d) after 6 missed hourly runs", got, minimum, predicted)
        if entered:
            print(
                f"    the top {n} changed: {entered // 4} assets entered and need their first year (4 more calls each)"
            )

        # (c) a fresh backfill killed halfway, then resumed.
        emu.set_clock(NOW)
        data_c = work / "data_c"
        env_c = emu.env(data_c, work / "logs_c")
        emu.reset_log()
        proc = subprocess.Popen(
            mts_cmd("collect", *args), env=env_c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        half = (pages + 5 * n) // 2
        deadline = time.time() + 900
        while time.time() < deadline and len(emu.requests_log()) < half and proc.poll() is None:
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_calls = calls(emu)["total"]
        stored = stored_spans(data_c)
        minimum = minimum_calls(emu, n, data_c, NOW)
        predicted, got, _ = plan_then_collect(emu, args, env_c)
        repeated = 0
        for r in emu.requests_log():
            if r["endpoint"] == "range" and r["asset"] in stored:
                lo, hi = stored[r["asset"]]
                if not (float(r["params"]["to"]) <= lo or float(r["params"]["from"]) > hi):
                    repeated += 1
        all_ok &= row(f"(c) killed after {killed_calls} calls, resumed", got, minimum, predicted)
        print(
            f"    {len(stored)}/{n} assets had data at the kill; range calls repeated for stored data: {repeated}"
            f"; answers lost in flight at the kill: {killed_calls + got['total'] - pages - (pages + 5 * n)}"
        )
        all_ok &= repeated == 0
    print("all runs at the minimum" if all_ok else "SOME RUNS ABOVE THE MINIMUM")
    return 0 if all_ok else 1


def emu_markets(emu: EmulatorProcess, n: int) -> list[dict]:
    """The universe as the emulator ranks it (read through the API, not counted in any run)."""
    import requests

    out = []
    for page in range(1, math.ceil(n / 250) + 1):
        r = requests.get(
            f"{emu.base_url}/coins/markets", params={"vs_currency": "usd", "per_page": 250, "page": page}, timeout=30
        )
        out += [{"asset_id": item["id"]} for item in r.json()]
    return out[:n]


if __name__ == "__main__":
    sys.exit(main())
