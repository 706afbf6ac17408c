"""`mts run --every`: one catch-up run after missed slots, graceful stop on SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from mts.errors import UsageError
from mts.layout import Layout
from mts.scheduler import (
    MAX_WAIT_S,
    Scheduler,
    SchedulerState,
    is_due,
    load_state,
    parse_every,
    save_state,
    seconds_until_next_slot,
    slot_start,
)
from mts.verify import check

from .conftest import NOW, popen_cli

HOUR = timedelta(hours=1)
SLOT = NOW.replace(minute=0, second=0, microsecond=0)


def test_parse_every():
    assert parse_every("1h") == HOUR
    assert parse_every("30m") == timedelta(minutes=30)
    assert parse_every("2h30m") == timedelta(hours=2, minutes=30)
    assert parse_every("1d") == timedelta(days=1)
    for bad in ("", "1x", "h", "0s", "-1h"):
        with pytest.raises(UsageError):
            parse_every(bad)


def test_slots_are_aligned_and_due_once_per_slot():
    assert slot_start(NOW, HOUR) == SLOT
    assert slot_start(NOW, timedelta(days=1)) == datetime(2026, 11, 20, tzinfo=UTC)
    assert seconds_until_next_slot(NOW, HOUR) == 25 * 60 + 4
    assert is_due(None, NOW, HOUR)
    assert is_due(SLOT - 3 * HOUR, NOW, HOUR)
    assert not is_due(SLOT, NOW, HOUR)
    assert is_due(SLOT, SLOT + HOUR, HOUR)


class FakeResult:
    def __init__(self, interrupted=False):
        self.interrupted = interrupted

    def summary(self):
        return {"event": "run_summary", "exit_code": 130 if self.interrupted else 0}


def test_two_missed_slots_give_one_catch_up_run(tmp_path):
    layout = Layout(tmp_path / "data")
    save_state(layout, SchedulerState(last_slot=SLOT - 3 * HOUR))  # stopped for two whole slots
    stop = threading.Event()
    runs, waits = [], []

    def wait(seconds):
        waits.append(seconds)
        stop.set()  # the first wait ends the test: by then every due run has been made

    sched = Scheduler(
        layout,
        HOUR,
        lambda s: runs.append(1) or FakeResult(),
        clock=lambda: NOW,
        stop=stop,
        wait=wait,
    )
    assert sched.loop() == 1
    assert len(runs) == 1
    assert waits == [MAX_WAIT_S]  # then it sleeps, re-reading the clock each minute, till 13:00
    assert load_state(layout).last_slot == SLOT

    # Restarted within the same slot: nothing to catch up.
    stop.clear()
    again = Scheduler(
        layout,
        HOUR,
        lambda s: runs.append(1) or FakeResult(),
        clock=lambda: NOW,
        stop=stop,
        wait=wait,
    )
    assert again.loop() == 0 and len(runs) == 1


def test_an_interrupted_run_is_not_counted_as_done(tmp_path):
    layout = Layout(tmp_path / "data")
    stop = threading.Event()

    def interrupted(s):
        s.set()
        return FakeResult(interrupted=True)

    Scheduler(layout, HOUR, interrupted, clock=lambda: NOW, stop=stop).loop()
    state = load_state(layout)
    assert state.last_slot is None and state.last_exit_code == 130
    assert is_due(state.last_slot, NOW, HOUR)


def log_events(tmp_path) -> list[dict]:
    path = tmp_path / "logs" / "mts.jsonl"
    return [orjson.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(predicate, proc, what: str, limit_s: float = 60):
    deadline = time.monotonic() + limit_s
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {what}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {limit_s} s")
        time.sleep(0.05)


def test_cli_catches_up_once_after_missed_slots_then_waits(env, emulator, tmp_path):
    layout = Layout(tmp_path / "data")
    save_state(layout, SchedulerState(last_slot=SLOT - 3 * HOUR))
    proc = popen_cli(["run", "--every", "1h", "--top", "3", "--days", "1"], env)
    try:
        wait_for(
            lambda: any(e.get("event") == "scheduler_wait" for e in log_events(tmp_path)),
            proc,
            "wait",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = log_events(tmp_path)
    assert sum(e.get("event") == "run_summary" for e in events) == 1
    assert emulator.count(endpoint="markets") == 1
    assert any("2 slots missed" in e["message"] for e in events)
    assert load_state(layout).last_slot == SLOT
    assert (
        next(e for e in events if e.get("event") == "scheduler_wait")["next_run"]
        == (SLOT + HOUR).isoformat()
    )


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_mid_run_leaves_data_and_checkpoint_consistent(env, emulator, tmp_path, sig, code):
    emulator.configure(latency_s=0.05)
    slow = {**env, "MTS_RATE_LIMIT": "600"}  # 10 calls/s: the run lasts a few seconds
    layout = Layout(tmp_path / "data")
    proc = popen_cli(["run", "--every", "1h", "--top", "20", "--days", "7"], slow)
    try:
        wait_for(
            lambda: any(layout.root.glob("market_chart/*/*/*/*.parquet")), proc, "a stored file"
        )
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == code, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    summary = next(e for e in log_events(tmp_path) if e.get("event") == "run_summary")
    assert summary["outcome"] == "interrupted"
    assert summary["assets_succeeded"] < 20 and summary["rows_stored"] > 0, (
        summary
    )  # stopped mid-run
    report = check(layout, NOW)
    assert report.problems == [], report.as_dict()  # no torn file, no gap, checkpoint agrees
    assert orjson.loads(layout.checkpoint_path.read_bytes())["last_run"]["outcome"] == "interrupted"
    assert load_state(layout).last_slot is None  # the slot is not done: a restart catches it up
