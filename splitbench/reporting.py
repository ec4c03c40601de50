"""Markdown and plots for results (the CSV and the JSON sidecar are written by ``results``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from splitbench.profiling import Profile
from splitbench.results import markdown_table, plain_log_ticks, save_figure
from splitbench.split import SplitAccount


def giga(value: float) -> str:
    return f"{value / 1e9:.4g} G"


def provenance_line(provenance: dict[str, Any]) -> str:
    versions = provenance["versions"]
    git = provenance["git"]
    commit = (git["commit"] or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")
    hardware = provenance["hardware"]
    return (
        f"splitbench {versions['splitbench']}, torch {versions['torch']}, "
        f"torchvision {versions['torchvision']}, fvcore {versions['fvcore']}; commit {commit}; "
        f"{hardware['cpu']}, {hardware['torch_threads']} threads; wall {provenance['wall_s']} s"
    )


def profile_markdown(profile: Profile, provenance: dict[str, Any]) -> str:
    shape = "x".join(map(str, profile.input_shape))
    first_smaller = profile.table.loc[profile.table["smaller_than_input"], "layer"]
    lines = [
        f"# Profile of {profile.model}",
        "",
        f"Input {shape} ({profile.input_elements} elements). Total {giga(profile.total_macs)}MACs "
        f"({profile.total_macs}), {profile.total_params} parameters. "
        f"First layer smaller than the input: {first_smaller.iloc[0] if len(first_smaller) else 'none'}.",
        "MACs follow fvcore's convention (one per fused multiply-add; normalisation one per element).",
        "",
        markdown_table(profile.table),
        "",
        "![elements per layer](profile.png)",
        "",
        f"Provenance: {provenance_line(provenance)}.",
    ]
    return "\n".join(lines)


def plot_profile(profile: Profile, path: Path) -> Path:
    """Elements per cut as bars, the input's element count as a line (seed 003 Fig. 3/4).

    With every node listed, the nodes after which no single tensor crosses are drawn as
    hollow bars, so the valid cuts stand out.
    """
    table = profile.table

    def draw(axes: Any) -> None:
        colours = ["tab:green" if smaller else "tab:gray" for smaller in table["smaller_than_input"]]
        valid = table["valid_cut"].astype(bool).tolist()
        bars = axes.bar(range(len(table)), table["elements"].clip(lower=1), color=colours)
        for bar, is_cut in zip(bars, valid):
            if not is_cut:
                bar.set_fill(False)
                bar.set_edgecolor("tab:gray")
        axes.axhline(profile.input_elements, color="tab:red", linestyle="--", label=f"input ({profile.input_elements})")
        axes.set_yscale("log")
        plain_log_ticks(axes.yaxis)
        step = max(1, len(table) // 60)  # at most ~60 labels stay legible
        ticks = list(range(0, len(table), step))
        axes.set_xticks(ticks, [table["layer"].iloc[i] for i in ticks], rotation=90, fontsize=6 if step > 1 else 7)
        axes.set_ylabel("output elements")
        what = "node (hollow: not a valid cut)" if not all(valid) else "valid cut"
        axes.set_title(f"{profile.model}: output elements per {what}; green: smaller than the input", fontsize=9)
        axes.legend(loc="upper right")

    return save_figure(path, draw)


def _spread(timing: Any) -> str:
    """`` (p10-p90 a-b ms, N runs)`` of a timing, '' where it was not timed with repeats."""
    if timing is None or not timing.repeats:
        return ""
    return f" (p10–p90 {timing.p10_ms:g}–{timing.p90_ms:g} ms, {timing.repeats} runs)"


def split_markdown(account: SplitAccount, provenance: dict[str, Any]) -> str:
    summary = account.summary().iloc[0]
    lines = [
        f"# {account.model} split at {account.split} ({account.module})",
        "",
        f"Transmitted tensor {summary['transfer_shape']}: {summary['transfer_elements']} elements, "
        f"{summary['transfer_bytes_fp32']} bytes as float32, {summary['transfer_bytes_uint8']} bytes "
        f"as 8-bit min-max (incl. 8 bytes of min/max), against {summary['input_elements']} input elements.",
        "",
        f"Head {giga(account.head_macs)}MACs, {account.head_params} parameters, "
        f"{account.head_ms} ms median{_spread(account.head_timing)} on {account.threads} threads.",
        "",
        "## Tasks",
        "",
        markdown_table(account.per_task()),
        "",
        "## Shared-head accounting (seed 003, eq. 1–4)",
        "",
        f"- separate models (eq. 1): {giga(account.macs_separate)}MACs",
        f"- shared head + task tails (eq. 3): {giga(account.macs_shared)}MACs",
        f"- reduction: **{account.reduction_percent:.2f} %** ({giga(account.macs_separate - account.macs_shared)}MACs saved)",
        "",
        markdown_table(account.summary()),
        "",
        f"Provenance: {provenance_line(provenance)}.",
    ]
    return "\n".join(lines)


def split_comparison(accounts: list[pd.DataFrame], reference: pd.DataFrame) -> pd.DataFrame:
    """Our reductions beside the paper's (``seed003_sizes_and_macs.csv``)."""
    ours = pd.concat(accounts, ignore_index=True)
    paper = reference[reference["quantity"] == "shared_cnn_mac_reduction"]
    paper_by_model = {str(m).lower(): float(v) for m, v in zip(paper["model"], paper["value"])}
    ours["paper_reduction_percent"] = ours["model"].map(
        lambda m: paper_by_model.get(m.replace("_", ""), float("nan"))
    )
    ours["difference_points"] = (ours["reduction_percent"] - ours["paper_reduction_percent"]).round(2)
    return ours[["model", "split", "tasks", "macs_separate", "macs_shared", "reduction_percent",
                 "paper_reduction_percent", "difference_points", "transfer_elements"]]


def training_markdown(model: str, history: pd.DataFrame, recipe: dict[str, Any], provenance: dict[str, Any]) -> str:
    """Final figures, the recipe, and the history every 10 epochs (the CSV has all)."""
    last = history.iloc[-1]
    every = history[(history["epoch"] % 10 == 0) | (history["epoch"] == last["epoch"])]
    # the learning rate keeps 3 significant digits: rounded to 4 decimals, a late-cosine lr reads 0
    shown = every.round(4).assign(lr=every["lr"].map("{:.3g}".format))
    recipe_lines = "\n".join(f"- {key}: {value}" for key, value in recipe.items())
    test = f"{last['test_top1']:.2f} %" if "test_top1" in history and pd.notna(last.get("test_top1")) else "n/a"
    return (
        f"# Training {model}\n\n"
        f"{int(last['epoch'])} epochs; final test top-1 **{test}**, train loss {last['train_loss']:.4f}; "
        f"median {history['images_per_s'].median():,.0f} training images/s.\n\n"
        f"## Recipe\n\n{recipe_lines}\n\n## History\n\n{markdown_table(shown)}\n\n"
        f"{provenance_line(provenance)}\n"
    )


def plot_training(path: Path, history: pd.DataFrame, title: str) -> Path:
    """Training loss and train/test top-1 per epoch."""

    def draw(axes: Any) -> None:
        axes.plot(history["epoch"], history["train_top1"], label="train top-1 (augmented)")
        if "test_top1" in history:
            tested = history.dropna(subset=["test_top1"])
            axes.plot(tested["epoch"], tested["test_top1"], label="test top-1")
        axes.set_xlabel("epoch")
        axes.set_ylabel("top-1 (%)")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        loss = axes.twinx()
        loss.plot(history["epoch"], history["train_loss"], color="grey", linestyle=":", label="train loss")
        loss.set_ylabel("train loss")
        axes.legend(loc="center right")

    return save_figure(path, draw)
