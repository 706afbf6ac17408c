"""Crash safety: SIGKILL at random moments loses nothing; SIGINT exits 130 with a consistent
folder. The long form of the kill test is `python bench/crash.py --kills 200`."""

from __future__ import annotations

import importlib.util
import random
import signal
import sys
import time

import orjson
import pytest

from .conftest import NOW, ROOT, popen_cli, run_cli

_spec = importlib.util.spec_from_file_location("mts_bench_crash", ROOT / "bench" / "crash.py")
assert _spec is not None and _spec.loader is not None
crash = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = crash  # dataclasses look their module up while the class is built
_spec.loader.exec_module(crash)


@pytest.mark.parametrize(("fmt", "kills"), [("parquet", 30), ("csv", 10)])
def test_random_sigkills_lose_no_row_duplicate_none_and_leave_every_file_readable(tmp_path, fmt, kills):
    seed = random.randrange(1 << 30)
    report = crash.run_campaign(kills, seed=seed, workdir=tmp_path, fmt=fmt)
    rerun = f"python bench/crash.py --kills {kills} --seed {seed} --format {fmt}"
    detail = f"seed {seed} (rerun: {rerun}): {report.line()}\n" + "\n".join(report.problems[:20])
    assert report.kills >= kills, detail
    assert report.checks_after_kill == report.kills, detail
    assert report.rows_lost == 0, detail
    assert report.rows_extra == 0, detail
    assert report.duplicate_keys == 0, detail
    assert report.unreadable_files == 0, detail
    assert report.temp_files_left == 0, detail
    assert report.checkpoint_overclaims == 0, detail
    assert report.bad_exit_codes == 0, detail


def test_the_checks_catch_a_lost_row_an_overclaiming_checkpoint_and_a_torn_file(tmp_path):
    """The campaign's checks are not vacuous: damage a finished folder and they see it."""
    with crash.Campaign(tmp_path, seed=1) as campaign:
        campaign.emu.clock.set(NOW)
        data = tmp_path / "d"
        assert campaign.complete(data, NOW).returncode == 0
        reference = crash.read_tree(data)

        victim = next(p for p in crash.data_files(data) if "market_chart" in str(p))
        import polars as pl

        df = pl.read_parquet(victim)
        df.head(df.height - 2).write_parquet(victim)  # two rows gone, checkpoint still claims them
        report = crash.Report()
        tree = crash.read_tree(data, report)
        crash.compare(tree, reference, report, "damaged")
        crash.check_checkpoint(data, reference, report)
        assert report.rows_lost == 2 and report.checkpoint_overclaims == 2

        pl.concat([df, df.tail(1)]).write_parquet(victim)
        report = crash.Report()
        crash.check_tree(crash.read_tree(data, report), report)
        assert report.duplicate_keys == 1

        victim.write_bytes(victim.read_bytes()[:100])
        report = crash.Report()
        crash.read_tree(data, report)
        assert report.unreadable_files == 1


def test_sigint_exits_130_and_leaves_a_consistent_folder_that_the_next_run_completes(emulator, env, tmp_path):
    from mts.settings import Settings

    top = Settings.workers + 4  # more assets than workers: some are not started when the signal lands
    args = ["collect", "--days", "3", "--top", str(top)]
    ref_env = {**env, "MTS_DATA_DIR": str(tmp_path / "ref"), "MTS_LOG_DIR": str(tmp_path / "ref-logs")}
    assert run_cli(args, ref_env).returncode == 0
    reference = crash.read_tree(tmp_path / "ref")

    # A paced run (0.2 s between calls) so the signal lands in the middle of it.
    slow = {**env, "MTS_RATE_LIMIT": "300"}
    emulator.reset_log()
    proc = popen_cli(args, slow)
    while emulator.count() < 2 and proc.poll() is None:
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err
    assert out.startswith("interrupted:"), out

    # It stopped at once: the assets in hand were finished, none was started after the signal.
    started = emulator.count(endpoint="range")
    assert started <= Settings.workers < top
    assert emulator.count(endpoint="ohlc") == started

    data = tmp_path / "data"
    report = crash.Report()
    tree = crash.read_tree(data, report)
    crash.check_tree(tree, report)
    crash.check_checkpoint(data, reference, report)
    assert report.ok, report.problems
    assert not crash.temp_files(data)
    doc = orjson.loads((data / "_state" / "checkpoint.json").read_bytes())
    assert doc["last_run"]["outcome"] == "interrupted" and doc["last_run"]["exit_code"] == 130
    assert sum(df.height for df in tree.values()) < sum(df.height for df in reference.values())

    done = run_cli(args, env)
    assert done.returncode == 0, done.stdout + done.stderr
    report = crash.Report()
    crash.compare(crash.read_tree(data), reference, report, "after SIGINT")
    assert report.ok, report.problems
