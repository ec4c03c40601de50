"""Accuracy of the shared real weights on real images (skips where ../shared is absent)."""

from __future__ import annotations

import pytest

from conftest import SHARED_DATA, needs_shared_data, needs_shared_weights, shared_weights
from splitbench.data import open_dataset
from splitbench.evaluation import evaluate_topk
from splitbench.zoo import load_model

pytestmark = [needs_shared_data, needs_shared_weights]


def test_mobilenet_v2_int8dequant_on_imagenet_val_1300() -> None:
    model = load_model("mobilenet_v2", str(shared_weights("mobilenet_v2-imagenet-int8dequant.pth")))
    images = open_dataset("imagenet-val-1300", root=SHARED_DATA, transform=model.spec.preprocessing.transform())
    result = evaluate_topk(model.model, images, progress=False)
    assert result.images == 1300
    # ../shared/README.md: 78.69 % / 94.08 % with resize 256, crop 224, ImageNet mean/std
    assert result.top1 == pytest.approx(78.7, abs=0.1)
    assert result.top5 == pytest.approx(94.1, abs=0.1)


def test_cifar_resnet20_on_cifar10_test() -> None:
    model = load_model("cifar_resnet20", str(shared_weights("cifar-resnet20-12fca82f.th")))
    images = open_dataset("cifar10", split="test", root=SHARED_DATA, transform=model.spec.preprocessing.transform())
    result = evaluate_topk(model.model, images, batch_size=256, progress=False)
    assert result.images == 10000
    assert result.top1 == pytest.approx(81.0, abs=1.0)  # 91.8 % on lossless CIFAR-10; JPEG copies cost ~11
