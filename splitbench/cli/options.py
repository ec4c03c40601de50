"""Options shared by several commands, so that they read and behave the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from splitbench.errors import SplitbenchError

Weights = Annotated[
    str,
    typer.Option(
        "--weights",
        help="'none' (random init), 'default' (torchvision's weights; downloads once) or a path "
        "to a state_dict/checkpoint (.pth, .th, .safetensors).",
    ),
]
OutDir = Annotated[
    Optional[Path],
    typer.Option("--out", help="Directory for CSV, Markdown, JSON sidecar and plots."),
]
DataRoot = Annotated[
    Optional[Path],
    typer.Option("--data", help="Data root holding the datasets (default: $SPLITBENCH_DATA)."),
]
InputSize = Annotated[
    Optional[int],
    typer.Option("--input-size", min=8, help="Square input side (default: the model's own)."),
]


def default_out(command: str, run: str) -> Path:
    """``reports/<command>/<run>/``: one folder per run, so runs never overwrite each other."""
    return Path("reports") / command / run


def split_names(text: str) -> list[str]:
    """``a, b,c`` → ``["a", "b", "c"]`` (comma-separated option values)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def split_numbers(text: str | None, option: str, kind: type = float) -> list:
    """Comma-separated numbers of one ``kind``; a bad one fails naming the option."""
    if text is None:
        return []
    try:
        return [kind(part) for part in split_names(text)]
    except ValueError:
        noun = "integers" if kind is int else "numbers"
        raise SplitbenchError(f"{option} takes comma-separated {noun}, got '{text}'") from None
