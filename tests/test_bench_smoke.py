"""Each bench script runs in its tiny form, so the scripts cannot rot. No timing assertions:
the figures are for bench/ runs on a quiet machine; here only the plumbing and the answers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["incremental", "memory", "query", "markets_growth"]  # backfill and size have their own tests below


def run_bench(name: str, tmp_path: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), "--small", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("name", SCRIPTS)
def test_bench_script_runs_small(name, tmp_path):
    out = run_bench(name, tmp_path)
    assert out.startswith(f"{name}:"), out
    assert "cpu" in out or "bytes/row" in out or " ms " in out, out


def test_backfill_floor_and_naive_store_the_range_rows(tmp_path):
    out = run_bench("backfill", tmp_path)
    m = re.search(r"rows: mts ([\d,]+), floor ([\d,]+), naive ([\d,]+)", out)
    assert m, out
    mts, floor, naive = (int(g.replace(",", "")) for g in m.groups())
    assert floor == naive > 0
    # mts also stores the current hour from the /coins/markets snapshot: one row per asset.
    assert mts == floor + 3
    assert re.search(r"ratio mts/floor\s+cpu [\d.]+x", out) and re.search(r"ratio naive/mts\s+cpu [\d.]+x", out)


def test_size_reports_both_formats(tmp_path):
    out = run_bench("size", tmp_path)
    assert out.startswith("size:"), out
    assert re.search(r"parquet\s+[\d,]+ bytes", out) and re.search(r"csv\s+[\d,]+ bytes", out), out
    assert re.search(r"parquet/csv: [\d.]+%", out), out


@pytest.mark.parametrize("args", [["--help"], ["collect", "--help"]])
def test_help_imports_no_heavy_module(args):
    """`mts --help` stays fast because polars, pyarrow, requests and the collector load lazily."""
    code = (
        "import sys, io, contextlib\n"
        "from mts.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    rc = main({args!r})\n"
        "heavy = [m for m in ('polars', 'pyarrow', 'requests', 'duckdb', 'mts.collector') if m in sys.modules]\n"
        "print(rc, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.stdout.strip() == "0 []", out.stdout + out.stderr


@pytest.mark.parametrize("enabled", [True, False])
def test_parse_json_restores_the_gc_state(enabled):
    """The decoder pauses the cyclic GC for speed and must leave it as it found it."""
    import gc

    from mts.transforms import parse_json

    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        assert parse_json(b'{"prices": [[1, 2.0]]}') == {"prices": [[1, 2.0]]}
        with pytest.raises(ValueError):
            parse_json(b"<html>")
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_concurrent_checkpoint_saves_group_commit_and_lose_nothing(tmp_path, monkeypatch):
    """Saves queued behind a write are covered by it (fewer writes), yet when save() returns the
    caller's change is on disk."""
    import threading

    import orjson

    from mts import checkpoint as ck
    from mts.layout import Layout, SeriesKey

    layout = Layout(tmp_path / "data", "parquet")
    cp = ck.Checkpoint(layout)
    writes = []
    real = ck.write_bytes_atomic

    def counting(path, data):
        writes.append(1)
        real(path, data)

    monkeypatch.setattr(ck, "write_bytes_atomic", counting)
    errors = []

    def worker(i):
        try:
            key = SeriesKey("market_chart", "1h", f"asset-{i}")
            for j in range(20):
                cp.extend(key, ck.Span(0, (j + 1) * 3_600_000))
                cp.save()
                doc = orjson.loads(layout.checkpoint_path.read_bytes())
                assert doc["series"]["market_chart"]["1h"][f"asset-{i}"]["to"] >= (j + 1) * 3_600_000
        except AssertionError as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert 1 <= len(writes) <= 160
    cp.last_run = {"outcome": "ok"}
    cp.save()  # a change that is not a span is still written
    assert orjson.loads(layout.checkpoint_path.read_bytes())["last_run"] == {"outcome": "ok"}


def _fast_samples(payload):
    """What the client's typed decode gives for this answer sent as JSON (NaN as the token)."""
    import json

    import polars as pl

    from mts import transforms as tf

    got = tf.decode_market_chart(json.dumps(payload).encode())
    return got if isinstance(got, pl.DataFrame) else tf.market_chart_samples(got)


def test_fast_parse_and_dedupe_paths_equal_the_general_ones():
    """The speed-ups take shortcuts only where the general path would give the same frame."""
    import copy
    import random

    import polars as pl
    from polars.testing import assert_frame_equal

    from mts import transforms as tf

    rng = random.Random(6)
    base_t = 1_763_600_000_000
    payload = {
        k: [[base_t + i * 3_600_000 + rng.randrange(60_000), rng.uniform(1, 9)] for i in range(40)]
        for k in ("prices", "market_caps", "total_volumes")
    }
    for k in ("market_caps", "total_volumes"):
        for i, p in enumerate(payload[k]):
            p[0] = payload["prices"][i][0]
    mutations = [
        lambda e, k, i: e[k][i].__setitem__(1, None),
        lambda e, k, i: e[k][i].__setitem__(1, "x"),
        lambda e, k, i: e[k].__setitem__(i, [1]),
        lambda e, k, i: e[k][i].__setitem__(0, e[k][i][0] + 1),
        lambda e, k, i: e[k][i].__setitem__(1, True),
        lambda e, k, i: e[k][i].__setitem__(1, 3),
        lambda e, k, i: e[k].pop(i),
        lambda e, k, i: e.__setitem__(k, []),
        lambda e, k, i: e[k][i].__setitem__(0, float(e[k][i][0])),
        lambda e, k, i: e[k][i].__setitem__(1, float("nan")),
        lambda e, k, i: e.pop(k),
        lambda e, k, i: e[k].__setitem__(i, "junk"),
        lambda e, k, i: e[k][i].__setitem__(0, e[k][i - 1][0]),  # duplicate sample time
    ]
    cases = [payload]
    for m in mutations:
        for k in ("prices", "market_caps", "total_volumes"):
            e = copy.deepcopy(payload)
            m(e, k, rng.randrange(1, 40))
            cases.append(e)
    for case in cases:
        assert_frame_equal(_fast_samples(case), tf.market_chart_samples(case))
        rows = tf.market_chart_samples(case).drop("type_error").drop_nulls("sampled_at")
        bucketed = tf.sort_dedupe(tf.hourly_rows(rows), "market_chart")
        key = ["timestamp"]
        order = key + [c for c in bucketed.columns if c not in key]
        unsorted = bucketed.sample(fraction=1.0, shuffle=True, seed=1)
        general = pl.concat([bucketed, unsorted]).sort(order, nulls_last=True).unique(
            subset=key, keep="first", maintain_order=True
        )
        assert_frame_equal(tf.sort_dedupe(pl.concat([bucketed, unsorted]), "market_chart"), general)
        assert_frame_equal(tf.sort_dedupe(bucketed, "market_chart"), general)


def test_api_economy_small_runs_at_the_minimum(tmp_path):
    out = run_bench("api_economy", tmp_path)
    assert "all runs at the minimum" in out
    assert out.count("ratio 1.00") == 4


def test_rate_saturation_small_runs_without_429(tmp_path):
    out = run_bench("rate_saturation", tmp_path)
    assert "429s 0" in out
