"""What each command does, as a library call: a request object that validates itself, then runs.

One module a command (``splitbench.jobs.rd``, ``.link``, ``.prune``, …). Each holds a frozen
dataclass of the command's options (``RdJob``, ``LinkJob``, …) whose ``__post_init__`` makes the
checks the command line makes, a ``plan()`` that returns the dry-run :class:`~splitbench.preflight.Plan`,
and a ``run()`` that computes and writes the result set. The CLI parses options into the job,
calls it and renders; the Python API builds the same jobs, so it gets the same checks:

>>> from splitbench.jobs.prune import PruneJob          # doctest: +SKIP
>>> PruneJob(model="vit", ratios=(0.5,), method="stability").run()   # doctest: +SKIP

Provenance records ``dataclasses.asdict(job)``: the arguments are the request itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from numbers import Integral
from pathlib import Path

import pandas as pd

from splitbench.errors import SplitbenchError


@dataclass(frozen=True)
class Shown:
    """A table a command shows: ``heading`` (a line above it), its title, the columns shown first,
    and the file that holds all of them."""

    table: pd.DataFrame
    title: str | None = None
    columns: list[str] | None = None
    source: Path | None = None
    heading: str | None = None


# The range checks typer makes on the command line (``min=``, FiniteFloat), for jobs built in
# Python: the same texts.


def check_at_least(values: dict[str, tuple[int | None, int]]) -> None:
    """Whole-number options against their least value (typer checks them on the command line)."""
    for option, (value, minimum) in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, Integral) or value < minimum):
            raise SplitbenchError(f"{option} takes a whole number ≥ {minimum}, got {value!r}")


def check_finite(option: str, value: float, minimum: float) -> None:
    """A float option: finite and ≥ ``minimum`` (the command line's :class:`~splitbench.cli.options.FiniteFloat` text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise SplitbenchError(f"{option} takes a finite number ≥ {minimum:g}, got {value!r}")


def paths_as_paths(job: object) -> None:
    """A Python caller may give a folder or file as text (``cache="runs/cache"``): each field the
    command types as a ``Path`` becomes one, in place on the frozen job, before any check uses it."""
    for field in fields(job):  # type: ignore[arg-type]
        value = getattr(job, field.name)
        if isinstance(value, str) and "Path" in str(field.type):
            object.__setattr__(job, field.name, Path(value))
