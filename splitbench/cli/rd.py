"""``splitbench rd``: learned compression trained per λ; RD curves, BD-rate, cost (seeds 000 and 001).

The command parses its options into a :class:`splitbench.jobs.rd.RdJob`, which checks them and runs;
this module renders the plan or the tables and files the job returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from splitbench.cli import app
from splitbench.cli.options import (CACHE, BatchSize, Cache, DataRoot, Dataset, Device, DryRun, ExecutorOption,
                                    InputSize, Leaf, Limit, ModelArgument, ModelOption, OutDir, Precision, Seed,
                                    TrainDataset, TrainLimit, Weights, float_option, pick_model, split_names,
                                    split_numbers)
from splitbench.cli.render import console, show_plan, show_table, show_written

if TYPE_CHECKING:
    from splitbench.jobs import Shown

At = Annotated[Optional[str], typer.Option("--at", help="Split point, or 'input' for an image codec (seed 001).")]
Variant = Annotated[Optional[str], typer.Option(
    "--variant", help="Comma-separated: none, attention1, attention2 (features); cheng2020_attn (--at input).")]
Lambdas = Annotated[str, typer.Option("--lambdas", help="λ values of L = λ·E + bpp, comma-separated, > 0.")]
AuxAlpha = Annotated[Optional[str], typer.Option(
    "--aux-alpha", help="α of the auxiliary loss, comma-separated (--at input; default 0,0.1: without and with).")]
Entropy = Annotated[str, typer.Option("--entropy", help="Entropy model: factorized or hyperprior.")]
Target = Annotated[str, typer.Option("--target", help="distill (the uncompressed model's outputs) or labels.")]
Channels = Annotated[int, typer.Option("--channels", min=1, help="N: channels of the codec's layers and latent.")]
Epochs = Annotated[str, typer.Option(
    "--epochs", help="RD training epochs per λ; several (2,4,8,16): one curve per training budget.")]
WarmupEpochs = Annotated[int, typer.Option("--warmup-epochs", min=0, help="Reconstruction pre-training, shared by every λ.")]
WarmupRateWeight = Annotated[float, float_option(
    "--warmup-rate-weight", minimum=0.0, help_text="Weight of bpp in the warm-up loss (relative MSE + w·bpp).")]
Lr = Annotated[float, float_option("--lr", minimum=0.0, help_text="Adam learning rate of the codec.")]
Baseline = Annotated[Optional[Path], typer.Option(
    "--baseline", help="codec.csv with BPG at the same split (the RD plot's handcrafted curve).")]
CostOnly = Annotated[bool, typer.Option(
    "--cost-only", help="Write the cost table (seed 000 Table 1) only; no data, no training.")]


@app.command("rd")
def rd_command(
    model: ModelArgument = None,
    model_option: ModelOption = None,
    at: At = None,
    variant: Variant = None,
    lambdas: Lambdas = "0.05,0.2,1,4",
    aux_alpha: AuxAlpha = None,
    entropy: Entropy = "factorized",
    target: Target = "distill",
    channels: Channels = 32,
    weights: Weights = "auto",
    leaf: Leaf = None,
    train_dataset: TrainDataset = None,
    dataset: Dataset = None,
    data: DataRoot = None,
    train_limit: TrainLimit = None,
    limit: Limit = None,
    input_size: InputSize = None,
    epochs: Epochs = "2",
    warmup_epochs: WarmupEpochs = 4,
    warmup_rate_weight: WarmupRateWeight = 0.01,
    batch_size: BatchSize = 16,
    lr: Lr = 1e-3,
    seed: Seed = 0,
    device: Device = "auto",
    precision: Precision = "auto",
    baseline: Baseline = None,
    cost_only: CostOnly = False,
    cache: Cache = CACHE,
    executor: ExecutorOption = "local",
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Train a compression model per λ at a split point (or in front of the model); RD curves, BD-rate, cost."""
    # The number lists first: a bad one fails before the seconds of imports below.
    lambda_values = tuple(split_numbers(lambdas, "--lambdas"))
    budgets = tuple(split_numbers(epochs, "--epochs", int, 1))
    alphas = tuple(split_numbers(aux_alpha, "--aux-alpha")) if aux_alpha is not None else None
    # Imported here: CompressAI, SciPy and the BD tools take seconds to import, which every
    # other command would otherwise pay at start-up.
    from splitbench.jobs.rd import RdJob

    job = RdJob(model=pick_model(model, model_option, "mobilenet_v2"), at=at, lambdas=lambda_values, aux_alpha=alphas,
                variants=tuple(split_names(variant, "--variant")) if variant is not None else None, entropy=entropy,
                target=target, channels=channels, weights=weights, train_dataset=train_dataset, dataset=dataset,
                leaf=tuple(split_names(leaf, "--leaf")) if leaf is not None else (), data=data, limit=limit,
                train_limit=train_limit, input_size=input_size, epochs=budgets, warmup_epochs=warmup_epochs,
                warmup_rate_weight=warmup_rate_weight, batch_size=batch_size, lr=lr, seed=seed, device=device,
                precision=precision, baseline=baseline, cost_only=cost_only, cache=cache, executor=executor, out=out)
    if dry_run:
        if job.main:  # one plan on screen, from rank 0
            job.plan().finish(dry_run, show_plan)
        job.leave()
        return
    result = job.run(on_table=_show)
    if result.written:  # nothing on torchrun's other ranks: rank 0 writes the results
        show_written(result.written)


def _show(shown: Shown) -> None:
    """One of the job's tables (:class:`splitbench.jobs.Shown`), as soon as it is ready."""
    if shown.heading:
        console.print(shown.heading)
    show_table(shown.table, title=shown.title, columns=shown.columns, source=shown.source)
