"""An RD sweep: one trained compression model per (variant, α, λ), evaluated on real bitstreams."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from splitbench.compression.data import CACHE_VERSION, INPUT, PreparedData
from splitbench.compression.export import CodecRecipe, export_codec, load_codec_state
from splitbench.compression.image_codec import AuxiliaryBranch, ImageCodec
from splitbench.compression.models import FeatureCodec, check_variant
from splitbench.compression.pipeline import FeaturePipeline, ImagePipeline, update_entropy_tables
from splitbench.compression.train import (
    RDSettings,
    epoch_codec_state,
    evaluate,
    rd_objective,
    read_point,
    train,
    warmup_objective,
    write_point,
)
from splitbench.errors import SplitbenchError
from splitbench.executors import InProcess, PointSweep, Task, run_points, shared
from splitbench.metrics import top1_hits
from splitbench.points import content_key
from splitbench.training.distributed import Group
from splitbench.zoo import ZooModel, count_parameters

IMAGE_VARIANTS = ("cheng2020_attn",)


@dataclass
class RDRequest:
    zoo_model: ZooModel
    at: str
    variants: list[str]
    lambdas: list[float]
    alphas: list[float]
    channels: int
    entropy: str
    settings: RDSettings
    train: PreparedData
    test: PreparedData
    cache: Path
    device: torch.device
    progress: bool = True
    group: Group = Group()  # the torchrun processes that train each point together (one: this process)
    epochs: tuple[int, ...] = ()  # the training budgets each point is evaluated after (default: settings.epochs)

    @property
    def budgets(self) -> list[int]:
        """Epochs after which every point is evaluated, ascending; training runs to the last."""
        return sorted(set(self.epochs or (self.settings.epochs,)))

    def key(self) -> str:
        """The cache folder of this configuration: everything but λ, α, the variant and the budget."""
        weights = self.zoo_model.weights  # published weights without a local file are keyed by name
        return content_key({"model": self.zoo_model.spec.name, "weights": weights.sha256 or f"{weights.source}:{weights.name}",
                            "at": self.at, "channels": self.channels, "entropy": self.entropy,
                            "settings": self.settings.recipe(), "train": self.train.provenance},
                           version=CACHE_VERSION, digits=20)


def check_lambdas(lambdas: list[float]) -> list[float]:
    bad = [lam for lam in lambdas if not lam > 0]
    if bad or not lambdas:
        raise SplitbenchError(f"λ must be positive, got {bad[0] if bad else 'none'}; pass e.g. --lambdas 0.05,0.2,1,4")
    return lambdas


def check_variants(variants: list[str], at: str) -> list[str]:
    for variant in variants:
        if at == INPUT and variant not in IMAGE_VARIANTS:
            raise SplitbenchError(f"unknown variant '{variant}' for an image codec (--at input); valid variants: "
                                  f"{', '.join(IMAGE_VARIANTS)}")
        if at != INPUT:
            check_variant(variant)
    return variants


def build_pipeline(zoo_model: ZooModel, at: str, variant: str, channels: int, entropy: str, alpha: float,
                   feature_shape: tuple[int, ...], seed: int) -> nn.Module:
    """A freshly initialised codec (seeded) in front of the frozen model's tail (or whole model)."""
    torch.manual_seed(seed)
    if at == INPUT:
        codec = ImageCodec(channels)
        classes = zoo_model.model(torch.zeros(1, 3, 64, 64)).shape[1] if alpha else 0
        aux = AuxiliaryBranch(channels, classes) if alpha else None
        pre = zoo_model.spec.preprocessing
        return ImagePipeline(codec, zoo_model.model, pre.mean, pre.std, aux)
    codec = FeatureCodec(feature_shape[0], channels, variant, entropy)
    tail = zoo_model.cuts().tail(at)
    size = zoo_model.spec.input_size
    return FeaturePipeline(codec, tail, size * size)


def run_rd(request: RDRequest, executor: Executor | None = None,
           on_point: Callable[[dict[str, Any]], None] | None = None) -> pd.DataFrame:
    """Train and evaluate every missing point; the table of all of them, finished ones from the cache.

    Each variant's warm-up runs first (every λ of the variant starts from it), then the
    (variant, α, λ) points, each a task on ``executor`` (default: one after another here).
    Checkpoints are written where the task runs: a multi-node cluster needs ``request.cache``
    on a shared file system.
    """
    executor = executor or InProcess()
    if request.group.distributed and not isinstance(executor, InProcess):
        raise SplitbenchError("under torchrun every point trains in the ranks' own processes: use --executor local")
    root = request.cache / "rd" / request.zoo_model.spec.name / request.key()
    keys = [(variant, alpha, lam) for variant in request.variants for alpha in request.alphas for lam in request.lambdas]

    def finished(key: tuple[str, float, float]) -> list[dict[str, Any]] | None:
        rows = [read_point(point_folder(root, *key), epochs, request.test.provenance) for epochs in request.budgets]
        return None if None in rows else rows

    shared_request = shared(executor, request)
    request.group.barrier()  # rank 0 stores nothing before every rank has read the cache: all train the same points
    if request.settings.warmup_epochs:
        variants = list(dict.fromkeys(key[0] for key in keys if finished(key) is None))
        run_points(executor, variants, PointSweep(
            cached=lambda variant: None,  # a finished warm-up is read back from its checkpoint in no time
            task=lambda variant: Task(warm_up_variant, (shared_request, root, variant)), store=lambda *_: None))
        request.group.barrier()  # rank 0 has written the warm-ups' last checkpoints that every rank reads next
    def store(key: tuple[str, float, float], rows: list[dict[str, Any]]) -> None:
        for row in rows if request.group.main else ():
            write_point(point_folder(root, *key), row, request.test.provenance)

    def report(rows: list[dict[str, Any]]) -> None:
        for row in rows if on_point is not None else ():
            on_point(row)

    results = run_points(executor, keys, PointSweep(
        cached=finished, task=lambda key: Task(train_point, (shared_request, root, *key)), store=store,
        on_result=lambda key, rows: report(rows)))
    test = request.test.data
    # a float32 mean, as this column always was: percent() (float64) would move some 3-decimal figures by 0.001
    uncompressed = 100 * float(top1_hits(test.teacher, test.labels).float().mean())
    rows = [row for point in results for row in point]
    for row in rows if request.group.main else ():  # points measured before rd exported its codecs
        if not row.get("codec_file"):
            folder = point_folder(root, row["variant"], row["alpha"], row["lambda"])
            exported = _export_from_checkpoint(request, folder, row)
            row["codec_file"] = str(exported) if exported is not None else None
            if exported is not None:  # kept with the point: the next run reads it back
                write_point(folder, row, request.test.provenance)
    return pd.DataFrame(rows).assign(uncompressed_top1=round(uncompressed, 3))


def point_folder(root: Path, variant: str, alpha: float, lam: float) -> Path:
    return root / f"{variant}-alpha{alpha:g}-lambda{lam:g}"


def warm_up_variant(request: RDRequest, root: Path, variant: str) -> float:
    """The variant's reconstruction pre-training (a task); its seconds."""
    pipeline = _fresh_pipeline(request, variant, request.alphas[0])
    return _warm_up(request, pipeline, root / f"{variant}-warmup")


def train_point(request: RDRequest, root: Path, variant: str, alpha: float, lam: float) -> list[dict[str, Any]]:
    """One (variant, α, λ) point trained from its variant's warm-up and evaluated after each budget (a task).

    Its rows, one per budget; a budget evaluated before (an interrupted task) is read back.
    """
    settings = request.settings
    pipeline = _fresh_pipeline(request, variant, alpha)
    warm_s = _warm_up(request, pipeline, root / f"{variant}-warmup")  # finished before: loads its weights
    folder = point_folder(root, variant, alpha, lam)
    rows = []
    for epochs in request.budgets:  # ascending: each budget continues the one before
        began = time.perf_counter()
        history = train(pipeline, request.train.data, rd_objective(lam, alpha, settings.target), epochs,
                        settings, folder, request.device, description=f"{variant} α={alpha:g} λ={lam:g}",
                        progress=request.progress, group=request.group)
        wall_train_s = time.perf_counter() - began
        if not request.group.main:  # rank 0 evaluates and keeps the point; the others go on training
            continue
        row = read_point(folder, epochs, request.test.provenance)
        rows.append(row or _measured_row(request, pipeline, folder, variant, alpha, lam, epochs, history, warm_s, wall_train_s))
    return rows


def _measured_row(request: RDRequest, pipeline: nn.Module, folder: Path, variant: str, alpha: float, lam: float, epochs: int,
                  history: list[dict[str, float]], warm_s: float, train_s: float) -> dict[str, Any]:
    settings = request.settings
    measured = evaluate(pipeline, request.test.data, 4 * settings.batch_size, request.device, progress=request.progress)
    exported = _export(request, pipeline, variant, lam, epochs, folder)
    return {"model": request.zoo_model.spec.name, "split": request.at, "variant": variant, "alpha": alpha,
            "lambda": lam, **measured, "epochs": epochs, "warmup_epochs": settings.warmup_epochs,
            "train_images": len(request.train.data), "codec_params": count_parameters([pipeline.codec]),
            "aux_params": count_parameters([pipeline.aux]) if pipeline.aux is not None else 0,
            "train_bpp": history[-1]["bpp"], "train_task_loss": history[-1]["task"],
            "step_s": sum(h["seconds"] for h in history) / sum(h["seconds"] / h["step_s"] for h in history),
            "train_s": sum(h["seconds"] for h in history), "warmup_s": warm_s, "wall_train_s": train_s,
            "seed": settings.seed, "codec_file": str(exported.resolve()) if exported is not None else None}


def _export(request: RDRequest, pipeline: nn.Module, variant: str, lam: float, epochs: int, folder: Path) -> Path | None:
    """The evaluated codec as a file that ``--codec learned:FILE`` sends over the link (feature codecs only)."""
    if not isinstance(pipeline, FeaturePipeline):
        return None
    return export_codec(pipeline.codec, _recipe(request, variant, lam, epochs), _codec_file(folder, epochs))


def _export_from_checkpoint(request: RDRequest, folder: Path, row: dict[str, Any]) -> Path | None:
    """A cached point's codec, exported from its epoch checkpoint in ``folder`` (its range coder's
    tables built as the evaluation built them); None for an image codec or a checkpoint that is gone."""
    state = epoch_codec_state(folder, int(row["epochs"])) if request.at != INPUT else None
    if state is None:
        return None
    recipe = _recipe(request, row["variant"], row["lambda"], int(row["epochs"]))
    codec = recipe.build()
    load_codec_state(codec, state, folder)
    update_entropy_tables(codec)
    return export_codec(codec, recipe, _codec_file(folder, recipe.epochs)).resolve()


def _recipe(request: RDRequest, variant: str, lam: float, epochs: int) -> CodecRecipe:
    shape = tuple(int(s) for s in request.train.data.inputs.shape[1:])
    return CodecRecipe(request.zoo_model.spec.name, request.at, shape, request.channels, variant, request.entropy,
                       float(lam), epochs, request.zoo_model.weights.sha256)


def _codec_file(folder: Path, epochs: int) -> Path:
    return folder / f"codec-epochs{epochs}.safetensors"


def _fresh_pipeline(request: RDRequest, variant: str, alpha: float) -> nn.Module:
    shape = tuple(request.train.data.inputs.shape[1:])
    return build_pipeline(request.zoo_model, request.at, variant, request.channels, request.entropy, alpha,
                          shape, request.settings.seed).to(request.device)


def _warm_up(request: RDRequest, pipeline: nn.Module, folder: Path) -> float:
    """Reconstruction pre-training of this variant, once; every λ starts from its weights."""
    settings = request.settings
    if settings.warmup_epochs == 0:
        return 0.0
    aux, pipeline.aux = pipeline.aux, None  # the auxiliary branch is trained by the RD loss only
    history = train(pipeline, request.train.data, warmup_objective(settings.warmup_rate_weight),
                    settings.warmup_epochs, settings, folder, request.device, description=f"{folder.name}",
                    progress=request.progress, group=request.group)
    pipeline.aux = aux
    return sum(h["seconds"] for h in history)
