"""Terminal rendering of result tables with rich."""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from splitbench.preflight import Plan

console = Console()  # its width is the terminal's, or COLUMNS, or 80 when printing into a pipe
_IMPORTED = time.time()
SIGNIFICANT = 4  # significant digits that each value of a float column keeps (where it has them)
WRAP_MIN = 12  # the narrowest a column of words is wrapped to
MAX_DECIMALS = 6  # a column that would need more is written in scientific notation
_NUMBER = re.compile(r"[-+]?[0-9][0-9,]*(\.[0-9]*)?([eE][-+]?[0-9]+)?")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def number_format(values: Iterable[object]) -> Callable[[object], str]:
    """One format for a column's numbers (integers with thousands separators; floats with one
    number of decimals for the column, or in scientific notation when its values span many orders
    of magnitude), so that ``12,050`` stands beside ``5,032``, not ``1.205e+04`` beside ``5032``.

    The decimals are the most that any value needs for :data:`SIGNIFICANT` digits, but no more
    than the values have (``0.228`` stays ``0.228``). A missing value reads ``n/a``.
    """
    numbers = [float(v) for v in values if _is_number(v) and not _missing(v)]
    finite = [v for v in numbers if math.isfinite(v)]
    sizes = [abs(v) for v in finite if v != 0]
    if all(v.is_integer() for v in finite) and max(sizes, default=0) < 1e15:
        return lambda v: _special(v) or f"{int(v):,}"  # type: ignore[call-overload]
    decimals = max(min(SIGNIFICANT - 1 - math.floor(math.log10(abs(v))),  # the digits it needs …
                       len(np.format_float_positional(v, trim="-").partition(".")[2]))  # … and has
                   for v in finite if v != 0)
    if decimals > MAX_DECIMALS or max(sizes) / min(sizes) >= 1e6 or max(sizes) >= 1e12:
        return lambda v: _special(v) or f"{float(v):.{SIGNIFICANT - 1}e}"  # type: ignore[arg-type]
    return lambda v: _special(v) or f"{float(v):,.{max(decimals, 0)}f}"  # type: ignore[arg-type]


def figure(value: object) -> str:
    """One number on its own (``15,470,289,408``, ``42.9948``; up to six significant digits of a
    fraction): for a column whose rows are different quantities, which one format would not fit."""
    if not _is_number(value) or _missing(value) or not math.isfinite(float(value)):  # type: ignore[arg-type]
        return _special(value) if _is_number(value) or _missing(value) else str(value)
    number = float(value)  # type: ignore[arg-type]
    if number.is_integer() and abs(number) < 1e15:
        return f"{int(number):,}"
    return np.format_float_positional(number, precision=6, unique=True, fractional=False, trim="-")


def _special(value: object) -> str:
    """``n/a``, ``inf`` or ``-inf`` for a value that is no finite number, else ''."""
    if _missing(value):
        return "n/a"
    return "" if math.isfinite(float(value)) else ("inf" if float(value) > 0 else "-inf")  # type: ignore[arg-type]


def _column_cells(values: list[object]) -> tuple[list[str], bool]:
    """A column's cells as text, and whether they are numbers (right-aligned, never wrapped).

    An empty string is a blank cell (a table made for display may blank its missing numbers).
    """
    present = [v for v in values if not _missing(v) and not (isinstance(v, str) and v == "")]
    if present and all(isinstance(v, (bool, np.bool_)) for v in present):
        return ["yes" if v else "" for v in values], False
    if present and all(_is_number(v) for v in present):
        formatted = number_format(present)
        return ["" if isinstance(v, str) else formatted(v) for v in values], True
    cells = ["n/a" if _missing(v) else str(v) for v in values]
    return cells, bool(present) and all(_NUMBER.fullmatch(c) for c in cells if c not in ("", "n/a"))  # numbers as text


def fit_columns(headers: list[str], cells: list[list[str]], numeric: list[bool], width: int) -> tuple[list[int], list[int]]:
    """Which columns fit ``width`` (indices) and how wide each kept one is.

    A column is never narrower than its header, nor a number than its widest number; text wraps
    down to :data:`WRAP_MIN` (or its header). Where even that is too wide, columns go from the
    right; the leading text columns (what a row is: variant, setup, task …, at most two) stay.
    """
    natural = [max([cell_len(h), *(cell_len(line) for c in column for line in c.splitlines() or [""])])
               for h, column in zip(headers, cells)]
    wraps = [not n and any(" " in c for c in column) for n, column in zip(numeric, cells)]
    narrowest = [max(cell_len(h), min(w, WRAP_MIN)) if wrap else w for h, w, wrap in zip(headers, natural, wraps)]
    identity = 0
    while identity < min(2, len(headers)) and not numeric[identity]:
        identity += 1
    kept = list(range(len(headers)))
    droppable = [i for i in kept if i >= max(identity, 1)]

    def total(widths: Iterable[int], count: int) -> int:
        return sum(widths) + 3 * count + 1  # a box line and one space either side of each column

    while droppable and total((narrowest[i] for i in kept), len(kept)) > width:
        kept.remove(droppable.pop())
    widths = {i: natural[i] for i in kept}
    excess = total(widths.values(), len(kept)) - width
    while excess > 0:  # wrap the widest text column a character narrower, down to its narrowest
        shrinkable = [i for i in kept if wraps[i] and widths[i] > narrowest[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    return kept, [widths[i] for i in kept]


def show_table(table: pd.DataFrame, title: str | None = None, columns: Iterable[str] | None = None,
               *, source: str | Path | None = "the CSV") -> None:
    """Print ``table`` (``columns``, most important first) in the console's width.

    Headers are never cut. Where the columns do not fit, the last ones are left out and one line
    names them and ``source`` (the file that holds them all; None: a table without a file).
    """
    columns = list(columns) if columns is not None else list(table.columns)
    values = [[v.item() if isinstance(v, np.generic) else v for v in table[column].tolist()] for column in columns]
    cells, numeric = zip(*(_column_cells(v) for v in values)) if columns else ((), ())
    kept, widths = fit_columns(columns, list(cells), list(numeric), console.width)
    fits = sum(widths) + 3 * len(kept) + 1 <= console.width
    view = Table(title=title, header_style="bold")
    for i, width in zip(kept, widths):
        # fixed widths where they fit, so that rich squeezes nothing into '…'; else rich folds what it must
        view.add_column(columns[i], justify="right" if numeric[i] else "left", width=width if fits else None,
                        no_wrap=numeric[i] and fits, overflow="fold")
    for r in range(len(table)):
        view.add_row(*(Text(cells[i][r]) for i in kept))
    console.print(view)
    left_out = [c for i, c in enumerate(columns) if i not in kept]
    if left_out:
        where = f"in {source}" if source is not None else "not shown, a wider terminal shows them"
        console.print(f"({len(left_out)} more column{'s' if len(left_out) > 1 else ''} {where}: {', '.join(left_out)})",
                      style="dim", highlight=False)


def show_written(paths: Iterable[Path], *, own_folder: bool = True) -> None:
    """List what this run wrote, and say which files beside them are an earlier run's.

    A run into an existing ``--out`` rewrites its own files; others (say ``estimators.csv``
    of a prune run with other options) would look current. They are named, not deleted:
    the folder may hold the user's own files too. ``own_folder=False`` is for a file written
    into a folder that holds other things by design (``report``'s overview in ``reports/``).
    """
    paths = [Path(p) for p in paths]
    console.print("wrote " + ", ".join(str(p) for p in paths), style="dim")
    for folder, stale in (earlier_files(paths) if own_folder else {}).items():
        shown = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
        print(f"note: {folder} also holds files this run did not write: {shown}", file=sys.stderr)


def show_plan(plan: Plan) -> None:
    """Print what a ``--dry-run`` would have done: the plan's rows (:meth:`splitbench.preflight.Plan.finish`)."""
    table = Table(title=f"splitbench {plan.command} --dry-run: all inputs resolve", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for what, value in plan.lines():
        table.add_row(what, value)
    console.print(table)
    console.print("dry run: nothing was computed, downloaded or written")


def earlier_files(written: Iterable[Path]) -> dict[Path, list[str]]:
    """Per folder written into: the files in it older than this process that it did not write."""
    started = _process_start_time()
    written = {p.resolve() for p in written}
    stale: dict[Path, list[str]] = {}
    for folder in sorted({p.parent for p in written}):
        for entry in sorted(folder.iterdir()):
            if (entry.is_file() and not entry.name.startswith(".") and entry.resolve() not in written
                    and entry.stat().st_mtime < started):
                stale.setdefault(folder, []).append(entry.name)
    return stale


def _process_start_time() -> float:
    """When this process started (the files it wrote are newer)."""
    try:
        ticks = int(Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED

