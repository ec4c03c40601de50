"""``splitbench codec``: split features through real image codecs (seed 003 Tables 3, 5, 6, 7)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from splitbench.cli import app
from splitbench.cli.options import (CACHE, BatchSize, Bits, Cache, DataRoot, DryRun, ExecutorOption, Limit, Mean, Preprocess,
                                    Split, Std, Workers, normalisation, Dataset, Leaf, ModelArgument, ModelOption, OutDir,
                                    Weights, pick_model, split_names, split_numbers)
from splitbench.cli.render import console, show_plan, show_table, show_written
from splitbench.codecs import codec_names
from splitbench.codecs.features import LAYOUTS
from splitbench.codecs.report import display_table
from splitbench.jobs.codec import CodecJob, build_points  # noqa: F401 (build_points: callers import it from here)

_SHOWN = ["codec", "param", "layout", "bits", "chroma", "ratio_percent", "bpp", "top1", "top5", "top1_drop",
          "encode_ms", "decode_ms"]
_SHOWN_DETECTION = [*_SHOWN[:7], "map", "map50", "map50_drop", "encode_ms", "decode_ms"]

At = Annotated[str | None, typer.Option(
    "--at", help="Cut, comma-separated cuts, or all (every C×H×W cut smaller than the input): one table with a "
    "row per cut × setting. Default: the seed's, pool4 / bottleneck6, or yolov4_tiny's analogue pool2; "
    "`splitbench profile MODEL` lists them.")]
Codecs = Annotated[str, typer.Option(
    "--codec", help=f"Comma-separated: none, minmax8, minmax16, {', '.join(codec_names())}; "
    "NAME:V1/V2 gives a codec its own parameter values, NAME@gray its own layouts; learned:RUN@λ (a codec rd "
    "trained, swept at its own cut) and FILE.py:FUNCTION (yours) are one row each.")]
Qps = Annotated[str | None, typer.Option("--qp", help="BPG QPs, comma-separated, 0–51 (default: 10,20,30,35,40,50).")]
Qualities = Annotated[str | None, typer.Option(
    "--quality", help="Quality for webp (default 10,…,90), avif, jpegxl, jpeg2000 (PSNR dB), comma-separated.")]
Layouts = Annotated[str, typer.Option("--layout", help=f"Comma-separated: {', '.join(LAYOUTS)}.")]
Chroma = Annotated[str, typer.Option("--chroma", help="BPG chroma format for RGB pictures: 420 or 444.")]
BpgBackend = Annotated[str, typer.Option("--bpg-backend", help="pyav (libx265 in-process) or bpgenc (on PATH).")]
KeepBitstreams = Annotated[Path | None, typer.Option("--keep-bitstreams", help="Keep every coded file here.")]
Reference = Annotated[Path | None, typer.Option(
    "--reference", help="Folder with seed003_*.csv (default: the copies shipped with splitbench).")]


@app.command("codec")
def codec_command(
    model: ModelArgument = None,
    at: At = None,
    model_option: ModelOption = None,
    leaf: Leaf = None,
    weights: Weights = "auto",
    dataset: Dataset = None,
    split: Split = None,
    data: DataRoot = None,
    codec: Codecs = "none,minmax8,bpg",
    qp: Qps = None,
    quality: Qualities = None,
    layout: Layouts = "paper,gray",
    bits: Bits = 8,
    chroma: Chroma = "420",
    bpg_backend: BpgBackend = "pyav",
    preprocess: Preprocess = "seed",
    limit: Limit = None,
    workers: Workers = None,
    batch_size: BatchSize = 64,
    cache: Cache = CACHE,
    keep_bitstreams: KeepBitstreams = None,
    reference: Reference = None,
    executor: ExecutorOption = "local",
    mean: Mean = None,
    std: Std = None,
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Compress MODEL's features at a split point with image codecs; bytes vs JPEG, top-1/top-5 or mAP."""
    job = CodecJob(
        model=pick_model(model, model_option, "vgg16"), at=tuple(split_names(at, "--at")) if at else None, weights=weights, dataset=dataset, split=split, data=data,
        codec=tuple(split_names(codec, "--codec")), qp=tuple(split_numbers(qp, "--qp", int)),
        quality=tuple(split_numbers(quality, "--quality", int)), layout=tuple(split_names(layout, "--layout")),
        leaf=tuple(split_names(leaf, "--leaf")) if leaf is not None else None, bits=bits, chroma=chroma,
        bpg_backend=bpg_backend, preprocess=preprocess, limit=limit, workers=workers, batch_size=batch_size,
        cache=cache, keep_bitstreams=keep_bitstreams, reference=reference, executor=executor,
        mean=normalisation(mean, "--mean"), std=normalisation(std, "--std"), out=out)
    if dry_run:
        show_plan(job.plan())
        return
    done = job.run()
    show_table(display_table(done.table), title=f"{done.label}: features through image codecs",
               columns=_SHOWN_DETECTION if done.detection else _SHOWN, source=done.source)
    console.print(f"{done.images} images; input JPEG (q75) {done.jpeg_bytes:,} B")
    show_written(done.written)
