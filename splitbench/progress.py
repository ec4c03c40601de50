"""Progress of long loops: one helper for every command.

    with track("codec points", total=len(points), unit="points") as bar:
        for point in points:
            ...
            bar.advance()

    for setup in track_iter(setups, "timing cuts", unit="cuts"):
        ...

Where standard error is a terminal this is a rich bar with done/total, items per second and
the time left. Elsewhere (a log file, a pipe, CI) it is plain text on standard error, without
escape codes, at most one block every ``SPLITBENCH_PROGRESS_SECONDS`` seconds (default 30;
the first when work has gone on that long, so that quick commands and one-line errors stay
quiet) plus a final line for work that took that long, e.g.::

    codec points: 12/40 (30%), 0.41 points/s, ETA 1 min 08 s

A bar opened while another is open (an epoch's images inside the epochs) joins the same
display, one level deeper: indented in both modes. Bars are safe in threads (they share the
display) and in worker processes started by :mod:`multiprocessing`, which show nothing.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

INTERVAL_VARIABLE = "SPLITBENCH_PROGRESS_SECONDS"
DEFAULT_INTERVAL_S = 30.0

T = TypeVar("T")

_clock = time.monotonic  # tests put a fake clock here
_lock = threading.RLock()
_display: _Display | None = None
_nesting = threading.local()  # .depth: bars opened by track() in this thread and not yet closed


class Bar:
    """One loop's progress. ``advance`` as work is done; a bar that shows nothing still counts."""

    def __init__(self, display: _Display | None, description: str, total: float | None, unit: str,
                 completed: float = 0, transient: bool = False, depth: int = 0, info: str = "") -> None:
        self.description, self.total, self.unit, self.info = description, total, unit, info
        self.completed = self.initial = completed
        self.transient, self.depth = transient, depth
        self.started = self.changed_at = _clock()
        self.reported = False  # its final line is out
        self.task: Any = None  # its rich task
        self._display = display

    def advance(self, amount: float = 1, *, info: str | None = None) -> None:
        """``amount`` more items done (and, when given, the text shown after the figures)."""
        self.update(completed=self.completed + amount, info=info)

    def update(self, *, completed: float | None = None, total: float | None = None, description: str | None = None,
               info: str | None = None) -> None:
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if description is not None:
            self.description = description
        if info is not None:
            self.info = info
        if self._display is not None:
            self.changed_at = _clock()
            self._display.changed(self)

    def log(self, message: str) -> None:
        """A line above the bars (a plain line on standard error); nothing when the bar shows nothing."""
        if self._display is not None:
            self._display.log(message)

    @property
    def finished(self) -> bool:
        return self.total is not None and self.completed >= self.total

    def rate(self, now: float) -> float | None:
        """Items per second since the bar opened (items it started with do not count)."""
        return _average(self.completed - self.initial, now - self.started)

    def line(self, now: float, *, final: bool = False) -> str:
        """``codec points: 12/40 (30%), 0.41 points/s, ETA 1 min 08 s`` (the final one ends in its duration)."""
        if self.total is not None:
            share = 100 if not self.total else min(100, math.floor(100 * self.completed / self.total))
            text = f"{self.description}: {_count(self.completed)}/{_count(self.total)} ({share}%)"
        else:
            text = f"{self.description}: {_count(self.completed)} {self.unit}"
        rate = self.rate(now)
        if rate is not None:
            text += f", {_rate(rate)} {self.unit}/s"
        if final:
            text += f", {'done in' if self.finished or self.total is None else 'stopped after'} " \
                    f"{duration(now - self.started)}"
        elif rate and self.total is not None and not self.finished:
            text += f", ETA {duration((self.total - self.completed) / rate)}"
        if self.info:
            text += f", {self.info}"
        return "  " * self.depth + text


@contextmanager
def track(description: str, total: float | None = None, *, unit: str = "items", enabled: bool = True,
          completed: float = 0, transient: bool = False, info: str = "") -> Iterator[Bar]:
    """A bar for the ``with`` block; ``total`` None for work of unknown size.

    ``transient``: on a terminal, the bar disappears when the block ends (else it stays).
    """
    depth = getattr(_nesting, "depth", 0)
    display = _acquire(transient) if enabled else None
    bar = _open(display, description, total, unit, completed, transient, depth, info)
    _nesting.depth = depth + 1
    try:
        yield bar
    finally:
        _nesting.depth = depth
        _close(bar)
        if display is not None:
            _release(display)


def track_iter(iterable: Iterable[T], description: str, total: float | None = None, *, unit: str = "items",
               enabled: bool = True, transient: bool = False) -> Iterator[T]:
    """The items of ``iterable``, one step of a bar each (``total``: its length where it has one)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with track(description, total, unit=unit, enabled=enabled, transient=transient) as bar:
        for item in iterable:
            yield item
            bar.advance()


def log(message: str) -> None:
    """``message`` on standard error: above the bars while some show, else as a line of its own."""
    display = _display
    if display is not None and display.pid == os.getpid():
        display.log(message)
    elif _may_show():
        print(message, file=sys.stderr, flush=True)


def say(message: str) -> None:
    """A line of what a command is doing, on standard output beside its tables (as the command line
    printed them). Standard error stays for progress and for a failing command's one error line."""
    print(message, flush=True)


class Bars:
    """Several sibling bars by task id, as rich's ``Progress`` offers them (``add_task``, ``update``).

    For callers written against rich; new code uses :func:`track`. Each task is a :class:`Bar`;
    all of them end with the ``with`` block.
    """

    def __init__(self, *, unit: str = "items", enabled: bool = True, transient: bool = True) -> None:
        self.unit, self.enabled, self.transient = unit, enabled, transient
        self._display: _Display | None = None
        self._bars: dict[int, Bar] = {}
        self._next = 0

    def __enter__(self) -> Bars:
        self._display = _acquire(self.transient) if self.enabled else None
        return self

    def __exit__(self, *exc: object) -> None:
        for task in list(self._bars):
            self.remove_task(task)
        if self._display is not None:
            _release(self._display)
            self._display = None

    def add_task(self, description: str, total: float | None = None, *, completed: float = 0, unit: str | None = None,
                 info: str = "", **fields: object) -> int:
        bar = _open(self._display, description, total, unit or self.unit, completed, False,
                    getattr(_nesting, "depth", 0), info)
        task, self._next = self._next, self._next + 1
        self._bars[task] = bar
        return task

    def update(self, task: int, *, advance: float = 0, completed: float | None = None, total: float | None = None,
               description: str | None = None, info: str | None = None, **fields: object) -> None:
        bar = self._bars[task]
        bar.update(completed=bar.completed + advance if completed is None else completed + advance, total=total,
                   description=description, info=info)

    def remove_task(self, task: int) -> None:
        _close(self._bars.pop(task))

    def log(self, message: str) -> None:
        if self._display is not None:
            self._display.log(message)


def interval_s() -> float:
    """Seconds between plain progress lines: ``SPLITBENCH_PROGRESS_SECONDS``, else 30."""
    try:
        return max(0.0, float(os.environ.get(INTERVAL_VARIABLE, DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def duration(seconds: float) -> str:
    """``0.4 s``, ``42 s``, ``1 min 08 s``, ``2 h 05 min``."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _count(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def _rate(per_s: float) -> str:
    if per_s >= 100:
        return f"{per_s:,.0f}"
    if per_s >= 1:
        return f"{per_s:.1f}"
    return f"{per_s:.2g}"  # two figures: 0.41, 0.013


def _average(done: float, seconds: float | None) -> float | None:
    return done / seconds if seconds and seconds > 0 and done > 0 else None


def _may_show() -> bool:
    """Not in a worker process (they show nothing) and with a standard error to write to."""
    return multiprocessing.parent_process() is None and sys.stderr is not None


def _open(display: _Display | None, description: str, total: float | None, unit: str, completed: float,
          transient: bool, depth: int, info: str) -> Bar:
    bar = Bar(display, description, total, unit, completed, transient, depth, info)
    if display is not None:
        with _lock:
            display.open(bar)
    return bar


def _close(bar: Bar) -> None:
    display = bar._display
    if display is not None:
        with _lock:
            display.close(bar)


def _acquire(transient: bool) -> _Display | None:
    """The process's display, started by the first bar (plain or rich by standard error)."""
    global _display
    if not _may_show():
        return None
    with _lock:
        if _display is None or _display.pid != os.getpid():  # none yet, or a parent's (forked) one
            try:
                terminal = sys.stderr.isatty()
            except (AttributeError, ValueError):  # closed or replaced by an object without isatty
                terminal = False
            _display = _Rich(transient) if terminal else _Plain(interval_s())
        _display.holders += 1
        return _display


def _release(display: _Display) -> None:
    global _display
    with _lock:
        display.holders -= 1
        if display.holders == 0:
            display.stop()
            if _display is display:
                _display = None


class _Display:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.holders = 0
        self.bars: list[Bar] = []

    def open(self, bar: Bar) -> None:
        self.bars.append(bar)

    def close(self, bar: Bar) -> None:
        self.bars.remove(bar)

    def changed(self, bar: Bar) -> None:
        raise NotImplementedError

    def log(self, message: str) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pass


class _Plain(_Display):
    """Lines on standard error: the open bars every ``interval`` seconds at most, and final lines.

    A bar's final line comes when it reaches its total or closes, if it did any work and ran for
    at least ``interval`` (an epoch's short image bar does not repeat it, and a command that is
    over in seconds prints nothing).
    """

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval
        self.last = _clock()  # the first block after ``interval`` seconds of work

    def changed(self, bar: Bar) -> None:
        now = _clock()
        with _lock:
            if bar.finished and not bar.reported:
                self._final(bar, now)
                return
            if now - self.last < self.interval:
                return
            shown = [b for b in self.bars if not b.finished and (b.total is not None or b.changed_at > self.last)]
            if shown:
                self._write([b.line(now) for b in shown], now)

    def close(self, bar: Bar) -> None:
        if not bar.reported:
            self._final(bar, _clock())
        super().close(bar)

    def log(self, message: str) -> None:
        with _lock:
            print(message, file=sys.stderr, flush=True)

    def _final(self, bar: Bar, now: float) -> None:
        bar.reported = True
        if bar.completed > bar.initial and now - bar.started >= self.interval:
            self._write([bar.line(now, final=True)], now)

    def _write(self, lines: list[str], now: float) -> None:
        self.last = now
        try:
            print("\n".join(lines), file=sys.stderr, flush=True)
        except (OSError, ValueError):  # a closed pipe or file: progress is not worth failing for
            pass


class _Rich(_Display):
    """One rich ``Progress`` on standard error holding every open bar as a task."""

    def __init__(self, transient: bool) -> None:
        super().__init__()
        # stdout printed while the bars show moves above them only where both go to the terminal
        redirect = bool(getattr(sys.stdout, "isatty", lambda: False)())
        self.progress = Progress(
            TextColumn("{task.description}", style="progress.description", markup=False), BarColumn(),
            _CountColumn(), _RateColumn(), TimeElapsedColumn(), _RemainingColumn(),
            TextColumn("{task.fields[info]}", markup=False),
            console=Console(stderr=True), transient=transient, redirect_stdout=redirect, redirect_stderr=True,
        )
        self.progress.start()

    def open(self, bar: Bar) -> None:
        super().open(bar)
        bar.task = self.progress.add_task("  " * bar.depth + bar.description, total=bar.total, completed=bar.completed,
                                          unit=bar.unit, initial=bar.initial, info=bar.info)

    def changed(self, bar: Bar) -> None:
        self.progress.update(bar.task, completed=bar.completed, total=bar.total,
                             description="  " * bar.depth + bar.description, info=bar.info)

    def close(self, bar: Bar) -> None:
        super().close(bar)
        if bar.transient:
            self.progress.remove_task(bar.task)

    def log(self, message: str) -> None:
        self.progress.console.print(message, style="dim", markup=False, highlight=False)

    def stop(self) -> None:
        self.progress.stop()


def _task_rate(task: Task) -> float | None:
    return task.finished_speed or task.speed or _average(task.completed - task.fields["initial"], task.elapsed)


class _CountColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        total = "?" if task.total is None else _count(task.total)
        return Text(f"{_count(task.completed)}/{total} {task.fields['unit']}", style="progress.download")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        per_s = _task_rate(task)
        return Text("" if per_s is None else f"{_rate(per_s)} {task.fields['unit']}/s", style="progress.data.speed")


class _RemainingColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        per_s = _task_rate(task)
        if task.finished or task.total is None or not per_s:
            return Text("")
        return Text(f"ETA {duration((task.total - task.completed) / per_s)}", style="progress.remaining")
