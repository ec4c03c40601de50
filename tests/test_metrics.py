"""The metrics kit (splitbench.metrics): top-k hit masks against hand-checked cases and a real
model's logits, and Timing on samples measured here."""

from __future__ import annotations

import ast
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, needs_shared_data, needs_shared_weights, shared_weights
from splitbench.metrics import (
    Timing,
    classifier_top1,
    dataset_timing,
    percent,
    time_ms,
    top1_hits,
    topk_hit_masks,
)


def test_hand_checked_hit_masks_with_ties_and_k_above_the_classes() -> None:
    logits = torch.tensor([
        [1.0, 3.0, 3.0, 0.0],  # a tie for the highest score: top-1 is the first of them (class 1)
        [1.0, 3.0, 3.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],  # all tied: class 0
        [4.0, 3.0, 2.0, 1.0],
        [4.0, 3.0, 2.0, 1.0],
    ])
    labels = torch.tensor([1, 2, 3, 0, 3])
    hit1, hit5 = topk_hit_masks(logits, labels)
    assert hit1.tolist() == [True, False, False, True, False]
    assert hit5.tolist() == [True] * 5  # 4 classes: top-5 is every class
    hit2, hit3 = topk_hit_masks(logits[3:], labels[3:], ks=(2, 3))
    assert hit2.tolist() == [True, False] and hit3.tolist() == [True, False]
    assert top1_hits(logits, labels).tolist() == hit1.tolist()
    # k above the number of classes: every image hits, whatever its scores
    three = torch.tensor([[0.0, 1.0, 2.0], [5.0, -1.0, 0.0]])
    assert [m.tolist() for m in topk_hit_masks(three, torch.tensor([0, 1]))] == [[False, False], [True, True]]
    assert percent(3, 8) == 37.5 and percent(int(hit1.sum()), len(labels)) == 40.0


def _rank_of_label(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """How many classes score strictly higher than the label (the reference, by counting)."""
    return (logits > logits[np.arange(len(labels)), labels][:, None]).sum(axis=1)


@needs_shared_data
@needs_shared_weights
def test_hit_masks_on_a_real_models_logits() -> None:
    from splitbench.data import open_dataset
    from splitbench.data.tensors import decode_dataset
    from splitbench.training.augment import normalize
    from splitbench.zoo import load_model

    zoo_model = load_model("cifar_resnet20", str(shared_weights("cifar-resnet20-12fca82f.th")))
    images, labels = decode_dataset(open_dataset("cifar10", split="test", root=SHARED_DATA).evenly_spaced(500))
    mean, std = zoo_model.spec.preprocessing.mean, zoo_model.spec.preprocessing.std
    model = zoo_model.model.eval()
    with torch.inference_mode():
        logits = model(normalize(images, mean, std))
    hit1, hit5 = topk_hit_masks(logits, labels)

    ordered = logits.sort(dim=1, descending=True).values
    assert bool((ordered[:, 0] > ordered[:, 1]).all())  # real float logits: no tie for the top, so ranks are exact
    rank = _rank_of_label(logits.numpy(), labels.numpy())
    assert hit1.tolist() == (rank < 1).tolist() and hit5.tolist() == (rank < 5).tolist()
    assert bool((hit5 | ~hit1).all()) and 0 < int(hit1.sum()) < int(hit5.sum()) < len(labels)
    # without a tie, argmax (the kit's top-1) is topk's first class (what evaluation used before)
    assert hit1.tolist() == (logits.topk(5, dim=1).indices[:, 0] == labels).tolist()
    # the batched helper: same figure whatever the batch size, with the normalisation as a transform
    top1 = percent(int(hit1.sum()), len(labels))
    for batch_size in (500, 128):
        assert classifier_top1(model, images, labels, batch_size=batch_size,
                               transform=lambda batch: normalize(batch, mean, std)) == pytest.approx(top1, abs=0.2)
    assert classifier_top1(model, normalize(images, mean, std), labels, batch_size=500) == top1


def test_timing_of_real_measured_samples() -> None:
    x, weight = torch.randn(64, 256), torch.randn(256, 256)
    samples = []
    for _ in range(21):
        start = time.perf_counter()
        for _ in range(20):
            x @ weight
        samples.append(1000 * (time.perf_counter() - start))
    timing = Timing.of(samples)
    p10, p90 = np.percentile(samples, [10, 90])
    assert timing == Timing(round(statistics.median(samples), 3), round(float(p10), 3), round(float(p90), 3), 21)
    assert 0 < timing.p10_ms <= timing.median_ms <= timing.p90_ms <= max(samples)
    assert Timing.of(samples, 1).median_ms == round(sorted(samples)[10], 1)  # 21 runs: the 11th
    assert Timing.of([4.0, 1.0, 3.0, 2.0, 100.0]) == Timing(3.0, 1.4, 61.6, 5)  # hand-checked: linear interpolation
    with pytest.raises(ValueError):
        Timing.of([])

    layer = torch.nn.Linear(256, 256)
    measured = time_ms(layer, x, repeats=9)
    assert measured is not None and measured.repeats == 9 and 0 < measured.p10_ms <= measured.median_ms <= measured.p90_ms
    passes = dataset_timing(layer, x, 16, 5)
    assert passes is not None and passes.repeats == 5 and passes.p10_ms <= passes.median_ms <= passes.p90_ms
    assert time_ms(layer, x, 0) is None and dataset_timing(layer, x, 16, 0) is None


def test_one_timer_and_no_pruning_import_in_grouping() -> None:
    import splitbench.metrics as metrics
    import splitbench.timing as timing

    assert all(getattr(timing, name) is getattr(metrics, name) for name in timing.__all__)
    source = Path(metrics.__file__).parent / "grouping" / "sweep.py"
    imported = {node.module for node in ast.walk(ast.parse(source.read_text())) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name and name.startswith("splitbench.pruning")}
