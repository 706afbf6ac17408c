"""A local CoinGecko /api/v3 emulator for tests and benchmarks (no network needed).

from mts.emulator import Emulator, FaultRule
with Emulator(now=datetime(2026, 11, 25, 12, tzinfo=UTC)) as emu:
    requests.get(emu.base_url + "/ping")
"""

from mts.emulator.clock import Clock
from mts.emulator.faults import FaultRule
from mts.emulator.server import Emulator, RequestRecord
from mts.emulator.universe import Universe

__all__ = ["Clock", "Emulator", "FaultRule", "RequestRecord", "Universe"]
