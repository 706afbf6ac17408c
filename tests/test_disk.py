"""The disk under mts: a folder it cannot write, a full or failing disk in the middle of a write,
and corrupt or foreign files already in the data folder."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from mts.collector import Collector
from mts.emulator import Emulator
from mts.errors import ExitCode, StorageError, exit_code_for
from mts.layout import Layout, SeriesKey
from mts.settings import resolve_settings
from mts.store import read_file

from .conftest import FAST, NOW, ROOT, clean_env, run_cli

EARLIER = NOW - timedelta(hours=5)
TOP = 3
VICTIM = SeriesKey("market_chart", "1h", "ethereum")


@pytest.fixture(scope="module")
def emu():
    with Emulator(now=NOW) as e:
        yield e


@pytest.fixture
def api(emu):
    emu.clear_faults()
    emu.clock.set(NOW)
    yield emu
    emu.clock.set(NOW)


def env_for(emu, data: Path, at=NOW) -> dict[str, str]:
    return {
        "COINGECKO_BASE_URL": emu.base_url,
        "MTS_RATE_LIMIT": FAST,
        "MTS_DATA_DIR": str(data),
        "MTS_LOG_DIR": str(data.parent / f"{data.name}-logs"),
        "MTS_NOW": at.isoformat(),
    }


def collect(emu, data: Path, at=NOW):
    emu.clock.set(at)
    settings = resolve_settings(env_for(emu, data, at), days=3, top=TOP)
    return Collector(settings, clock=lambda: at).run()


def tree(data: Path) -> dict[str, pl.DataFrame]:
    out = {}
    for path in sorted(data.rglob("*.parquet")):
        rel = path.relative_to(data)
        if not any(p.startswith(("_", ".")) for p in rel.parts) and rel.parts[0] != "markets":
            out[str(rel)] = read_file(path, rel.parts[0], "parquet")
    return out


def temp_files(data: Path) -> list[Path]:
    return [p for p in data.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def incremental_reference(emu, tmp_path_factory):
    """A complete run 5 hours ago, then a complete run now."""
    data = tmp_path_factory.mktemp("ref") / "data"
    assert collect(emu, data, EARLIER).exit_code == ExitCode.OK
    earlier = tmp_path_factory.mktemp("earlier") / "data"
    shutil.copytree(data, earlier)
    assert collect(emu, data, NOW).exit_code == ExitCode.OK
    emu.clock.set(NOW)
    return earlier, tree(data)


# --- a folder mts cannot write ---------------------------------------------------------------------


def test_a_data_folder_that_cannot_be_created_exits_1_with_one_clear_line(api, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file where the data folder's parent should be")
    proc = run_cli(["collect", "--top", "2"], env_for(api, blocker / "data"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mts: cannot ") and "Not a directory" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def _can_mount_read_only(tmp_path: Path) -> bool:
    if not shutil.which("unshare"):
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    cmd = f"mount --bind {probe} {probe} && mount -o remount,ro,bind {probe} && ! touch {probe}/x 2>/dev/null"
    ok = subprocess.run(["unshare", "-rm", "sh", "-c", cmd], capture_output=True).returncode == 0
    probe.rmdir()
    return ok


def test_a_read_only_data_folder_exits_1_with_one_clear_line_and_nothing_changes(api, tmp_path):
    """A real read-only mount (chmod does not stop root, which CI runs as): a private mount
    namespace with the data folder bind-mounted read-only."""
    if not _can_mount_read_only(tmp_path):
        pytest.skip("no unprivileged mount namespace here (unshare -rm)")
    data = tmp_path / "data"
    assert collect(api, data, EARLIER).exit_code == ExitCode.OK
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    api.clock.set(NOW)
    cmd = (
        f'mount --bind "{data}" "{data}" && mount -o remount,ro,bind "{data}" && '
        f'exec "{sys.executable}" "{ROOT / "main.py"}" collect --days 3 --top {TOP}'
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", cmd],
        env=clean_env(env_for(api, data)),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mts: ") and "Read-only file system" in lines[0], proc.stderr
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before


# --- a full or failing disk in the middle of a write ---------------------------------------------------


def _fail_writes_to(monkeypatch, victim: Path, how: str) -> None:
    """Make the write of `victim` fail the way a full or broken disk fails it."""
    if how == "ENOSPC in the Parquet writer":
        real = pl.DataFrame.write_parquet

        def write_parquet(self, file, *a, **kw):
            if Path(file).parent == victim.parent:
                Path(file).write_bytes(b"PAR1" + b"\0" * 100)  # half a file, then the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(self, file, *a, **kw)

        monkeypatch.setattr(pl.DataFrame, "write_parquet", write_parquet)
    elif how == "EIO in fsync":
        real_fsync = os.fsync

        def fsync(fd):
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(victim.parent / ".")):
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
    else:  # EIO in os.replace
        real_replace = os.replace

        def replace(src, dst, *a, **kw):
            if Path(dst) == victim:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real_replace(src, dst, *a, **kw)

        monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("how", ["ENOSPC in the Parquet writer", "EIO in fsync", "EIO in os.replace"])
def test_a_failed_write_keeps_the_previous_file_exits_non_zero_and_the_next_run_completes(
    api, tmp_path, monkeypatch, incremental_reference, how
):
    earlier, reference = incremental_reference
    data = tmp_path / "data"
    shutil.copytree(earlier, data)
    victim = Layout(data).series_file(VICTIM, 2026)
    previous = victim.read_bytes()

    with monkeypatch.context() as m:
        _fail_writes_to(m, victim, how)
        with pytest.raises(StorageError) as failed:
            collect(api, data, NOW)
    assert exit_code_for(failed.value) == ExitCode.FAILURE
    assert str(victim) in str(failed.value) or str(victim.parent) in str(failed.value)
    assert victim.read_bytes() == previous  # the old file, whole
    assert temp_files(data) == []
    for rel, df in tree(data).items():  # every file readable, nothing torn
        assert df["timestamp"].is_unique().all(), rel

    result = collect(api, data, NOW)
    assert result.exit_code == ExitCode.OK, result.summary()
    got = tree(data)
    assert sorted(got) == sorted(reference)
    for rel, df in reference.items():
        assert got[rel].equals(df), rel


# --- corrupt or foreign files already in the folder ------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _wrong_columns(path: Path) -> None:
    pl.DataFrame({"time": [1, 2], "value": ["a", "b"]}).write_parquet(path)


def _not_parquet(path: Path) -> None:
    path.write_text("timestamp,price\n2026-11-20,1\n")


@pytest.mark.parametrize(
    "damage", [_truncate, _wrong_columns, _not_parquet], ids=["truncated", "wrong-columns", "not-parquet"]
)
def test_a_corrupt_or_foreign_file_is_moved_aside_kept_and_its_period_fetched_again(api, tmp_path, damage):
    data = tmp_path / "data"
    assert collect(api, data, NOW).exit_code == ExitCode.OK
    reference = tree(data)
    victim = Layout(data).series_file(VICTIM, 2026)
    damage(victim)
    damaged = victim.read_bytes()

    # The same run again (same instant): nothing is missing but what the damage took.
    proc = run_cli(["collect", "--days", "3", "--top", str(TOP)], env_for(api, data))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "moved" in proc.stderr and str(victim) in proc.stderr, proc.stderr

    kept = list((data / "_quarantine" / "corrupt_files").rglob("data.parquet.*"))
    assert [p.read_bytes() for p in kept] == [damaged]  # kept, byte for byte, outside the data tree
    got = tree(data)
    assert sorted(got) == sorted(reference)
    for rel, df in reference.items():
        assert got[rel].equals(df), rel  # the period was fetched again
    assert pl.scan_parquet(str(data / "market_chart" / "**" / "*.parquet"), hive_partitioning=True).collect().height > 0
