"""Tables and figures of ``link`` and ``plan`` results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from splitbench.link.measure import STAGES
from splitbench.link.plan import LinkModel
from splitbench.results import markdown_table, save_figure

STAGE_NAMES = {"head_ms": "edge head", "encode_ms": "edge encode", "transfer_ms": "transfer (+RTT)",
               "server_ms": "server decode + tail"}


def link_markdown(model: str, summary: pd.DataFrame, shaper: str, edge_slowdown: float = 1.0) -> str:
    detector = "map" in summary.columns  # a detector's figures, and its replies, which carry its boxes
    accuracy = ["map", "map50", "detections"] if detector else ["top1"]
    shown = summary[["setup", "bandwidth_mbit", "rtt_ms", "images", *accuracy, "payload_bytes", "framing_bytes",
                     *(["reply_bytes"] if detector else []), *STAGES, "total_ms", "total_p99_ms"]]
    scored = (" `map`, `map50`: COCOeval's AP@[.5:.95] and AP@.5 (percent) of the detections the server "
              "replied, over these images; `detections`: per image; `reply_bytes`: the reply that carries them."
              if detector else "")
    slower = (f" The edge stands for a device {edge_slowdown:g} times slower than this machine: its measured head "
              f"and encoder times count {edge_slowdown:g} times (`--edge-slowdown`)." if edge_slowdown != 1 else "")
    return (f"# {model} split across a link\n\nShaper: {shaper}.{slower} Mean over images; times in ms, bytes per "
            f"image. `framing_bytes`: the request header and ZeroMQ's frame prefixes on top of the payload; "
            f"TCP/IP and Ethernet add about 4.6 % more.{scored}\n\n{markdown_table(shown)}\n\n![stages](link.png)\n")


def plot_stages(path: Path, summary: pd.DataFrame, model: str) -> Path:
    """Stacked bars: the stages of each setup at each bandwidth and RTT."""
    labels = [row.setup if pd.isna(row.bandwidth_mbit) else
              f"{row.setup}\n{row.bandwidth_mbit:g} Mbit/s" + (f", {row.rtt_ms:g} ms" if row.rtt_ms else "")
              for row in summary.itertuples()]

    def draw(axes) -> None:  # type: ignore[no-untyped-def]
        bottom = np.zeros(len(summary))
        for stage in STAGES:
            values = summary[stage].to_numpy(dtype=float)
            axes.bar(range(len(summary)), values, bottom=bottom, label=STAGE_NAMES[stage])
            bottom += values
        axes.set_xticks(range(len(summary)), labels, rotation=60, ha="right", fontsize=7)
        axes.set_ylabel("ms per image (mean)")
        if bottom.max() > 50 * max(bottom.min(), 1e-3):
            from splitbench.results import plain_log_ticks

            axes.set_yscale("log")
            plain_log_ticks(axes.yaxis)  # 30, 100, 300 ms rather than 3×10¹, 10², 3×10²
        axes.set_title(f"{model}: where the time goes, per cut and link")
        axes.legend(fontsize=8)

    return save_figure(path, draw, size=(max(8.0, 0.45 * len(summary) + 3), 5.5))


def plan_markdown(model: str, costs: pd.DataFrame, best: pd.DataFrame, link: LinkModel,
                  validation: pd.DataFrame | None) -> str:
    parts = [
        f"# {model}: where to cut\n",
        f"Edge = this machine × {link.slowdown:g}; link head start {link.head_start} B; transport overhead "
        f"{link.overhead_ms:g} ms per exchange (measured on loopback). "
        "Bytes include the request header, ZeroMQ framing and TCP/IP/Ethernet frames.\n",
        "## Best cut per bandwidth\n", markdown_table(best), "",
        "![latency against bandwidth](plan.png)\n",
        "## Measured costs per cut (this machine)\n",
        markdown_table(costs.drop(columns=["at", "codec"])), "",
    ]
    if validation is not None:
        errors = validation["error_percent"].abs()
        agree = validation.attrs["best"]
        matches = int((agree["predicted_best"] == agree["measured_best"]).sum())
        parts += [
            "## Plan against link\n",
            f"Largest error {errors.max():.1f} %, median {errors.median():.1f} %; the predicted best cut is the "
            f"measured best at {matches} of {len(agree)} conditions. Where it is not, `regret_percent` is how much "
            f"slower the planned cut measured than the measured best (at most {agree['regret_percent'].max():.1f} %).\n",
            markdown_table(validation), "", markdown_table(agree), "",
        ]
    return "\n".join(parts)


def search_markdown(model: str, chosen: pd.DataFrame, candidates: pd.DataFrame, predictions: pd.DataFrame,
                    link: LinkModel, metric: str, calibration: int) -> str:
    """``plan --search``: the chosen deployment per condition and budget, then the front and every candidate."""
    reference = candidates.loc[candidates["drop"] == 0, metric].max()
    front = predictions[predictions["front"]].sort_values(["bandwidth_mbit", "rtt_ms", "total_ms"])
    shown = ["bandwidth_mbit", "rtt_ms", "setup", metric, "drop", "payload_bytes", "total_ms"]
    return "\n".join([
        f"# {model}: which deployment\n",
        f"{len(candidates)} candidates (model variant × cut × codec setting), each measured on {calibration} "
        f"calibration pictures: {metric} through the edge's and the server's halves, bytes per picture, and "
        f"each half's compute time. The reference is the first model whole on the edge ({metric} "
        f"{reference:g} %); `drop` is in points below it. Edge = this machine × {link.slowdown:g}; link head "
        f"start {link.head_start} B; transport overhead {link.overhead_ms:g} ms per exchange.\n",
        "## Chosen deployment per condition and budget\n", markdown_table(chosen), "",
        "![accuracy against latency per bandwidth](search.png)\n",
        "## Pareto front per condition (latency, drop, bytes)\n", markdown_table(front[shown]), "",
        "## Candidates (calibration)\n",
        markdown_table(candidates[["setup", metric, "drop", "payload_bytes", "head_ms", "encode_ms", "decode_ms",
                                   "tail_ms"]]), "",
    ])


def deploy_check_markdown(checked: pd.DataFrame, metric: str) -> str:
    """``link --deploy``: the search's choices against the link's measurement."""
    if checked.empty:
        return "## plan --search's choices over the link\n\nNo choice of the search was linked here.\n"
    same = int((checked[f"calibration_{metric}"] == checked[f"link_{metric}"]).sum())
    errors = checked["error_percent"].abs()
    regret = checked["regret_percent"].dropna() if "regret_percent" in checked else pd.Series(dtype=float)
    return "\n".join([
        "## plan --search's choices over the link\n",
        f"The search's predicted latency against the link's, per choice: largest error {errors.max():.1f} %, "
        f"median {errors.median():.1f} %. The link's {metric} equals the calibration's at {same} of {len(checked)} "
        f"choices (the same pictures through the same code). Under an accuracy budget, the regret is how much "
        f"slower the choice measured than the fastest deployment linked within the budget"
        + (f" (at most {regret.max():.1f} %)" if not regret.empty else "") + ".\n",
        markdown_table(checked), "",
    ])
