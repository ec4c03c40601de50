"""NaN and ±Inf: the one checker for option values, tensors, state_dicts and arrays.

A non-finite number never fails loudly by itself: NaN compares false with everything, so
``nan <= 0`` lets a NaN bandwidth through a positivity check, and NaN weights give NaN
features that a codec compresses to almost nothing. Every place that takes numbers from a
user, a file or a training step asks here instead of writing its own ``isfinite``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Union

import numpy as np
import torch

Numbers = Union[float, int, torch.Tensor, np.ndarray, Mapping[str, "Numbers"], Iterable["Numbers"]]


def count_non_finite(values: Numbers) -> int:
    """How many NaN or ±Inf values ``values`` hold (integer and bool tensors hold none)."""
    if isinstance(values, torch.Tensor):
        if not (values.is_floating_point() or values.is_complex()):
            return 0
        return values.numel() - int(torch.isfinite(values).sum())
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "fc":
            return 0
        return values.size - int(np.isfinite(values).sum())
    if isinstance(values, (int, float, np.number)):
        return 0 if math.isfinite(values) else 1
    if isinstance(values, Mapping):
        values = values.values()
    return sum(count_non_finite(value) for value in values)


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every floating-point tensor is finite, with one read-back from the device.

    For a check every training step. A sum per tensor is the fast path (a tenth of the time of
    ``isfinite(t).all()`` on a CPU): any NaN or Inf makes its tensor's sum non-finite. A sum can
    also overflow on its own, so a non-finite one is settled by the exact check.
    """
    floats = [t for t in tensors if t.is_floating_point()]
    if not floats:
        return True
    sums = torch.stack([t.sum(dtype=torch.float64 if t.dtype == torch.float64 else torch.float32) for t in floats])
    return bool(torch.isfinite(sums).all()) or not any(count_non_finite(t) for t in floats)


def non_finite_tensors(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """The tensors of ``state`` that hold NaN or ±Inf, with how many each holds."""
    counts = {name: count_non_finite(tensor) for name, tensor in state.items()}
    return {name: count for name, count in counts.items() if count}


def describe(counts: Mapping[str, int], tensors: int) -> str:
    """``3 NaN/Inf values in 2 of 122 tensors (e.g. conv1.weight)``: what ``non_finite_tensors`` found."""
    total = sum(counts.values())
    example = next(iter(counts), "")
    return (f"{total:,} NaN/Inf value{'s' if total != 1 else ''} in {len(counts)} of {tensors} "
            f"tensor{'s' if tensors != 1 else ''} (e.g. {example})")
