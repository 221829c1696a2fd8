"""Rich progress bars for long work (hidden when not on a terminal unless forced)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def _enabled() -> bool:
    return os.environ.get("AFMRL_PROGRESS", "auto") != "off"


def progress_enabled() -> bool:
    """False when ``AFMRL_PROGRESS=off`` (tests, CI logs): no bars, no progress lines."""
    return _enabled()


@contextmanager
def progress(description: str, total: int | None, unit: str = "it") -> Iterator[Callable[[int], None]]:
    """``with progress("x", n) as advance: advance(1)``; shows rate (items/s) and ETA."""
    if not _enabled():
        yield lambda n=1: None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False, refresh_per_second=4) as bar:
        task = bar.add_task(description, total=total, rate="")

        def advance(n: int = 1) -> None:
            bar.advance(task, n)
            speed = bar.tasks[task].speed
            if speed:
                bar.update(task, rate=f"{speed:,.1f} {unit}/s")

        yield advance
