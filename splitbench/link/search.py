"""``splitbench plan --search``: which deployment (model variant × cut × codec setting) to run
over a link, given an accuracy or a latency budget.

Every candidate is measured, not modelled: its calibration pictures go through the same
:class:`~splitbench.link.plan.CostTimer` that ``plan`` times with (the edge's head and encoder,
then the server's decoder, tail and answer, here and without a socket). That one pass gives the
candidate's compute times, its bytes per picture and its accuracy, so that ``link`` on the same
pictures reproduces the calibration's top-1 exactly: the same code makes the same answers.
:func:`~splitbench.link.plan.predict` then adds the link at each bandwidth and RTT.

Per condition, :func:`pareto` keeps the candidates that no other beats on latency, accuracy drop
and bytes at once, and :func:`choose` picks under each budget: the fastest within ``--max-drop``
points of the reference (the first model whole on the edge), or the most accurate within
``--max-latency`` ms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from splitbench.link.endpoints import EDGE, SplitSetup
from splitbench.link.plan import CostTimer
from splitbench.link.tasks import Answers
from splitbench.points import PointStore, content_key
from splitbench.results import plain_log_ticks, save_figure
from splitbench.transport import is_user_codec, transport_file
from splitbench.weights import sha256_of
from splitbench.zoo import ZooModel

POINTS_VERSION = 1  # bump when what a stored candidate holds changes
OBJECTIVES = ("total_ms", "drop", "payload_bytes")  # what the front minimises


@dataclass(frozen=True)
class Candidate:
    """One deployment: a model variant (its name or export, as the command line gave it) split by ``setup``."""

    variant: str
    model: ZooModel
    setup: SplitSetup
    primary: bool = True  # the first variant's labels are the setup's own

    @property
    def label(self) -> str:
        return self.setup.label if self.primary else f"{Path(self.variant).name}|{self.setup.label}"


def calibrate(candidate: Candidate, pictures: list[Any], labels: list[int], answers: Answers,
              preprocess: str = "seed", server_cpus: set[int] | None = None) -> dict[str, Any]:
    """The candidate's mean times and bytes (``plan``'s columns) and its task's figures over the
    pictures, each picture timed and answered once after one warm-up picture."""
    timer = CostTimer(candidate.model, candidate.setup, preprocess, server_cpus)
    timer.time(pictures[0], record=False)
    for index, picture in enumerate(pictures):
        timer.time(picture, index)
    rows = pd.DataFrame([answers.row(answer, label) | {"label": label}
                         for answer, label in zip(timer.answers, labels)])
    return {**timer.row(), **answers.figures(rows)}


def calibrated(store: PointStore, candidate: Candidate, weights: dict[str, Any],
               measure: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """The candidate's calibration row from ``store`` (named by its weights and setup), or
    ``measure()``'s, stored; and whether it was cached."""
    identity = {"variant": candidate.variant, "weights": weights.get("sha256"), **candidate.setup.describe()}
    if candidate.setup.at != EDGE and is_user_codec(candidate.setup.codec):  # its file may change under its name
        identity["file"] = sha256_of(transport_file(candidate.setup.codec))
    name = content_key(identity, version=POINTS_VERSION)
    with store.measuring(name, candidate.label):
        row = store.get(name)
        if row is not None:
            return row, True
        row = measure()
        store.put(name, row)
        return row, False


def with_drop(costs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``drop``: points of ``metric`` below the first row's variant whole on the edge (the reference)."""
    reference = costs.loc[(costs["at"] == EDGE), metric].iloc[0]
    return costs.assign(drop=(reference - costs[metric]).round(3))


def pareto(table: pd.DataFrame, objectives: Iterable[str] = OBJECTIVES) -> pd.Series:
    """Whether each row is on the front: no other row is as good in every objective and better in one."""
    values = np.nan_to_num(table[list(objectives)].to_numpy(dtype=float), nan=np.inf)  # no figure: worst
    on_front = []
    for row in values:
        dominated = np.all(values <= row, axis=1) & np.any(values < row, axis=1)
        on_front.append(not dominated.any())
    return pd.Series(on_front, index=table.index)


def fronts(predictions: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` with ``front``: on the Pareto front of its own bandwidth and RTT."""
    marked = predictions.copy()
    marked["front"] = False
    for _, group in marked.groupby(["bandwidth_mbit", "rtt_ms"]):
        marked.loc[group.index, "front"] = pareto(group)
    return marked


def choose(predictions: pd.DataFrame, metric: str, max_drop: Iterable[float] = (),
           max_latency: Iterable[float] = ()) -> pd.DataFrame:
    """Per condition and budget, the chosen deployment: the lowest latency within each accuracy
    budget (``max_drop`` points), the best ``metric`` within each latency budget (ms). Ties go to
    fewer bytes. A budget nothing meets gives a row with no choice."""
    budgets = [("max_drop", value) for value in max_drop] + [("max_latency_ms", value) for value in max_latency]
    rows = []
    for (bandwidth, rtt), group in predictions.groupby(["bandwidth_mbit", "rtt_ms"], sort=True):
        for kind, limit in budgets:
            if kind == "max_drop":
                within = group[group["drop"] <= limit].sort_values(["total_ms", "payload_bytes"])
            else:
                within = group[group["total_ms"] <= limit].sort_values(
                    [metric, "total_ms", "payload_bytes"], ascending=[False, True, True])
            chosen = within.iloc[0] if not within.empty else None
            rows.append({"bandwidth_mbit": bandwidth, "rtt_ms": rtt, "budget": kind, "limit": limit,
                         "chosen": chosen["setup"] if chosen is not None else "none within budget",
                         **{column: chosen[column] if chosen is not None else np.nan
                            for column in ("variant", "at", "codec", "param", metric, "drop", "payload_bytes",
                                           "total_ms")},
                         "candidates_within": len(within)})
    return pd.DataFrame(rows)


def plot_fronts(path: Path, predictions: pd.DataFrame, chosen: pd.DataFrame, metric: str, model: str) -> Path:
    """Accuracy against latency per bandwidth (at the first RTT): every candidate, the front, the choices."""
    rtt = predictions["rtt_ms"].min()
    shown = predictions[predictions["rtt_ms"] == rtt]
    bandwidths = sorted(shown["bandwidth_mbit"].unique())

    def draw(figure_axes: Any) -> None:
        figure = figure_axes.figure
        figure.delaxes(figure_axes)
        grid = figure.subplots(1, len(bandwidths), sharey=True, squeeze=False)[0]
        for axes, bandwidth in zip(grid, bandwidths):
            here = shown[shown["bandwidth_mbit"] == bandwidth]
            front = here[here["front"]].sort_values("total_ms")
            axes.scatter(here["total_ms"], here[metric], s=10, color="0.65", label="candidates")
            axes.step(front["total_ms"], front[metric].cummax(), where="post", color="C0", lw=1.2,
                      label="best accuracy by latency")
            axes.scatter(front["total_ms"], front[metric], s=16, color="C0", label="Pareto front")
            picks = chosen[(chosen["bandwidth_mbit"] == bandwidth) & (chosen["rtt_ms"] == rtt) & chosen["at"].notna()]
            for index, pick in enumerate(picks.itertuples()):
                limit = f"≤{pick.limit:g} pt" if pick.budget == "max_drop" else f"≤{pick.limit:g} ms"
                axes.scatter([pick.total_ms], [getattr(pick, metric)], s=90, marker="*", color=f"C{index + 1}",
                             zorder=3, label=f"{limit}: {pick.chosen}")
            axes.set_xscale("log")
            plain_log_ticks(axes.xaxis)
            axes.set_title(f"{bandwidth:g} Mbit/s, RTT {rtt:g} ms", fontsize=9)
            axes.set_xlabel("predicted end-to-end latency (ms)")
            axes.grid(alpha=0.3)
            axes.legend(fontsize=6, loc="lower right")
        grid[0].set_ylabel(f"{metric} (%)")
        figure.suptitle(f"{model}: deployments per bandwidth", fontsize=10)

    return save_figure(path, draw, size=(4.2 * len(bandwidths), 4.2))


def check_choices(chosen: pd.DataFrame, candidates: pd.DataFrame, predictions: pd.DataFrame,
                  validation: pd.DataFrame, metric: str, variant: str) -> pd.DataFrame:
    """``link --deploy``: each choice of a search for ``variant`` (the model linked) measured over the link.

    Per condition and budget: the search's predicted latency against the measured one; the
    calibration's ``metric`` against the link's on the same pictures; and the regret of
    following the search among the deployments the link ran. Under an accuracy budget, the
    regret is how much slower the choice measured than the fastest deployment within the
    budget (``regret_percent``); under a latency budget, how many points of ``metric`` it
    measured below the best within the budget (``regret_points``).
    """
    from splitbench.link.plan import edge_row_at

    validation = validation.copy()
    validation.attrs = {}  # link's table of best setups rides there: concat would compare it
    is_edge = validation["setup"] == EDGE
    primary = candidates["variant"].iloc[0] == variant
    validation["setup"] = [label if primary else f"{Path(variant).name}|{label}" for label in validation["setup"]]
    calibrated = candidates.set_index("setup")
    rows = []
    for pick in chosen[chosen["variant"] == variant].itertuples():
        if pick.chosen not in set(validation["setup"]):
            continue  # nothing within budget, or a variant this link did not run
        condition = validation[~is_edge & (validation["bandwidth_mbit"] == pick.bandwidth_mbit)
                               & (validation["rtt_ms"] == pick.rtt_ms)]
        ran = pd.concat([condition, edge_row_at(validation[is_edge], pick.bandwidth_mbit, pick.rtt_ms)])
        measured = ran.set_index("setup").loc[pick.chosen]
        predicted = predictions[(predictions["setup"] == pick.chosen) & (predictions["bandwidth_mbit"] == pick.bandwidth_mbit)
                                & (predictions["rtt_ms"] == pick.rtt_ms)]["total_ms"].iloc[0]
        row = {"bandwidth_mbit": pick.bandwidth_mbit, "rtt_ms": pick.rtt_ms, "budget": pick.budget, "limit": pick.limit,
               "chosen": pick.chosen, "predicted_ms": predicted, "measured_ms": measured["measured_ms"],
               "error_percent": round(100 * (predicted - measured["measured_ms"]) / measured["measured_ms"], 1),
               f"calibration_{metric}": calibrated.loc[pick.chosen, metric], f"link_{metric}": measured[metric]}
        if pick.budget == "max_drop":
            within = ran[ran["setup"].map(calibrated["drop"]) <= pick.limit]
            best = within.loc[within["measured_ms"].idxmin()]
            row |= {"measured_best": best["setup"],
                    "regret_percent": round(100 * (measured["measured_ms"] - best["measured_ms"]) / best["measured_ms"], 1)}
        else:
            within = ran[(ran["measured_ms"] <= pick.limit) & ran[metric].notna()]
            best = within.loc[within[metric].idxmax()] if not within.empty else measured
            row |= {"measured_best": best["setup"], "regret_points": round(float(best[metric] - measured[metric]), 3)}
        rows.append(row)
    return pd.DataFrame(rows)
