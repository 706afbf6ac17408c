"""The checkpoint remembers each Parquet file's identity and footer span, so a load reads the
footers of changed files only; a changed file is still checked."""

from __future__ import annotations

import os

import orjson

from mts.checkpoint import Checkpoint
from mts.collector import Collector
from mts.layout import Layout

from .conftest import NOW


def _collected(make_settings) -> Layout:
    s = make_settings(days=3, top=3, datasets="market_chart,ohlc")
    assert Collector(s, clock=lambda: NOW).run().exit_code == 0
    return Layout(s.data_dir)


def _scribble_keeping_identity(path) -> None:
    """Same size and mtime, different bytes: what the fingerprint cannot see."""
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.write(b"\0" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_every_data_file_is_fingerprinted_with_the_span_its_footer_records(make_settings):
    layout = _collected(make_settings)
    files = orjson.loads(layout.checkpoint_path.read_bytes())["files"]
    on_disk = {p.relative_to(layout.root).as_posix() for p in layout.data_files() if "markets" not in p.parts}
    assert set(files) == on_disk
    cp = Checkpoint.load(layout)
    for rel, (size, _, start, end) in files.items():
        path = layout.root / rel
        assert path.stat().st_size == size
        key = next(k for k in cp.spans() if path.is_relative_to(layout.series_dir(k)))
        assert (cp.span(key).start, cp.span(key).end) == (start, end)


def test_an_unchanged_file_is_trusted_unread_and_a_changed_one_is_checked(make_settings):
    layout = _collected(make_settings)
    victim = next(p for p in layout.data_files() if "market_chart" in p.parts)

    _scribble_keeping_identity(victim)
    assert Checkpoint.load(layout).corrupt == []  # the footer was not read: the saving

    os.utime(victim)  # a new mtime, as any real write gives
    corrupt = Checkpoint.load(layout).corrupt
    assert [path for _, path, _ in corrupt] == [victim]


def test_a_checkpoint_with_malformed_fingerprints_falls_back_to_reading_footers(make_settings):
    layout = _collected(make_settings)
    doc = orjson.loads(layout.checkpoint_path.read_bytes())
    doc["files"] = {rel: ["x"] for rel in doc["files"]}
    layout.checkpoint_path.write_bytes(orjson.dumps(doc))
    victim = next(p for p in layout.data_files() if "ohlc" in p.parts)
    _scribble_keeping_identity(victim)
    assert [path for _, path, _ in Checkpoint.load(layout).corrupt] == [victim]
