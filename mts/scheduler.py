"""`mts run --every 1h`: collect once per slot, for hosts without cron.

Slots are aligned to the Unix epoch (`--every 1h`: every full hour UTC). The slot of the last
completed run is persisted under the data folder's _state/, so a restarted scheduler runs once
to catch up, however many slots it missed, then waits for the next slot. A stop request (the
CLI sets it on SIGTERM/SIGINT) lets the collector finish the asset in hand and checkpoint; an
interrupted run does not count as done, so the next start catches it up.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from .atomic import write_bytes_atomic
from .errors import LockedError, MtsError, UsageError
from .layout import Layout
from .settings import Settings

log = logging.getLogger(__name__)

VERSION = 1
MAX_WAIT_S = 60.0  # re-read the clock at least this often (suspend, clock steps)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> timedelta:
    """'1h', '30m', '90s', '1d', '2h30m' → a timedelta of at least one second."""
    parts = re.fullmatch(r"\s*((?:\d+\s*[smhd]\s*)+)", text.lower())
    if not parts:
        raise UsageError(f"--every {text!r} is not a duration; use e.g. 1h, 30m, 1d or 2h30m")
    seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)\s*([smhd])", parts.group(1)))
    if seconds < 1:
        raise UsageError("--every must be at least 1s; use e.g. 1h")
    return timedelta(seconds=seconds)


def slot_start(t: datetime, every: timedelta) -> datetime:
    """The start of the slot `t` falls in (slots are aligned to the Unix epoch)."""
    step = every.total_seconds()
    return datetime.fromtimestamp((t.timestamp() // step) * step, UTC)


def is_due(last_slot: datetime | None, now: datetime, every: timedelta) -> bool:
    """True when no run has completed in the current slot (one run catches up any number of
    missed slots)."""
    return last_slot is None or slot_start(now, every) > last_slot


def seconds_until_next_slot(now: datetime, every: timedelta) -> float:
    return max(0.0, (slot_start(now, every) + every - now).total_seconds())


@dataclass
class SchedulerState:
    last_slot: datetime | None = None  # the slot of the last completed run
    last_started_at: datetime | None = None
    last_finished_at: datetime | None = None
    last_exit_code: int | None = None

    def to_json(self) -> bytes:
        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return orjson.dumps(
            {
                "version": VERSION,
                "last_slot": iso(self.last_slot),
                "last_started_at": iso(self.last_started_at),
                "last_finished_at": iso(self.last_finished_at),
                "last_exit_code": self.last_exit_code,
            },
            option=orjson.OPT_INDENT_2,
        )


def load_state(layout: Layout) -> SchedulerState:
    """The saved state; a missing or unreadable file means 'never ran' (so it runs now)."""
    try:
        doc = orjson.loads(layout.scheduler_state_path.read_bytes())
        if doc.get("version") != VERSION:
            raise ValueError(f"version {doc.get('version')!r}")

        def t(name: str) -> datetime | None:
            return datetime.fromisoformat(doc[name]) if doc.get(name) else None

        return SchedulerState(
            t("last_slot"), t("last_started_at"), t("last_finished_at"), doc.get("last_exit_code")
        )
    except FileNotFoundError:
        return SchedulerState()
    except (ValueError, OSError, AttributeError, TypeError) as exc:
        log.warning(
            "scheduler state %s unreadable (%s): running now", layout.scheduler_state_path, exc
        )
        return SchedulerState()


def save_state(layout: Layout, state: SchedulerState) -> None:
    write_bytes_atomic(layout.scheduler_state_path, state.to_json())


RunOnce = Callable[[threading.Event], "object"]


def collect_once(
    settings: Settings, clock: Callable[[], datetime]
) -> Callable[[threading.Event], object]:
    """A run_once for Scheduler: one collect that stops early when the event is set."""

    def run(stop: threading.Event):
        from .collector import Collector

        return Collector(settings, clock=clock, stop=stop).run()

    return run


class Scheduler:
    """Runs `run_once(stop)` once per slot until `stop` is set. `wait(seconds)` sleeps unless
    stopped (tests pass their own); `run_once` returns a CollectResult."""

    def __init__(
        self,
        layout: Layout,
        every: timedelta,
        run_once: Callable[[threading.Event], object],
        *,
        clock: Callable[[], datetime],
        stop: threading.Event | None = None,
        wait: Callable[[float], object] | None = None,
    ):
        self.layout = layout
        self.every = every
        self.run_once = run_once
        self.clock = clock
        self.stop = stop or threading.Event()
        self.wait = wait or self.stop.wait
        self.runs = 0

    def loop(self) -> int:
        """Run until stopped; the number of runs made."""
        announced: datetime | None = None
        while not self.stop.is_set():
            now = self.clock()
            state = load_state(self.layout)
            if is_due(state.last_slot, now, self.every):
                self._run(state, now)
                announced = None
                continue
            nxt = slot_start(now, self.every) + self.every
            if announced != nxt:
                log.info(
                    "scheduler: next run at %s",
                    nxt.isoformat(),
                    extra={"event": "scheduler_wait", "next_run": nxt.isoformat()},
                )
                announced = nxt
            self.wait(min(seconds_until_next_slot(now, self.every), MAX_WAIT_S))
        return self.runs

    def _run(self, state: SchedulerState, now: datetime) -> None:
        slot = slot_start(now, self.every)
        if state.last_slot is not None:
            missed = int((slot - state.last_slot) / self.every) - 1
            if missed > 0:
                log.warning(
                    "scheduler: %d slot%s missed since %s; one run catches up",
                    missed,
                    "s" if missed != 1 else "",
                    state.last_slot.isoformat(),
                )
        state.last_started_at = now
        self.runs += 1
        try:
            result = self.run_once(self.stop)
        except LockedError as exc:
            log.warning("scheduler: %s; skipping this slot", exc)
            exit_code, interrupted = int(exc.exit_code), False
        except UsageError:
            raise
        except MtsError as exc:  # recorded in the checkpoint's last_run; try again next slot
            log.error("scheduler: run failed: %s", exc)
            exit_code, interrupted = int(exc.exit_code), False
        else:
            summary = result.summary()  # type: ignore[attr-defined]
            logging.getLogger("mts.run").info("run_summary", extra=summary)
            exit_code, interrupted = summary["exit_code"], bool(result.interrupted)  # type: ignore[attr-defined]
        state.last_finished_at = self.clock()
        state.last_exit_code = exit_code
        if not interrupted:
            state.last_slot = slot
        save_state(self.layout, state)


def run_every(
    settings: Settings, every: timedelta, *, clock: Callable[[], datetime], stop: threading.Event
) -> int:
    """`mts run --every`: collect once per slot with `settings` until `stop` is set."""
    layout = Layout(settings.data_dir, settings.fmt)
    return Scheduler(layout, every, collect_once(settings, clock), clock=clock, stop=stop).loop()
