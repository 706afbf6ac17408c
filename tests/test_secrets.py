"""The API key is sent only as the plan's header: it appears in no console output, log file,
metric, checkpoint, quarantine or data file, and no error message or URL carries it."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from mts.emulator import Emulator, FaultRule
from mts.layout import Layout

from .conftest import FAST, NOW, run_cli

KEY = "CG-SecretFakeKey-7f3a9c1e2b"
PARTS = [KEY, KEY[3:], KEY[-12:]]  # the key, and pieces of it a careless formatter might print


def assert_no_key(where: str, text: str | bytes) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for part in PARTS:
        assert part not in text, f"the key (or part of it) leaked into {where}"


@pytest.fixture
def keyed(tmp_path):
    with Emulator(now=NOW, api_keys={KEY}) as emu:
        env = {
            "COINGECKO_BASE_URL": emu.base_url,
            "COINGECKO_API_KEY": KEY,
            "MTS_RATE_LIMIT": FAST,
            "MTS_DATA_DIR": str(tmp_path / "data"),
            "MTS_LOG_DIR": str(tmp_path / "logs"),
            "MTS_NOW": NOW.isoformat(),
        }
        yield emu, env


def test_the_key_appears_in_no_output_log_metric_checkpoint_or_file(keyed, tmp_path):
    emu, env = keyed
    # Every path that writes something: a clean run, bad rows (quarantine), an asset that fails
    # (error lines), verbose logging, status, plan, and the /metrics and /health endpoints.
    emu.add_fault(FaultRule("bad_data", endpoint="range", mutation="negative_price"))
    emu.add_fault(FaultRule("status", endpoint="ohlc", asset="ethereum", status=200, body=b'"gone"'))
    emu.add_fault(FaultRule("status", endpoint="ohlc", asset="ripple", status=404, body=b'{"error":"coin not found"}'))
    outputs = [run_cli(["-v", "collect", "--days", "2", "--top", "4"], env)]
    assert outputs[0].returncode == 3, outputs[0].stdout + outputs[0].stderr
    outputs += [run_cli(["status"], env), run_cli(["status", "--json"], env), run_cli(["plan", "--json"], env)]
    for proc in outputs:
        assert_no_key(f"the output of {proc.args[2:]}", proc.stdout + proc.stderr)

    # The key went where it belongs: every request carried it, in the header.
    records = emu.requests()
    assert records and all(r.key_header == "x-cg-demo-api-key" for r in records), {r.key_header for r in records}
    assert all(KEY not in r.path and KEY not in str(r.params) for r in records)

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and any(p.name == "mts.jsonl" for p in files)
    assert any("_quarantine" in p.parts for p in files) and any(p.name == "checkpoint.json" for p in files)
    for path in files:
        assert_no_key(str(path.relative_to(tmp_path)), path.read_bytes())

    from mts.health import HealthServer

    with HealthServer(Layout(tmp_path / "data"), port=0, now=lambda: NOW) as srv:
        for endpoint in ("/metrics", "/health"):
            with urllib.request.urlopen(srv.url + endpoint, timeout=10) as resp:
                assert_no_key(endpoint, resp.read())


@pytest.mark.parametrize(
    "env_change",
    [
        {"COINGECKO_API_KEY": "CG-WrongKeyButSecret-000111"},  # refused key: the error names the variable
        {"COINGECKO_BASE_URL": "http://127.0.0.1:9/api/v3"},  # unreachable host: the error names the URL
    ],
    ids=["refused-key", "unreachable"],
)
def test_error_messages_and_urls_never_carry_the_key(keyed, tmp_path, env_change):
    emu, env = keyed
    env = {**env, **env_change}
    proc = run_cli(["-v", "collect", "--top", "2"], env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    secret = env["COINGECKO_API_KEY"]
    assert secret not in proc.stdout + proc.stderr, "a key leaked into an error (with -v: tracebacks too)"
    assert "mts: " in proc.stderr
    for path in Path(tmp_path).rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_settings_never_show_the_key():
    from mts.settings import resolve_settings

    settings = resolve_settings({"COINGECKO_API_KEY": KEY})
    for text in (repr(settings), str(settings), f"{settings.api_key}", repr(settings.api_key)):
        assert_no_key("a repr of the settings", text)
