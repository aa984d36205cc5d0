"""The scan's progress bar: messages, messages per second, ETA (by bytes), on stderr."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn


class ScanProgress:
    """Context manager; the value it gives is the scanner's progress callback."""

    def __init__(self, total_bytes: int | None) -> None:
        self._progress = Progress(
            TextColumn("scanning"),
            BarColumn(),
            TextColumn("{task.fields[messages]:>9,} messages"),
            TextColumn("{task.fields[rate]:>7,.0f} msg/s"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task("scan", total=total_bytes, messages=0, rate=0.0)
        self._started = time.perf_counter()

    def __enter__(self) -> ScanProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, messages: int, done_bytes: int) -> None:
        elapsed = max(time.perf_counter() - self._started, 1e-6)
        self._progress.update(
            self._task, completed=done_bytes, messages=messages, rate=messages / elapsed
        )
