"""Markdown and plot of a detector's codec sweep, beside seed 003's Tables 8–9.

Seed 003 transmits SSD224's features (VGG16 at pool4, MobileNetV2 at bottleneck7) through
BPG and WebP and reports, per setting, the ratio to the input JPEG and the detector's mAP on
PASCAL VOC2007 (VOC's mAP at IoU 0.5). Our detector and data differ (a COCO-trained detector
on COCO images, COCOeval), so absolute mAPs are not comparable; the shape is. Each side's mAP
is therefore also given as a share of its own uncompressed mAP (``*_kept``, percent), and our
``map50`` is the figure nearest to the paper's VOC mAP@0.5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from splitbench.codecs.report import _describe_preprocessing, _settings, display_table, finish_size_axes
from splitbench.errors import SplitbenchError
from splitbench.references import load_reference
from splitbench.reporting import provenance_line
from splitbench.results import markdown_table, save_figure

REFERENCE = "seed003_detection"
PAPER_MODELS = ("VGG16", "MobileNetV2")
_OURS = ["codec", "param", "layout", "bits", "images", "feature_bytes", "ratio_percent", "bpp", "map", "map50",
         "map_drop", "map50_drop", "encode_ms", "decode_ms"]


def load_paper_detection(folder: Path | None = None) -> pd.DataFrame:
    """Seed 003's detection rows (model, codec, param, ratio_percent, map), shipped or from ``folder``."""
    if folder is None:
        return load_reference(REFERENCE)
    path = folder / f"{REFERENCE}.csv"
    if not path.is_file():
        raise SplitbenchError(f"--reference {folder}: missing {path.name}")
    return pd.read_csv(path)


def beside_paper(table: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Our rows for the paper's codecs and settings, with each paper model's ratio, mAP and the
    share of its uncompressed mAP kept, in seed 003's table form (one row per setting)."""
    ours = table[table["codec"].isin(paper["codec"].unique())].copy()
    ours["key"] = ours["param"].fillna(-1).astype(int)
    none = ours.loc[ours["codec"] == "none"]
    for metric in ("map", "map50"):
        level = float(none[metric].iloc[0]) if len(none) else float("nan")
        ours[f"{metric}_kept"] = (100.0 * ours[metric] / level).round(2)
    shown = ["codec", "param", "layout", "ratio_percent", "map", "map50", "map50_drop", "map50_kept"]
    for model in PAPER_MODELS:
        rows = paper[paper["model"] == model].assign(key=lambda t: t["param"].fillna(-1).astype(int))
        level = float(rows.loc[rows["codec"] == "none", "map"].iloc[0])
        rows = rows.assign(**{f"{model}_ratio": rows["ratio_percent"], f"{model}_map": rows["map"],
                              f"{model}_kept": (100.0 * rows["map"] / level).round(2)})
        ours = ours.merge(rows[["codec", "key", f"{model}_ratio", f"{model}_map", f"{model}_kept"]],
                          on=["codec", "key"], how="left")
        shown += [f"{model}_ratio", f"{model}_map", f"{model}_kept"]
    return ours[shown]


def detection_markdown(table: pd.DataFrame, paper: pd.DataFrame | None, provenance: dict[str, Any]) -> str:
    first = table.iloc[0]
    data = provenance["data"]
    lines = [
        f"# {first['model']} at {first['split']}: split features through image codecs, detection",
        "",
        f"{int(first['images'])} images of {data['dataset']}; input {_describe_preprocessing(provenance)}, its JPEG "
        f"(Pillow, quality 75) totals {int(first['jpeg_bytes']):,} bytes. `ratio_percent` = coded feature bytes "
        "(file + 8 bytes of float32 min/max) / those JPEG bytes (seed 003's 圧縮率); `map` = COCO AP@[.5:.95], "
        "`map50` = AP@.5 (COCOeval, percent; darknet's thresholds: score 0.005, NMS 0.45); drops are points "
        "against the `none` row (float32 features, no codec).",
        "",
        markdown_table(display_table(table[_OURS]), floatfmt=".4g"),
        "",
    ]
    if paper is not None:
        lines += ["## Beside seed 003 (Tables 8–9)", "",
                  ("The paper's columns are SSD224 on PASCAL VOC2007 (VOC mAP@0.5, percent) with VGG16 and "
                   "MobileNetV2 shared heads; `*_kept` = mAP as a percentage of the same side's uncompressed mAP "
                   "(ours: `map50`), the comparable shape."), "",
                  markdown_table(display_table(beside_paper(table, paper)), floatfmt=".4g"), ""]
    lines += ["![mAP against ratio](codec.png)", "", "## Codec settings", "", markdown_table(_settings(table)), "",
              f"Provenance: {provenance_line(provenance)}."]
    return "\n".join(lines)


def plot_detection(table: pd.DataFrame, paper: pd.DataFrame | None, path: Path) -> Path:
    """mAP@.5 (ours) and the paper's VOC mAP against ratio, each as a share of its own
    uncompressed mAP: one line per (codec, layout), the paper's curves dashed."""

    def draw(axes: Any) -> None:
        none = table.loc[table["codec"] == "none", "map50"]
        level = float(none.iloc[0]) if len(none) else 100.0
        for (codec, layout), rows in table[table["param"].notna()].groupby(["codec", "layout"], sort=False):
            rows = rows.sort_values("ratio_percent")
            axes.plot(rows["ratio_percent"], 100 * rows["map50"] / level, marker="o", label=f"{codec} {layout} (ours)")
        for model in PAPER_MODELS if paper is not None else ():
            rows = paper[paper["model"] == model]
            model_level = float(rows.loc[rows["codec"] == "none", "map"].iloc[0])
            for codec, curve in rows[rows["param"].notna()].groupby("codec", sort=False):
                curve = curve.sort_values("ratio_percent")
                axes.plot(curve["ratio_percent"], 100 * curve["map"] / model_level, linestyle="--", marker="x",
                          label=f"{codec} SSD224-{model} (seed 003)")
        axes.axhline(100.0, color="gray", linestyle=":", label="uncompressed")
        finish_size_axes(axes, table, "mAP@.5 kept [% of uncompressed]", "detection mAP", legend_size=6)

    return save_figure(path, draw)
