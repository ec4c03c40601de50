"""``splitbench codec`` as a library call: :class:`CodecJob` checks its options, plans, then sweeps.

>>> CodecJob(model="mobilenet_v2", codec=("none", "bpg"), qp=(35,), limit=8).run()   # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from splitbench import provenance
from splitbench.codecs import CodecSpec, codec_class
from splitbench.codecs.detection_report import detection_markdown, load_paper_detection, plot_detection
from splitbench.codecs.features import check_layout
from splitbench.codecs.pipeline import Point, baseline_point, layout_points, transport_point
from splitbench.codecs.report import codec_markdown, load_paper_rows, plot_codec, plot_cuts
from splitbench.codecs.sweep import SweepRequest, check_scored_tail, run_sweep
from splitbench.split import PREPROCESS
from splitbench.data.datasets import dataset_and_split, open_dataset
from splitbench.errors import SplitbenchError
from splitbench.executors import ExecutorSpec
from splitbench.preflight import Plan, worker_count, writable_folder
from splitbench.results import result_set, warm_up_plotting, write_result
from splitbench.runs import run_folder
from splitbench.cuts import Cut
from splitbench.jobs import paths_as_paths
from splitbench.transport import check_trained_for, is_learned, is_user_codec, tensor_codec
from splitbench.values import split_numbers
from splitbench.zoo import ZooModel, get_spec, load_model

# Data names whose part after the colon is a path, not a manifest's split (as the command line reads them).


@dataclass(frozen=True)
class CodecJob:
    """The options of ``splitbench codec``, parsed; constructing one makes every check the command makes.

    ``codec`` holds the ``--codec`` entries (``bpg``, ``webp:50/90``, ``avif@gray``, ``minmax8``);
    ``at`` is one cut, several (one sweep each, one table with their rows), ``all`` (every C×H×W
    cut smaller than the input picture) or None (the model's seed cut); ``dataset`` may be
    ``MANIFEST:SPLIT``.
    """

    model: str = "vgg16"
    at: str | tuple[str, ...] | None = None
    leaf: tuple[str, ...] | None = None
    weights: str = "auto"
    dataset: str | None = None
    split: str | None = None
    data: Path | None = None
    codec: tuple[str, ...] = ("none", "minmax8", "bpg")
    qp: tuple[int, ...] = ()
    quality: tuple[int, ...] = ()
    layout: tuple[str, ...] = ("paper", "gray")
    bits: int = 8
    chroma: str = "420"
    bpg_backend: str = "pyav"
    preprocess: str = "seed"
    limit: int | None = None
    workers: int | None = None
    batch_size: int = 64
    cache: Path = Path("cache")
    keep_bitstreams: Path | None = None
    reference: Path | None = None
    executor: str = "local"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    out: Path | None = None

    def __post_init__(self) -> None:
        """Model, cut, data, reference tables and folders, in the command's order: a problem in one line."""
        paths_as_paths(self)
        started = time.perf_counter()
        points = build_points(list(self.codec), list(self.qp), list(self.quality), list(self.layout), self.bits,
                              self.chroma, self.bpg_backend)
        asked = (self.at,) if isinstance(self.at, str) else tuple(self.at or ())
        if not asked:
            seed_cut = get_spec(self.model).default_cut("codec")
            if seed_cut is None:
                raise SplitbenchError(f"{self.model} has no seed split point; pass --at")
            asked = (seed_cut,)
        if self.preprocess not in PREPROCESS:
            raise SplitbenchError(f"unknown --preprocess '{self.preprocess}'; valid: {', '.join(PREPROCESS)}")
        zoo_model = load_model(self.model, leaf_modules=self.leaf or (), mean=self.mean, std=self.std)
        check_scored_tail(zoo_model)
        cuts = sweep_cuts(zoo_model, asked)  # an unknown cut fails before any data is read
        for point in (p for p in points if p.transported):  # built now: a codec for another cut fails here
            for cut in cuts:
                check_trained_for(tensor_codec(point.codec, tuple(cut.shape)), zoo_model, cut.name, point.codec)
        name, split = dataset_and_split(self.model, self.dataset, self.split, zoo_model.spec.dataset)
        images = zoo_model.check_data(open_dataset(name, split=split, root=self.data, limit=self.limit))
        detection = zoo_model.spec.task == "detection"
        paper = (load_paper_detection if detection else load_paper_rows)(self.reference)  # a bad --reference fails now
        label = cuts[0].name if len(cuts) == 1 else "all" if asked == ("all",) else f"{len(cuts)}cuts"
        out = writable_folder(self.out or run_folder("codec", f"{zoo_model.spec.name}-{label}-{name}"), "--out")
        writable_folder(self.cache, "--cache")
        if self.keep_bitstreams is not None:
            writable_folder(self.keep_bitstreams, "--keep-bitstreams")
        workers = worker_count(self.workers, len(images) * len(points))
        names = [cut.name for cut in cuts] if asked == ("all",) else asked  # rows name a cut as the user did
        keep = [self.keep_bitstreams / at if self.keep_bitstreams is not None and len(names) > 1 else self.keep_bitstreams
                for at in names]  # several cuts: a folder each, or each cut's files would replace the last's
        requests = [SweepRequest(zoo_model, at, name, split, self.data, self.limit, self.preprocess, self.cache,
                                 workers, self.batch_size, kept, executor=ExecutorSpec.parse(self.executor))
                    for at, kept in zip(names, keep)]
        object.__setattr__(self, "_resolved", _Resolved(started, points, zoo_model, cuts, len(images), detection,
                                                        paper, out, requests))

    @property
    def points(self) -> list[Point]:
        """The sweep's rows: ``none`` first, the baselines, then each codec setting."""
        return self._resolved.points

    def plan(self) -> Plan:
        """The dry run's rows, with a time estimate (worked out only when the plan is shown)."""
        r, request = self._resolved, self._resolved.requests[0]
        plan = Plan("codec").add("model", f"{self.model} ({r.zoo_model.spec.source})")
        plan.add("weights", r.zoo_model.describe_weights(self.weights, pretrained=True))
        for each, cut in zip(r.requests, r.cuts):
            plan.add("cut", f"{each.at} = {cut.name}, {'x'.join(map(str, cut.shape))}")
        plan.add("data", f"{request.dataset}: {r.images:,} images")
        plan.add("points", f"{len(r.points)} per cut: " + ", ".join(point.label for point in r.points))
        plan.add("workers", f"{request.workers} ({request.executor})").add("cache", self.cache).add("out", r.out)
        return plan.estimate(r.zoo_model.model, r.zoo_model.example_input(), r.images, len(r.points) * len(r.cuts),
                             "points (model only, without encoding)")

    def arguments(self) -> dict[str, Any]:
        """The provenance's arguments: the options, with the values that the defaults resolved to."""
        requests = self._resolved.requests
        request = requests[0]
        at = request.at if len(requests) == 1 else [each.at for each in requests]
        return {**asdict(self), "at": at, "dataset": request.dataset, "split": request.split,
                "workers": request.workers, "executor": str(request.executor), "out": self._resolved.out}

    def run(self) -> CodecOutcome:
        """Load the weights, sweep the points, write codec.csv/.md/.json/.png into the out folder."""
        r = self._resolved
        plotting = warm_up_plotting()
        r.zoo_model.load_weights(self.weights, pretrained=True)
        results = [run_sweep(request, r.points) for request in r.requests]  # each cut's own head-feature cache
        result, table = results[0], pd.concat([each.table for each in results], ignore_index=True)
        caches = [each.cache.folder.name for each in results]
        meta = provenance.collect(
            "codec",
            {**self.arguments(), "preprocessing": result.preprocessing.describe(),
             "feature_cache": caches[0] if len(caches) == 1 else caches},
            weights=r.zoo_model.weights.describe(),
            data=result.data,
            wall_s=time.perf_counter() - r.started,
        )
        plotting.join()
        markdown_of, plot = (detection_markdown, plot_detection) if r.detection else (codec_markdown, plot_codec)
        with result_set(r.out):
            markdown = "\n".join(markdown_of(each.table, r.paper, meta) for each in results)
            written = write_result(r.out, "codec", table, meta, markdown, optional=["param"])  # baselines have none
            if len(results) == 1:
                written.append(plot(table, r.paper, r.out / "codec.png"))
            else:  # several cuts: bytes and the score at each, one line a setting
                written.append(plot_cuts(table, r.out / "codec.png", "map" if r.detection else "top1"))
        at = r.requests[0].at if len(r.requests) == 1 else f"{len(r.requests)} cuts"
        return CodecOutcome(table, written, r.out / "codec.csv", f"{r.zoo_model.spec.name} at {at}",
                            int(result.data["images"]), r.detection)


@dataclass(frozen=True)
class _Resolved:
    """What a job's checks worked out from its options (the model, its cut, the data, the sweep's request)."""

    started: float  # perf_counter when the job was made: the run's wall time counts from here
    points: list[Point]
    zoo_model: ZooModel
    cuts: list[Cut]
    images: int
    detection: bool
    paper: pd.DataFrame  # seed 003's rows (the report sets this model's beside its own)
    out: Path
    requests: list[SweepRequest]  # one sweep a cut


@dataclass
class CodecOutcome:
    """What a sweep wrote: its table (one row a point), the files, and what the command line shows."""

    table: pd.DataFrame
    written: list[Path]
    source: Path  # codec.csv
    label: str  # "mobilenet_v2 at bottleneck6"
    images: int
    detection: bool

    @property
    def jpeg_bytes(self) -> int:
        """The input pictures' size as JPEG (q75), every row's reference."""
        return int(self.table["jpeg_bytes"].iloc[0])


def sweep_cuts(zoo_model: ZooModel, asked: tuple[str, ...]) -> list[Cut]:
    """The cuts ``--at`` names (``all``: every C×H×W cut with fewer elements than the input picture,
    the ones worth coding), each checked to carry C×H×W planes; one line for a bad one."""
    graph = zoo_model.cuts()
    if "all" in asked:
        if asked != ("all",):
            raise SplitbenchError(f"--at all takes no other cuts, got {','.join(asked)}")
        inputs = math.prod(zoo_model.example_input().shape[1:])
        cuts = [cut for cut in graph.cuts if len(cut.shape) == 3 and math.prod(cut.shape) < inputs]
        if not cuts:
            raise SplitbenchError(f"{zoo_model.spec.name} has no C×H×W cut smaller than its input")
        return cuts
    cuts = [graph.resolve(at) for at in asked]
    for at, cut in zip(asked, cuts):
        if len(cut.shape) != 3:
            raise SplitbenchError(f"the tensor at {at} is {'x'.join(map(str, cut.shape))}, "
                                  f"not C×H×W planes an image codec can carry; pick a convolutional cut")
    if len({cut.name for cut in cuts}) != len(cuts):
        raise SplitbenchError(f"--at names a cut twice: {','.join(asked)}")
    return cuts


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
        params = _own_values(own, entry, cls.parameter)
        used.setdefault(cls.parameter, []).append(params)
        return name, params
    used.setdefault(cls.parameter, []).append([])
    params = values[cls.parameter] or list(cls.default_params)
    if not params:
        raise SplitbenchError(f"{name} needs --{cls.parameter} (or --codec {name}:V1/V2/…)")
    return name, list(params)


def _own_values(own: str, entry: str, parameter: str) -> list[int]:
    """``50/90`` of ``webp:50/90`` as integers (the command line's errors for a comma-separated list)."""
    text = own.replace("/", ",")
    if not text.strip(", "):
        raise SplitbenchError(f"--codec {entry} names no {parameter} values")
    return split_numbers(text, f"--codec {entry}", int)


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
        if is_learned(entry) or is_user_codec(entry):  # a codec of its own, with no layout or parameter
            points.append(transport_point(entry))
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
