"""``splitbench prune``: seed 002's ViT channel pruning sweep (weight, importance, stability).

The command parses its options into a :class:`~splitbench.jobs.prune.PruneJob`, which checks
them, plans and runs the sweep; this module only renders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from splitbench.cli import app
from splitbench.cli.options import (CACHE, Cache, DataRoot, Dataset, Device, DryRun, ExecutorOption, Limit, OutDir,
                                    Repeats, TrainDataset, Weights, float_option)
from splitbench.cli.render import console, show_plan, show_table, show_written
from splitbench.jobs.prune import PruneJob
from splitbench.pruning import TARGETS
from splitbench.pruning.scores import DEFAULT_ALPHA, METHODS

Model = Annotated[str, typer.Argument(help="Model to prune: vit (seed 002's CIFAR-10 ViT).")]
Ratio = Annotated[str, typer.Option("--ratio", help="Fraction(s) of channels to prune, e.g. 0.5 or 0.3,0.4,0.5.")]
Method = Annotated[str, typer.Option("--method", help=f"One or more of {', '.join(METHODS)}.")]
Scope = Annotated[str, typer.Option("--scope", help="uniform (same ratio per block), global (one ranking), or both.")]
Targets = Annotated[str, typer.Option("--targets", help=f"Channels to prune: {', '.join(TARGETS)}.")]
Estimator = Annotated[str, typer.Option("--estimator", help="Per-channel losses: exact or taylor.")]
CompareEstimators = Annotated[bool, typer.Option("--compare-estimators",
                                                 help="Also run the other estimator and report rank correlations.")]
Alpha = Annotated[float, float_option("--alpha", minimum=0.0, help_text="Weight of L_KL in the importance loss (eq. 1).")]
Proxy = Annotated[int, typer.Option("--proxy", min=1, help="Training images for importance/stability.")]
FinetuneEpochs = Annotated[int, typer.Option("--finetune-epochs", min=0, help="Epochs of fine-tuning after pruning "
                                             "(Adam, lr 5e-5 cosine, crop+flip; seed 002 reports none).")]
SaveModels = Annotated[Optional[Path], typer.Option("--save-models", help="Write every pruned model here (safetensors).")]
SHOWN = ["method", "scope", "ratio", "params", "macs", "top1", "cpu_ms_1000_b100", "cpu_ms_1000_b1"]


@app.command("prune")
def prune_command(
    model: Model,
    weights: Weights = "auto",
    ratio: Ratio = "0.3,0.4,0.5,0.6,0.7",
    method: Method = ",".join(METHODS),
    scope: Scope = "uniform,global",
    targets: Targets = "attention",
    estimator: Estimator = "taylor",
    compare_estimators: CompareEstimators = False,
    alpha: Alpha = DEFAULT_ALPHA,
    proxy: Proxy = 512,
    finetune_epochs: FinetuneEpochs = 0,
    device: Device = "auto",
    data: DataRoot = None,
    dataset: Dataset = None,
    train_dataset: TrainDataset = None,
    limit: Limit = None,
    repeats: Repeats = 3,
    cache: Cache = CACHE,
    save_models: SaveModels = None,
    executor: ExecutorOption = "local",
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Prune MODEL's channels by weight, importance or stability; measure size, MACs, accuracy and CPU time."""
    job = PruneJob(model=model, weights=weights, ratios=ratio, method=method, scope=scope, targets=targets,
                   estimator=estimator, compare_estimators=compare_estimators, alpha=alpha, proxy=proxy,
                   finetune_epochs=finetune_epochs, device=device, data=data, dataset=dataset,
                   train_dataset=train_dataset, limit=limit, repeats=repeats, cache=cache, save_models=save_models,
                   executor=executor, out=out)
    for note in job.notes:
        console.print(note)
    if dry_run:
        show_plan(job.plan())
        return
    result = job.run()
    show_table(result.table, title="ViT channel pruning", columns=SHOWN)
    show_written(result.written)
