"""Progress of long work, one way everywhere: percentage, count, rate and ETA.

On a terminal it is a rich bar that stays on screen when done; in a log or CI (stdout not a TTY) it is a plain
line every 10 % — no control characters, no blank lines. A Ctrl-C inside ``progress(...)`` is caught by the
trainers that keep their best state; they record it with :func:`note_interrupt`, and the command line reads it with
:func:`take_interrupt` to mark the saved model and exit with code 130.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["progress", "Bar", "note_interrupt", "take_interrupt", "Interrupt", "set_quiet", "deferred_interrupt",
           "DeferredInterrupt"]

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence every progress display (``xloc -q``)."""
    global _quiet
    _quiet = bool(quiet)


@dataclass
class Interrupt:
    """Where a Ctrl-C stopped a loop: ``done`` of ``total`` steps of ``what``."""

    what: str
    done: int
    total: int


_interrupt: Interrupt | None = None


def note_interrupt(what: str, done: int, total: int) -> None:
    """Record that a Ctrl-C stopped ``what`` after ``done`` of ``total`` steps (the trainer kept its best state)."""
    global _interrupt
    _interrupt = Interrupt(what, int(done), int(total))


def take_interrupt() -> Interrupt | None:
    """The last recorded interrupt, cleared."""
    global _interrupt
    found, _interrupt = _interrupt, None
    return found


class Bar:
    """One task's progress: ``advance(n, **info)``; ``info`` (e.g. ``loss="0.12"``) is shown beside the count."""

    def __init__(self, description: str, total: int, enabled: bool, start: int = 0) -> None:
        self.description, self.total, self.enabled = description, max(int(total), 1), enabled and not _quiet
        self.done, self._t0 = int(start), time.perf_counter()
        self._start = self.done  # a resumed run: the rate counts this run's steps only
        self._next_line = 10 * (int(100 * self.done / self.total) // 10 + 1)
        self._info = ""
        self._rich: Any = None
        self._task: Any = None
        if self.enabled and sys.stdout.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._rich = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                                  MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                                  TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
            self._rich.start()
            self._task = self._rich.add_task(description, total=self.total, completed=self.done, rate="", info="")

    def advance(self, n: int = 1, **info: Any) -> None:
        self.done += n
        if info:
            self._info = "  ".join(f"{k} {v}" for k, v in info.items())
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self._t0
        rate = (self.done - self._start) / elapsed if elapsed > 0 else 0.0
        if self._rich is not None:
            self._rich.update(self._task, advance=n, rate=f"{rate:.1f}/s", info=self._info)
            return
        percent = 100 * self.done / self.total
        if percent >= self._next_line or self.done >= self.total:
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            print(f"{self.description}: {percent:3.0f}% ({self.done}/{self.total}), {rate:.1f}/s, "
                  f"{elapsed:.0f} s, ETA {eta:.0f} s{'  ' + self._info if self._info else ''}", flush=True)
            while self._next_line <= percent:
                self._next_line += 10

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None


@contextlib.contextmanager
def progress(description: str, total: int, *, enabled: bool = True, start: int = 0) -> Iterator[Bar]:
    """A :class:`Bar` for ``total`` steps (``start`` of them done by an earlier run), closed on exit (also on Ctrl-C
    and errors)."""
    bar = Bar(description, total, enabled, start)
    try:
        yield bar
    finally:
        bar.close()


class DeferredInterrupt:
    """Whether a Ctrl-C arrived (``requested``) while :func:`deferred_interrupt` held it back."""

    requested: bool = False


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[DeferredInterrupt]:
    """Hold a Ctrl-C (SIGINT) back until the loop checks ``requested`` between steps, so a trainer stops on a step
    boundary and can write a consistent checkpoint; a second Ctrl-C interrupts at once. Outside the main thread
    (where signal handlers cannot be set) nothing is deferred."""
    import signal
    import threading

    flag = DeferredInterrupt()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(_signum: int, _frame: Any) -> None:
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
