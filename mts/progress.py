"""A rich progress bar for collects on a terminal; nothing when output is not a terminal."""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def progress_printer(settings):
    if not sys.stdout.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("collect"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("assets"),
        TextColumn("{task.fields[calls]} calls"),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("collect", total=None, calls=0)

        def update(done: int, total: int, result) -> None:
            bar.update(task, completed=done, total=total, calls=result.stats.total_calls)

        yield update
