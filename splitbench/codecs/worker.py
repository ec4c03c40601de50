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


@dataclass(frozen=True)
class Encoded:
    """What the sender transmits for one tensor: the coded picture and eq. 8's float32 range."""

    data: bytes
    minimum: np.float32
    maximum: np.float32
    quantize_s: float
    encode_s: float

    @property
    def nbytes(self) -> int:
        """Bytes on the channel: the coded file plus min and max (``SIDE_INFO_BYTES``)."""
        return len(self.data) + SIDE_INFO_BYTES


def encode_features(tensor: np.ndarray, codec: Codec, layout: str, index: int = 0) -> Encoded:
    """The sender's half: quantise (eq. 7) → tile → picture → encode."""
    began = time.perf_counter()
    quantized = quantize(tensor, codec.bits)
    picture = to_picture(tile(quantized.values), layout)
    tiled = time.perf_counter()
    data = _library_call(codec.encode, picture, codec, index)
    return Encoded(data, quantized.minimum, quantized.maximum, tiled - began, time.perf_counter() - tiled)


def decode_features(data: bytes, minimum: np.float32, maximum: np.float32, shape: tuple[int, int, int],
                    codec: Codec, layout: str, index: int = 0) -> np.ndarray:
    """The receiver's half: decode → plane → untile → dequantise (eq. 8), float32 C×H×W."""
    plane = from_picture(_library_call(codec.decode, data, codec, index), layout)
    values = untile(plane, shape)
    return dequantize(Quantized(values, np.float32(minimum), np.float32(maximum), codec.bits))


def _library_call(call, argument, codec: Codec, index: int):  # type: ignore[no-untyped-def]
    try:
        return call(argument)
    except SplitbenchError:
        raise
    except Exception as error:  # a library's own error: one line that names the codec and image
        raise SplitbenchError(f"{codec.name} failed on image {index}: {type(error).__name__}: {error}") from None


def code_one(tensor: np.ndarray, index: int, codec: Codec, layout: str, keep_dir: str | None = None) -> Coded:
    """Both halves on one machine, as a sweep measures them."""
    sent = encode_features(tensor, codec, layout, index)
    began = time.perf_counter()
    recovered = decode_features(sent.data, sent.minimum, sent.maximum, tensor.shape, codec, layout, index)
    decode_s = time.perf_counter() - began
    if keep_dir is not None:
        Path(keep_dir, f"{index:06d}.{codec.extension}").write_bytes(sent.data)
    return Coded(index, recovered, sent.nbytes, sent.quantize_s, sent.encode_s, decode_s)
