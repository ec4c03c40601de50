"""The group sweep as tables (top-1, MACs, CPU time per groups × duplication) and a plot.

Seed 004 reports no numbers, so there is no paper column: the comparison that matters is
FLGC with duplication against plain FLGC at the same group count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from splitbench.reporting import provenance_line
from splitbench.results import markdown_table, save_figure


def split_rows(table: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """The dense starting point (the row not fine-tuned) and the FLGC points."""
    return table[table["epochs"] == 0].iloc[0], table[table["epochs"] > 0]


def duplication_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Long table: for every FLGC point and layer, the (map, group) pairs duplication added."""
    return pd.DataFrame([
        {"groups": row["groups"], "duplicate_top": row["duplicate_top"], "layer": layer, "duplicated_maps": count}
        for row in rows if row["epochs"] > 0 for layer, count in row["duplicated_per_layer"].items()
    ], columns=["groups", "duplicate_top", "layer", "duplicated_maps"])


def comparison(table: pd.DataFrame) -> pd.DataFrame:
    """One line per group count: plain FLGC beside FLGC with duplication (the seed's proposal)."""
    _, flgc = split_rows(table)
    lines = []
    for groups, at_groups in flgc.groupby("groups", sort=True):
        line: dict[str, Any] = {"groups": groups}
        for _, row in at_groups.sort_values("duplicate_top").iterrows():
            tag = "plain" if row["duplicate_top"] == 0 else f"dup{row['duplicate_top']}"
            line[f"top1 {tag}"] = row["top1"]
            line[f"MMACs {tag}"] = round(row["macs"] / 1e6, 2)
            line[f"ms {tag}"] = row["cpu_ms_1000"]
            if row["duplicate_top"]:
                line[f"maps {tag}"] = row["duplicated_maps"]
        lines.append(line)
    table = pd.DataFrame(lines)
    return table.astype(object).where(table.notna(), "")  # one group has no duplication column: blank, not nan


def _ms(value: Any) -> str:
    return "not timed" if value is None or pd.isna(value) else f"{value:.0f} ms"


def group_markdown(table: pd.DataFrame, provenance: dict[str, Any]) -> str:
    dense, flgc = split_rows(table)
    shown = flgc.assign(params_k=(flgc["params"] / 1e3).round(1), mmacs=(flgc["macs"] / 1e6).round(2),
                        mmacs_run=(flgc["macs_executed"] / 1e6).round(2))
    columns = ["groups", "duplicate_top", "duplicated_maps", "params_k", "mmacs", "mmacs_run", "top1", "train_top1",
               "cpu_ms_1000", "cpu_ms_1000_masked", "epochs"]
    parts = [
        f"# FLGC with duplication of important maps: {dense['model']} on CIFAR-10 (seed 004)\n",
        (f"Dense starting point: top-1 {dense['top1']:.2f} % on {int(dense['test_images'])} test images, "
         f"{int(dense['params']):,} parameters, {dense['macs'] / 1e6:.2f} M MACs, CPU {_ms(dense['cpu_ms_1000'])} "
         f"per 1000 images (batch 100). Every FLGC point fine-tunes it for {int(flgc['epochs'].max())} epoch(s) on "
         f"{int(dense['train_images'])} training images from the same random assignment logits. `mmacs` and "
         "`params_k` count the kept connections (a duplicated map once per group it feeds); `mmacs_run` is what "
         "the grouped model multiplies, zero padding of unequal groups included; `cpu_ms_1000_masked` times the "
         "FLGC model before conversion (dense weights × mask).\n"),
        "## Plain FLGC vs FLGC with duplication\n",
        markdown_table(comparison(table)),
        "\n## All points\n",
        markdown_table(shown[columns]),
        f"\n{provenance_line(provenance)}\n",
    ]
    return "\n".join(parts)


def plot_group(path: Path, table: pd.DataFrame) -> Path:
    """Top-1 vs groups (left) and vs MACs (right), plain FLGC and with duplication."""
    dense, flgc = split_rows(table)

    def draw(axes: Any) -> None:
        by_groups, by_macs = axes.figure.subplots(1, 2)
        axes.remove()
        for top, rows in flgc.groupby("duplicate_top", sort=True):
            rows = rows.sort_values("groups")
            label = "FLGC" if top == 0 else f"FLGC + duplication (top {top})"
            by_groups.plot(rows["groups"], rows["top1"], marker="o", label=label)
            by_macs.plot(rows["macs"] / 1e6, rows["top1"], marker="o", label=label)
        for ax in (by_groups, by_macs):
            ax.axhline(dense["top1"], color="black", linewidth=0.8, linestyle=":", label="dense (no fine-tuning)")
            ax.set_ylabel("top-1 (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        by_groups.set_xscale("log", base=2)
        ticks = sorted(flgc["groups"].unique())
        by_groups.set_xticks(ticks, labels=[str(g) for g in ticks])
        by_groups.set_xlabel("groups")
        by_macs.set_xlabel("MACs of kept connections (M)")
        by_groups.set_title(f"{dense['model']} on CIFAR-10: top-1 vs groups")
        by_macs.set_title("top-1 vs MACs")

    return save_figure(path, draw, size=(11, 4.5))
