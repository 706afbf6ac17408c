"""The data folder's lock: one collect at a time; a second exits 75 at once."""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout

from .errors import LockedError, StorageError


class DataLock:
    """An OS-level lock (flock): released by the kernel when its holder dies, so a lock left by
    a killed process never blocks the next run."""

    def __init__(self, path: Path):
        self.path = path
        self._lock: FileLock | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.path.parent}: {exc.strerror or exc}") from exc
        lock = FileLock(str(self.path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise LockedError(
                f"another mts run holds {self.path}; nothing was touched (cron overlap: let it finish)"
            ) from None
        except OSError as exc:
            raise StorageError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        self._lock = lock

    @property
    def held(self) -> bool:
        return self._lock is not None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
