"""Seed 002's Tables 1–3 with our figures beside the paper's, and the accuracy-vs-ratio plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from splitbench.pruning.scores import StabilityFit
from splitbench.references import load_reference
from splitbench.reporting import provenance_line
from splitbench.results import markdown_table, save_figure

PAPER_TABLE = "seed002_vit_pruning"


def paper_rows() -> pd.DataFrame:
    """The paper's rows with ``ratio`` as a fraction (stability has no scope there)."""
    paper = load_reference(PAPER_TABLE)
    paper["ratio"] = paper["ratio_percent"] / 100
    paper["scope"] = paper["scope"].fillna("")
    return paper


def _paper_value(paper: pd.DataFrame, method: str, scope: str, ratio: float, column: str) -> float | None:
    match = paper[(paper["method"] == method) & (paper["ratio"].round(2) == round(ratio, 2))]
    if method != "stability":  # the paper's stability rows carry no scope
        match = match[match["scope"] == scope]
    values = match[column].dropna()
    return float(values.iloc[0]) if len(values) else None


def comparison_table(rows: pd.DataFrame, column: str, paper_column: str, fmt: str, relative: bool = False) -> pd.DataFrame:
    """Methods × ratios; each cell ``ours (paper)``; ``relative`` adds the change vs the original."""
    paper = paper_rows()
    original = rows[rows["method"] == "original"].iloc[0]
    pruned = rows[rows["method"] != "original"]
    table = []
    for (method, scope), group in pruned.groupby(["method", "scope"], sort=False):
        line: dict[str, Any] = {"method": method, "scope": scope}
        for _, row in group.sort_values("ratio").iterrows():
            ours = row[column]
            cell = "" if pd.isna(ours) else format(ours, fmt)
            if relative and not pd.isna(ours):
                change = 100 * (1 - ours / original[column])
                cell += f" ↓{change:.1f}%" if change >= 0 else f" ↑{-change:.1f}%"  # ↑: larger/slower than unpruned
            theirs = _paper_value(paper, method, scope, row["ratio"], paper_column)
            line[f"{row['ratio']:.0%}"] = f"{cell} ({theirs:{fmt}})" if theirs is not None else cell
        table.append(line)
    return pd.DataFrame(table)


def prune_markdown(
    rows: pd.DataFrame, provenance: dict[str, Any], *, checkpoint_top1: float | None,
    fits: list[StabilityFit], agreement: pd.DataFrame | None,
) -> str:
    original = rows[rows["method"] == "original"].iloc[0]
    rows = rows.assign(param_mb=rows["param_bytes"] / 1e6)
    original_mb = original["param_bytes"] / 1e6

    def ms(value: Any) -> str:
        return "not timed" if pd.isna(value) else f"{value:.0f} ms"

    timed = rows["cpu_ms_1000_b100"].notna().any()
    cpu = (f"CPU {ms(original['cpu_ms_1000_b100'])} per 1000 images at batch 100 and {ms(original['cpu_ms_1000_b1'])} "
           "at batch 1" if timed else "CPU time not measured (`--repeats 0`)")
    parts = [
        "# ViT channel pruning on CIFAR-10 (seed 002)\n",
        (f"Unpruned: top-1 {original['top1']:.2f} % on {int(original['test_images'])} test images, "
        f"{int(original['params']):,} parameters ({original_mb:.3f} MB fp32), {original['macs'] / 1e6:.1f} M MACs, "
        f"{cpu} (paper: 35.368 MB, 8257.53 ms). Cells are `ours (paper)`.\n"),
        "## Table 1: top-1 (%)\n",
        markdown_table(comparison_table(rows, "top1", "top1", ".2f")),
    ]
    if timed:
        parts += [
            "\n## Table 2: CPU time for 1000 test images (ms; batch 100, change vs unpruned)\n",
            markdown_table(comparison_table(rows, "cpu_ms_1000_b100", "cpu_ms_1000_images", ".0f", relative=True)),
            "\n### Batch 1\n",
            markdown_table(comparison_table(rows, "cpu_ms_1000_b1", "cpu_ms_1000_images", ".0f", relative=True)),
        ]
    parts += [
        "\n## Table 3: parameter size (MB fp32, change vs unpruned)\n",
        markdown_table(comparison_table(rows, "param_mb", "params_mb", ".3f", relative=True)),
    ]
    if fits:
        parts.append("\n## Stability fit (seed eq. 2)\n")
        parts.extend(f"- {f.target}: L_KL ≈ {f.slope:.4g} · L_CE + {f.intercept:.4g} over all blocks' channels"
                     for f in fits)
    if agreement is not None:
        parts.append("\n## Exact vs Taylor per-channel losses (Spearman rank correlation)\n")
        parts.append(markdown_table(agreement))
    if checkpoint_top1 is not None:
        parts.append(f"\nCheckpoint's own recorded test top-1: {checkpoint_top1:.2f} %.")
    parts.append(f"\n{provenance_line(provenance)}\n")
    return "\n".join(parts)


def plot_prune(path: Path, rows: pd.DataFrame) -> Path:
    """Top-1 vs ratio per method and scope, ours solid, the paper's dashed."""
    paper = paper_rows()
    pruned = rows[rows["method"] != "original"]
    original = rows[rows["method"] == "original"].iloc[0]

    def draw(axes: Any) -> None:
        for (method, scope), group in pruned.groupby(["method", "scope"], sort=False):
            label = f"{method} ({scope})" if scope else method
            line, = axes.plot(group["ratio"] * 100, group["top1"], marker="o", label=f"ours: {label}")
            theirs = paper[(paper["method"] == method) & ((paper["scope"] == scope) | (method == "stability"))]
            theirs = theirs.dropna(subset=["top1"])
            if len(theirs) and (method != "stability" or scope == pruned[pruned["method"] == method]["scope"].iloc[0]):
                axes.plot(theirs["ratio_percent"], theirs["top1"], linestyle="--", color=line.get_color(), alpha=0.6,
                          label=f"paper: {method}" + (f" ({scope})" if method != "stability" else ""))
        axes.axhline(original["top1"], color="black", linewidth=0.8, linestyle=":", label="ours: unpruned")
        axes.set_xlabel("channels pruned (%)")
        axes.set_ylabel("top-1 (%)")
        axes.set_title("ViT on CIFAR-10: top-1 vs pruning ratio")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, ncol=2)

    return save_figure(path, draw, size=(10, 5.5))


def channel_table(scores: dict[str, dict[Any, Any]], losses: Any) -> pd.DataFrame:
    """Per-channel scores (and losses) — the data behind the seed's Figs. 1, 2 and 4."""
    first = next(iter(scores.values()))
    table = pd.DataFrame({"group": [g.name for g in first for _ in range(g.size)],
                          "channel": [i for g in first for i in range(g.size)]})
    for method, by_group in scores.items():
        table[method] = pd.concat([pd.Series(by_group[g].numpy()) for g in first], ignore_index=True)
    if losses is not None:
        table["l_ce"] = pd.concat([pd.Series(losses.ce[g].numpy()) for g in first], ignore_index=True)
        table["l_kl"] = pd.concat([pd.Series(losses.kl[g].numpy()) for g in first], ignore_index=True)
    return table
