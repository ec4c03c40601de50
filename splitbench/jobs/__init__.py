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

from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Shown:
    """A table a command shows: ``heading`` (a line above it), its title, the columns shown first,
    and the file that holds all of them."""

    table: pd.DataFrame
    title: str | None = None
    columns: list[str] | None = None
    source: Path | None = None
    heading: str | None = None
