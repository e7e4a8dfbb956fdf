"""A replay's progress: a rich bar with rate and ETA on a terminal, periodic log lines otherwise."""

import logging
import sys
import time
from typing import IO, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

logger = logging.getLogger("consumers.replay")


class ReplayProgress(Protocol):
    """Told where a replay stands; the unit is the source's (log positions, stream entries)."""

    def start(self, total: int | None, completed: int) -> None:
        """The build begins (or resumes with `completed` already done)."""
        ...

    def advance(self, amount: int, total: int | None) -> None:
        """A batch committed; `total` may have grown since (events kept coming)."""
        ...

    def finish(self, message: str) -> None:
        """The replay is done (or failed): say so."""
        ...


def rate_and_eta(done: int, started_with: int, total: int | None, elapsed: float) -> str:
    """`done/total (pct) at N/s, ETA Ts` as a log line says it."""
    rate = (done - started_with) / elapsed if elapsed > 0 else 0.0
    if total is None or total <= 0:
        return f"{done:,} done at {rate:,.0f}/s"
    left = max(total - done, 0)
    eta = f"{left / rate:,.0f} s" if rate > 0 else "unknown"
    return f"{done:,}/{total:,} ({100 * done / total:.0f} %) at {rate:,.0f}/s, ETA {eta}"


class LogProgress:
    """A log line every `interval` seconds: done, rate and ETA (for files, pipes, journald)."""

    def __init__(self, name: str, *, interval: float = 5.0) -> None:
        self._name = name
        self._interval = interval
        self._total: int | None = None
        self._done = 0
        self._started_with = 0
        self._began = self._last = time.monotonic()

    def start(self, total: int | None, completed: int) -> None:
        """Log the start."""
        self._total, self._done, self._started_with = total, completed, completed
        self._began = self._last = time.monotonic()
        where = f"{completed:,} of {total:,}" if total is not None else f"{completed:,}"
        logger.info("replay %s: building, starting at %s", self._name, where)

    def advance(self, amount: int, total: int | None) -> None:
        """Count, and log if the interval has passed."""
        self._done += amount
        self._total = total if total is not None else self._total
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            line = rate_and_eta(self._done, self._started_with, self._total, now - self._began)
            logger.info("replay %s: %s", self._name, line)

    def finish(self, message: str) -> None:
        """Log the end."""
        logger.info("replay %s: %s", self._name, message)


class BarProgress:
    """A rich progress bar with the rate and the time left, on a terminal."""

    def __init__(self, name: str, stream: IO[str] | None = None) -> None:
        self._bar = Progress(
            TextColumn(f"replay {name}"),
            BarColumn(),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=stream or sys.stderr),
        )
        self._task = self._bar.add_task("build", total=None, start=False, rate="0")
        self._began = time.monotonic()
        self._started_with = 0

    def start(self, total: int | None, completed: int) -> None:
        """Show the bar."""
        self._began, self._started_with = time.monotonic(), completed
        self._bar.start()
        self._bar.update(self._task, total=total, completed=completed)
        self._bar.start_task(self._task)

    def advance(self, amount: int, total: int | None) -> None:
        """Move the bar."""
        self._bar.advance(self._task, amount)
        done = self._bar.tasks[0].completed
        elapsed = time.monotonic() - self._began
        rate = (done - self._started_with) / elapsed if elapsed > 0 else 0.0
        self._bar.update(self._task, total=total, rate=f"{rate:,.0f}")

    def finish(self, message: str) -> None:
        """Stop the bar and print the outcome under it."""
        self._bar.stop()
        self._bar.console.print(message)


def progress_for(
    name: str, *, interval: float = 5.0, stream: IO[str] | None = None
) -> ReplayProgress:
    """A bar when `stream` (standard error by default) is a terminal, log lines otherwise."""
    target = stream or sys.stderr
    return BarProgress(name, target) if target.isatty() else LogProgress(name, interval=interval)
