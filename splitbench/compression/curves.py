"""The rate–accuracy curves of an ``rd`` result table: pandas only (no torch, no sweep), for the
reports (:mod:`splitbench.compression.report`) and the claims (:mod:`splitbench.claims`) alike."""

from __future__ import annotations

import numpy as np
import pandas as pd

INPUT = "input"  # --at input: an image codec in front of the whole model (seed 001)


def curve_name(variant: str, alpha: float, split: str) -> str:
    return f"{variant} α={alpha:g}" if split == INPUT else variant


def curves_of(table: pd.DataFrame, budgets: pd.Series | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(actual bpp, top-1) per curve, in the table's order; one curve per training budget where
    ``budgets`` (default: the table's ``epochs``) holds several."""
    names = [curve_name(v, a, s) for v, a, s in zip(table["variant"], table["alpha"], table["split"])]
    budgets = table["epochs"] if budgets is None and "epochs" in table else budgets
    if budgets is not None and budgets.nunique() > 1:
        names = [f"{name}, {epochs} ep" for name, epochs in zip(names, table["epochs"])]
    grouped = table.assign(curve=names).groupby("curve", sort=False)
    return {name: (group["bpp_actual"].to_numpy(), group["top1"].to_numpy()) for name, group in grouped}
