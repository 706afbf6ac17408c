"""Atomic file replacement: temp file in the same folder, fsync, os.replace, fsync the folder."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import StorageError


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` to produce the file's full contents at a temp path, then move it over
    `path`. Either the old file or the complete new one is there at every instant; the temp
    file is removed on failure. OSError (ENOSPC, EIO, EACCES) becomes StorageError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise StorageError(f"cannot write in {path.parent}: {exc.strerror or exc}") from exc
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    def _write(tmp: Path) -> None:
        tmp.write_bytes(data)

    write_atomic(path, _write)


def remove_stale_temps(folder: Path) -> int:
    """Delete temp files a killed writer left behind (they never replaced anything)."""
    removed = 0
    if folder.is_dir():
        for tmp in folder.rglob(".*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed
