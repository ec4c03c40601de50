"""The seed papers' result tables, shipped with splitbench as data.

Copies of ``../shared/reference/*.csv`` (exactly as printed in the papers, see that folder's
README), so that a report can put the paper's figures beside ours on any machine.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from splitbench.errors import SplitbenchError


def list_references() -> list[str]:
    return sorted(p.name.removesuffix(".csv") for p in resources.files(__name__).iterdir() if p.name.endswith(".csv"))


def load_reference(name: str) -> pd.DataFrame:
    """The table ``name`` (e.g. ``seed002_vit_pruning``)."""
    entry = resources.files(__name__) / f"{name}.csv"
    if not entry.is_file():
        raise SplitbenchError(f"unknown reference table {name!r}; valid: {', '.join(list_references())}")
    with entry.open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle)
