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


def link_markdown(model: str, summary: pd.DataFrame, shaper: str) -> str:
    detector = "map" in summary.columns  # a detector's figures, and its replies, which carry its boxes
    accuracy = ["map", "map50", "detections"] if detector else ["top1"]
    shown = summary[["setup", "bandwidth_mbit", "rtt_ms", "images", *accuracy, "payload_bytes", "framing_bytes",
                     *(["reply_bytes"] if detector else []), *STAGES, "total_ms", "total_p99_ms"]]
    scored = (" `map`, `map50`: COCOeval's AP@[.5:.95] and AP@.5 (percent) of the detections the server "
              "replied, over these images; `detections`: per image; `reply_bytes`: the reply that carries them."
              if detector else "")
    return (f"# {model} split across a link\n\nShaper: {shaper}. Mean over images; times in ms, bytes per "
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
