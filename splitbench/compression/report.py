"""Rendering an RD sweep: Markdown, the RD plot (with BPG at the same split), BD tables, bit maps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from splitbench.compression.bd import bd_table
from splitbench.compression.curves import curves_of
from splitbench.errors import SplitbenchError
from splitbench.reporting import provenance_line
from splitbench.results import markdown_table, save_figure

if TYPE_CHECKING:
    from splitbench.compression.sweep import RDRequest

_COLUMNS = ["variant", "alpha", "lambda", "bpp_estimated", "bpp_actual", "top1", "top5", "agreement",
            "uncompressed_top1", "epochs", "train_images", "test_images", "step_s"]


def bd_for_table(table: pd.DataFrame) -> pd.DataFrame:
    """Each curve against the first one (``none``; or the codec without the auxiliary loss), per training budget."""
    tables = []
    for _, budget in table.groupby("epochs", sort=True):
        curves = curves_of(budget, budgets=table["epochs"])
        tables.append(bd_table(curves, next(iter(curves))))
    return pd.concat(tables, ignore_index=True)


def bd_against_baseline(table: pd.DataFrame, baseline: pd.DataFrame) -> pd.DataFrame:
    """Each learned curve against BPG on the same features (one anchor per BPG layout)."""
    tables = []
    for layout, group in baseline.groupby("layout"):
        anchor = f"BPG {layout}"
        curves = {anchor: (group["bpp"].to_numpy(), group["top1"].to_numpy()), **curves_of(table)}
        tables.append(bd_table(curves, anchor))
    return pd.concat(tables, ignore_index=True)


def load_baseline(path: Path, model: str, split: str) -> pd.DataFrame:
    """BPG's points at ``split`` from a ``splitbench codec`` table, one curve per layout."""
    if not path.is_file():
        raise SplitbenchError(f"--baseline: no such file: {path}")
    table = pd.read_csv(path)
    if not {"model", "split", "codec", "bpp", "top1"} <= set(table.columns):
        raise SplitbenchError(f"--baseline {path} is not a `splitbench codec` table (codec.csv)")
    rows = table[(table["model"] == model) & (table["split"] == split) & (table["codec"] == "bpg")]
    if rows.empty:
        raise SplitbenchError(f"--baseline {path} has no BPG rows for {model} at {split}")
    return rows[["codec", "param", "layout", "bpp", "top1", "top5", "images"]].reset_index(drop=True)


def rd_markdown(table: pd.DataFrame, bd: pd.DataFrame, baseline: pd.DataFrame | None, bd_baseline: pd.DataFrame | None,
                meta: dict[str, Any]) -> str:
    first = table.iloc[0]
    lines = [f"# {first['model']} at {first['split']}: learned compression (rate vs top-1)", "",
             provenance_line(meta), "",
             ("bpp = bits per pixel of the input image; `bpp_actual` from CompressAI's range coder (decoded "
              "bitstreams give the accuracy), `bpp_estimated` = −log2 likelihood. `agreement` = top-1 equal to the "
              "uncompressed model's."), "",
             markdown_table(table[[c for c in _COLUMNS if c in table.columns]].round(4)), "",
             "## BD-rate and BD-accuracy (bjontegaard; negative BD-rate = fewer bits at equal top-1)", "",
             markdown_table(bd.round(3)) if not bd.empty else "(one curve only)", ""]
    if baseline is not None:
        lines += ["## BPG on the same features (`splitbench codec`)", "", markdown_table(baseline.round(4)), ""]
    if bd_baseline is not None:
        lines += ["## Against BPG (BPG as the anchor)", "", markdown_table(bd_baseline.round(3)), ""]
    return "\n".join(lines)


def cost_markdown(table: pd.DataFrame, meta: dict[str, Any]) -> str:
    first = table.iloc[0]
    lines = [f"# Cost of the feature compression model on a {first['feature_shape']} feature (N = {first['channels']})",
             "", provenance_line(meta), "",
             ("GMACs of encoder + decoder for one feature (fvcore: convolutions, GDN's 1×1 convolutions and the "
              "CBAM MLP; sigmoids, poolings and gate products count nothing), parameters including the entropy "
              "model, float32 size in MB (10⁶ bytes)."
              + (" `paper_*`: seed 000 Table 1." if "paper_gflops" in table else "")), "",
             markdown_table(table), ""]
    return "\n".join(lines)


def plot_rd(table: pd.DataFrame, baseline: pd.DataFrame | None, path: Path) -> Path:
    curves = curves_of(table)

    def draw(axes: Any) -> None:
        for name, (rate, top1) in curves.items():
            order = np.argsort(rate)
            axes.plot(rate[order], top1[order], marker="o", label=name)
        if "uncompressed_top1" in table:
            axes.axhline(table["uncompressed_top1"].iloc[0], color="black", linestyle=":", linewidth=1,
                         label=f"uncompressed ({table['uncompressed_top1'].iloc[0]:.1f} %)")
        if baseline is not None:
            for layout, group in baseline.groupby("layout"):
                group = group.sort_values("bpp")
                axes.plot(group["bpp"], group["top1"], marker="s", linestyle="--", color="gray",
                          label=f"BPG ({layout} layout, QP {int(group['param'].min())}–{int(group['param'].max())})")
        axes.set_xlabel("bits per input pixel (actual bitstreams)")
        axes.set_ylabel("top-1 (%)")
        first = table.iloc[0]
        axes.set_title(f"{first['model']} at {first['split']}: rate vs top-1 ({int(first['test_images'])} test images)")
        axes.grid(alpha=0.3)
        axes.legend()

    return save_figure(path, draw, size=(8, 5))


def bit_allocation_figure(request: RDRequest, path: Path, images: int = 4) -> Path:
    """Seed 001 Fig. 2(b): input images, and bits per latent position without / with the auxiliary loss."""
    from splitbench.compression.image_codec import LATENT_STRIDE, latent_bits
    from splitbench.compression.sweep import build_pipeline, point_folder
    from splitbench.compression.train import load_finished

    lam = sorted(request.lambdas)[len(request.lambdas) // 2]
    variant = request.variants[0]
    root = request.cache / "rd" / request.zoo_model.spec.name / request.key()
    # Images spread over the test set, so that they show several classes.
    picks = torch.linspace(0, len(request.test.data) - 1, images).round().long()
    batch = request.test.data.inputs[picks]
    maps = {}
    for alpha in request.alphas:
        pipeline = build_pipeline(request.zoo_model, request.at, variant, request.channels, request.entropy, alpha,
                                  tuple(batch.shape[1:]), request.settings.seed)
        load_finished(point_folder(root, variant, alpha, lam), pipeline, request.budgets[-1])
        pipeline.eval()
        with torch.inference_mode():
            coded = pipeline.codec(pipeline.codec_input(batch))
        # Positions over the image itself; the rest codes the padding up to the codec's stride.
        rows, columns = -(-batch.shape[-2] // LATENT_STRIDE), -(-batch.shape[-1] // LATENT_STRIDE)
        maps[alpha] = latent_bits(coded["likelihoods"]["y"])[:, :rows, :columns]
    peak = max(float(m.max()) for m in maps.values())

    def draw(axes: Any) -> None:
        figure = axes.figure
        axes.remove()
        grid = figure.subplots(1 + len(maps), images, squeeze=False)
        for column in range(images):
            grid[0][column].imshow(batch[column].permute(1, 2, 0).numpy())
            for row, (alpha, bit_map) in enumerate(maps.items(), start=1):
                shown = grid[row][column].imshow(bit_map[column].numpy(), cmap="inferno", vmin=0, vmax=peak,
                                                 interpolation="nearest")
                grid[row][column].set_title(f"α={alpha:g}: {float(bit_map[column].sum()):.0f} bits", fontsize=8)
        for row_axes in grid:
            for cell in row_axes:
                cell.set_xticks([])
                cell.set_yticks([])
        grid[0][0].set_ylabel("input")
        for row, alpha in enumerate(maps, start=1):
            grid[row][0].set_ylabel(f"bits, α={alpha:g}")
        figure.colorbar(shown, ax=grid[1:].ravel().tolist(), label=f"bits per latent position ({LATENT_STRIDE}×{LATENT_STRIDE} pixels)")
        figure.suptitle(f"bit allocation at λ={lam:g}: without (α=0) and with the auxiliary loss")

    return save_figure(path, draw, size=(2.2 * images + 1.5, 2.2 * (1 + len(maps))))
