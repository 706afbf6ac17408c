from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mts.errors import InvalidAssetId
from mts.layout import MAX_ENCODED_LEN, Layout, SeriesKey, decode_asset_id, encode_asset_id

HOSTILE = [
    "../../x",
    "a/b",
    "..",
    ".",
    "con",
    "NUL",
    "com1",
    "Bitcoin",
    "é",
    "😀",
    "50%off",
    "a\\b",
    "x\x00y",
    " ",
    "_",
]


@given(st.text(min_size=1, max_size=40))
def test_encoding_round_trips_and_names_one_safe_component(asset_id):
    try:
        enc = encode_asset_id(asset_id)
    except InvalidAssetId:
        return  # only ids too long to name a folder are refused
    assert decode_asset_id(enc) == asset_id
    assert "/" not in enc and "\\" not in enc and "\x00" not in enc
    assert enc not in (".", "..") and not enc.startswith(".")
    assert len(enc) <= MAX_ENCODED_LEN


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
def test_encoding_is_injective_even_on_case_insensitive_file_systems(a, b):
    try:
        ea, eb = encode_asset_id(a), encode_asset_id(b)
    except InvalidAssetId:
        return  # too long once encoded (30 four-byte characters): refused, not mis-stored
    if a != b:
        # Upper case is escaped too, so folders differ even where case does not count.
        assert ea.lower() != eb.lower()


@pytest.mark.parametrize("asset_id", HOSTILE)
def test_hostile_ids_stay_inside_their_folder(tmp_path, asset_id):
    layout = Layout(tmp_path)
    path = layout.series_file(SeriesKey("market_chart", "1h", asset_id), 2026)
    assert path.resolve().is_relative_to((tmp_path / "market_chart" / "interval=1h").resolve())
    assert path.parent.parent.parent == tmp_path / "market_chart" / "interval=1h"


def test_refuses_ids_too_long_for_a_file_name():
    with pytest.raises(InvalidAssetId):
        encode_asset_id("a" * 300)
    with pytest.raises(InvalidAssetId):
        encode_asset_id("")


def test_readers_see_the_original_ids(tmp_path):
    layout = Layout(tmp_path)
    for asset_id in ["bitcoin", "../../x", "a/b", "con", "é", "50%off"]:
        path = layout.series_file(SeriesKey("market_chart", "1h", asset_id), 2026)
        path.parent.mkdir(parents=True)
        pl.DataFrame({"v": [1.0]}).write_parquet(path)
    got = pl.scan_parquet(str(tmp_path / "market_chart" / "**" / "*.parquet"), hive_partitioning=True).collect()
    assert sorted(got["asset_id"].to_list()) == sorted(["bitcoin", "../../x", "a/b", "con", "é", "50%off"])
    assert sorted(k.asset_id for k in layout.iter_series("market_chart")) == sorted(got["asset_id"].to_list())
    assert not (Path(tmp_path).parent / "x").exists()
