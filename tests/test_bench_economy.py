"""The issue-3 bench scripts run in their small form, so they cannot rot (no timing asserted)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, tmp_path: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--small", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_api_economy_small_runs_at_the_minimum(tmp_path):
    out = run("api_economy.py", tmp_path)
    assert "all runs at the minimum" in out
    assert out.count("ratio 1.00") == 4


def test_rate_saturation_small_runs_without_429(tmp_path):
    out = run("rate_saturation.py", tmp_path)
    assert "429s 0" in out
