"""Progress a person can see wherever the output goes: a rich bar on a terminal; on anything else (a log file,
CI, `make demo > log`) a plain line on stderr when the work starts, at most every EVERY_S seconds, and when it
ends, so a long step never looks hung. Used by training stages, the demo's pre-training and eval runs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from rich.console import Console

EVERY_S = 10.0


class Update(Protocol):
    def __call__(self, done: int, **fields: Any) -> None: ...


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


class PlainLines:
    """`label: 40/200 steps (20%), loss 2.310, 1m20s elapsed, ~5m20s left` lines on a console."""

    def __init__(self, console: Console, label: str, total: int, unit: str, every_s: float) -> None:
        self.console, self.label, self.total, self.unit, self.every_s = console, label, total, unit, every_s
        self.start = self.last = time.monotonic()
        self.done, self.fields, self.printed_done = 0, {}, -1
        self._print()

    def update(self, done: int, **fields: Any) -> None:
        self.done, self.fields = done, self.fields | fields
        now = time.monotonic()
        if now - self.last >= self.every_s or (done >= self.total and self.printed_done != done):
            self._print()

    def _print(self) -> None:
        self.last, self.printed_done = time.monotonic(), self.done
        elapsed = self.last - self.start
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        extra = "".join(f", {k} {v:.3f}" if isinstance(v, float) else f", {k} {v}" for k, v in self.fields.items()
                        if v is not None and v == v)  # v == v: not NaN
        left = (f", ~{_clock(elapsed * (self.total - self.done) / self.done)} left"
                if 0 < self.done < self.total else "")
        unit = f" {self.unit}" if self.unit else ""
        self.console.print(f"{self.label}: {self.done}/{self.total}{unit}{pct}{extra}, {_clock(elapsed)} elapsed"
                           f"{left}", highlight=False, markup=False)


@contextmanager
def progress_bar(label: str, total: int, *, unit: str = "steps", console: Console | None = None,
                 fields: dict[str, Any] | None = None, every_s: float = EVERY_S) -> Iterator[Update]:
    """Yields `update(done, **fields)`; `fields` are extra values shown beside the count (e.g. loss)."""
    console = console or Console(file=sys.stderr)
    if not console.is_terminal:
        lines = PlainLines(console, label, total, unit, every_s)
        yield lines.update
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    names = list(fields or {})
    shown = [TextColumn(f"{n} {{task.fields[{n}]}}") for n in names]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *shown,
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=total, **{n: "" for n in names})

        def update(done: int, **values: Any) -> None:
            shown_values = {k: f"{v:.3f}" if isinstance(v, float) else v for k, v in values.items()}
            bar.update(task, completed=done, **shown_values)

        yield update
