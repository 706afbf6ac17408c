"""Measure the emulator's own CPU cost per 90-day hourly /market_chart/range response.

    python -m mts.emulator.bench [--responses 600]

"in-process" times building and serialising the response (no sockets). "over HTTP" runs the
emulator in a child process and reads that process's CPU time from /proc (Linux), so the
client's cost is not counted.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime

NOW = datetime(2026, 11, 25, 12, 34, 56, tzinfo=UTC)
SPAN_S = 90 * 86_400


def in_process(responses: int) -> tuple[float, int]:
    """(CPU ms per response, body bytes of the last one), api + serialisation only."""
    from mts.emulator.api import Key, Route
    from mts.emulator.server import Emulator, _serialise

    emu = Emulator(now=NOW)
    ids = emu.universe.all_ids()
    now_s = int(NOW.timestamp())
    size = 0

    def one(i: int) -> int:
        to = now_s - (i % 4) * SPAN_S
        params = {"vs_currency": "usd", "from": str(to - SPAN_S), "to": str(to)}
        resp = emu.api.handle(
            Route("range", ids[i % len(ids)]), params, Key(None), emu.clock.now_ms()
        )
        return len(_serialise(resp, None).body)

    for i in range(20):
        one(i)
    start = time.process_time()
    for i in range(responses):
        size = one(i)
    return (time.process_time() - start) / responses * 1000, size


def over_http(responses: int) -> float:
    """Emulator-process CPU ms per response, requests made sequentially by this process."""
    import requests

    proc = subprocess.Popen(
        [sys.executable, "-m", "mts.emulator", "--port", "0", "--now", NOW.isoformat()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        match = re.search(r" on (\S+) ", proc.stdout.readline())
        if match is None:
            raise RuntimeError("the emulator did not print its URL")
        base = match.group(1)
        session = requests.Session()
        ids = [i["id"] for i in session.get(base + "/coins/markets?vs_currency=usd").json()]
        now_s = int(NOW.timestamp())

        def one(i: int) -> None:
            to = now_s - (i % 4) * SPAN_S
            params: dict[str, str | int] = {"vs_currency": "usd", "from": to - SPAN_S, "to": to}
            url = f"{base}/coins/{ids[i % len(ids)]}/market_chart/range"
            session.get(url, params=params, timeout=10).raise_for_status()

        for i in range(20):
            one(i)
        before = _proc_cpu_s(proc.pid)
        for i in range(responses):
            one(i)
        return (_proc_cpu_s(proc.pid) - before) / responses * 1000
    finally:
        proc.terminate()
        proc.wait(10)


def _proc_cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mts.emulator.bench", description=__doc__)
    p.add_argument("--responses", type=int, default=600)
    args = p.parse_args(argv)
    ms, size = in_process(args.responses)
    print(f"in-process: {ms:.2f} ms CPU per 90-day hourly range response ({size} bytes)")
    if os.path.exists("/proc/self/stat"):
        print(f"over HTTP:  {over_http(args.responses):.2f} ms emulator CPU per response")
    return 0


if __name__ == "__main__":
    sys.exit(main())
