"""Whole datasets decoded once into one uint8 tensor.

Small-image training (CIFAR-10: 50 000 images of 32×32, 150 MB as uint8) is limited by
per-image Python work, not by arithmetic. Decoding every image once and keeping the batch
pipeline on tensors (see :mod:`splitbench.training.augment`) lets a GPU train at thousands
of images per second and keeps a CPU run free of per-epoch JPEG decoding.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from torchvision.transforms.functional import pil_to_tensor

from splitbench.data.datasets import ImageDataset, worker_errors_unwrapped
from splitbench.progress import track


def decode_dataset(dataset: ImageDataset, *, workers: int = 2, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)``: uint8 N×3×H×W and int64 N, in the dataset's order.

    All images must share one size (true of CIFAR-10); a corrupt file fails naming it.
    """
    decoded = ImageDataset(dataset.samples, transform=pil_to_tensor)
    loader = DataLoader(decoded, batch_size=500, num_workers=workers, shuffle=False)
    images, labels = [], []
    with track("decoding", len(decoded), unit="images", enabled=progress, transient=True) as bar, \
            worker_errors_unwrapped():
        for batch, batch_labels in loader:
            images.append(batch)
            labels.append(batch_labels)
            bar.advance(len(batch_labels))
    return torch.cat(images), torch.cat(labels).long()
