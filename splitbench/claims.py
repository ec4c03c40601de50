"""The papers' claims that are differences, each tested against the committed runs' seed spread.

A claim names the committed sweep that reproduces it (``BASE`` and its ``BASE-seedN`` runs,
see :mod:`splitbench.spread`), a difference that each run measures on its own (the paired
design: a BD-rate against the same run's anchor curve, a top-1 gain over the same run's
point without the change), and the sign the paper claims for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from splitbench.spread import mean_std, seed_runs, verdict

BD_METHOD = "pchip"  # the interpolator of every per-seed BD-rate below (akima's are in each run's bd.csv)


@dataclass(frozen=True)
class Claim:
    paper: str
    text: str
    sweep: str  # the committed result table of seed 0, relative to reports/
    measure: str  # what one run gives, in words
    per_run: Callable[[pd.DataFrame], float | list[float] | None]  # a list: paired replicates within the run
    sign: int  # +1: the paper says the difference is positive; -1: negative


def bd_rate(anchor: str, test: str) -> Callable[[pd.DataFrame], float | None]:
    """One run's BD-rate (%) of curve ``test`` against curve ``anchor``; None where a curve is missing."""
    def measure(table: pd.DataFrame) -> float | None:
        # Here, not at the top: bjontegaard loads sympy and matplotlib, 2 s that every command would pay.
        from splitbench.compression.bd import bd_pair
        from splitbench.compression.curves import curves_of

        if "epochs" in table:  # a run with several training budgets: its longest
            table = table[table["epochs"] == table["epochs"].max()]
        curves = curves_of(table)
        if anchor not in curves or test not in curves:
            return None
        return bd_pair(curves[anchor], curves[test], BD_METHOD)["bd_rate_percent"]
    return measure


def duplication_gains(groups: tuple[int, ...], top: int = 3) -> Callable[[pd.DataFrame], list[float] | None]:
    """One run's duplication gains at each of ``groups``: paired replicates of one effect."""
    def measure(table: pd.DataFrame) -> list[float] | None:
        gains = [gain for count in groups if (gain := duplication_gain(count, top)(table)) is not None]
        return gains or None
    return measure


def gain_at_equal_lambda(alpha: float) -> Callable[[pd.DataFrame], float | None]:
    """One run's top-1 (points) with auxiliary loss weight ``alpha`` minus without, at the same λ,
    averaged over λ: defined even where a curve is not monotone and BD-rate is not."""
    def measure(table: pd.DataFrame) -> float | None:
        longest = table[table["epochs"] == table["epochs"].max()]
        top1 = longest.pivot_table(index="lambda", columns="alpha", values="top1")
        if alpha not in top1.columns or 0.0 not in top1.columns:
            return None
        return float((top1[alpha] - top1[0.0]).mean())
    return measure


def duplication_gain(groups: int, top: int = 3) -> Callable[[pd.DataFrame], float | None]:
    """One run's top-1 (points) with duplication (top-``top``) minus plain FLGC, at ``groups`` groups."""
    def measure(table: pd.DataFrame) -> float | None:
        trained = table[(table["groups"] == groups) & (table["epochs"] > 0)]
        with_, without = trained[trained["duplicate_top"] == top], trained[trained["duplicate_top"] == 0]
        if with_.empty or without.empty:
            return None
        return float(with_["top1"].iloc[0] - without["top1"].iloc[0])
    return measure


def stability_lead(ratios: tuple[float, ...] = (0.3, 0.4, 0.5)) -> Callable[[pd.DataFrame], list[float] | None]:
    """One run's top-1 (points) of stability pruning minus the better of weight and importance,
    at each of ``ratios`` and scopes: paired replicates (the same checkpoint and test images),
    as the seed claims stability first at every one of them."""
    def measure(table: pd.DataFrame) -> list[float] | None:
        pruned = table[table["ratio"].isin(ratios) & (table["finetune_epochs"] == 0)]
        top1 = pruned.pivot_table(index=["scope", "ratio"], columns="method", values="top1")
        if not {"stability", "weight", "importance"} <= set(top1.columns):
            return None
        return [float(v) for v in top1["stability"] - top1[["weight", "importance"]].max(axis=1)]
    return measure


CLAIMS = [
    Claim("seed 002", "stability pruning keeps the most top-1 at 30–50 %", "prune/vit-attention/prune.csv",
          "top-1 lead over the better of weight and importance (points)", stability_lead(), +1),
    Claim("seed 000", "CBAM attention (attention1) saves bits at equal top-1", "rd/mobilenet_v2-bottleneck3/rd.csv",
          f"BD-rate vs none ({BD_METHOD}, %)", bd_rate("none", "attention1"), -1),
    Claim("seed 000", "the extra 1×1 fusion (attention2) saves bits at equal top-1", "rd/mobilenet_v2-bottleneck3/rd.csv",
          f"BD-rate vs none ({BD_METHOD}, %)", bd_rate("none", "attention2"), -1),
    Claim("seed 001", "the auxiliary loss (α = 0.1) saves bits at equal top-1", "rd/cifar_resnet20-input/rd.csv",
          f"BD-rate vs α = 0 ({BD_METHOD}, %)", bd_rate("cheng2020_attn α=0", "cheng2020_attn α=0.1"), -1),
    Claim("seed 001", "the auxiliary loss (α = 0.1) raises top-1 at the same λ", "rd/cifar_resnet20-input/rd.csv",
          "top-1 gain, mean over λ (points; at more bits)", gain_at_equal_lambda(0.1), +1),
    *[Claim("seed 004", f"duplication raises top-1 at {groups} groups", "group/cifar_resnet20/group.csv",
            "top-1 gain of top-3 duplication (points)", duplication_gain(groups), +1) for groups in (4, 8, 16)],
    Claim("seed 004", "duplication raises top-1 (4, 8 and 16 groups pooled)", "group/cifar_resnet20/group.csv",
          "top-1 gains of top-3 duplication (points)", duplication_gains((4, 8, 16)), +1),
]


def claims_table(reports: Path) -> pd.DataFrame:
    """One row per claim whose sweep is committed: the per-run values, mean ± std, 95 % interval, verdict."""
    rows = []
    for claim in CLAIMS:
        first = reports / claim.sweep
        if not first.is_file():
            continue
        found = [(path, pd.read_csv(path)) for path in sorted(first.parent.parent.glob(f"{first.parent.name}*/{first.name}"))]
        runs = seed_runs(found).get(first.parent, {})
        values = {seed: claim.per_run(table) for seed, table in sorted(runs.items())}
        result = verdict(values, claim.sign)
        # n/a: the run has no such figure (e.g. a curve reduced to one point, so no BD-rate exists)
        shown = ", ".join(f"{seed}: {_shown(v)}" for seed, v in values.items())
        interval = f"±{result['interval']:.1f}" if result["interval"] is not None else ""
        rows.append({"paper": claim.paper, "claim": claim.text, "measure": claim.measure,
                     "per seed": shown, "mean ± std": mean_std(result["mean"], result["std"], 1),
                     "95 % interval": interval, "verdict": result["verdict"]})
    return pd.DataFrame(rows)


def _shown(value: float | list[float] | None) -> str:
    """A run's figure for the table; n/a where the run has none (e.g. a curve reduced to one point)."""
    if isinstance(value, list):
        return "/".join(_shown(v) for v in value)
    return f"{value:+.1f}" if value is not None and value == value else "n/a"
