"""Ids from /coins/markets that try to name paths: every file stays inside its folder, and the
readers (polars, DuckDB) return the original id.

The emulator only serves ids from its data slice, so a tiny proxy in this file sits in front of
it: it renames a few real assets to hostile ids in /coins/markets and maps them back on the
per-asset endpoints, so every hostile id has real series behind it."""

from __future__ import annotations

import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import duckdb
import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mts.errors import InvalidAssetId
from mts.layout import Layout, SeriesKey, encode_asset_id

from .conftest import run_cli

LONG = "x" * 300
HOSTILE = ["../../x", "a/b", "..", "con", "nul", "é-😀", "50%off", "%2e%2e", LONG]


class RenamingProxy:
    """Forwards to the emulator; renames the first len(HOSTILE) assets of /coins/markets."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.real_of: dict[str, str] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                url = urlsplit(self.path)
                path = url.path.removeprefix("/api/v3")
                if path.startswith("/coins/") and path.count("/") >= 3:
                    _, _, raw_id, rest = path.split("/", 3)
                    real = proxy.real_of.get(unquote(raw_id), unquote(raw_id))
                    path = f"/coins/{quote(real, safe='')}/{rest}"
                with urllib.request.urlopen(f"{proxy.upstream}{path}?{url.query}", timeout=10) as resp:
                    status, body = resp.status, resp.read()
                if path == "/coins/markets":
                    items = orjson.loads(body)
                    for item, hostile in zip(items, HOSTILE, strict=False):
                        proxy.real_of[hostile] = item["id"]
                        item["id"] = hostile
                    body = orjson.dumps(items)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/v3"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile_run(emulator, env, tmp_path):
    with RenamingProxy(emulator.base_url) as proxy:
        top = len(HOSTILE) + 2
        proc = run_cli(["collect", "--days", "2", "--top", str(top)], {**env, "COINGECKO_BASE_URL": proxy.base_url})
    return proc, tmp_path / "data"


def test_every_file_stays_inside_the_data_folder(hostile_run, tmp_path):
    proc, data = hostile_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = data.resolve()
    for path in data.rglob("*"):
        assert path.resolve().is_relative_to(root), path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "logs"]  # nothing beside it
    assert not (tmp_path.parent / "x").exists() and not (data.parent / "x").exists()
    for dataset in ("market_chart", "ohlc"):
        for asset_dir in (data / dataset).glob("interval=*/asset_id=*"):
            assert asset_dir.parent.parent == data / dataset  # one component per id, no nesting


def test_queries_return_the_original_ids(hostile_run):
    proc, data = hostile_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stored = [h for h in HOSTILE if h not in (LONG, "..")]
    glob = str(data / "market_chart" / "**" / "*.parquet")
    ids = set(pl.scan_parquet(glob, hive_partitioning=True).select("asset_id").unique().collect()["asset_id"])
    assert set(stored) <= ids and len(ids) == len(HOSTILE) - 2 + 2
    duck = {
        r[0]
        for r in duckdb.sql(
            f"SELECT DISTINCT asset_id FROM read_parquet('{glob}', hive_partitioning = true)"
        ).fetchall()
    }
    assert duck == ids
    ohlc = pl.scan_parquet(str(data / "ohlc" / "**" / "*.parquet"), hive_partitioning=True).collect()
    assert set(stored) <= set(ohlc["asset_id"])
    markets = pl.read_parquet(data / "markets" / "**" / "*.parquet")
    assert set(stored) <= set(markets["asset_id"])
    layout = Layout(data)
    assert set(stored) <= {k.asset_id for k in layout.iter_series("market_chart")}
    for asset in stored:
        assert layout.series_file(SeriesKey("market_chart", "1h", asset), 2026).is_file()


def test_an_id_too_long_for_a_folder_or_that_a_url_cannot_carry_is_quarantined_not_stored(hostile_run):
    proc, data = hostile_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rejects = [
        orjson.loads(line) for p in (data / "_quarantine").glob("*.jsonl") for line in p.read_bytes().splitlines()
    ]
    assert sorted((r["asset_id"], r["rule"]) for r in rejects) == [
        ("..", "asset_id_addressable"),
        (LONG, "asset_id_storable"),
    ]
    assert not any(LONG[:50] in str(p) for p in data.rglob("*"))
    assert not (data / "market_chart" / "interval=1h" / "asset_id=%2E%2E").exists()


def test_an_explicit_dot_dot_asset_is_refused_before_any_url_is_built():
    from mts.client import _quote
    from mts.errors import SkipAsset

    for bad in (".", ".."):
        with pytest.raises(SkipAsset, match="URL path segment"):
            _quote(bad)
    assert _quote("../../x") == "..%2F..%2Fx" and _quote("a/b") == "a%2Fb"


# The encoding's own round trip is tested in test_layout.py; this extends it to the readers:
# whatever the id, the folder name mts writes decodes back to it in polars and DuckDB.
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=3, unique=True))
def test_any_id_round_trips_through_the_folder_name_to_polars_and_duckdb(tmp_path_factory, asset_ids):
    root = tmp_path_factory.mktemp("ids")
    layout = Layout(root)
    kept = []
    for asset_id in asset_ids:
        try:
            encode_asset_id(asset_id)
        except InvalidAssetId:
            continue
        path = layout.series_file(SeriesKey("market_chart", "1h", asset_id), 2026)
        assert path.resolve().is_relative_to(root.resolve())
        path.parent.mkdir(parents=True)
        pl.DataFrame({"v": [1.0]}).write_parquet(path)
        kept.append(asset_id)
    if not kept:
        return
    glob = str(Path(root) / "market_chart" / "**" / "*.parquet")
    # Readers infer partition types: an id such as "0" reads as a number unless the reader is
    # told asset_id is text (README "Query the data").
    got = (
        pl.scan_parquet(
            glob, hive_partitioning=True, hive_schema={"interval": pl.String, "asset_id": pl.String, "year": pl.Int32}
        )
        .collect()["asset_id"]
        .to_list()
    )
    assert sorted(got) == sorted(kept)
    sql = f"SELECT asset_id FROM read_parquet('{glob}', hive_partitioning = true, hive_types = {{'asset_id': VARCHAR}})"
    duck = [r[0] for r in duckdb.sql(sql).fetchall()]
    assert sorted(duck) == sorted(kept)
