"""Bjøntegaard deltas between rate–accuracy curves, with the ``bjontegaard`` package.

BD-rate: the average rate difference (percent) at equal top-1 over the top-1 range both
curves cover; negative = the test curve needs fewer bits. BD-accuracy: the average top-1
difference (points) at equal rate. Both are only meaningful where the curves overlap: the
overlap (percent of the shorter range) is reported and a warning set below 75 %, as the
package warns.
"""

from __future__ import annotations

import warnings
from typing import Any

import bjontegaard
import numpy as np
import pandas as pd

METHODS = ("pchip", "akima")
MIN_OVERLAP = 0.75


def monotone_curve(rate: np.ndarray, accuracy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted by rate, keeping only those that raise accuracy (the curve's upper envelope).

    Interpolating accuracy as a function of rate (and back) needs a monotone curve; a point
    that costs more bits for less accuracy is dominated and no operating point anyone picks.
    """
    order = np.argsort(rate)
    kept_rate, kept_accuracy = [], []
    for r, a in zip(np.asarray(rate, float)[order], np.asarray(accuracy, float)[order]):
        if not kept_accuracy or a > kept_accuracy[-1]:
            kept_rate.append(r)
            kept_accuracy.append(a)
    return np.array(kept_rate), np.array(kept_accuracy)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of the shorter of two ranges that the other covers."""
    low, high = max(a.min(), b.min()), min(a.max(), b.max())
    shorter = min(np.ptp(a), np.ptp(b))
    return max(high - low, 0.0) / shorter if shorter > 0 else 0.0


def bd_pair(anchor: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], method: str) -> dict[str, Any]:
    """BD-rate (percent) and BD-accuracy (points) of ``test`` against ``anchor``, each (rate, accuracy)."""
    (ra, aa), (rt, at) = monotone_curve(*anchor), monotone_curve(*test)
    row: dict[str, Any] = {"method": method, "anchor_points": len(ra), "test_points": len(rt),
                           "accuracy_overlap_percent": round(100 * overlap(aa, at), 1) if len(aa) > 1 and len(at) > 1 else 0.0,
                           "rate_overlap_percent": round(100 * overlap(ra, rt), 1) if len(ra) > 1 and len(rt) > 1 else 0.0}
    if min(len(ra), len(rt)) < 2 or row["accuracy_overlap_percent"] == 0.0:
        return {**row, "bd_rate_percent": None, "bd_top1": None, "warning": "curves do not overlap"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the overlap is reported in the row instead
        row["bd_rate_percent"] = float(bjontegaard.bd_rate(ra, aa, rt, at, method=method, require_matching_points=False,
                                                           min_overlap=0))
        row["bd_top1"] = float(bjontegaard.bd_psnr(ra, aa, rt, at, method=method, require_matching_points=False,
                                                   min_overlap=0))
    low = min(row["accuracy_overlap_percent"], row["rate_overlap_percent"])
    row["warning"] = f"curves overlap {low:.0f} % < {MIN_OVERLAP:.0%}" if low < 100 * MIN_OVERLAP else ""
    return row


def bd_table(curves: dict[str, tuple[np.ndarray, np.ndarray]], anchor: str) -> pd.DataFrame:
    """Every other curve against ``anchor``, with each method."""
    rows = [{"anchor": anchor, "test": name, **bd_pair(curves[anchor], curve, method)}
            for name, curve in curves.items() if name != anchor for method in METHODS]
    columns = ["anchor", "test", "method", "bd_rate_percent", "bd_top1", "anchor_points", "test_points",
               "accuracy_overlap_percent", "rate_overlap_percent", "warning"]
    return pd.DataFrame(rows, columns=columns)
