"""Seed spreads and the papers' claims tested against them (splitbench.spread, splitbench.claims)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from scipy import stats

from splitbench.claims import CLAIMS, claims_table
from splitbench.grouping.sweep import GroupSettings, group_store
from splitbench.errors import SplitbenchError
from splitbench.spread import (DOES_NOT_HOLD, HOLDS, NO_VALUE, ONE_SEED, WITHIN_NOISE, mean_std, point_spread, seed_runs,
                               verdict)

REPORTS = REPO / "reports"


def test_verdict_is_a_student_t_interval_over_the_seeds() -> None:
    values = {0: -34.5, 1: -30.1, 2: -38.2}
    row = verdict(values, claimed_sign=-1)
    sample = np.array(list(values.values()))
    assert row["seeds"] == 3 and row["mean"] == pytest.approx(sample.mean())
    assert row["std"] == pytest.approx(sample.std(ddof=1))
    assert row["interval"] == pytest.approx(stats.t.ppf(0.975, 2) * sample.std(ddof=1) / math.sqrt(3))
    assert row["interval"] == pytest.approx(2.4841 * sample.std(ddof=1), rel=1e-4)  # t(0.975, 2) / √3
    assert row["verdict"] == HOLDS
    assert verdict(values, claimed_sign=+1)["verdict"] == DOES_NOT_HOLD
    # A mean of 1 with a spread of 4: zero lies inside the interval.
    assert verdict({0: 5.0, 1: -3.0, 2: 1.0}, claimed_sign=+1)["verdict"] == WITHIN_NOISE
    # Missing runs (None, NaN: curves that do not overlap) are left out, and one run gives no verdict.
    one = verdict({0: -34.5, 1: None, 2: float("nan")}, claimed_sign=-1)
    assert one["seeds"] == 1 and one["mean"] == -34.5 and one["std"] is None and one["verdict"] == ONE_SEED
    assert verdict({0: None}, claimed_sign=-1)["verdict"] == NO_VALUE
    # Several paired differences from one run (one per group count) are replicates of one effect.
    pooled = verdict({0: [1.3, 4.7, 1.3], 1: [1.0, -0.1, 2.7], 2: [-0.7, 1.5, 1.3]}, claimed_sign=+1)
    assert pooled["seeds"] == 9 and pooled["interval"] == pytest.approx(
        stats.t.ppf(0.975, 8) * np.std([1.3, 4.7, 1.3, 1.0, -0.1, 2.7, -0.7, 1.5, 1.3], ddof=1) / 3)
    assert pooled["verdict"] == HOLDS


def test_seed_runs_group_a_sweep_with_its_seed_folders() -> None:
    base = pd.DataFrame({"variant": ["none"], "top1": [50.0]})
    found = [(Path("rd/a/rd.csv"), base), (Path("rd/a-seed1/rd.csv"), base.assign(top1=46.0)),
             (Path("rd/a-seed2/rd.csv"), base.assign(top1=48.0, seed=2)),  # a seed column must agree
             (Path("rd/ab/rd.csv"), base)]
    runs = seed_runs(found)
    assert set(runs) == {Path("rd/a"), Path("rd/ab")}
    assert sorted(runs[Path("rd/a")]) == [0, 1, 2] and list(runs[Path("rd/ab")]) == [0]
    spread = point_spread(runs[Path("rd/a")], ["variant"], ["top1"])
    assert spread.loc[0, "seeds"] == 3 and spread.loc[0, "top1_mean"] == pytest.approx(48.0)
    assert spread.loc[0, "top1_std"] == pytest.approx(2.0)
    assert mean_std(48.0, 2.0) == "48.00 ± 2.00" and mean_std(48.0, float("nan")) == "48.00"
    # A run in the wrong folder would be counted as another seed: refused, naming it.
    with pytest.raises(SplitbenchError, match="rd/a-seed3/rd.csv records seed 1 but its folder says seed 3"):
        seed_runs([(Path("rd/a-seed3/rd.csv"), base.assign(seed=1))])
    with pytest.raises(SplitbenchError, match="are both seed 0 of rd/a"):
        seed_runs([(Path("rd/a/rd.csv"), base), (Path("rd/a/x.csv"), base)])


def test_each_claim_measures_what_the_committed_tables_say() -> None:
    table = claims_table(REPORTS).set_index("claim")
    assert len(table) == len(CLAIMS) and set(table["verdict"]) <= {HOLDS, DOES_NOT_HOLD, WITHIN_NOISE, ONE_SEED}
    # Seed 001, seed 0's run: the BD-rate that `splitbench rd` wrote into bd.csv.
    bd = pd.read_csv(REPORTS / "rd" / "cifar_resnet20-input" / "bd.csv")
    committed = bd[(bd["test"] == "cheng2020_attn α=0.1") & (bd["method"] == "pchip")]["bd_rate_percent"].iloc[0]
    aux = table.loc["the auxiliary loss (α = 0.1) saves bits at equal top-1"]
    assert aux["per seed"].startswith(f"0: {committed:+.1f}")
    rd = pd.read_csv(REPORTS / "rd" / "cifar_resnet20-input" / "rd.csv")
    gain = np.mean([rd[(rd["alpha"] == 0.1) & (rd["lambda"] == lam)]["top1"].iloc[0]
                    - rd[(rd["alpha"] == 0.0) & (rd["lambda"] == lam)]["top1"].iloc[0] for lam in (2, 8, 32)])
    assert table.loc["the auxiliary loss (α = 0.1) raises top-1 at the same λ", "per seed"].startswith(f"0: {gain:+.1f}")
    # Seed 004, seed 0's run: top-1 with duplication minus without, at 8 groups.
    group = pd.read_csv(REPORTS / "group" / "cifar_resnet20" / "group.csv")
    at8 = group[(group["groups"] == 8)].set_index("duplicate_top")["top1"]
    assert table.loc["duplication raises top-1 at 8 groups", "per seed"].startswith(f"0: {at8[3] - at8[0]:+.1f}")
    # Seed 002: stability's lead over the better of the other two scores, over 30-50 % and both scopes.
    prune = pd.read_csv(REPORTS / "prune" / "vit-attention" / "prune.csv")
    leads = []
    for scope in ("uniform", "global"):
        for ratio in (0.3, 0.4, 0.5):
            top1 = {m: prune[(prune["method"] == m) & (prune["scope"] == scope) & (prune["ratio"] == ratio)]["top1"].iloc[0]
                    for m in ("stability", "weight", "importance")}
            leads.append(top1["stability"] - max(top1["weight"], top1["importance"]))
    lead = table.loc["stability pruning keeps the most top-1 at 30–50 %"]
    # six paired differences of one run (global scope first, as pivot_table sorts), each a replicate
    ordered = leads[3:] + leads[:3]
    assert lead["per seed"] == "0: " + "/".join(f"{v:+.1f}" for v in ordered)
    assert lead["mean ± std"].startswith(f"{np.mean(leads):.1f} ± {np.std(leads, ddof=1):.1f}")


def test_the_seed_is_part_of_a_group_points_cache_key(tmp_path: Path) -> None:
    data = SimpleNamespace(train=(None, [0] * 256), test_labels=[0] * 200)
    folder = {seed: group_store(tmp_path, "12fca82f", GroupSettings(seed=seed), data).directory for seed in (0, 1)}
    assert folder[0] != folder[1]
    # Longer or shorter lists of group counts share their points (a sweep of 4, 8, 16 reuses 1..16's).
    assert group_store(tmp_path, "12fca82f", GroupSettings(groups=(4, 8, 16)), data).directory == folder[0]
