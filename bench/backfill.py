"""Backfill benchmark: mts vs the floor vs a naive CSV pipeline, side by side in one run.

    .venv/bin/python bench/backfill.py            # 300 assets x 365 days of hourly market_chart
    .venv/bin/python bench/backfill.py --small    # CI smoke form

1. mts backfills the universe from the emulator (its own process, no latency, no rate limit);
   client CPU, wall, rows/s and peak RSS come from the mts process alone (os.wait4).
2. Every /market_chart/range answer mts received is recorded to disk once.
3. The floor reads those bytes, parses them (orjson), and writes the same rows as one Parquet
   file per asset-year: nothing else (no validation, no merge, no checkpoint, no fsync).
   The transport line is the other half of what any client must do: the same GETs on one
   stdlib http.client connection, bodies read and dropped. mts/(floor + transport) says how much
   of mts's CPU is neither moving the bytes nor the floor's parse and write.
4. The naive baseline, the older CSV pipeline's design, parses them with the stdlib json module
   and appends row by row with the stdlib csv module.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PY,
    EmulatorProcess,
    common_args,
    count_rows,
    fresh_dir,
    mts_cmd,
    ratio,
    run_measured,
    workdir,
)

HOUR_MS = 3_600_000


def range_urls(emu: EmulatorProcess) -> list[tuple[str, str]]:
    """(asset, URL) of every /market_chart/range answer mts got a 200 for, in the order it asked."""
    from urllib.parse import urlencode

    root = emu.base_url.rsplit("/api/v3", 1)[0]
    log = [x for x in emu.requests_log() if x["endpoint"] == "range" and x["status"] == 200]
    return [(r["asset"], f"{root}{r['path']}?{urlencode(r['params'])}") for r in log]


def record(urls: list[tuple[str, str]], out: Path) -> int:
    """Fetch again every range answer mts got, and store the bytes (one folder per asset)."""
    import requests

    n = 0
    with requests.Session() as s:
        for i, (asset, url) in enumerate(urls):
            resp = s.get(url, timeout=60)
            resp.raise_for_status()
            folder = out / asset
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:06d}.json").write_bytes(resp.content)
            n += 1
    return n


def floor(rec: Path, out: Path) -> int:
    """Parse the recorded bytes and write the same rows as one Parquet per asset-year."""
    import gc

    import orjson
    import polars as pl

    # The cyclic GC would scan the decoder's thousands of fresh lists every 700 allocations
    # (two thirds of the decode); mts pauses it while decoding, and so does the floor.
    gc.disable()

    rows = 0
    for asset in sorted(p for p in rec.iterdir() if p.is_dir()):
        frames = []
        for body in sorted(asset.iterdir()):
            doc = orjson.loads(body.read_bytes())
            cols = {}
            for api, col in (("prices", "price"), ("market_caps", "market_cap"), ("total_volumes", "total_volume")):
                ts, values = zip(*doc[api], strict=True)  # the arrays share their timestamps
                cols.setdefault("sampled_at", pl.Series(ts).cast(pl.Int64))
                cols[col] = pl.Series(values).cast(pl.Float64)  # inferred: the fastest path
            frames.append(pl.DataFrame(cols))
        df = pl.concat(frames).select(
            timestamp=(pl.col("sampled_at") - pl.col("sampled_at") % HOUR_MS).cast(pl.Datetime("ms", "UTC")),
            price="price", market_cap="market_cap", total_volume="total_volume",
            sampled_at=pl.col("sampled_at").cast(pl.Datetime("ms", "UTC")),
        )
        for year, part in _by_year(df):
            folder = out / f"asset_id={asset.name}" / f"year={year}"
            folder.mkdir(parents=True, exist_ok=True)
            part.write_parquet(folder / "data.parquet", compression="zstd")
            rows += part.height
    return rows


def transport(url_file: Path) -> int:
    """GET every URL on one kept-alive http.client connection; read each body, keep nothing."""
    import http.client
    from urllib.parse import urlsplit

    urls = [url for _, url in json.loads(url_file.read_text())]
    first = urlsplit(urls[0])
    conn = http.client.HTTPConnection(first.hostname, first.port, timeout=60)
    n = 0
    for url in urls:
        u = urlsplit(url)
        conn.request("GET", f"{u.path}?{u.query}", headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise SystemExit(f"{url}: HTTP {resp.status}")
        n += len(body)
    conn.close()
    return n


def _by_year(df):

    years = df["timestamp"].dt.year()
    for year in years.unique().sort().to_list():
        yield year, df.filter(years == year)


def recorded_bodies(rec: Path):
    """(asset, body) of every recorded answer, asset by asset."""
    for asset in sorted(p for p in rec.iterdir() if p.is_dir()):
        for body in sorted(asset.iterdir()):
            yield asset.name, body.read_bytes()


def fetched_bodies(url_file: Path):
    """(asset, body) fetched as the older pipeline did: urllib.request, one GET after another."""
    from urllib.request import Request, urlopen

    for asset, url in json.loads(url_file.read_text()):
        with urlopen(Request(url, headers={"Accept": "application/json"}), timeout=60) as resp:
            yield asset, resp.read()


def naive(bodies, out: Path) -> int:
    """The older pipeline's design: stdlib json, then one csv.writer.writerow per row, appended."""
    rows = 0
    for asset, body in bodies:
        folder = out / asset
        folder.mkdir(parents=True, exist_ok=True)
        doc = json.loads(body)
        files: dict[int, tuple] = {}  # year -> (file, writer), appended to for this answer
        triples = zip(doc["prices"], doc["market_caps"], doc["total_volumes"], strict=False)
        for (t, price), (_, cap), (_, vol) in triples:
            hour = datetime.fromtimestamp((t - t % HOUR_MS) / 1000, UTC)
            if hour.year not in files:
                f = open(folder / f"{hour.year}.csv", "a", newline="")  # noqa: SIM115
                files[hour.year] = (f, csv.writer(f))
            files[hour.year][1].writerow(
                [hour.isoformat(), price, cap, vol, datetime.fromtimestamp(t / 1000, UTC).isoformat()]
            )
            rows += 1
        for f, _ in files.values():
            f.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    roles = {  # child roles, measured from outside
        "_floor": lambda src, out: floor(Path(src), Path(out)),
        "_naive": lambda src, out: naive(recorded_bodies(Path(src)), Path(out)),
        "_naive_http": lambda src, out: naive(fetched_bodies(Path(src)), Path(out)),
        "_transport": lambda src, out: transport(Path(src)),
    }
    if argv and argv[0] in roles:
        print(roles[argv[0]](*argv[1:3]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(p, assets=300, days=365)
    args = p.parse_args(argv)
    if args.small:
        args.assets, args.days = 3, 10
    work = workdir(args.workdir, "backfill")
    print(f"backfill: {args.assets} assets x {args.days} days of hourly market_chart (work dir {work})")
    with EmulatorProcess() as emu:
        data = work / "mts" / "data"
        env = emu.env(data, work / "mts" / "logs")
        cmd = mts_cmd("collect", "--days", str(args.days), "--top", str(args.assets), "--datasets", "market_chart")
        emu_cpu0 = emu.cpu_seconds()
        m = run_measured(cmd, env)
        emu_cpu = emu.cpu_seconds() - emu_cpu0
        if m.rc != 0:
            print(m.stdout, m.stderr, file=sys.stderr)
            raise SystemExit(f"mts exited {m.rc}")
        urls = range_urls(emu)
        url_file = work / "urls.json"
        url_file.write_text(json.dumps(urls))
        rec = fresh_dir(work / "responses")
        calls = record(urls, rec)
        # Both fetch from the emulator; its answers are the same bytes mts got.
        t = run_measured([PY, __file__, "_transport", str(url_file), "-"])
        nh = run_measured([PY, __file__, "_naive_http", str(url_file), str(fresh_dir(work / "naive_http"))])
    body_bytes = sum(f.stat().st_size for f in rec.rglob("*.json"))
    f = run_measured([PY, __file__, "_floor", str(rec), str(fresh_dir(work / "floor"))])
    n = run_measured([PY, __file__, "_naive", str(rec), str(fresh_dir(work / "naive"))])
    failed = [u.stderr for u in (f, n, t, nh) if u.rc]
    if failed:
        raise SystemExit(f"floor/naive/transport failed: {failed}")

    mts_rows = count_rows(data)
    floor_rows, naive_rows = int(f.stdout.split()[-1]), int(n.stdout.split()[-1])
    naive_http_rows = int(nh.stdout.split()[-1])
    print(f"{calls} range answers, {body_bytes / 1e6:,.1f} MB of JSON;"
          f" rows: mts {mts_rows:,}, floor {floor_rows:,}, naive {naive_rows:,}")
    print(m.line("mts collect", mts_rows))
    print(f.line("floor (parse + Parquet)", floor_rows))
    print(t.line("transport (GETs only)"))
    print(n.line("naive (json + csv rows)", naive_rows))
    print(nh.line("naive with its GETs", naive_http_rows))
    print(f"emulator's own CPU during the mts run: {emu_cpu:.2f} s (not counted above)")
    print(f"ratio mts/floor     cpu {ratio(m.cpu, f.cpu)}  wall {ratio(m.wall, f.wall)}   (target cpu <= 2x)")
    print(f"ratio mts/(floor + transport)  cpu {ratio(m.cpu, f.cpu + t.cpu)}")
    print(f"ratio naive/mts     cpu {ratio(n.cpu, m.cpu)}  wall {ratio(n.wall, m.wall)}   (target >= 5x;"
          " naive reads recorded bytes, mts fetches them)")
    print(f"ratio naive with its GETs/mts  cpu {ratio(nh.cpu, m.cpu)}  wall {ratio(nh.wall, m.wall)}"
          "   (both fetch from the emulator)")
    print(f"mts client CPU {m.cpu:.2f} s (target <= 10 s at 300 x 365), peak RSS {m.rss_mb:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
