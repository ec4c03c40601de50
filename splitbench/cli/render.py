"""Terminal rendering of result tables with rich."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

console = Console()


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


def show_written(paths: Iterable[Path]) -> None:
    console.print("wrote " + ", ".join(str(p) for p in paths), style="dim")
