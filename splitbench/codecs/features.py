"""From a feature tensor to a picture and back: min-max quantisation, tiling and layouts (seed 003 §4).

* quantise (eq. 7): Ṽ = round((V − min V) / (max V − min V) · (2ⁿ − 1)), per tensor; min and max
  travel as float32 side information (:data:`SIDE_INFO_BYTES`), dequantise (eq. 8):
  V̂ = min + Ṽ · (max − min) / (2ⁿ − 1), so that |V − V̂| ≤ half a step;
* tile the C channel planes of a C×H×W tensor row by row into one (rows·H)×(cols·W) plane
  (:func:`tile_grid`);
* lay the plane out as the codec's picture: ``paper`` puts it in the R channel of an RGB
  picture with G = B = 0 (the seed's Table 2), ``gray`` hands the plane itself over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from splitbench.errors import SplitbenchError, unknown_name

LAYOUTS = ("paper", "gray")
SIDE_INFO_BYTES = 8  # min and max as float32
QUANTIZE_BITS = (8, 10, 12, 16)


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise unknown_name("layout", layout, LAYOUTS)
    return layout


def layout_channels(layout: str) -> int:
    return 3 if check_layout(layout) == "paper" else 1


@dataclass(frozen=True)
class Quantized:
    """An integer tensor and the float32 range that eq. 8 needs to undo eq. 7."""

    values: np.ndarray  # uint8 for 8 bits, uint16 above
    minimum: np.float32
    maximum: np.float32
    bits: int


def quantize(features: np.ndarray, bits: int) -> Quantized:
    """Eq. 7 with round-half-up; a constant tensor quantises to zeros."""
    if bits not in QUANTIZE_BITS:
        raise SplitbenchError(f"--bits {bits} is not supported; valid: {', '.join(map(str, QUANTIZE_BITS))}")
    features = np.asarray(features, dtype=np.float32)
    low, high = np.float32(features.min()), np.float32(features.max())
    top = (1 << bits) - 1
    span = float(high) - float(low)
    scaled = (features.astype(np.float64) - float(low)) * (top / span) if span > 0 else np.zeros(features.shape)
    values = np.floor(scaled + 0.5).clip(0, top)
    return Quantized(values.astype(np.uint8 if bits == 8 else np.uint16), low, high, bits)


def dequantize(quantized: Quantized) -> np.ndarray:
    """Eq. 8 in float64, returned as float32 (what the tail consumes)."""
    step = (float(quantized.maximum) - float(quantized.minimum)) / ((1 << quantized.bits) - 1)
    return (float(quantized.minimum) + quantized.values.astype(np.float64) * step).astype(np.float32)


def tile_grid(channels: int) -> tuple[int, int]:
    """(rows, cols) of the planes: rows = the largest divisor r of C with r ≤ √C.

    The most nearly square grid without empty tiles (never taller than wide); for square
    planes it gives the seed's Table 2 exactly (VGG16 512×14×14 → 16×32 tiles = 224×448,
    MobileNetV2 32×28×28 → 4×8 tiles = 112×224), and a square picture whenever C is a square.
    """
    if channels < 1:
        raise ValueError(f"cannot tile {channels} channels")
    rows = max(r for r in range(1, math.isqrt(channels) + 1) if channels % r == 0)
    return rows, channels // rows


def tile(tensor: np.ndarray) -> np.ndarray:
    """C×H×W → (rows·H)×(cols·W), channel c at tile (c // cols, c % cols)."""
    channels, height, width = tensor.shape
    rows, cols = tile_grid(channels)
    return tensor.reshape(rows, cols, height, width).transpose(0, 2, 1, 3).reshape(rows * height, cols * width)


def untile(plane: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`tile` for a tensor of ``shape`` (C, H, W)."""
    channels, height, width = shape
    rows, cols = tile_grid(channels)
    if plane.shape != (rows * height, cols * width):
        raise ValueError(f"plane {plane.shape} does not hold {shape} as {rows}×{cols} tiles")
    return plane.reshape(rows, height, cols, width).transpose(0, 2, 1, 3).reshape(shape)


def to_picture(plane: np.ndarray, layout: str) -> np.ndarray:
    """The picture handed to the codec: the plane, or RGB with the plane in R and G = B = 0."""
    if check_layout(layout) == "gray":
        return plane
    picture = np.zeros(plane.shape + (3,), dtype=plane.dtype)
    picture[..., 0] = plane
    return picture


def from_picture(picture: np.ndarray, layout: str) -> np.ndarray:
    """The plane the receiver reads back: the picture itself, or its R channel."""
    return picture if check_layout(layout) == "gray" else picture[..., 0]
