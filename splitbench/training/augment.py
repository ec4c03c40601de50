"""CIFAR training augmentation applied to whole uint8 batches on the training device.

The recipe is the usual one for ViTs trained from scratch on CIFAR-10 (and the one seed
002's configuration comes from): RandAugment (2 ops, magnitude 14), random 32×32 crop of
the image padded by 4 pixels, horizontal flip. Crop and flip are drawn per image.
RandAugment draws one operation per *chunk* of images (torchvision's batched RandAugment
applies a single draw to the whole tensor it is given); with chunks of 8 images a batch
of 512 sees 64 independent draws, which is statistically close to per-image draws while
keeping the work on the GPU.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2


class CifarAugment:
    """uint8 N×3×H×W batch → augmented uint8 batch of the same shape, on the batch's device."""

    def __init__(
        self,
        padding: int = 4,
        flip: bool = True,
        randaugment_ops: int = 2,
        randaugment_magnitude: int = 14,
        chunk: int = 8,
    ) -> None:
        self.padding = padding
        self.flip = flip
        self.chunk = chunk
        self.randaugment = (
            v2.RandAugment(num_ops=randaugment_ops, magnitude=randaugment_magnitude) if randaugment_ops > 0 else None
        )

    def describe(self) -> dict[str, object]:
        return {
            "randaugment": None if self.randaugment is None
            else {"num_ops": self.randaugment.num_ops, "magnitude": self.randaugment.magnitude, "chunk": self.chunk},
            "random_crop_padding": self.padding,
            "horizontal_flip": self.flip,
        }

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.randaugment is not None:
            images = torch.cat([self.randaugment(chunk) for chunk in images.split(self.chunk)])
        if self.padding:
            images = random_crop(images, self.padding, generator)
        if self.flip:
            flipped = torch.rand(len(images), device=images.device, generator=generator) < 0.5
            images = torch.where(flipped[:, None, None, None], images.flip(-1), images)
        return images


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image random crop of the zero-padded batch back to its own size, by gathering."""
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    device = images.device
    top = torch.randint(0, 2 * padding + 1, (n,), device=device, generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n,), device=device, generator=generator)
    rows = (top[:, None] + torch.arange(height, device=device))[:, None, :, None]
    cols = (left[:, None] + torch.arange(width, device=device))[:, None, None, :]
    batch = torch.arange(n, device=device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=device)[None, :, None, None]
    return padded[batch, channels, rows, cols]


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 batch → float batch normalised as the evaluation preprocessing does."""
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean_t) / std_t
