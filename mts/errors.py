"""One exception hierarchy, named after what the caller should do, mapped to exit codes here."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    PARTIAL = 3
    LOCKED = 75
    INTERRUPTED = 130


class MtsError(Exception):
    """Stop the run: a person has to act. The message is one line that says how to fix it."""

    exit_code: ExitCode = ExitCode.FAILURE


class UsageError(MtsError):
    """A bad flag or value."""

    exit_code = ExitCode.USAGE


class LockedError(MtsError):
    """Another run holds the data folder's lock."""

    exit_code = ExitCode.LOCKED


class StorageError(MtsError):
    """The data folder cannot be read or written (permissions, full disk, I/O error)."""


class CorruptFileError(StorageError):
    """A data file cannot be read or does not have the dataset's schema."""


class InvalidAssetId(ValueError):
    """An id that cannot name a folder (empty, or too long once encoded)."""


# --- API errors -------------------------------------------------------------------------------


class ApiError(MtsError):
    """Something the API answered. `status`/`error_code` are what it said, when it said them."""

    def __init__(self, message: str, *, status: int | None = None, error_code: int | None = None):
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class Unreachable(ApiError):
    """The API host cannot be reached at all: stop the run."""


class StopRun(ApiError):
    """Every further call would fail the same way (wrong host for the key, bad key, blocked)."""


class RetryLater(ApiError):
    """A temporary failure (429, 5xx, network, truncated body): retry after a pause."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class RateLimited(RetryLater):
    """HTTP 429 or a CDN throttle page."""


class SkipAsset(ApiError):
    """This asset cannot be fetched (unknown id, persistent bad answer): go on with the others."""


class HistoryLimit(ApiError):
    """The window reaches past the plan's history depth (CoinGecko 10012): clamp and retry."""


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code a command ends with when `exc` escapes it."""
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, MtsError):
        return exc.exit_code
    return ExitCode.FAILURE
