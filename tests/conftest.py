"""Shared fixtures: a real emulator on 127.0.0.1, settings pointing at it, and a way to run the
CLI as a user would (a subprocess of main.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mts.emulator import Emulator
from mts.settings import resolve_settings

ROOT = Path(__file__).resolve().parent.parent
# A fixed instant mid-hour, so tests do not race the hour boundary or sample jitter.
NOW = datetime(2026, 11, 20, 12, 34, 56, tzinfo=UTC)
FAST = "100000"  # calls/min: no client-side pacing unless a test is about pacing


@pytest.fixture
def emulator():
    with Emulator(now=NOW) as emu:
        yield emu


@pytest.fixture
def env(emulator, tmp_path):
    """Environment for a run against the emulator, with data and logs under tmp_path."""
    return {
        "COINGECKO_BASE_URL": emulator.base_url,
        "MTS_RATE_LIMIT": FAST,
        "MTS_DATA_DIR": str(tmp_path / "data"),
        "MTS_LOG_DIR": str(tmp_path / "logs"),
        "MTS_NOW": NOW.isoformat(),
    }


@pytest.fixture
def make_settings(env):
    def make(**kw):
        return resolve_settings(env, **kw)

    return make


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("COINGECKO_", "MTS_"))}
    return {**base, **extra}


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """`python main.py ARGS` in a subprocess, as cron would run it."""
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
    )


def popen_cli(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), *args],
        env=clean_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd or ROOT,
    )
