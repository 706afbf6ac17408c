"""Infrastructure over real HTTP: rate limits, keys and hosts, latency, the log, admin, CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from mts.emulator import Emulator

NOW = datetime(2026, 11, 25, 12, 34, 56, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "coingecko"  # copied from shared/
RATE_LIMIT_BODY = {
    "status": {
        "error_code": 429,
        "error_message": "You've exceeded the Rate Limit. Please visit "
        "https://www.coingecko.com/en/api/pricing to subscribe to our API plans for higher "
        "rate limits.",
    }
}


def ping(emu: Emulator, headers: dict[str, str] | None = None, **params: str) -> requests.Response:
    return requests.get(emu.base_url + "/ping", headers=headers, params=params, timeout=5)


@pytest.mark.parametrize("style", ["retry_after", "reset", "cloudflare"])
def test_rate_limit_answers_429_beyond_the_limit(style: str) -> None:
    with Emulator(now=NOW, assets=["bitcoin"], rate_limit_per_min=3, rate_limit_style=style) as emu:
        ok = [ping(emu) for _ in range(3)]
        assert all(r.status_code == 200 for r in ok)
        assert not any(k.lower().startswith("x-ratelimit") for r in ok for k in r.headers)
        r = ping(emu)
        assert r.status_code == 429
        if style == "cloudflare":
            assert r.text == "error code: 1015"
            assert r.headers["Content-Type"].startswith("text/plain")
        else:
            assert r.json() == RATE_LIMIT_BODY
        if style == "retry_after":
            assert 55 <= int(r.headers["Retry-After"]) <= 60
        if style == "reset":
            assert r.headers["x-ratelimit-limit"] == "3"
            assert r.headers["x-ratelimit-remaining"] == "0"
            reset = datetime.strptime(r.headers["x-ratelimit-reset"], "%Y-%m-%d %H:%M:%S %z")
            assert timedelta(seconds=50) < reset - datetime.now(UTC) <= timedelta(seconds=61)
        assert emu.count(status=429) == 1 and emu.count(status=200) == 3


def test_rate_limit_window_slides_in_real_time() -> None:
    with Emulator(now=NOW, assets=["bitcoin"], rate_limit_per_min=2) as emu:
        assert [ping(emu).status_code for _ in range(3)] == [200, 200, 429]
        emu.clock.advance(timedelta(hours=5))  # the data clock does not refill the window
        assert ping(emu).status_code == 429
        emu.limiter.reset()
        emu.configure(rate_limit_per_min=None)
        assert all(ping(emu).status_code == 200 for _ in range(10))


def test_keys_and_hosts() -> None:
    with Emulator(now=NOW, assets=["bitcoin"], plan="demo", api_keys={"CG-good"}) as emu:
        assert ping(emu).status_code == 200  # keyless works on the public host
        assert ping(emu, {"x-cg-demo-api-key": "CG-good"}).status_code == 200
        r = ping(emu, {"x-cg-pro-api-key": "CG-good"})
        assert r.status_code == 400
        body = r.json()
        assert body["error_code"] == 10010 and list(body) == ["timestamp", "error_code", "status"]
        assert (
            "change your root URL from api.coingecko.com to pro-api.coingecko.com"
            in body["status"]["error_message"]
        )
        r = ping(emu, {"x-cg-demo-api-key": "CG-secret-wrong"})
        assert r.status_code == 401 and r.json()["status"]["error_code"] == 10002
        r = ping(emu, x_cg_demo_api_key="CG-secret-query")
        assert r.status_code == 401
        emu.configure(plan="paid")
        r = ping(emu, {"x-cg-demo-api-key": "CG-good"})
        assert r.status_code == 400
        observed = _observed_json("## 10011")
        body = r.json()
        assert list(body) == list(observed)
        assert body["status"] == observed["status"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", body["timestamp"])
        r = ping(emu)
        assert r.status_code == 401 and r.json()["status"]["error_code"] == 10002
        assert r.json()["status"]["error_message"].startswith("API Key Missing.")
        assert ping(emu, {"x-cg-pro-api-key": "CG-good"}).status_code == 200
        log = json.dumps([r.to_dict() for r in emu.requests()])
        assert "CG-good" not in log and "CG-secret" not in log
        assert {r.key_header for r in emu.requests()} == {
            None,
            "x-cg-demo-api-key",
            "x-cg-pro-api-key",
            "x_cg_demo_api_key",
        }


def test_paid_only_parameters() -> None:
    with Emulator(now=NOW, assets=["bitcoin"], plan="demo") as emu:
        params = {
            "vs_currency": "usd",
            "from": NOW.timestamp() - 200 * 86400,
            "to": NOW.timestamp(),
            "interval": "hourly",
        }
        url = emu.base_url + "/coins/bitcoin/market_chart/range"
        r = requests.get(url, params=params, timeout=5)
        assert r.status_code == 401 and r.json()["status"]["error_code"] == 10005
        emu.configure(plan="paid")
        headers = {"x-cg-pro-api-key": "k"}
        params["from"] = NOW.timestamp() - 100 * 86400
        prices = requests.get(url, params=params, headers=headers, timeout=5).json()["prices"]
        assert len(prices) == pytest.approx(2400, abs=1)
        params["from"] = NOW.timestamp() - 3 * 365 * 86400  # no history limit on paid
        params.pop("interval")
        r = requests.get(url, params=params, headers=headers, timeout=5)
        assert r.status_code == 200 and len(r.json()["prices"]) == pytest.approx(3 * 365, abs=2)


def test_latency_overlaps_between_concurrent_clients() -> None:
    with Emulator(now=NOW, assets=["bitcoin"], latency_s=0.3) as emu:
        t = time.monotonic()
        with ThreadPoolExecutor(8) as ex:
            codes = list(ex.map(lambda _: ping(emu).status_code, range(8)))
        elapsed = time.monotonic() - t
    assert codes == [200] * 8
    assert 0.3 <= elapsed < 1.0


def test_request_log_and_admin_endpoints() -> None:
    with Emulator(now=NOW, assets=["bitcoin", "ethereum"]) as emu:
        admin = emu.base_url.removesuffix("/api/v3") + "/_emulator"
        requests.get(
            emu.base_url + "/coins/bitcoin/ohlc",
            params={"vs_currency": "usd", "days": 1},
            timeout=5,
        )
        requests.get(
            emu.base_url + "/coins/nope/ohlc", params={"vs_currency": "usd", "days": 1}, timeout=5
        )
        rec = emu.requests("ohlc", "bitcoin")[0]
        assert (rec.method, rec.path, rec.status) == ("GET", "/api/v3/coins/bitcoin/ohlc", 200)
        assert rec.params == {"vs_currency": "usd", "days": "1"}
        assert emu.count("ohlc") == 2 and emu.count(status=404) == 1
        logged = requests.get(admin + "/requests", timeout=5).json()
        assert [r["asset"] for r in logged] == ["bitcoin", "nope"]
        r = requests.post(admin + "/clock", json={"now": "2026-12-01T00:00:00Z"}, timeout=5)
        assert r.json()["now"].startswith("2026-12-01T00:00:00")
        assert emu.clock.now() == datetime(2026, 12, 1, tzinfo=UTC)
        requests.post(admin + "/clock", json={"advance_s": 3600}, timeout=5)
        assert emu.clock.now() == datetime(2026, 12, 1, 1, tzinfo=UTC)
        r = requests.post(admin + "/config", json={"latency_s": 0.01, "plan": "paid"}, timeout=5)
        assert r.json()["plan"] == "paid" and emu.settings.latency_s == 0.01
        assert requests.post(admin + "/config", json={"plan": "gold"}, timeout=5).status_code == 400
        assert requests.post(admin + "/reset", timeout=5).status_code == 200
        assert emu.count() == 0
        emu.reset_log()


def test_clock_runs_when_not_frozen() -> None:
    with Emulator(assets=["bitcoin"]) as emu:
        real = datetime.now(UTC)
        assert abs(emu.clock.now() - real) < timedelta(seconds=2)
        emu.clock.set(NOW)
        time.sleep(0.05)
        assert NOW < emu.clock.now() < NOW + timedelta(seconds=2)
        emu.clock.freeze()
        frozen = emu.clock.now()
        time.sleep(0.02)
        assert emu.clock.now() == frozen


def test_standalone_runner_prints_its_url_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mts.emulator",
            "--port",
            "0",
            "--now",
            "2026-11-25T12:00:00Z",
            "--rate-limit",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        m = re.match(
            r"CoinGecko emulator on (http://127\.0\.0\.1:\d+/api/v3) \(plan demo, .*\) "
            r"— export COINGECKO_BASE_URL=(\S+)$",
            line.strip(),
        )
        assert m, line
        assert m.group(1) == m.group(2)
        assert requests.get(m.group(1) + "/ping", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_a_client_reset_mid_request_is_not_a_traceback() -> None:
    """The crash tests kill clients mid-request hundreds of times; the emulator's stderr must
    stay readable (it used to print a traceback for each reset)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mts.emulator", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        url = proc.stdout.readline().split(" on ", 1)[1].split()[0]
        host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
        for _ in range(3):
            conn = socket.create_connection((host, int(port)))
            conn.sendall(b"GET /api/v3/ping HTTP/1.1\r\nHost: x\r\n")  # headers never end
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # with linger 0: a reset
        time.sleep(0.3)
        assert requests.get(url + "/ping", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert "Traceback" not in err, err


def _observed_json(heading: str) -> dict:
    text = (FIXTURES / "error_bodies_observed.txt").read_text()
    block = text.split(heading, 1)[1]
    return json.loads(next(ln for ln in block.splitlines() if ln.startswith("{")))
