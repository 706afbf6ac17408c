"""Run the CoinGecko emulator in the foreground: python -m mts.emulator --port 8765."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from mts.emulator.api import PLANS, RATE_LIMIT_STYLES
from mts.emulator.clock import parse_iso


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mts.emulator",
        description="Serve a local CoinGecko /api/v3 emulator until Ctrl-C or SIGTERM. "
        "Control it over HTTP under /_emulator/ (requests, reset, clock, faults, config).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument(
        "--now", type=parse_iso, default=None, help="freeze the data clock at this ISO time"
    )
    p.add_argument("--plan", choices=PLANS, default="demo")
    p.add_argument("--rate-limit", type=int, default=None, metavar="PER_MIN")
    p.add_argument("--rate-limit-style", choices=RATE_LIMIT_STYLES, default="retry_after")
    p.add_argument("--latency", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--history-days", type=int, default=365)
    p.add_argument("--api-key", action="append", default=None, help="accepted key (repeatable)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from mts.emulator.server import Emulator

    try:
        emu = Emulator(
            now=args.now,
            plan=args.plan,
            rate_limit_per_min=args.rate_limit,
            rate_limit_style=args.rate_limit_style,
            latency_s=args.latency,
            history_days=args.history_days,
            api_keys=args.api_key,
            host=args.host,
            port=args.port,
        )
        emu.start()
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")  # the banner has a dash; never die on a locale
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(
        f"CoinGecko emulator on {emu.base_url} ({emu.describe()}) "
        f"— export COINGECKO_BASE_URL={emu.base_url}",
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
