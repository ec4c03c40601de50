"""Markdown and plot of a codec sweep, with seed 003's own rows beside ours where it has them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from splitbench.errors import SplitbenchError
from splitbench.references import load_reference
from splitbench.reporting import provenance_line
from splitbench.results import markdown_table, plain_log_ticks, save_figure
from splitbench.zoo import zoo_spec

REFERENCE_FILES = ("seed003_bpg_classification.csv", "seed003_webp_classification.csv")
_PAPER_MODELS = {"vgg16": "VGG16", "mobilenet_v2": "MobileNetV2"}
_OURS = ["codec", "param", "layout", "bits", "chroma", "images", "feature_bytes", "ratio_percent", "bpp",
         "top1", "top5", "top1_drop", "top5_drop", "encode_ms", "decode_ms"]


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """Blank cells where a row has no value (the baselines' parameter, chroma …) instead of 'nan'."""
    shown = table.copy()
    if "param" in shown:
        shown["param"] = shown["param"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    return shown.astype(object).where(shown.notna(), "")


def load_paper_rows(folder: Path | None = None) -> pd.DataFrame:
    """seed 003's classification rows (codec, param, ratio_percent, top1, top5).

    From the copies shipped in :mod:`splitbench.references`, or from ``folder`` (files of the
    same names, e.g. ``../shared/reference``) when given.
    """
    if folder is None:
        tables = [load_reference(name.removesuffix(".csv")) for name in REFERENCE_FILES]
    else:
        missing = [name for name in REFERENCE_FILES if not (folder / name).is_file()]
        if missing:
            raise SplitbenchError(f"--reference {folder}: missing {', '.join(missing)}")
        tables = [pd.read_csv(folder / name) for name in REFERENCE_FILES]
    return pd.concat([t.rename(columns={"qp": "param", "quality": "param"}) for t in tables], ignore_index=True)


def paper_rows(table: pd.DataFrame, reference: pd.DataFrame | None) -> pd.DataFrame | None:
    if reference is None or table.empty:
        return None
    name = str(table["model"].iloc[0])
    spec = zoo_spec(name)
    if spec is None or str(table["split"].iloc[0]) != spec.default_cut("codec"):
        return None  # the seed's rows are for its own split point only
    rows = reference[reference["model"] == _PAPER_MODELS.get(name)]
    return rows.reset_index(drop=True) if len(rows) else None


def side_by_side(table: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Our rows for the paper's codecs, one column pair (ours, paper's) per measure."""
    ours = table[table["codec"].isin(paper["codec"].unique())].copy()
    ours["key"] = ours["param"].fillna(-1).astype(int)
    theirs = paper.assign(key=paper["param"].fillna(-1).astype(int))
    theirs = theirs.assign(top1_drop=(theirs.loc[theirs["codec"] == "none", "top1"].iloc[0] - theirs["top1"]).round(2))
    merged = ours.merge(theirs[["codec", "key", "ratio_percent", "top1", "top5", "top1_drop"]],
                        on=["codec", "key"], how="left", suffixes=("", "_paper"))
    return merged[["codec", "param", "layout", "ratio_percent", "ratio_percent_paper", "top1", "top1_paper",
                   "top5", "top5_paper", "top1_drop", "top1_drop_paper"]]


def codec_markdown(table: pd.DataFrame, reference: pd.DataFrame | None, provenance: dict[str, Any]) -> str:
    first = table.iloc[0]
    images, jpeg = int(first["images"]), int(first["jpeg_bytes"])
    paper = paper_rows(table, reference)
    lines = [
        f"# {first['model']} at {first['split']}: split features through image codecs",
        "",
        f"{images} images of {provenance['data']['dataset']} ({provenance['data']['split']}); input resized as "
        f"{_describe_preprocessing(provenance)}, its JPEG (Pillow, quality 75) totals {jpeg:,} bytes. "
        "`ratio_percent` = coded feature bytes (file + 8 bytes of float32 min/max) / those JPEG bytes "
        "(seed 003's 圧縮率); `bpp` = feature bits per input pixel; drops are points of top-1/top-5 "
        "against the `none` row (float32 features, no codec).",
        "",
        markdown_table(display_table(table[_OURS]), floatfmt=".4g"),
        "",
    ]
    if paper is not None:
        beside = markdown_table(display_table(side_by_side(table, paper)), floatfmt=".4g")
        lines += ["## Beside seed 003 (Tables 5–7)", "", beside, ""]
    else:
        lines += ["Seed 003 reports no figures for this model (or its tables were not found), so no paper rows.", ""]
    lines += ["![top-1 against ratio](codec.png)", "", "## Codec settings", "",
              markdown_table(_settings(table)), "", f"Provenance: {provenance_line(provenance)}."]
    return "\n".join(lines)


def _describe_preprocessing(provenance: dict[str, Any]) -> str:
    described = provenance["arguments"]["preprocessing"]
    if described.get("resampling") == "darknet":
        side = described["resize_to_square"]
        return f"{side}×{side} (whole image, darknet's resize: bilinear on [0, 1] floats, corners aligned)"
    if "resize_to_square" in described:
        side = described["resize_to_square"]
        return f"{side}×{side} (whole image, seed 003 eq. 5–6), {described['interpolation']}"
    return f"short side {described['resize_short_side']}, centre crop {described['center_crop']}"


def _settings(table: pd.DataFrame) -> pd.DataFrame:
    coded = table[table["settings"].fillna("") != ""]
    return coded.drop_duplicates(["codec", "layout", "bits"])[["codec", "layout", "bits", "backend", "chroma", "settings"]]


def plot_codec(table: pd.DataFrame, reference: pd.DataFrame | None, path: Path) -> Path:
    """Top-1 against ratio: one line per (codec, layout), the paper's curves dashed, ``none`` as a level."""
    paper = paper_rows(table, reference)

    def draw(axes: Any) -> None:
        curves = table[table["param"].notna()]
        for (codec, layout), rows in curves.groupby(["codec", "layout"], sort=False):
            rows = rows.sort_values("ratio_percent")
            axes.plot(rows["ratio_percent"], rows["top1"], marker="o", label=f"{codec} {layout} (ours)")
        if paper is not None:
            for codec, rows in paper[paper["param"].notna()].groupby("codec", sort=False):
                rows = rows.sort_values("ratio_percent")
                axes.plot(rows["ratio_percent"], rows["top1"], linestyle="--", marker="x", label=f"{codec} (seed 003)")
        none = table[table["codec"] == "none"]
        if len(none):
            axes.axhline(float(none["top1"].iloc[0]), color="gray", linestyle=":", label="none (float32, ours)")
        finish_size_axes(axes, table, "top-1 [%]", "top-1", legend_size=7)

    return save_figure(path, draw)


def finish_size_axes(axes: Any, table: pd.DataFrame, ylabel: str, figure: str, legend_size: float) -> None:
    """The axes every codec plot shares: log ratio against the input JPEG, title, grid, legend."""
    axes.set_xscale("log")
    plain_log_ticks(axes.xaxis)
    axes.set_xlabel("feature bytes / input JPEG bytes [%] (log)")
    axes.set_ylabel(ylabel)
    axes.set_title(f"{table['model'].iloc[0]} at {table['split'].iloc[0]}: {figure} against size")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=legend_size, loc="lower right")


def plot_cuts(table: pd.DataFrame, path: Path, metric: str = "top1") -> Path:
    """A sweep over several cuts: bytes per picture (solid, log) and ``metric`` (dashed) at each cut,
    one colour per codec setting, cuts in the model's order."""
    cuts = list(dict.fromkeys(table["split"]))
    shown = table.assign(setting=[_setting_label(row) for _, row in table.iterrows()],
                         position=table["split"].map(cuts.index),
                         picture_bytes=table["feature_bytes"] / table["images"])

    def draw(axes: Any) -> None:
        score = axes.twinx()
        for index, (setting, rows) in enumerate(shown.groupby("setting", sort=False)):
            colour = f"C{index % 10}"
            axes.plot(rows["position"], rows["picture_bytes"], marker="o", color=colour, label=setting)
            score.plot(rows["position"], rows[metric], marker="x", linestyle="--", color=colour)
        axes.set_yscale("log")
        axes.set_ylabel("bytes per picture (solid, log)")
        score.set_ylabel(f"{metric} (dashed)")
        axes.set_xticks(range(len(cuts)), cuts, rotation=60, ha="right", fontsize=7)
        axes.set_title(f"{table['model'].iloc[0]}: every codec setting at {len(cuts)} cuts")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7, loc="upper right")

    return save_figure(path, draw, size=(10, 5))


def _setting_label(row: pd.Series) -> str:
    param = "" if pd.isna(row["param"]) else f":{int(row['param'])}"
    layout = "" if row["layout"] in ("-", "") or pd.isna(row["layout"]) else f" {row['layout']}"
    return f"{row['codec']}{param}{layout}"
