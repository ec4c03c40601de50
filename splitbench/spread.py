"""Run-to-run spread: one sweep repeated under several seeds, and claims tested against it.

A sweep run again with ``--seed N --out BASE-seedN`` is a *seed run* of the sweep in ``BASE``.
:func:`seed_runs` gathers a sweep's runs, :func:`point_spread` gives the mean ± standard
deviation of every point over them, and :func:`verdict` says whether a claimed difference
(one value per seed, e.g. a BD-rate against the seed's own anchor curve) holds beyond the
spread: the two-sided 95 % Student-t interval of the mean over the seeds must exclude zero.
With three seeds that interval is ±2.48 standard deviations, so "holds" needs a difference that
is large *and* repeatable; one seed gives no verdict at all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from splitbench.errors import SplitbenchError

SEED_FOLDER = re.compile(r"^(?P<base>.+)-seed(?P<seed>\d+)$")
CONFIDENCE = 0.95

HOLDS, DOES_NOT_HOLD, WITHIN_NOISE = "holds", "does not hold", "within noise"
ONE_SEED, NO_VALUE = "one run: no verdict", "no run measures it"


def sweep_of(folder: Path) -> tuple[Path, int | None]:
    """The base folder of the sweep that ``folder`` holds a run of, and its ``-seedN`` (None: the base itself)."""
    match = SEED_FOLDER.match(folder.name)
    return (folder.with_name(match["base"]), int(match["seed"])) if match else (folder, None)


def seed_runs(tables: Iterable[tuple[Path, pd.DataFrame]]) -> dict[Path, dict[int, pd.DataFrame]]:
    """Result tables (``(path, table)``) grouped by sweep: base folder -> {seed: table}.

    The seed is the ``-seedN`` suffix of its folder (no suffix: seed 0, every sweep's default);
    a table that records another seed in its ``seed`` column, or two folders of one seed, fail.
    """
    runs: dict[Path, dict[int, pd.DataFrame]] = {}
    folders: dict[tuple[Path, int], Path] = {}
    for path, table in tables:
        base, suffix = sweep_of(path.parent)
        seed = suffix or 0
        recorded = set(table["seed"].dropna().astype(int)) if "seed" in table.columns else set()
        if recorded - {seed}:
            raise SplitbenchError(f"{path} records seed {', '.join(map(str, sorted(recorded)))} but its folder says "
                                  f"seed {seed}; name a seed run's folder BASE-seedN after its --seed N")
        if (base, seed) in folders:
            raise SplitbenchError(f"{folders[base, seed]} and {path.parent} are both seed {seed} of {base}")
        folders[base, seed] = path.parent
        runs.setdefault(base, {})[seed] = table
    return runs


def point_spread(runs: dict[int, pd.DataFrame], keys: list[str], values: list[str]) -> pd.DataFrame:
    """Per point (``keys``): how many seeds ran it, and each of ``values`` as mean and sample std."""
    table = pd.concat([run.assign(_seed=seed) for seed, run in runs.items()], ignore_index=True)
    grouped = table.groupby(keys, sort=False)
    spread = grouped["_seed"].nunique().rename("seeds").to_frame()
    for value in values:
        spread[f"{value}_mean"] = grouped[value].mean()
        spread[f"{value}_std"] = grouped[value].std(ddof=1)  # NaN from one seed: no spread measured
    return spread.reset_index()


def verdict(per_seed: dict[int, float | list[float] | None], claimed_sign: int) -> dict[str, Any]:
    """Mean, std and the 95 % interval of per-seed differences (a list: several paired differences
    from one run, each a replicate); whether the claimed sign holds beyond it."""
    flat = [v for value in per_seed.values() for v in (value if isinstance(value, list) else [value])]
    values = [v for v in flat if v is not None and not math.isnan(v)]
    row: dict[str, Any] = {"seeds": len(values), "mean": None, "std": None, "interval": None, "verdict": ONE_SEED}
    if not values:
        return {**row, "verdict": NO_VALUE}
    mean = sum(values) / len(values)
    row["mean"] = mean
    if len(values) < 2:
        return row
    from scipy import stats  # here: only `report` needs it, and it costs every command's start-up

    std = float(pd.Series(values).std(ddof=1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1)) * std / math.sqrt(len(values))
    row.update(std=std, interval=half)
    if abs(mean) <= half:
        row["verdict"] = WITHIN_NOISE
    else:
        row["verdict"] = HOLDS if mean * claimed_sign > 0 else DOES_NOT_HOLD
    return row


def mean_std(mean: float | None, std: float | None, digits: int = 2) -> str:
    """``mean ± std`` for a table cell (``mean`` alone from one seed)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
