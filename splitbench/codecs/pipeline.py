"""A codec sweep on split features: head once, then per point quantise/tile/encode/decode/tail.

``run_sweep`` takes a zoo model cut at a split point, a data set and a list of
:class:`Point` (a codec at one parameter and layout, or a baseline), and measures for each:
bytes per image (the coded file plus 8 bytes of min/max), the input JPEG bytes it is compared
with (seed 003's ratio), the task's figures after the tail (top-1/top-5 of a classifier, COCO
mAP of a detector: :mod:`splitbench.scoring`), and encode/decode times.

Speed: the head runs once per image into a disk cache (:mod:`splitbench.codecs.cache`);
encoding and decoding run in ``workers`` processes that read the cached features
memory-mapped, while this process runs the tail on what comes back, in order. Each point's
per-image results are cached too, so an interrupted sweep resumes from the last finished
point (and, within the head pass, from the last finished batch).
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from splitbench.codecs.base import CodecSpec
from splitbench.codecs.cache import FeatureCache, cache_key
from splitbench.codecs.features import (
    SIDE_INFO_BYTES,
    check_layout,
    dequantize,
    layout_channels,
    quantize,
)
from splitbench.codecs.worker import Coded, Task, run_task
from splitbench.errors import SplitbenchError
from splitbench.executors import ExecutorSpec, open_executor
from splitbench.progress import log, track
from splitbench.points import PointStore
from splitbench.scoring import Arrays, ClassificationScorer, Scorer
from splitbench.transport import transport_file
from splitbench.weights import sha256_of

BASELINE = re.compile(r"none|minmax(\d+)")
# Part of every finished point's cache key: bump it when what a point measures changes.
POINT_VERSION = 1
CHUNK = 8  # images per worker task: large enough to amortise IPC, small enough to balance


@dataclass(frozen=True)
class Point:
    """One row of the sweep: a codec (``spec``) and layout, a baseline (``spec`` None), or a
    codec of :mod:`splitbench.transport` of its own (``learned:…``, ``FILE.py:FUNCTION``)."""

    codec: str  # "none", "minmax8", a registered codec name, or a transport codec string
    layout: str = "-"
    spec: CodecSpec | None = None

    @property
    def bits(self) -> int | None:
        if self.spec is not None:
            return self.spec.bits
        found = BASELINE.fullmatch(self.codec)
        return int(found.group(1)) if found and found.group(1) else None

    @property
    def label(self) -> str:
        """``bpg qp 35 gray``: what progress bars and plans show."""
        if self.spec is None:
            return self.codec
        parameter = self.spec.build().parameter
        value = f" {parameter} {self.spec.param}" if parameter else ""
        return f"{self.codec}{value} {self.layout}"

    @property
    def transported(self) -> bool:
        """A learned or a user's codec, coded here through its :class:`~splitbench.transport.TensorCodec`."""
        return self.spec is None and BASELINE.fullmatch(self.codec) is None

    def key(self) -> str:
        fields = {"codec": self.codec, "layout": self.layout, "spec": repr(self.spec), "point_version": POINT_VERSION}
        if self.transported:  # the same name may hold another codec tomorrow: its file's content too
            fields["file"] = sha256_of(transport_file(self.codec))
        return cache_key(fields)


def baseline_point(name: str) -> Point:
    found = BASELINE.fullmatch(name)
    if found is None:
        raise SplitbenchError(f"unknown baseline '{name}'; valid: none, minmax8, minmax16")
    if found.group(1):
        quantize(np.zeros(1, dtype=np.float32), int(found.group(1)))  # validates the bit count
    return Point(name)


def transport_point(text: str) -> Point:
    """A learned codec (``learned:FILE``, ``learned:RUN@λ[/E]``) or a user's (``FILE.py:FUNCTION``);
    its file must exist now (whether it fits the cut is checked where the cut is known)."""
    transport_file(text)
    return Point(text)


def codec_point(spec: CodecSpec, layout: str) -> Point:
    check_layout(layout)
    spec.build()  # validates name, parameter, bits and options now, before any heavy work
    return Point(spec.name, layout, spec)


@dataclass
class PointResult:
    """Per-image results of one point (arrays over the evaluated images): bytes and times, the
    scorer's per-image records (``scores``) and the figures made from them (``figures``)."""

    point: Point
    nbytes: np.ndarray
    scores: Arrays
    figures: dict[str, float]
    quantize_s: np.ndarray
    encode_s: np.ndarray
    decode_s: np.ndarray
    tail_s: float
    wall_s: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> int:
        return len(self.nbytes)


@dataclass
class SweepContext:
    """What every point of a sweep shares."""

    cache: FeatureCache
    tail: torch.nn.Module
    count: int
    workers: int
    batch_size: int = 64
    keep_dir: Path | None = None
    progress: bool = False  # bars: the points, each point's images
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    scorer: Scorer = field(default_factory=ClassificationScorer)

    @functools.cached_property
    def labels(self) -> torch.Tensor:
        return torch.from_numpy(self.cache.labels(self.count))

    def summary(self, scores: Arrays) -> dict[str, float]:
        return self.scorer.summary(scores, self.labels.numpy())


def run_points(context: SweepContext, points: list[Point]) -> list[PointResult]:
    """Evaluate ``points`` in order, reusing finished points from the cache."""
    tail = context.tail.to(memory_format=torch.channels_last).eval()
    context.tail = tail
    with open_executor(context.executor, context.workers) as executor:
        with track("codec points", len(points), unit="points", enabled=context.progress) as bar:
            results = []
            for point in points:
                results.append(_cached_or_run(context, point, executor))
                bar.advance()
            return results


def _point_name(context: SweepContext, point: Point) -> str:
    tag = context.scorer.cache_tag  # empty for classification: its points keep their keys
    return cache_key({"point": point.key(), "scoring": tag}) if tag else point.key()


def _cached_or_run(context: SweepContext, point: Point, executor: Executor) -> PointResult:
    """The point from the cache, or measured and stored, under the point's lock."""
    store, name = PointStore(context.cache.folder / "points"), _point_name(context, point)
    settings = point.spec.build().settings() if point.spec else {}
    with store.measuring(name, point.label):
        cached = _cached(context, point, store.get_arrays(name), settings) if context.keep_dir is None else None
        if cached is not None:
            return cached
        result = _run_point(context, point, executor, settings)
        store.put_arrays(name, _arrays(result))
        return result


def _cached(context: SweepContext, point: Point, stored: dict[str, np.ndarray] | None,
            settings: dict[str, Any]) -> PointResult | None:
    if stored is None:
        return None
    # A point coded by other library versions or encoder settings is coded again. (Points
    # stored before the settings were kept carry none and count as current.)
    same = "settings" not in stored or json.loads(str(stored["settings"])) == _jsonable(settings)
    if not same or len(stored["nbytes"]) < context.count:
        return None
    if context.progress:
        log(f"{point.label}: from cache")
    return _from_store(context, point, stored, settings)


def _jsonable(settings: dict[str, Any]) -> Any:
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def _from_store(context: SweepContext, point: Point, stored: Any, settings: dict[str, Any]) -> PointResult:
    count = context.count
    arrays = {name: stored[name][:count] for name in ("nbytes", "quantize_s", "encode_s", "decode_s")}
    scores = context.scorer.first({name: stored[name] for name in context.scorer.arrays}, count)
    return PointResult(point, **arrays, scores=scores, figures=context.summary(scores), tail_s=float(stored["tail_s"]),
                       wall_s=float(stored["wall_s"]), settings=settings)


def _arrays(result: PointResult) -> dict[str, Any]:
    """What the store keeps of a point: every per-image array, the times and the settings."""
    return dict(nbytes=result.nbytes, **result.scores, quantize_s=result.quantize_s, encode_s=result.encode_s,
                decode_s=result.decode_s, tail_s=result.tail_s, wall_s=result.wall_s,
                settings=json.dumps(result.settings, sort_keys=True, default=str))


def _run_point(context: SweepContext, point: Point, executor: Executor, settings: dict[str, Any]) -> PointResult:
    began = time.perf_counter()
    coded = _coded(context, point, executor)
    scored, tail_s = [], 0.0
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ("nbytes", "quantize_s", "encode_s", "decode_s")}
    with track(point.label, context.count, unit="images", enabled=context.progress) as bar:
        for batch in _batches(coded, context.batch_size):
            start = time.perf_counter()
            scored.append(_tail_scores(context, batch))
            tail_s += time.perf_counter() - start
            for name in parts:
                parts[name].append(np.array([getattr(c, name) for c in batch]))
            bar.advance(len(batch))
    arrays = {name: np.concatenate(values) for name, values in parts.items()}
    scores = context.scorer.join(scored)
    return PointResult(point, scores=scores, figures=context.summary(scores), tail_s=tail_s,
                       wall_s=time.perf_counter() - began, settings=settings, **arrays)


def _coded(context: SweepContext, point: Point, executor: Executor) -> Iterator[Coded]:
    """Reconstructed features of images 0 … count − 1, in order."""
    features = context.cache.features(context.count)
    if point.transported:
        yield from _transported(point, features)
        return
    if point.spec is None:
        yield from _baseline(point, features)
        return
    keep = _keep_folder(context, point)
    chunks = [tuple(range(i, min(i + CHUNK, context.count))) for i in range(0, context.count, CHUNK)]
    tasks = (Task(str(context.cache.features_path), chunk, point.spec, point.layout, keep) for chunk in chunks)
    for results in _in_order(executor, tasks, window=4 * context.workers):
        yield from results


def _in_order(executor: Executor, tasks: Iterator[Task], window: int) -> Iterator[list[Coded]]:
    """``run_task`` over ``tasks``, results in order, with at most ``window`` tasks in flight.

    ``Executor.map`` would submit every chunk at once, and workers that outpace the tail would
    pile reconstructed features up in this process (0.4 MB per VGG16 image).
    """
    pending: deque[Future[list[Coded]]] = deque()
    try:
        for task in tasks:
            pending.append(executor.submit(run_task, task))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:  # an error or an interrupt: drop what has not started
            future.cancel()


def _keep_folder(context: SweepContext, point: Point) -> str | None:
    if context.keep_dir is None or point.spec is None:
        return None
    parameter = f"-{point.spec.param}" if point.spec.param is not None else ""
    options = "".join(f"-{value}" for _, value in point.spec.options)  # chroma, backend: runs must not collide
    folder = context.keep_dir / f"{point.codec}{parameter}-{point.layout}-{point.spec.bits}bit{options}"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def _baseline(point: Point, features: np.ndarray) -> Iterator[Coded]:
    """``none``: float32 features as they are; ``minmaxN``: eq. 7 then eq. 8, no codec."""
    bits = point.bits
    for index in range(len(features)):
        tensor = np.asarray(features[index])
        if bits is None:
            yield Coded(index, tensor, tensor.size * 4, 0.0, 0.0, 0.0)
            continue
        began = time.perf_counter()
        recovered = dequantize(quantize(tensor, bits))
        nbytes = tensor.size * ((bits + 7) // 8) + SIDE_INFO_BYTES
        yield Coded(index, recovered, nbytes, time.perf_counter() - began, 0.0, 0.0)


def _transported(point: Point, features: np.ndarray) -> Iterator[Coded]:
    """A learned or a user's codec, here (a learned codec runs torch; a user's may too): the
    bytes it sends and what its decoder makes of them, as ``link`` carries them."""
    from splitbench.transport import tensor_codec

    codec = tensor_codec(point.codec, tuple(features.shape[1:]))
    for index in range(len(features)):
        tensor = np.array(features[index])  # a writable copy of the read-only cache: torch takes it as it is
        began = time.perf_counter()
        payload = codec.encode(tensor)
        encoded = time.perf_counter()
        recovered = np.asarray(codec.decode(payload), dtype=np.float32)
        yield Coded(index, recovered, len(payload), 0.0, encoded - began, time.perf_counter() - encoded)


def _batches(coded: Iterator[Coded], size: int) -> Iterator[list[Coded]]:
    batch: list[Coded] = []
    for item in coded:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _tail_scores(context: SweepContext, batch: list[Coded]) -> Arrays:
    """The tail on a batch of reconstructed features, scored per image (decoding and NMS
    included: for a detector they are part of what the server does)."""
    indices = torch.tensor([c.index for c in batch])
    inputs = torch.from_numpy(np.stack([c.features for c in batch])).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return context.scorer.score(context.tail(inputs), context.labels[indices])


def layout_points(specs: list[CodecSpec], layouts: list[str]) -> list[Point]:
    """Every codec setting in every layout (the picture's channel count follows the layout)."""
    return [
        codec_point(CodecSpec(spec.name, spec.param, spec.bits, layout_channels(layout), spec.options), layout)
        for spec in specs
        for layout in layouts
    ]
