"""Terminal rendering of result tables with rich."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

console = Console()
_IMPORTED = time.time()


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def show_table(table: pd.DataFrame, title: str | None = None, columns: Iterable[str] | None = None) -> None:
    columns = list(columns) if columns is not None else list(table.columns)
    view = Table(title=title, header_style="bold")
    for column in columns:
        numeric = pd.api.types.is_numeric_dtype(table[column]) and table[column].dtype != bool
        view.add_column(column, justify="right" if numeric else "left")
    for row in table[columns].itertuples(index=False):
        view.add_row(*(_cell(value.item() if hasattr(value, "item") else value) for value in row))
    console.print(view)


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

