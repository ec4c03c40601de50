"""The per-image work of a sweep point, run in worker processes (no torch imported here).

quantise (eq. 7) → tile → picture → encode → decode → plane → untile → dequantise (eq. 8).
Workers open the cached features memory-mapped, so a task carries only image indices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splitbench.codecs.base import Codec, CodecSpec
from splitbench.codecs.features import (
    SIDE_INFO_BYTES,
    Quantized,
    dequantize,
    from_picture,
    quantize,
    tile,
    to_picture,
    untile,
)
from splitbench.errors import SplitbenchError


@dataclass(frozen=True)
class Task:
    """Images ``indices`` of the features at ``features_path``, through one codec and layout."""

    features_path: str
    indices: tuple[int, ...]
    spec: CodecSpec
    layout: str
    keep_dir: str | None = None


@dataclass
class Coded:
    """What one image became: the reconstructed features, its bytes and stage times (s)."""

    index: int
    features: np.ndarray
    nbytes: int
    quantize_s: float
    encode_s: float
    decode_s: float


_open: dict[str, np.ndarray] = {}
_codecs: dict[CodecSpec, Codec] = {}


def _features(path: str) -> np.ndarray:
    if path not in _open:
        _open[path] = np.load(path, mmap_mode="r")
    return _open[path]


def run_task(task: Task) -> list[Coded]:
    codec = _codecs.get(task.spec) or _codecs.setdefault(task.spec, task.spec.build())
    features = _features(task.features_path)
    return [code_one(np.asarray(features[i]), i, codec, task.layout, task.keep_dir) for i in task.indices]


def code_one(tensor: np.ndarray, index: int, codec: Codec, layout: str, keep_dir: str | None = None) -> Coded:
    began = time.perf_counter()
    quantized = quantize(tensor, codec.bits)
    picture = to_picture(tile(quantized.values), layout)
    tiled = time.perf_counter()
    try:
        data = codec.encode(picture)
        encoded = time.perf_counter()
        decoded_picture = codec.decode(data)
    except SplitbenchError:
        raise
    except Exception as error:  # a library's own error: one line that names the codec and image
        raise SplitbenchError(f"{codec.name} failed on image {index}: {type(error).__name__}: {error}") from None
    plane = from_picture(decoded_picture, layout)
    values = untile(plane, tensor.shape)
    recovered = dequantize(Quantized(values, quantized.minimum, quantized.maximum, quantized.bits))
    decoded = time.perf_counter()
    if keep_dir is not None:
        Path(keep_dir, f"{index:06d}.{codec.extension}").write_bytes(data)
    return Coded(index, recovered, len(data) + SIDE_INFO_BYTES, tiled - began, encoded - tiled, decoded - encoded)
