"""Shared bench plumbing: an emulator in its own process, mts runs measured as child processes.

CPU and peak RSS come from the kernel's accounting of the child alone (os.wait4), so neither
the emulator (another process) nor this driver is counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
# A fixed instant mid-hour, as in the tests: runs are reproducible and never race the hour.
NOW = datetime(2026, 11, 20, 12, 34, 56, tzinfo=UTC)
FAST = "100000000"  # calls/min: no client-side pacing


@dataclass
class Usage:
    """What one child process cost: CPU seconds (user + system), wall seconds, peak RSS (MB)."""

    cpu: float
    user: float
    sys: float
    wall: float
    rss_mb: float
    rc: int
    stdout: str = ""
    stderr: str = ""

    def line(self, label: str, rows: int | None = None) -> str:
        rate = f"  {rows / self.wall:>12,.0f} rows/s" if rows else ""
        return (
            f"{label:<28} cpu {self.cpu:7.2f} s (user {self.user:6.2f} sys {self.sys:5.2f})"
            f"  wall {self.wall:7.2f} s  peak RSS {self.rss_mb:6.1f} MB{rate}"
        )


def run_measured(args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> Usage:
    """Run `args` as a child and return its own rusage (not the emulator's, not ours)."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=err)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    return Usage(
        cpu=ru.ru_utime + ru.ru_stime, user=ru.ru_utime, sys=ru.ru_stime, wall=wall,
        rss_mb=ru.ru_maxrss / 1024, rc=proc.returncode,
        stdout=out.read().decode(errors="replace"), stderr=err.read().decode(errors="replace"),
    )


class EmulatorProcess:
    """`python -m mts.emulator` in its own process (its CPU is never counted as the client's)."""

    def __init__(self, now: datetime = NOW):
        self.now = now
        self.proc: subprocess.Popen | None = None
        self.base_url = ""

    def __enter__(self) -> EmulatorProcess:
        self.proc = subprocess.Popen(
            [PY, "-m", "mts.emulator", "--port", "0", "--now", self.now.isoformat()],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if "http://" not in first:
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"emulator did not start: {first!r} {err}")
        self.base_url = first.split(" on ", 1)[1].split()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def admin(self) -> str:
        return self.base_url.rsplit("/api/v3", 1)[0] + "/_emulator"

    def cpu_seconds(self) -> float:
        """The emulator's own CPU so far (user + system), from /proc."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def set_clock(self, now: datetime) -> None:
        requests.post(self.admin + "/clock", data=orjson.dumps({"now": now.isoformat()}), timeout=10).raise_for_status()
        self.now = now

    def requests_log(self) -> list[dict]:
        r = requests.get(self.admin + "/requests", timeout=60)
        r.raise_for_status()
        return r.json()

    def reset_log(self) -> None:
        requests.post(self.admin + "/reset", timeout=10).raise_for_status()

    def env(self, data_dir: Path, log_dir: Path, now: datetime | None = None) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("COINGECKO_", "MTS_"))}
        return {
            **base,
            "COINGECKO_BASE_URL": self.base_url,
            "MTS_RATE_LIMIT": FAST,
            "MTS_DATA_DIR": str(data_dir),
            "MTS_LOG_DIR": str(log_dir),
            "MTS_NOW": (now or self.now).isoformat(),
        }


def mts_cmd(*args: str) -> list[str]:
    return [PY, str(ROOT / "main.py"), *args]


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def workdir(arg: str | None, name: str) -> Path:
    base = Path(arg) if arg else Path(tempfile.gettempdir()) / "mts-bench"
    return fresh_dir(base / name)


def common_args(p: argparse.ArgumentParser, assets: int, days: int) -> None:
    p.add_argument("--assets", type=int, default=assets, help=f"universe size (default {assets})")
    p.add_argument("--days", type=int, default=days, help=f"history to backfill (default {days})")
    p.add_argument("--small", action="store_true", help="tiny sizes, for the CI smoke test")
    p.add_argument("--workdir", default=None, help="scratch folder (default $TMPDIR/mts-bench)")


def dir_bytes(root: Path, suffix: str) -> int:
    files = (
        p for p in root.rglob(f"*{suffix}") if not any(x.startswith(("_", ".")) for x in p.relative_to(root).parts)
    )
    return sum(p.stat().st_size for p in files)


def later(hours: int, now: datetime = NOW) -> datetime:
    return now + timedelta(hours=hours)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def both_formats(work: Path, assets: int, days: int) -> dict[str, Path]:
    """The same backfill stored twice by mts: `--format parquet` and `--format csv`.
    Returns {fmt: data folder}."""
    out = {}
    with EmulatorProcess() as emu:
        for fmt in ("parquet", "csv"):
            data = work / fmt / "data"
            r = run_measured(
                mts_cmd("collect", "--days", str(days), "--top", str(assets), "--datasets", "market_chart",
                        "--format", fmt),
                emu.env(data, work / fmt / "logs"),
            )
            if r.rc != 0:
                raise SystemExit(f"mts --format {fmt} exited {r.rc}: {r.stderr[-2000:]}")
            print(r.line(f"backfill --format {fmt}"))
            out[fmt] = data
    return out


def count_rows(data: Path) -> int:
    """Rows of market_chart in a Parquet data folder."""
    import polars as pl

    glob = str(data / "market_chart" / "**" / "*.parquet")
    return pl.scan_parquet(glob, hive_partitioning=True).select(pl.len()).collect().item()
