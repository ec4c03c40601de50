"""``splitbench codec``: split features through real image codecs (seed 003 Tables 3, 5, 6, 7)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from splitbench import provenance
from splitbench.cli import app
from splitbench.cli.options import (CACHE, BatchSize, Bits, Cache, DataRoot, DryRun, ExecutorOption, Limit, Mean, Preprocess,
                                    Split, Std, Workers, normalisation, Dataset, Leaf, ModelArgument, ModelOption, OutDir,
                                    Weights, dataset_and_split, default_out, pick_model, split_names, split_numbers)
from splitbench.cli.render import console, show_plan, show_table, show_written
from splitbench.codecs import CodecSpec, codec_class, codec_names
from splitbench.codecs.features import LAYOUTS, check_layout
from splitbench.codecs.pipeline import Point, baseline_point, layout_points
from splitbench.codecs.detection_report import detection_markdown, load_paper_detection, plot_detection
from splitbench.codecs.report import codec_markdown, display_table, load_paper_rows, plot_codec
from splitbench.codecs.sweep import PREPROCESS, SweepRequest, check_scored_tail, run_sweep
from splitbench.errors import SplitbenchError
from splitbench.executors import ExecutorSpec
from splitbench.data import open_dataset
from splitbench.preflight import Plan, worker_count, writable_folder
from splitbench.results import result_set, warm_up_plotting, write_result
from splitbench.zoo import get_spec, load_model

_SHOWN = ["codec", "param", "layout", "bits", "chroma", "ratio_percent", "bpp", "top1", "top5", "top1_drop",
          "encode_ms", "decode_ms"]
_SHOWN_DETECTION = [*_SHOWN[:7], "map", "map50", "map50_drop", "encode_ms", "decode_ms"]


def _codec_entry(entry: str, values: dict[str, list[int]], used: dict[str, list[list[int]]]) -> tuple[str, list[int | None]]:
    """``name`` or ``name:v1/v2/…``: the codec and the parameter values it runs at.

    Its own values win; ``--qp``/``--quality`` are for the codecs without their own. ``used``
    collects, per parameter, the values each codec that takes it chose of its own (an empty
    list: it took the option's).
    """
    name, _, own = entry.partition(":")
    if not name:
        raise SplitbenchError(f"--codec entry '{entry}' names no codec")
    cls = codec_class(name)
    if cls.parameter is None:
        if own:
            raise SplitbenchError(f"{name} is lossless and takes no parameter values")
        return name, [None]
    if own:
        if not split_names(own.replace("/", ",")):
            raise SplitbenchError(f"--codec {entry} names no {cls.parameter} values")
        params = split_numbers(own.replace("/", ","), f"--codec {entry}", int)
        used.setdefault(cls.parameter, []).append(params)
        return name, params
    used.setdefault(cls.parameter, []).append([])
    params = values[cls.parameter] or list(cls.default_params)
    if not params:
        raise SplitbenchError(f"{name} needs --{cls.parameter} (or --codec {name}:V1/V2/…)")
    return name, list(params)


def build_points(codecs: list[str], qps: list[int], qualities: list[int], layouts: list[str], bits: int,
                 chroma: str, bpg_backend: str) -> list[Point]:
    """The sweep's rows: ``none`` first (the drops' reference), baselines, then each codec setting."""
    for layout in layouts:
        check_layout(layout)
    values, used = {"qp": qps, "quality": qualities}, {}
    points = [baseline_point("none")]
    for entry in codecs:
        if entry == "none" or entry.startswith("minmax"):
            points += [] if entry == "none" else [baseline_point(entry)]
            continue
        entry, _, own_layouts = entry.partition("@")
        name, params = _codec_entry(entry, values, used)
        options = (("chroma", chroma), ("backend", bpg_backend)) if name == "bpg" else ()
        chosen = [check_layout(layout) for layout in own_layouts.split("/")] if own_layouts else layouts
        points += layout_points([CodecSpec(name, p, bits, 1, options) for p in params], chosen)
    for option, given in values.items():
        _check_option_used(option, given, used.get(option))
    return points


def _check_option_used(option: str, given: list[int], takers: list[list[int]] | None) -> None:
    """``--qp``/``--quality``: an error where no codec in --codec takes it; a warning where every
    codec that takes it set other values of its own (the option then changes nothing)."""
    if not given:
        return
    if not takers:
        raise SplitbenchError(f"--{option} was given but no codec in --codec takes it")
    if all(own for own in takers) and any(own != given for own in takers):
        provenance.warn(f"--{option} {','.join(map(str, given))} is not used: every codec that takes it "
                        f"has its own values (NAME:V1/V2), which win")


@app.command("codec")
def codec_command(
    model: ModelArgument = None,
    at: Annotated[str | None, typer.Option(
        "--at", help="Cut (default: the seed's, pool4 / bottleneck6, or yolov4_tiny's analogue pool2; "
        "`splitbench profile MODEL` lists them).")] = None,
    model_option: ModelOption = None,
    leaf: Leaf = None,
    weights: Weights = "auto",
    dataset: Dataset = None,
    split: Split = None,
    data: DataRoot = None,
    codec: Annotated[str, typer.Option(
        "--codec", help=f"Comma-separated: none, minmax8, minmax16, {', '.join(codec_names())}; "
        "NAME:V1/V2 gives a codec its own parameter values, NAME@gray its own layouts.")] = "none,minmax8,bpg",
    qp: Annotated[str | None, typer.Option("--qp", help="BPG QPs, comma-separated, 0–51 (default: 10,20,30,35,40,50).")] = None,
    quality: Annotated[str | None, typer.Option(
        "--quality", help="Quality for webp (default 10,…,90), avif, jpegxl, jpeg2000 (PSNR dB), comma-separated.")] = None,
    layout: Annotated[str, typer.Option("--layout", help=f"Comma-separated: {', '.join(LAYOUTS)}.")] = "paper,gray",
    bits: Bits = 8,
    chroma: Annotated[str, typer.Option("--chroma", help="BPG chroma format for RGB pictures: 420 or 444.")] = "420",
    bpg_backend: Annotated[str, typer.Option("--bpg-backend", help="pyav (libx265 in-process) or bpgenc (on PATH).")] = "pyav",
    preprocess: Preprocess = "seed",
    limit: Limit = None,
    workers: Workers = None,
    batch_size: BatchSize = 64,
    cache: Cache = CACHE,
    keep_bitstreams: Annotated[Path | None, typer.Option("--keep-bitstreams", help="Keep every coded file here.")] = None,
    reference: Annotated[Path | None, typer.Option(
        "--reference", help="Folder with seed003_*.csv (default: the copies shipped with splitbench).")] = None,
    executor: ExecutorOption = "local",
    mean: Mean = None,
    std: Std = None,
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Compress MODEL's features at a split point with image codecs; bytes vs JPEG, top-1/top-5 or mAP."""
    start = time.perf_counter()
    model = pick_model(model, model_option, "vgg16")
    points = build_points(split_names(codec, "--codec"), split_numbers(qp, "--qp", int),
                          split_numbers(quality, "--quality", int), split_names(layout, "--layout"), bits,
                          chroma, bpg_backend)
    at = at or get_spec(model).default_cut("codec")
    if at is None:
        raise SplitbenchError(f"{model} has no seed split point; pass --at")
    if preprocess not in PREPROCESS:
        raise SplitbenchError(f"unknown --preprocess '{preprocess}'; valid: {', '.join(PREPROCESS)}")
    zoo_model = load_model(model, leaf_modules=split_names(leaf, "--leaf") if leaf is not None else (),
                           mean=normalisation(mean, "--mean"), std=normalisation(std, "--std"))
    check_scored_tail(zoo_model)
    detection = zoo_model.spec.task == "detection"
    cut = zoo_model.cuts().resolve(at)  # an unknown cut fails before any data is read
    if len(cut.shape) != 3:
        raise SplitbenchError(f"the tensor at {at} is {'x'.join(map(str, cut.shape))}, "
                              f"not C×H×W planes an image codec can carry; pick a convolutional cut")
    name, split = dataset_and_split(model, dataset, split, zoo_model.spec.dataset)
    images = zoo_model.check_data(open_dataset(name, split=split, root=data, limit=limit))
    paper = (load_paper_detection if detection else load_paper_rows)(reference)  # a bad --reference fails now
    out = writable_folder(out or default_out("codec", f"{zoo_model.spec.name}-{at}-{name}"), "--out")
    writable_folder(cache, "--cache")
    if keep_bitstreams is not None:
        writable_folder(keep_bitstreams, "--keep-bitstreams")
    request = SweepRequest(zoo_model, at, name, split, data, limit, preprocess, cache, worker_count(workers, len(images) * len(points)),
                           batch_size, keep_bitstreams, executor=ExecutorSpec.parse(executor))
    plan = Plan("codec").add("model", f"{model} ({zoo_model.spec.source})")
    plan.add("weights", zoo_model.describe_weights(weights, pretrained=True))
    plan.add("cut", f"{at} = {cut.name}, {'x'.join(map(str, cut.shape))}").add("data", f"{name}: {len(images):,} images")
    plan.add("points", f"{len(points)}: " + ", ".join(point.label for point in points))
    plan.add("workers", f"{request.workers} ({request.executor})").add("cache", cache).add("out", out)
    plan.estimate(zoo_model.model, zoo_model.example_input(), len(images), len(points), "points (model only, "
                  "without encoding)")
    if plan.finish(dry_run, show_plan):
        return
    plotting = warm_up_plotting()
    zoo_model.load_weights(weights, pretrained=True)
    result = run_sweep(request, points)
    meta = provenance.collect(
        "codec",
        {"model": model, "at": at, "weights": weights, "leaf": leaf, "dataset": name, "split": split, "codec": codec, "qp": qp,
         "quality": quality, "layout": layout, "bits": bits, "chroma": chroma, "bpg_backend": bpg_backend,
         "preprocess": preprocess, "limit": limit, "workers": request.workers, "executor": str(request.executor),
         "batch_size": batch_size,
         "cache": cache, "keep_bitstreams": keep_bitstreams, "out": out,
         "preprocessing": result.preprocessing.describe(), "feature_cache": result.cache.folder.name},
        weights=zoo_model.weights.describe(),
        data=result.data,
        wall_s=time.perf_counter() - start,
    )
    plotting.join()
    with result_set(out):
        markdown = (detection_markdown if detection else codec_markdown)(result.table, paper, meta)
        written = write_result(out, "codec", result.table, meta, markdown, optional=["param"])  # baselines have none
        written.append((plot_detection if detection else plot_codec)(result.table, paper, out / "codec.png"))
    title = f"{zoo_model.spec.name} at {at}: features through image codecs"
    show_table(display_table(result.table), title=title, columns=_SHOWN_DETECTION if detection else _SHOWN,
               source=out / "codec.csv")
    console.print(f"{result.data['images']} images; input JPEG (q75) {int(result.table['jpeg_bytes'].iloc[0]):,} B")
    show_written(written)
