"""Rate saturation: with the emulator limiting to 500 calls/min and answering after 250 ms,
mts should sustain at least 95% of the limit with zero 429s; a sequential client cannot
exceed 60/0.25 = 240 calls/min. Both measured in the same run.

    python bench/rate_saturation.py           # 600+ calls for mts (about 75 s), 120 sequential
    python bench/rate_saturation.py --small   # CI smoke form: limit 120/min, 50 ms, ~40 calls
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import NOW, PY, ROOT, mts_cmd, run_measured, workdir  # noqa: E402


class LimitedEmulator:
    def __init__(self, limit: int, latency: float):
        self.args = [
            PY,
            "-m",
            "mts.emulator",
            "--port",
            "0",
            "--now",
            NOW.isoformat(),
            "--rate-limit",
            str(limit),
            "--latency",
            str(latency),
        ]

    def __enter__(self):
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline()
        self.base_url = first.split(" on ", 1)[1].split()[0]
        self.admin = self.base_url.rsplit("/api/v3", 1)[0] + "/_emulator"
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(10)

    def log(self) -> list[dict]:
        return requests.get(self.admin + "/requests", timeout=60).json()

    def reset(self) -> None:
        requests.post(self.admin + "/reset", timeout=10).raise_for_status()


def sustained_rate(log: list[dict]) -> float:
    """Calls per minute between the first and the last arrival."""
    times = sorted(r["mono"] for r in log)
    return (len(times) - 1) / (times[-1] - times[0]) * 60 if len(times) > 1 else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    limit, latency, assets, days, seq_calls = (240, 0.25, 19, 120, 10) if a.small else (500, 0.25, 300, 120, 120)
    work = workdir(a.workdir, "rate_saturation")
    with LimitedEmulator(limit, latency) as emu:
        env = {
            "COINGECKO_BASE_URL": emu.base_url,
            "MTS_RATE_LIMIT": str(limit),
            "MTS_DATA_DIR": str(work / "data"),
            "MTS_LOG_DIR": str(work / "logs"),
            "MTS_NOW": NOW.isoformat(),
            "PATH": "/usr/bin:/bin",
        }
        # --days 120 needs two 90-day windows per asset: 2 range calls per asset.
        run = run_measured(
            mts_cmd("collect", "--days", str(days), "--top", str(assets), "--datasets", "market_chart"), env
        )
        log = emu.log()
        mts_rate = sustained_rate(log)
        mts_429 = sum(r["status"] == 429 for r in log)

        emu.reset()
        time.sleep(60 if not a.small else 1)  # let the emulator's sliding minute empty
        session = requests.Session()
        ids = [r["asset"] for r in log if r["endpoint"] == "range"]
        frm, to = int(NOW.timestamp()) - 80 * 86400, int(NOW.timestamp()) - 10 * 86400
        for asset in ids[:seq_calls]:
            session.get(
                f"{emu.base_url}/coins/{asset}/market_chart/range",
                params={"vs_currency": "usd", "from": frm, "to": to},
                timeout=30,
            )
        seq_log = emu.log()
        seq_rate = sustained_rate(seq_log)

    print(f"emulator: limit {limit}/min, latency {latency * 1000:.0f} ms")
    print(
        f"mts       {len(log):>4} calls  {mts_rate:6.1f} calls/min = {mts_rate / limit:6.1%} of the limit"
        f"  429s {mts_429}  exit {run.rc}  wall {run.wall:.1f} s"
    )
    print(f"sequential{len(seq_log):>4} calls  {seq_rate:6.1f} calls/min = {seq_rate / limit:6.1%} of the limit")
    print(f"mts / sequential: {mts_rate / seq_rate:.2f}x")
    # The smoke form is too short for the 95% bar: its one serial discovery call weighs on ~40.
    ok = run.rc == 0 and mts_429 == 0 and (a.small or mts_rate >= 0.95 * limit)
    print("OK" if ok else "BELOW TARGET (>= 95% of the limit and no 429 wanted)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
