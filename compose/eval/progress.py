"""What an evaluation tells the person waiting for it, on stderr.

A terminal gets a progress bar; anything else (a CI log, ``2> eval.log``, ``nohup``) gets
plain lines, because a bar there is either drawn once at the end or not at all, and an
evaluation that runs for an hour in silence looks hung. A resumed run says so first, so that
"8/8 done in 2 s" is not mistaken for a fast model.
"""

from __future__ import annotations

import math
import time
from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

LINES_AT_LEAST_EVERY_S = 30.0
LINES_PER_RUN = 10


class EvalProgress:
    """Reports ``done`` of ``total`` questions: a bar on a terminal, else a line per tenth of
    the run (and at least every ``every_s`` seconds). ``enabled=False`` keeps it silent."""

    def __init__(self, title: str, total: int, done: int, *, enabled: bool,
                 console: Console | None = None,
                 every_s: float = LINES_AT_LEAST_EVERY_S) -> None:
        self.title = title
        self.total = total
        self.done = done
        self.resumed = done
        self.errors = 0
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.every_s = every_s
        self.step = max(1, math.ceil((total - done) / LINES_PER_RUN))
        self.started = time.monotonic()
        self.last_line = self.started
        self.bar: Progress | None = None

    def __enter__(self) -> EvalProgress:
        if not self.enabled:
            return self
        if self.done:
            self.console.print(f"resuming: {self.done} of {self.total} done", highlight=False)
        if self.console.is_terminal:
            self.bar = Progress("[progress.description]{task.description}", BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(), console=self.console)
            self.bar.__enter__()
            self.task = self.bar.add_task(escape(self.title), total=self.total,
                                          completed=self.done)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.__exit__(kind, error, traceback)

    def advance(self, failed: bool = False) -> None:
        """One more question finished (``failed``: its record holds an error)."""
        self.done += 1
        self.errors += failed
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.advance(self.task)
            return
        now = time.monotonic()
        ran = self.done - self.resumed
        if ran % self.step == 0 or self.done == self.total or now - self.last_line >= self.every_s:
            self.last_line = now
            errors = f", {self.errors} error(s)" if self.errors else ""
            self.console.print(f"{escape(self.title)}: {self.done}/{self.total} done{errors}, "
                               f"{now - self.started:.0f} s", highlight=False, soft_wrap=True)
