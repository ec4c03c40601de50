"""Wall-clock timing of inference: medians over repeated runs after a warm-up.

Timings are medians (robust to a stray scheduler hiccup) of runs made after one warm-up
run (which pays for lazy initialisation and cache misses). The thread count they were made
with goes into every result's provenance.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def median_ms(module: nn.Module, x: torch.Tensor, repeats: int) -> float | None:
    """Median wall time of ``module(x)`` over ``repeats`` runs after one warm-up run."""
    if repeats <= 0:
        return None
    times = []
    with torch.inference_mode():
        module(x)
        for _ in range(repeats):
            start = time.perf_counter()
            module(x)
            times.append(1000 * (time.perf_counter() - start))
    return round(statistics.median(times), 3)


def dataset_ms(module: nn.Module, images: torch.Tensor, batch_size: int, repeats: int) -> float | None:
    """Median wall time (ms) to run ``module`` over all ``images`` in batches of ``batch_size``.

    The warm-up is one batch; ``images`` are ready model inputs, so data loading is excluded.
    """
    if repeats <= 0:
        return None
    batches = images.split(batch_size)
    times = []
    with torch.inference_mode():
        module(batches[0])
        for _ in range(repeats):
            start = time.perf_counter()
            for batch in batches:
                module(batch)
            times.append(1000 * (time.perf_counter() - start))
    return round(statistics.median(times), 1)
