"""Thread-safe counters of one run: calls by endpoint and status, retries, 429s, rows."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class RunStats:
    calls: Counter = field(default_factory=Counter)  # (endpoint, status) -> n; status "error" for no answer
    retries: int = 0
    rate_limited: int = 0
    bytes_received: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_call(self, endpoint: str, status: int | str, nbytes: int = 0) -> None:
        with self._lock:
            self.calls[(endpoint, str(status))] += 1
            self.bytes_received += nbytes
            if str(status) == "429":
                self.rate_limited += 1

    def record_retry(self) -> None:
        with self._lock:
            self.retries += 1

    @property
    def total_calls(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def calls_by_endpoint(self) -> dict[str, int]:
        with self._lock:
            out: Counter = Counter()
            for (endpoint, _), n in self.calls.items():
                out[endpoint] += n
            return dict(out)

    def as_dict(self) -> dict:
        with self._lock:
            return {
                "calls": sum(self.calls.values()),
                "calls_by_endpoint_status": {f"{e} {s}": n for (e, s), n in sorted(self.calls.items())},
                "retries": self.retries,
                "rate_limited": self.rate_limited,
                "bytes_received": self.bytes_received,
            }
