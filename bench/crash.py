"""Kill collects with SIGKILL at random moments, then finish them, and compare with a run that
was never interrupted.

    python bench/crash.py --kills 200           # the long form
    python bench/crash.py --kills 30 --seed 1   # what CI runs inside pytest (tests/test_crash.py)
    python bench/crash.py --kills 60 --format csv --days 365 --top 3   # CSV, two-year series

Each episode starts from a data folder (empty, or holding a complete earlier run so that kills
land while existing files are being replaced), SIGKILLs one to four `python main.py collect`
processes at random moments (during discovery, fetches, file writes, between a data file and
the checkpoint), checks the folder after every kill, then runs the collect to completion and
compares the folder with the reference. After every kill:

  * every data file is readable with its dataset's schema and has no duplicate key;
  * the checkpoint, when present, parses, and every span it claims is on disk: each reference
    row whose bucket lies inside a claimed span is stored;
and after completion:
  * the same rows as the uninterrupted reference (every column, every value);
  * no temp file anywhere in the folder; exit code 0.

The emulator runs in this process with a small latency and the CLI runs as a subprocess, the
way cron runs it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mts.emulator import Emulator  # noqa: E402
from mts.errors import CorruptFileError  # noqa: E402
from mts.intervals import INTERVAL_MS  # noqa: E402
from mts.layout import Layout  # noqa: E402
from mts.schemas import KEYS  # noqa: E402
from mts.store import read_file  # noqa: E402

NOW = datetime(2026, 11, 20, 12, 34, 56, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=7)


@dataclass
class Report:
    kills: int = 0  # SIGKILLs that hit a live process
    episodes: int = 0
    kills_with_temp_left: int = 0  # the kill landed inside a file write
    kills_before_any_change: int = 0  # the kill landed before the run touched the folder
    checks_after_kill: int = 0
    rows_lost: int = 0
    rows_extra: int = 0
    duplicate_keys: int = 0
    unreadable_files: int = 0
    temp_files_left: int = 0
    checkpoint_overclaims: int = 0
    bad_exit_codes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.rows_lost
            or self.rows_extra
            or self.duplicate_keys
            or self.unreadable_files
            or self.temp_files_left
            or self.checkpoint_overclaims
            or self.bad_exit_codes
        )

    def line(self) -> str:
        return (
            f"{self.kills} kills in {self.episodes} episodes ({self.kills_with_temp_left} inside a file write,"
            f" {self.kills_before_any_change} before the folder changed), {self.checks_after_kill} post-kill checks:"
            f" rows lost {self.rows_lost}, extra rows {self.rows_extra}, duplicate keys {self.duplicate_keys},"
            f" unreadable files {self.unreadable_files}, temp files left {self.temp_files_left},"
            f" checkpoint over-claims {self.checkpoint_overclaims}, bad exit codes {self.bad_exit_codes}"
        )


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("COINGECKO_", "MTS_"))}
    return {**base, **extra}


def cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), *args],
        env=clean_env(env),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def data_files(root: Path, fmt: str = "parquet") -> list[Path]:
    return sorted(
        p for p in root.rglob(f"*.{fmt}") if not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)
    )


def temp_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(".tmp"))


def dataset_of(rel: Path) -> str:
    return rel.parts[0]


def read_tree(root: Path, report: Report | None = None, fmt: str = "parquet") -> dict[str, pl.DataFrame]:
    """Every data file, by path relative to root. Unreadable ones are counted in `report`."""
    out = {}
    for path in data_files(root, fmt):
        rel = path.relative_to(root)
        try:
            out[str(rel)] = read_file(path, dataset_of(rel), fmt)
        except CorruptFileError as exc:
            if report is None:
                raise
            report.unreadable_files += 1
            report.problems.append(f"unreadable: {exc}")
    return out


def check_tree(tree: dict[str, pl.DataFrame], report: Report) -> None:
    for rel, df in tree.items():
        key = [k for k in KEYS[dataset_of(Path(rel))] if k in df.columns]
        dups = df.height - df.select(key).unique().height
        if dups:
            report.duplicate_keys += dups
            report.problems.append(f"{dups} duplicate keys in {rel}")


def check_checkpoint(root: Path, reference: dict[str, pl.DataFrame], report: Report, fmt: str = "parquet") -> None:
    """Every span the checkpoint claims is on disk: the reference rows inside it are stored."""
    path = root / "_state" / "checkpoint.json"
    if not path.exists():
        return
    try:
        doc = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        report.unreadable_files += 1
        report.problems.append(f"checkpoint unreadable: {exc}")
        return
    layout = Layout(root, fmt)
    for dataset, by_interval in (doc.get("series") or {}).items():
        for interval, by_asset in by_interval.items():
            length = INTERVAL_MS[interval]
            for asset, span in by_asset.items():
                from mts.layout import SeriesKey

                series_dir = layout.series_dir(SeriesKey(dataset, interval, asset))
                ref = [df for rel, df in reference.items() if (root / rel).parent.parent == series_dir]
                disk = [
                    read_file(p, dataset, fmt)
                    for _, p in layout.series_years(SeriesKey(dataset, interval, asset))
                ]
                want = _stamps(ref, span["from"], span["to"] - length)
                have = _stamps(disk, span["from"], span["to"] - length)
                missing = want - have
                if missing:
                    report.checkpoint_overclaims += len(missing)
                    report.problems.append(
                        f"checkpoint claims {dataset}/{interval}/{asset} [{span['from']}, {span['to']})"
                        f" but {len(missing)} of its rows are not on disk"
                    )


def _stamps(frames: list[pl.DataFrame], lo: int, hi: int) -> set[int]:
    out: set[int] = set()
    for df in frames:
        ms = df["timestamp"].dt.epoch("ms")
        out.update(ms.filter((ms >= lo) & (ms <= hi)).to_list())
    return out


def compare(final: dict[str, pl.DataFrame], reference: dict[str, pl.DataFrame], report: Report, label: str) -> None:
    for rel in sorted(set(final) | set(reference)):
        got, want = final.get(rel), reference.get(rel)
        if got is None:
            assert want is not None
            report.rows_lost += want.height
            report.problems.append(f"{label}: {rel} missing ({want.height} rows)")
            continue
        if want is None:
            report.rows_extra += got.height
            report.problems.append(f"{label}: {rel} not in the reference ({got.height} rows)")
            continue
        if got.equals(want):
            continue
        key = [k for k in KEYS[dataset_of(Path(rel))] if k in want.columns]
        lost = want.join(got, on=key, how="anti").height
        extra = got.join(want, on=key, how="anti").height
        report.rows_lost += lost
        report.rows_extra += extra
        report.problems.append(f"{label}: {rel} differs ({lost} rows lost, {extra} extra, or values changed)")
        if not lost and not extra:
            report.rows_lost += 1  # same keys, different values: count it as a loss


class Campaign:
    """An emulator, the references, and a scratch folder; `run(kills)` does the killing."""

    def __init__(
        self,
        workdir: Path,
        *,
        top: int = 4,
        days: int = 3,
        latency_s: float = 0.004,
        rate_per_min: int = 3000,
        seed: int = 0,
        fmt: str = "parquet",
    ):
        self.workdir = workdir
        self.fmt = fmt
        self.top, self.days = top, days
        self.rate = rate_per_min
        self.rng = random.Random(seed)
        self.emu = Emulator(now=EARLIER, latency_s=latency_s)

    def __enter__(self) -> Campaign:
        self.emu.start()
        # A SIGKILLed client resets its connection; socketserver would print a traceback each time.
        server = getattr(self.emu, "_server", None)
        if server is not None:
            server.handle_error = lambda *a: None
        return self

    def __exit__(self, *exc) -> None:
        self.emu.stop()

    def env(self, data: Path, now: datetime) -> dict[str, str]:
        return {
            "COINGECKO_BASE_URL": self.emu.base_url,
            "MTS_RATE_LIMIT": str(self.rate),
            "MTS_DATA_DIR": str(data),
            "MTS_LOG_DIR": str(data.parent / f"{data.name}-logs"),
            "MTS_NOW": now.isoformat(),
        }

    def args(self) -> list[str]:
        return ["collect", "--days", str(self.days), "--top", str(self.top), "--format", self.fmt]

    def complete(self, data: Path, now: datetime) -> subprocess.CompletedProcess:
        self.emu.clock.set(now)
        proc = cli(self.args(), self.env(data, now))
        out, err = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def prepare(self) -> None:
        """Reference folders, and how long an uninterrupted run takes (to aim the kills)."""
        self.earlier = self.workdir / "earlier"  # a complete run 7 hours ago: the incremental start
        self.ref_fresh = self.workdir / "ref-fresh"
        self.ref_incr = self.workdir / "ref-incr"
        done = self.complete(self.earlier, EARLIER)
        assert done.returncode == 0, done.stdout + done.stderr
        shutil.copytree(self.earlier, self.ref_incr)
        self.emu.clock.set(NOW)
        running = cli(self.args(), self.env(self.ref_fresh, NOW))
        first = self.wait_first_request(running)
        out, err = running.communicate(timeout=120)
        self.work_s = time.monotonic() - first
        assert running.returncode == 0, out + err
        done = self.complete(self.ref_incr, NOW)
        assert done.returncode == 0, done.stdout + done.stderr
        self.references = {
            "fresh": read_tree(self.ref_fresh, fmt=self.fmt),
            "incremental": read_tree(self.ref_incr, fmt=self.fmt),
        }

    def wait_first_request(self, proc: subprocess.Popen) -> float:
        """Block until the emulator sees a request (or the process ends); return that moment."""
        seen = self.emu.count()
        while self.emu.count() == seen and proc.poll() is None:
            time.sleep(0.002)
        return time.monotonic()

    def kill_once(self, data: Path, reference: dict[str, pl.DataFrame], report: Report) -> bool:
        """Start a collect, SIGKILL it at a random moment, check the folder. False when the run
        finished before the kill (no kill happened)."""
        before = {p: p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file()} if data.exists() else {}
        proc = cli(self.args(), self.env(data, NOW))
        # Aim inside the run's work (after interpreter start-up): from its first API call to
        # a little past the reference run's end.
        self.wait_first_request(proc)
        time.sleep(self.rng.uniform(0.0, 1.1) * self.work_s)
        if proc.poll() is not None:
            proc.communicate()
            if proc.returncode != 0:
                report.bad_exit_codes += 1
                report.problems.append(f"an unkilled run exited {proc.returncode}")
            return False
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        report.kills += 1
        if temp_files(data):
            report.kills_with_temp_left += 1
        after = {p: p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file()} if data.exists() else {}
        if after == before:
            report.kills_before_any_change += 1
        tree = read_tree(data, report, self.fmt)
        check_tree(tree, report)
        check_checkpoint(data, reference, report, self.fmt)
        report.checks_after_kill += 1
        return True

    def episode(self, report: Report, kills_left: int) -> None:
        mode = self.rng.choice(["fresh", "incremental"])
        data = self.workdir / f"ep{report.episodes}"
        if mode == "incremental":
            shutil.copytree(self.earlier, data)
        self.emu.clock.set(NOW)
        reference = self.references[mode]
        want = min(kills_left, self.rng.randint(2, 5))
        finished = False  # a run outlived its kill moment: that run was the completion
        for _ in range(want):
            if not self.kill_once(data, reference, report):
                finished = True
                break
        if not finished:
            proc = self.complete(data, NOW)
            if proc.returncode != 0:
                report.bad_exit_codes += 1
                report.problems.append(
                    f"episode {report.episodes}: completion exited {proc.returncode}: {proc.stderr[-300:]}"
                )
        left = temp_files(data)
        report.temp_files_left += len(left)
        report.problems += [f"temp file left: {p}" for p in left]
        final = read_tree(data, report, self.fmt)
        check_tree(final, report)
        compare(final, reference, report, f"episode {report.episodes} ({mode})")
        report.episodes += 1
        shutil.rmtree(data, ignore_errors=True)

    def run(self, kills: int) -> Report:
        report = Report()
        self.prepare()
        guard = 0
        while report.kills < kills and guard < kills * 3:
            guard += 1
            self.episode(report, kills - report.kills)
        return report


def run_campaign(kills: int, seed: int = 0, workdir: Path | None = None, **kw) -> Report:
    with tempfile.TemporaryDirectory(prefix="mts-crash-", dir=workdir) as tmp:
        with Campaign(Path(tmp), seed=seed, **kw) as campaign:
            return campaign.run(kills)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=200)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--top", type=int, default=4)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    t0 = time.monotonic()
    report = run_campaign(args.kills, seed=seed, top=args.top, days=args.days, fmt=args.format)
    took = time.monotonic() - t0
    print(f"seed {seed}, top {args.top}, days {args.days}, {args.format}: {report.line()} ({took:.0f} s)")
    for problem in report.problems[:30]:
        print("  " + problem)
    print("PASS" if report.ok else "FAIL")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
