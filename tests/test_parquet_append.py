"""The row-group append: footers re-encoded with moved offsets, files every reader agrees on."""

from __future__ import annotations

import io
import struct

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mts.parquet_append import FooterError, append_row_group, footer_bounds, shift_footer


def parquet_bytes(table: pa.Table, **options) -> bytes:
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, **options)
    return buf.getvalue().to_pybytes()


def footer_of(data: bytes) -> bytes:
    start, length = footer_bounds(io.BytesIO(data), len(data))
    return data[start : start + length]


def metadata(footer: bytes) -> pq.FileMetaData:
    return pq.read_metadata(pa.BufferReader(b"PAR1" + footer + struct.pack("<I", len(footer)) + b"PAR1"))


def sample(n: int, offset: int = 0) -> pa.Table:
    return pa.table({
        "ts": pa.array(range(offset, offset + n), pa.timestamp("ms", tz="UTC")),
        "id": pa.array([f"coin-{i % 7}" for i in range(n)]),
        "price": pa.array([None if i % 5 == 0 else i * 1.5 for i in range(n)], pa.float64()),
        "rank": pa.array(range(n), pa.int64()),
    })


OPTIONS = [
    {},
    {"compression": "zstd", "write_page_index": True},
    {"compression": "snappy", "row_group_size": 7, "write_statistics": False},
    {"use_dictionary": False, "data_page_size": 64},
]


@pytest.mark.parametrize("options", OPTIONS)
def test_a_footer_shifted_by_zero_is_byte_for_byte_the_same(options):
    footer = footer_of(parquet_bytes(sample(40), **options))
    assert shift_footer(footer, 0) == footer


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("delta", [1, 127, 128, 1 << 20, (1 << 40) + 3])
def test_every_offset_moves_by_delta_and_nothing_else_changes(options, delta):
    footer = footer_of(parquet_bytes(sample(40), **options))
    before, after = metadata(footer), metadata(shift_footer(footer, delta))
    assert after.num_rows == before.num_rows and after.schema.equals(before.schema)
    assert after.num_row_groups == before.num_row_groups
    for g in range(before.num_row_groups):
        for c in range(before.num_columns):
            old, new = before.row_group(g).column(c).to_dict(), after.row_group(g).column(c).to_dict()
            for key in ("data_page_offset", "dictionary_page_offset", "file_offset"):
                if old.get(key) is not None:  # 0 means "not set" and stays 0
                    assert new[key] == (old[key] + delta if old[key] > 0 else 0), key
            assert {k: v for k, v in new.items() if "offset" not in k} == {
                k: v for k, v in old.items() if "offset" not in k
            }


def test_a_footer_that_is_not_thrift_is_refused():
    with pytest.raises(FooterError):
        shift_footer(b"\x19\xff\xff", 10)
    with pytest.raises(FooterError):
        footer_bounds(io.BytesIO(b"not parquet at all"), 18)


@pytest.mark.parametrize("options", [{}, {"write_page_index": True}])
def test_appending_to_a_file_written_by_pyarrow_or_polars(tmp_path, options):
    first, second = sample(30), sample(12, offset=1000)
    src = tmp_path / "a.parquet"
    src.write_bytes(parquet_bytes(first, **options))
    out = tmp_path / "b.parquet"
    append_row_group(src, second, out, compression="zstd")
    expected = pl.concat([pl.DataFrame(first), pl.DataFrame(second)])
    assert pl.read_parquet(out).equals(expected)
    assert pl.DataFrame(pq.read_table(out)).equals(expected)
    assert duckdb.sql(f"select count(*), count(price) from '{out}'").fetchall()[0] == (42, expected["price"].count())
    # A second append onto the result, and a file polars wrote.
    again = tmp_path / "c.parquet"
    append_row_group(out, sample(3, offset=5000), again)
    assert pl.read_parquet(again).height == 45
    by_polars = tmp_path / "p.parquet"
    pl.DataFrame(first).write_parquet(by_polars, statistics=True)
    out2 = tmp_path / "p2.parquet"
    append_row_group(by_polars, second.cast(pq.read_schema(by_polars)), out2)
    assert pl.read_parquet(out2).equals(expected)


@pytest.mark.parametrize("change", ["a column fewer", "a column of another type"])
def test_rows_of_another_schema_are_refused(tmp_path, change):
    src = tmp_path / "a.parquet"
    src.write_bytes(parquet_bytes(sample(5)))
    if change == "a column fewer":
        other = sample(5).drop_columns(["rank"])
    else:
        other = sample(5).set_column(3, "rank", pa.array([1.0] * 5))
    with pytest.raises(FooterError):
        append_row_group(src, other, tmp_path / "b.parquet")


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=6),
       compression=st.sampled_from(["zstd", "snappy", "none"]))
def test_any_sequence_of_appends_reads_back_as_the_concatenation(tmp_path_factory, sizes, compression):
    work = tmp_path_factory.mktemp("appends")
    path = work / "0.parquet"
    path.write_bytes(parquet_bytes(sample(sizes[0])))
    expected = [sample(sizes[0])]
    offset = sizes[0]
    for i, n in enumerate(sizes[1:], start=1):
        rows = sample(n, offset=offset)
        offset += n
        nxt = work / f"{i}.parquet"
        append_row_group(path, rows, nxt, compression=compression)
        path = nxt
        expected.append(rows)
    want = pl.concat([pl.DataFrame(t) for t in expected])
    assert pl.read_parquet(path).equals(want)
    assert pq.read_metadata(path).num_row_groups == len(sizes)


def test_without_copy_file_range_the_stored_bytes_are_copied_through_user_space(tmp_path, monkeypatch):
    import errno

    from mts import parquet_append

    def unsupported(*args):
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(parquet_append.os, "copy_file_range", unsupported)
    src = tmp_path / "a.parquet"
    src.write_bytes(parquet_bytes(sample(30)))
    out = tmp_path / "b.parquet"
    append_row_group(src, sample(5, offset=100), out)
    assert pl.read_parquet(out).equals(pl.concat([pl.DataFrame(sample(30)), pl.DataFrame(sample(5, offset=100))]))
