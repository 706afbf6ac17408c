"""Cron overlap: one collect per data folder at a time; the other exits 75 at once, touching
nothing; a lock left by a killed run blocks nobody."""

from __future__ import annotations

import signal
import time

from filelock import FileLock, Timeout

from mts.emulator import Emulator
from mts.layout import Layout

from .conftest import NOW, popen_cli, run_cli

ARGS = ["collect", "--days", "3", "--top", "6"]


def lock_is_held(path) -> bool:
    if not path.exists():
        return False
    probe = FileLock(str(path), timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return True
    probe.release()
    return False


def start_slow_run_holding_the_lock(env, layout):
    proc = popen_cli(ARGS, {**env, "MTS_RATE_LIMIT": "120"})  # 0.5 s between calls: seconds of work
    while not lock_is_held(layout.lock_path) and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()
    return proc


def test_a_second_collect_exits_75_at_once_and_touches_nothing(emulator, env, tmp_path):
    # The folder is in use from a previous, smaller run: the next one has work to do.
    assert run_cli([*ARGS[:-1], "2"], env).returncode == 0
    layout = Layout(tmp_path / "data")
    first = start_slow_run_holding_the_lock(env, layout)
    with Emulator(now=NOW) as other_api:  # the second run's calls would land here
        before = {p: p.stat().st_mtime_ns for p in layout.root.rglob("*") if p.is_file()}
        second = run_cli(
            ARGS, {**env, "COINGECKO_BASE_URL": other_api.base_url, "MTS_LOG_DIR": str(tmp_path / "logs2")}
        )
        assert second.returncode == 75, second.stdout + second.stderr
        assert "another mts run holds" in second.stderr and len(second.stderr.strip().splitlines()) == 1
        assert other_api.count() == 0  # not one API call
        still = {p: p.stat().st_mtime_ns for p in before if p.exists()}
        assert lock_is_held(layout.lock_path)
    first.send_signal(signal.SIGTERM)  # no need to wait for the slow run: stop it gracefully
    first.communicate(timeout=60)
    assert first.returncode in (0, 130)
    # Files the second run could have touched were touched by the first only (it holds the lock).
    assert set(still) == set(before)


def test_two_collects_started_together_on_a_fresh_folder_one_works_one_exits_75(emulator, env, tmp_path):
    slow = {**env, "MTS_RATE_LIMIT": "240"}
    a, b = popen_cli(ARGS, slow), popen_cli(ARGS, slow)
    outs = [p.communicate(timeout=120) for p in (a, b)]
    codes = sorted([a.returncode, b.returncode])
    assert codes == [0, 75], outs
    assert (tmp_path / "data" / "_state" / "checkpoint.json").exists()


def test_a_lock_left_by_a_killed_run_does_not_block_the_next(emulator, env, tmp_path):
    assert run_cli([*ARGS[:-1], "2"], env).returncode == 0
    layout = Layout(tmp_path / "data")
    victim = start_slow_run_holding_the_lock(env, layout)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    assert layout.lock_path.exists()  # the lock file is still there
    nxt = run_cli(ARGS, env)
    assert nxt.returncode == 0, nxt.stdout + nxt.stderr
