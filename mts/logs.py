"""Console lines for people, JSON lines in the log folder for machines (rotated)."""

from __future__ import annotations

import logging
import logging.handlers
from datetime import UTC, datetime
from pathlib import Path

import orjson

_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for k, v in vars(record).items():
            if k not in _STD_ATTRS and not k.startswith("_"):
                doc[k] = v
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class RedactFilter(logging.Filter):
    """Defence in depth: the key is never logged on purpose, and never by accident either."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            msg = record.getMessage()
            for s in self.secrets:
                msg = msg.replace(s, "***")
            record.msg, record.args = msg, None
        return True


class LazyRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Creates the log folder on the first record, so a run that logs nothing touches nothing."""

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def setup_logging(log_dir: Path | None, verbose: bool, secrets: list[str] | None = None) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    redact = RedactFilter(secrets or [])
    console = logging.StreamHandler()
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    console.addFilter(redact)
    root.addHandler(console)
    if log_dir is not None:
        fh = LazyRotatingFileHandler(
            log_dir.absolute() / "mts.jsonl", maxBytes=5_000_000, backupCount=5, encoding="utf-8", delay=True
        )
        fh.setLevel(logging.DEBUG if verbose else logging.INFO)
        fh.setFormatter(JsonFormatter())
        fh.addFilter(redact)
        root.addHandler(fh)
    for noisy in ("urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
