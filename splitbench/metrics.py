"""The metrics kit: top-k accuracy and wall-clock timing, each computed in one place.

Top-k: :func:`topk_hit_masks` says per image whether its label is among the k best-scoring
classes (k = 1 and 5), :func:`percent` turns a hit count into the percentage every table
reports, and :func:`classifier_top1` runs a model over tensors in batches for its top-1.
Top-1 is ``argmax`` (on a tie for the highest score, the first such class, as
``torch.argmax`` documents); top-5 is ``topk`` over at most the number of classes, so
with fewer than 5 classes every image hits.

Timing: medians (robust to a stray scheduler hiccup) of runs made after one warm-up run
(which pays for lazy initialisation and cache misses), with the 10th and 90th percentiles
of the same runs and their count (:class:`Timing`): on a shared machine one median alone
can differ by several times between two runs of the same command. The thread count they
were made with goes into every result's provenance.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

TOPK = (1, 5)


def top1_hits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per image: is its label the highest-scoring class (the first one, on a tie)."""
    return logits.argmax(1) == labels


def topk_hit_masks(logits: torch.Tensor, labels: torch.Tensor,
                   ks: Sequence[int] = TOPK) -> tuple[torch.Tensor, ...]:
    """Per image and for each k in ``ks``: is its label among the k highest-scoring classes.

    ``logits`` are batch × classes, ``labels`` class indices. A k of at least the number of
    classes is a hit for every image (a model with fewer than 5 classes: top-5 is 100 %).
    """
    masks = []
    for k in ks:
        if k == 1:
            masks.append(top1_hits(logits, labels))
        else:
            masks.append((logits.topk(min(k, logits.shape[1]), dim=1).indices == labels.unsqueeze(1)).any(dim=1))
    return tuple(masks)


def percent(hits: float, total: int) -> float:
    """``hits`` of ``total`` in percent (unrounded: each table rounds to its own decimals)."""
    return 100.0 * hits / total


def classifier_top1(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                    transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
    """Top-1 in percent of ``model`` as it is (its mode is the caller's) on ``images``, in batches.

    ``transform`` (normalisation, say) runs on each batch first; without it the images are
    ready model inputs. Runs under inference mode, inside whatever autocast the caller set.
    """
    hits = 0
    with torch.inference_mode():
        for batch, batch_labels in zip(images.split(batch_size), labels.split(batch_size)):
            hits += int(top1_hits(model(batch if transform is None else transform(batch)), batch_labels).sum())
    return percent(hits, len(labels))


@dataclass(frozen=True)
class Timing:
    """Median and spread (10th and 90th percentile, linear interpolation) of ``repeats`` timed runs, in ms."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int

    @classmethod
    def of(cls, samples_ms: Sequence[float], digits: int = 3) -> Timing:
        """The timing of ``samples_ms``, each figure rounded to ``digits`` decimals (p10 ≤ median ≤ p90 still holds)."""
        if not samples_ms:
            raise ValueError("a timing needs at least one timed run")
        p10, p90 = np.percentile(np.asarray(samples_ms, dtype=float), [10, 90])
        return cls(round(statistics.median(samples_ms), digits), round(float(p10), digits), round(float(p90), digits),
                   len(samples_ms))

    def describe(self, unit: str = "ms") -> str:
        """``12.34 ms (p10–p90 11.90–14.02 ms, 5 runs)``: four significant digits of the largest, at most three decimals."""
        decimals = min(3, max(0, 3 - math.floor(math.log10(self.p90_ms)))) if self.p90_ms > 0 else 3
        return (f"{self.median_ms:,.{decimals}f} {unit} (p10–p90 {self.p10_ms:,.{decimals}f}–{self.p90_ms:,.{decimals}f} "
                f"{unit}, {self.repeats} run{'s' if self.repeats != 1 else ''})")


def time_ms(module: nn.Module, x: torch.Tensor, repeats: int) -> Timing | None:
    """Wall time of ``module(x)`` over ``repeats`` runs after one warm-up run; None for no runs."""
    if repeats <= 0:
        return None
    times = []
    with torch.inference_mode():
        module(x)
        for _ in range(repeats):
            start = time.perf_counter()
            module(x)
            times.append(1000 * (time.perf_counter() - start))
    return Timing.of(times, 3)


def median_ms(module: nn.Module, x: torch.Tensor, repeats: int) -> float | None:
    """Median wall time of ``module(x)`` over ``repeats`` runs after one warm-up run (see :func:`time_ms`)."""
    timing = time_ms(module, x, repeats)
    return None if timing is None else timing.median_ms


def dataset_ms(module: nn.Module, images: torch.Tensor, batch_size: int, repeats: int) -> float | None:
    """Median wall time (ms) to run ``module`` over all ``images`` in batches of ``batch_size``.

    The warm-up is one batch; ``images`` are ready model inputs, so data loading is excluded.
    """
    timing = dataset_timing(module, images, batch_size, repeats)
    return None if timing is None else timing.median_ms


def dataset_timing(module: nn.Module, images: torch.Tensor, batch_size: int, repeats: int) -> Timing | None:
    """:func:`dataset_ms` with its spread: the :class:`Timing` of the ``repeats`` passes (figures to 0.1 ms)."""
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
    return Timing.of(times, 1)
