"""``splitbench codec`` as a library call: model, data and codec points in, a result table out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from splitbench.codecs.cache import FeatureCache, fill_cache, open_cache
from splitbench.codecs.pipeline import Point, PointResult, SweepContext, run_points
from splitbench.data import ImageDataset, Manifest, Preprocessing, open_dataset
from splitbench.errors import SplitbenchError
from splitbench.executors import ExecutorSpec
from splitbench.progress import track
from splitbench.scoring import ClassificationScorer, Scorer, scorer_for
from splitbench.split import feature_shape, preprocessing_for
from splitbench.zoo import ZooModel



def columns(metrics: tuple[str, ...] = ClassificationScorer.metrics) -> list[str]:
    """The table's columns: each of the task's figures, then its drop against ``none``."""
    return ["model", "split", "codec", "param", "param_name", "layout", "bits", "backend", "chroma", "images",
            "feature_bytes", "jpeg_bytes", "ratio_percent", "bpp", *metrics, *(f"{m}_drop" for m in metrics),
            "encode_ms", "decode_ms", "quantize_ms", "settings"]


COLUMNS = columns()


@dataclass
class SweepRequest:
    """Everything a sweep needs besides the points."""

    model: ZooModel
    at: str
    dataset: str
    split: str | None = None
    data_root: Path | None = None
    limit: int | None = None
    preprocess: str = "seed"
    cache_root: Path = Path("cache")
    workers: int = 1
    batch_size: int = 64
    keep_dir: Path | None = None
    manifest: Manifest | None = None  # a manifest that is not shipped (tests)
    progress: bool = True
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)  # where the encoding tasks run


@dataclass
class SweepResult:
    table: pd.DataFrame
    results: list[PointResult]
    cache: FeatureCache
    data: dict[str, Any]
    preprocessing: Preprocessing
    head_s: float  # seconds in the head for the images computed by this run (0 when cached)
    head_images: int
    timings: dict[str, float] = field(default_factory=dict)
    task: str = "classification"


def check_scored_tail(model: ZooModel) -> None:
    """A sweep scores the tail's outputs: they must be the model's own (a classifier's logits, a
    detector's heads). torchvision's detectors are cut in their backbone, whose tail ends in
    features; the sweep cannot score those."""
    if model.spec.cut_module:
        raise SplitbenchError(f"{model.spec.name} is cut in its {model.spec.cut_module}, whose tail ends in features, "
                              "not in the model's outputs: codec cannot score it (detectors it scores: yolov4_tiny)")


def run_sweep(request: SweepRequest, points: list[Point]) -> SweepResult:
    check_scored_tail(request.model)
    began = time.perf_counter()
    preprocessing = preprocessing_for(request.model, request.preprocess)
    dataset = open_dataset(request.dataset, split=request.split, root=request.data_root, limit=None,
                           manifest=request.manifest)
    count = len(dataset) if request.limit is None else min(request.limit, len(dataset))
    cut = request.model.cuts().resolve(request.at)
    head, tail = request.model.cuts().split(cut)
    scorer = scorer_for(request.model, dataset)
    cache = _open_feature_cache(request, dataset, preprocessing, cut.name)
    done_before = cache.computed
    with track("head features", max(count - done_before, 0), unit="images",
               enabled=request.progress and count > done_before) as bar:
        head_s = fill_cache(cache, head, dataset, preprocessing, count, batch_size=request.batch_size, on_batch=bar.advance)
    context = SweepContext(cache, tail, count, request.workers,
                           request.batch_size, request.keep_dir, request.progress, request.executor, scorer)
    results = run_points(context, points)
    data = {**dataset.provenance(), "images": count, "limit": request.limit}
    table = result_table(request, results, cache.jpeg_bytes(count), preprocessing, scorer)
    return SweepResult(table, results, cache, data, preprocessing, head_s, max(count - done_before, 0),
                       {"wall_s": time.perf_counter() - began}, scorer.task)


def _open_feature_cache(request: SweepRequest, dataset: ImageDataset, preprocessing: Preprocessing,
                        cut: str) -> FeatureCache:
    """The cache keyed by model, weights sha256, split, data manifest and preprocessing."""
    model = request.model
    weights = model.weights.describe()
    data = dataset.provenance()
    fields = {
        "model": model.spec.name,
        "weights": weights["sha256"] or weights["source"],
        "split": cut,
        "dataset": data["dataset"], "data_split": data["split"], "file_list_sha256": data["file_list_sha256"],
        "content_sha256": data["content_sha256"],  # the same names under another root are other data
        "preprocessing": preprocessing.describe(),
    }
    shape = feature_shape(model, cut, preprocessing)
    return open_cache(request.cache_root, fields, len(dataset), shape)


def result_table(request: SweepRequest, results: list[PointResult], jpeg: np.ndarray,
                 preprocessing: Preprocessing, scorer: Scorer | None = None) -> pd.DataFrame:
    """One row per point; drops are in points of each figure (top-1, mAP …) against the ``none`` row."""
    metrics = (scorer or ClassificationScorer()).metrics
    jpeg_total = int(jpeg.sum())
    pixels = preprocessing.crop * preprocessing.crop
    rows = [_row(request, result, jpeg_total, pixels, metrics) for result in results]
    table = pd.DataFrame(rows, columns=columns(metrics))
    reference = table[table["codec"] == "none"]
    if len(reference):
        for metric in metrics:
            table[f"{metric}_drop"] = (reference[metric].iloc[0] - table[metric]).round(3)
    return table


def _row(request: SweepRequest, result: PointResult, jpeg_total: int, pixels: int,
         metrics: tuple[str, ...]) -> dict[str, Any]:
    point, images = result.point, result.images
    feature_bytes = int(result.nbytes.sum())
    settings = dict(result.settings)
    spec = point.spec
    codec = spec.build() if spec else None
    return {
        "model": request.model.spec.name, "split": request.at, "codec": point.codec,
        "param": spec.param if spec else None, "param_name": codec.parameter if codec else None,
        "layout": point.layout, "bits": point.bits if point.bits is not None else 32,
        "backend": settings.pop("backend", "numpy"), "chroma": settings.pop("chroma", None),
        "images": images, "feature_bytes": feature_bytes, "jpeg_bytes": jpeg_total,
        "ratio_percent": round(100.0 * feature_bytes / jpeg_total, 3),
        "bpp": round(8.0 * feature_bytes / (images * pixels), 4),
        **{metric: round(result.figures[metric], 3) for metric in metrics},
        **{f"{metric}_drop": None for metric in metrics},
        "encode_ms": round(1000 * float(result.encode_s.mean()), 3),
        "decode_ms": round(1000 * float(result.decode_s.mean()), 3),
        "quantize_ms": round(1000 * float(result.quantize_s.mean()), 3),
        "settings": ";".join(f"{k}={v}" for k, v in settings.items()),
    }


def stage_timings(result: SweepResult) -> dict[str, dict[str, float]]:
    """Seconds and images/s per stage (per core for the parallel stages; head only if computed)."""
    stages: dict[str, dict[str, float]] = {}
    if result.head_images:
        stages["head"] = {"seconds": result.head_s, "images": result.head_images}
    coded = [r for r in result.results if r.point.spec is not None]
    for name, attribute in (("quantize+tile", "quantize_s"), ("encode", "encode_s"), ("decode", "decode_s")):
        stages[name] = {"seconds": float(sum(getattr(r, attribute).sum() for r in coded)),
                        "images": float(sum(r.images for r in coded))}
    stages["tail"] = {"seconds": float(sum(r.tail_s for r in result.results)),
                      "images": float(sum(r.images for r in result.results))}
    for stage in stages.values():
        stage["images_per_s"] = stage["images"] / stage["seconds"] if stage["seconds"] else float("inf")
    return stages
