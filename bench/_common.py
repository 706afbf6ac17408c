"""Shared bench plumbing: an emulator in its own process, mts runs measured as child processes.

CPU and peak RSS come from the kernel's accounting of the child alone (os.wait4), so neither
the emulator (another process) nor this driver is counted. One catch: Linux carries the
spawning process's RSS high-water mark over exec into the child's figure, so a driver must keep
big data out of its own process (build it in a child) or the child's peak RSS reads as the
driver's. `Usage.line` flags a figure that may be the driver's.
"""

from __future__ import annotations

import argparse
import os
import resource
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
YEAR_START_MS = int(datetime(NOW.year, 1, 1, tzinfo=UTC).timestamp() * 1000)


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
    driver_rss_mb: float = 0.0  # this process's peak RSS when the child was spawned

    def line(self, label: str, rows: int | None = None) -> str:
        rate = f"  {rows / self.wall:>12,.0f} rows/s" if rows else ""
        return (
            f"{label:<28} cpu {self.cpu:7.2f} s (user {self.user:6.2f} sys {self.sys:5.2f})"
            f"  wall {self.wall:7.2f} s  peak RSS {self.rss_mb:6.1f} MB{rate}{self.rss_caveat}"
        )

    @property
    def rss_caveat(self) -> str:
        if self.rss_mb > self.driver_rss_mb * 1.05:
            return ""
        return f"  (peak RSS not the child's own: the driver's was {self.driver_rss_mb:.0f} MB)"


def run_measured(args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> Usage:
    """Run `args` as a child and return its own rusage (not the emulator's, not ours)."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    driver_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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
        driver_rss_mb=driver_rss,
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


# Fields of /coins/markets that stay put hour to hour for a coin (they still vary by coin).
STEADY = {"circulating_supply", "total_supply", "max_supply", "ath", "atl"}


def synthetic_markets(start_ms: int, hours: int, assets: int):
    """`hours` hourly snapshots of `assets` coins from `start_ms` on, sorted as mts keeps them. Prices and the
    fields derived from them get independent noise every hour (so they compress as badly as
    real prices do); supply and all-time extremes are fixed per coin, as they mostly are."""
    import polars as pl

    from mts import schemas

    i = pl.int_range(0, hours * assets, eager=True)
    hour, asset = i // assets, i % assets
    at = (hour * 3_600_000 + start_ms).cast(schemas.TS)
    names = asset.cast(pl.String)
    columns = {}
    for k, (name, dtype) in enumerate(schemas.MARKETS.items()):
        noise = (i.hash(k) % 1_000_000).cast(pl.Float64) / 1_000_000
        if name == "timestamp":
            columns[name] = at
        elif dtype == pl.String:
            columns[name] = name + "-" + names
        elif name in STEADY or dtype.is_integer():
            columns[name] = ((asset + 1) * 1_000 + k).cast(dtype)
        elif dtype == pl.Float64:
            columns[name] = (asset + 1).cast(pl.Float64) * (1 + noise)
        else:  # last_updated: a few minutes into the hour
            columns[name] = (at.dt.epoch("ms") + (noise * 300_000).cast(pl.Int64)).cast(dtype)
    return pl.DataFrame(columns).sort(schemas.KEYS["markets"])


def seed_markets(data: Path, assets: int) -> int:
    """Fill the markets year file of a collected folder with the hourly snapshots cron would
    have stored since January 1 (synthetic, see synthetic_markets), in a child process so this
    driver's RSS stays small. Returns the rows the file holds afterwards."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from _common import _seed_markets; "
        "print(_seed_markets(sys.argv[2], int(sys.argv[3])))"
    )
    proc = subprocess.run([PY, "-c", code, str(Path(__file__).parent), str(data), str(assets)],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"seeding the markets file failed: {proc.stderr[-2000:]}")
    return int(proc.stdout.split()[-1])


def _seed_markets(data: str, assets: int) -> int:
    import polars as pl

    from mts import schemas
    from mts.layout import Layout

    path = Layout(Path(data)).markets_file(NOW.year)
    stored = pl.read_parquet(path)
    first_ms = int(stored["timestamp"].min().timestamp() * 1000)
    hours = (first_ms - YEAR_START_MS) // 3_600_000
    history = synthetic_markets(YEAR_START_MS, hours, assets)
    year = pl.concat([history, stored.select(list(schemas.MARKETS))]).sort(schemas.KEYS["markets"])
    write_as_compacted(year, path)
    return year.height


def write_as_compacted(markets, path: Path) -> None:
    """Write a markets frame as mts's daily compaction leaves the year file (its codec, level
    and row group size), the state the hourly append starts from."""
    from mts import schemas, store

    markets.write_parquet(
        path, compression="zstd", compression_level=schemas.ZSTD_LEVEL["markets"], statistics=True,
        row_group_size=store._APPEND_ROW_GROUP,
    )
