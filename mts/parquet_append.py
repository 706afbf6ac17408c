"""Append rows to a Parquet file as a new row group, without decoding what it holds.

A Parquet file is its column chunks followed by a footer (Thrift compact `FileMetaData`) that
points at them by byte offset. Appending is: the old chunks, unchanged; the new row group's
chunks; one footer listing both. pyarrow writes the new row group (to a buffer, where its
offsets count from 0) and combines footers (`FileMetaData.append_row_groups`, which also checks
that the schemas match); the one thing neither pyarrow nor polars offers is moving a row group's
offsets to where its bytes land, so `shift_footer` re-encodes that footer with every file
offset in it moved. The caller writes the result to a temporary file and renames it over the old
one, as every write in mts does, and reads the appended rows back before trusting it.

Thrift compact protocol: https://github.com/apache/thrift/blob/master/doc/specs/thrift-compact-protocol.md
Field ids: parquet-format's parquet.thrift.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"PAR1"

# Compact protocol type ids.
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)
_UUID = 13

# Where file offsets live: struct path (field ids from FileMetaData down) -> offset field ids.
_ROW_GROUPS = 4  # FileMetaData.row_groups: list<RowGroup>
_RG_COLUMNS, _RG_FILE_OFFSET = 1, 5  # RowGroup.columns: list<ColumnChunk>; RowGroup.file_offset
_CC_OFFSETS = {2, 4, 6}  # ColumnChunk.file_offset, offset_index_offset, column_index_offset
_CC_META = 3  # ColumnChunk.meta_data: ColumnMetaData
_CMD_OFFSETS = {9, 10, 11, 14}  # data_page, index_page, dictionary_page, bloom_filter offsets


class FooterError(ValueError):
    """The footer is not the Thrift this module understands; the caller rewrites the file."""


def footer_bounds(f: BinaryIO, size: int) -> tuple[int, int]:
    """(start, length) of the Thrift footer of the Parquet file open as `f`."""
    if size < 12:
        raise FooterError("too short to be Parquet")
    f.seek(size - 8)
    length, magic = struct.unpack("<I4s", f.read(8))
    if magic != MAGIC or length > size - 12:
        raise FooterError("no Parquet footer")
    return size - 8 - length, length


def shift_footer(footer: bytes, delta: int) -> bytes:
    """`footer` (a Thrift compact FileMetaData) with every file offset in its row groups
    moved by `delta` bytes."""
    reader = _Reader(footer)
    out = io.BytesIO()
    _copy_struct(reader, out, delta, path=())
    if reader.pos != len(footer):
        raise FooterError("trailing bytes after the footer")
    return out.getvalue()


# Which offsets to move, by the path of field ids that leads to the struct being copied.
def _offset_fields(path: tuple[int, ...]) -> set[int]:
    if path == (_ROW_GROUPS,):
        return {_RG_FILE_OFFSET}
    if path == (_ROW_GROUPS, _RG_COLUMNS):
        return _CC_OFFSETS
    if path == (_ROW_GROUPS, _RG_COLUMNS, _CC_META):
        return _CMD_OFFSETS
    return set()


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise FooterError("footer ends mid-value")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise FooterError("varint too long")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise FooterError("footer ends mid-value")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk


def _from_zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _to_zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        if n < 0x80:
            out.append(n)
            return bytes(out)
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def _copy_struct(r: _Reader, out: io.BytesIO, delta: int, path: tuple[int, ...]) -> None:
    shift = _offset_fields(path)
    last_id = 0
    while True:
        start = r.pos
        header = r.byte()
        if header == 0:  # STOP
            out.write(b"\x00")
            return
        ftype, id_delta = header & 0x0F, header >> 4
        field_id = last_id + id_delta if id_delta else _from_zigzag(r.varint())
        last_id = field_id
        out.write(r.data[start : r.pos])  # the field header, as it was
        if ftype == _I64 and field_id in shift:
            value = _from_zigzag(r.varint())
            # 0 is "not set" (ColumnChunk.file_offset, deprecated, is often 0): no byte of a
            # file can be at offset 0, its magic is.
            moved = value + delta if value > 0 else value
            if moved < 0:
                raise FooterError("offset moved below zero")
            out.write(_varint(_to_zigzag(moved)))
            continue
        _copy_value(r, out, ftype, delta, path + (field_id,))


def _copy_value(r: _Reader, out: io.BytesIO, ftype: int, delta: int, path: tuple[int, ...]) -> None:
    start = r.pos
    if ftype in (_TRUE, _FALSE):
        return  # the value is in the type nibble
    if ftype == _BYTE:
        r.take(1)
    elif ftype in (_I16, _I32, _I64):
        r.varint()
    elif ftype == _DOUBLE:
        r.take(8)
    elif ftype == _UUID:
        r.take(16)
    elif ftype == _BINARY:
        r.take(r.varint())
    elif ftype == _STRUCT:
        _copy_struct(r, out, delta, path)
        return
    elif ftype in (_LIST, _SET):
        header = r.byte()
        size, etype = header >> 4, header & 0x0F
        if size == 15:
            size = r.varint()
        out.write(r.data[start : r.pos])
        for _ in range(size):
            if etype in (_TRUE, _FALSE):  # in a collection a bool is a byte
                out.write(r.take(1))
            else:
                _copy_value(r, out, etype, delta, path)
        return
    elif ftype == _MAP:
        size = r.varint()
        if size:
            types = r.byte()
            out.write(r.data[start : r.pos])
            for _ in range(size):
                for t in (types >> 4, types & 0x0F):
                    if t in (_TRUE, _FALSE):
                        out.write(r.take(1))
                    else:
                        _copy_value(r, out, t, delta, path)
            return
    else:
        raise FooterError(f"unknown Thrift type {ftype}")
    out.write(r.data[start : r.pos])


def append_row_group(path: Path, table: Any, out: Path, **write_options: Any) -> None:
    """Write to `out` the Parquet file `path` with the arrow `table` appended as one row group.
    `path` is only read. Raises FooterError (or pyarrow's errors) when it cannot be done."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    old_meta = pq.read_metadata(path)
    new_file = pa.BufferOutputStream()
    with pq.ParquetWriter(new_file, table.schema, write_page_index=False, **write_options) as writer:
        writer.write_table(table)
    new_bytes = new_file.getvalue().to_pybytes()
    new_start, new_len = footer_bounds(io.BytesIO(new_bytes), len(new_bytes))

    with open(path, "rb") as src, open(out, "wb") as dst:
        size = src.seek(0, io.SEEK_END)
        data_end, _ = footer_bounds(src, size)
        _copy_range(src, dst, data_end)
        # The new chunks sit where the old footer began; in their own file they began after
        # its 4-byte magic.
        dst.write(new_bytes[len(MAGIC) : new_start])
        delta = data_end - len(MAGIC)
        moved = shift_footer(new_bytes[new_start : new_start + new_len], delta)
        new_meta = pq.read_metadata(pa.BufferReader(MAGIC + moved + struct.pack("<I", len(moved)) + MAGIC))
        try:
            old_meta.append_row_groups(new_meta)
        except RuntimeError as exc:  # pyarrow: "AppendRowGroups requires equal schemas"
            raise FooterError(str(exc)) from exc
        footer = pa.BufferOutputStream()
        old_meta.write_metadata_file(footer)
        dst.write(footer.getvalue().to_pybytes()[len(MAGIC) :])  # footer, its length, magic


def _copy_range(src: BinaryIO, dst: BinaryIO, length: int) -> None:
    """Copy the first `length` bytes of `src` to the start of `dst`, in the kernel where it can
    (a reflink on file systems that have them); leaves `dst` positioned at `length`."""
    copied = 0
    try:
        while copied < length:
            n = os.copy_file_range(src.fileno(), dst.fileno(), length - copied, copied, copied)
            if n == 0:
                raise FooterError("file shorter than its footer says")
            copied += n
    except (AttributeError, OSError):  # no copy_file_range here: copy through user space
        src.seek(copied)
        dst.seek(copied)
        while copied < length:
            chunk = src.read(min(length - copied, 1 << 20))
            if not chunk:
                raise FooterError("file shorter than its footer says") from None
            dst.write(chunk)
            copied += len(chunk)
    dst.seek(length)
