"""Progress reporting that works on a terminal and in logs.

On a terminal, long stages show rich progress bars. When the output is not a terminal (a CI log,
``nohup``, a redirect), a bar would print nothing until it ends, so a stage instead writes one
plain line when it starts, then at most one line every ``interval_s`` seconds with done/total,
rate and estimated time left, and one line when it ends. :func:`stage_progress` is the one
implementation; everything that shows progress uses it.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

LOG_INTERVAL_S = 30.0
"""Seconds between two progress lines of one stage when the output is not a terminal."""

Advance = Callable[[int], None]


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class LineProgress:
    """Plain progress lines for logs: start, at most one per ``interval_s``, end."""

    def __init__(self, console: Console, description: str, total: int | None, interval_s: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console, self.description, self.total = console, description, total
        self.interval_s, self.clock = interval_s, clock
        self.done = 0
        self.start = self.last = clock()

    def line(self) -> str:
        elapsed = self.clock() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.description}: {self.done}"
        if self.total:
            text += f"/{self.total} ({100.0 * self.done / self.total:.0f} %)"
        text += f", {rate:.1f}/s, elapsed {_duration(elapsed)}"
        if self.total and rate > 0 and self.done < self.total:
            text += f", ETA {_duration((self.total - self.done) / rate)}"
        return text

    def begin(self) -> None:
        size = f"{self.total} items" if self.total else "size unknown"
        self.console.print(f"{self.description}: started ({size})", highlight=False, markup=False, soft_wrap=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.interval_s:
            self.last = now
            self.console.print(self.line(), highlight=False, markup=False, soft_wrap=True)

    def end(self, outcome: str = "done") -> None:
        """The last line: ``done`` or, when the stage ended by an error or an interrupt, ``stopped``."""
        self.console.print(self.line().replace(f"{self.description}: ", f"{self.description}: {outcome}, ", 1),
                           highlight=False, markup=False, soft_wrap=True)


@contextlib.contextmanager
def stage_progress(console: Console, description: str, total: int | None, *, quiet: bool = False,
                   interval_s: float = LOG_INTERVAL_S) -> Iterator[Advance]:
    """Yield ``advance(n)`` for one stage: a rich bar on a terminal, log lines otherwise."""
    if quiet:
        yield lambda n=1: None
        return
    if console.is_terminal:
        with Progress(TextColumn(f"[bold]{description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=console, transient=False) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n=1: bar.advance(task, n)
        return
    lines = LineProgress(console, description, total, interval_s)
    lines.begin()
    try:
        yield lines.advance
    except BaseException:
        lines.end("stopped")
        raise
    lines.end()
