"""The one module that knows where things live in the data folder.

    market_chart/interval=1h/asset_id=<enc>/year=<YYYY>/data.<ext>
    ohlc/interval=<30m|4h|4d>/asset_id=<enc>/year=<YYYY>/data.<ext>
    markets/year=<YYYY>/data.<ext>
    _state/checkpoint.json, _state/lock, _quarantine/...

<enc> is the CoinGecko id percent-encoded (RFC 3986 style, UTF-8): polars and DuckDB decode it
when they read hive partitions, so queries see the original id.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidAssetId

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
# Device names Windows refuses as file names, whatever the extension or case.
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])$")
# NAME_MAX is 255 bytes; leave room for "asset_id=" and a margin for other file systems.
MAX_ENCODED_LEN = 200
FILE_STEM = "data"


def encode_asset_id(asset_id: str) -> str:
    """A folder-safe, reversible spelling of `asset_id`: one path component, never '.' or '..'."""
    if not isinstance(asset_id, str) or not asset_id:
        raise InvalidAssetId("empty asset id")
    out = []
    for ch in asset_id:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    encoded = "".join(out)
    if _RESERVED.match(encoded):
        encoded = f"%{ord(encoded[0]):02X}{encoded[1:]}"
    if len(encoded) > MAX_ENCODED_LEN:
        raise InvalidAssetId(f"asset id is {len(encoded)} characters once encoded (max {MAX_ENCODED_LEN})")
    return encoded


def decode_asset_id(encoded: str) -> str:
    """The inverse of encode_asset_id."""
    raw = bytearray()
    i = 0
    while i < len(encoded):
        ch = encoded[i]
        if ch == "%":
            raw.append(int(encoded[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(ch.encode("utf-8"))
            i += 1
    return raw.decode("utf-8")


@dataclass(frozen=True)
class SeriesKey:
    """One stored series: a dataset, a candle/sample interval and an asset."""

    dataset: str
    interval: str
    asset_id: str

    def __str__(self) -> str:
        return f"{self.dataset}/{self.interval}/{self.asset_id}"


@dataclass(frozen=True)
class Layout:
    root: Path
    fmt: str = "parquet"

    @property
    def ext(self) -> str:
        return "parquet" if self.fmt == "parquet" else "csv"

    @property
    def state_dir(self) -> Path:
        return self.root / "_state"

    @property
    def checkpoint_path(self) -> Path:
        return self.state_dir / "checkpoint.json"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "lock"

    @property
    def scheduler_state_path(self) -> Path:
        """`mts run --every`'s last-run state, so a restarted scheduler catches up once."""
        return self.state_dir / "scheduler.json"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "_quarantine"

    @property
    def corrupt_dir(self) -> Path:
        return self.quarantine_dir / "corrupt_files"

    def series_dir(self, key: SeriesKey) -> Path:
        return self.root / key.dataset / f"interval={key.interval}" / f"asset_id={encode_asset_id(key.asset_id)}"

    def series_file(self, key: SeriesKey, year: int) -> Path:
        return self.series_dir(key) / f"year={year}" / f"{FILE_STEM}.{self.ext}"

    def markets_file(self, year: int) -> Path:
        return self.root / "markets" / f"year={year}" / f"{FILE_STEM}.{self.ext}"

    def series_years(self, key: SeriesKey) -> list[tuple[int, Path]]:
        """The year files stored for a series, oldest first."""
        return self._year_files(self.series_dir(key))

    def iter_series(self, dataset: str) -> Iterator[SeriesKey]:
        """Every series stored for `dataset` (market_chart or ohlc)."""
        base = self.root / dataset
        if not base.is_dir():
            return
        for idir in sorted(base.glob("interval=*")):
            interval = idir.name.split("=", 1)[1]
            for adir in sorted(idir.glob("asset_id=*")):
                try:
                    asset = decode_asset_id(adir.name.split("=", 1)[1])
                except (ValueError, UnicodeDecodeError):
                    continue
                yield SeriesKey(dataset, interval, asset)

    def markets_years(self) -> list[tuple[int, Path]]:
        return self._year_files(self.root / "markets")

    def _year_files(self, base: Path) -> list[tuple[int, Path]]:
        """(year, data file) under `base`'s year=YYYY folders, oldest first."""
        found = []
        if base.is_dir():
            for ydir in base.iterdir():
                year = _year_of(ydir.name)
                path = ydir / f"{FILE_STEM}.{self.ext}"
                if year is not None and path.is_file():
                    found.append((year, path))
        return sorted(found)

    def data_files(self) -> Iterator[Path]:
        """Every data file (any format), skipping folders that begin with '_' or '.'."""
        for dataset in ("market_chart", "ohlc", "markets"):
            base = self.root / dataset
            if base.is_dir():
                for path in sorted(base.rglob("*")):
                    if path.is_file() and not any(p.startswith(("_", ".")) for p in path.relative_to(self.root).parts):
                        yield path


def _year_of(name: str) -> int | None:
    if name.startswith("year=") and name[5:].isdigit():
        return int(name[5:])
    return None
