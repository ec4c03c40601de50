"""A learned image codec in front of a frozen recognition model, with an auxiliary branch (seed 001).

The codec is CompressAI's ``Cheng2020Attention`` architecture (trained here, not its
pretrained weights, which are optimised for MSE). Seed 001 attaches a lightweight
recognition branch to the decoded latent ŷ ("Ẑ" in the seed's Fig. 1) while training, so
that the encoder learns what the recognition model needs; the branch is dropped at
inference, which runs codec and recognition model only (:meth:`ImagePipeline.inference`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.models import Cheng2020Attention
from torch import nn

# Cheng2020Attention downsamples by 16 to y and by 64 to z; inputs are padded to a multiple of
# this (the padding is coded too, and its bits count against the image's own pixels).
IMAGE_CODEC_STRIDE = 64
LATENT_STRIDE = 16  # pixels per latent position of y, on each side


class ImageCodec(nn.Module):
    """``Cheng2020Attention(N)``; its forward also returns ŷ for the auxiliary branch."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.net = Cheng2020Attention(N=channels)
        self.latent_channels = channels

    def forward(self, x: torch.Tensor) -> dict[str, object]:
        # CompressAI's JointAutoregressiveHierarchicalPriors.forward, keeping y_hat.
        net = self.net
        height, width = x.shape[-2:]
        y = net.g_a(pad_to_stride(x))
        z = net.h_a(y)
        z_hat, z_likelihoods = net.entropy_bottleneck(z)
        params = net.h_s(z_hat)
        y_hat = net.gaussian_conditional.quantize(y, "noise" if self.training else "dequantize")
        context = net.context_prediction(y_hat)
        scales, means = net.entropy_parameters(torch.cat((params, context), dim=1)).chunk(2, 1)
        _, y_likelihoods = net.gaussian_conditional(y, scales, means=means)
        x_hat = net.g_s(y_hat)[..., :height, :width]
        return {"x_hat": x_hat, "y_hat": y_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def compress(self, x: torch.Tensor) -> dict[str, object]:
        return self.net.compress(pad_to_stride(x))

    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The decoded, padded image (the receiver crops it to the size it was told)."""
        return {"x_hat": self.net.decompress(strings, shape)["x_hat"]}


def pad_to_stride(x: torch.Tensor) -> torch.Tensor:
    """Replicate the last row and column up to a multiple of the codec's stride (CIFAR's 32 → 64)."""
    height, width = x.shape[-2:]
    bottom, right = -height % IMAGE_CODEC_STRIDE, -width % IMAGE_CODEC_STRIDE
    return F.pad(x, (0, right, 0, bottom), mode="replicate") if bottom or right else x


class AuxiliaryBranch(nn.Module):
    """The lightweight recogniser on ŷ: 3×3 convolution, ReLU, global average pool, linear."""

    def __init__(self, latent_channels: int, classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(latent_channels, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(hidden, classes),
        )

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.layers(y_hat)


def latent_bits(likelihoods: torch.Tensor) -> torch.Tensor:
    """Bits per latent position (summed over channels), B×h×w: the seed's bit-allocation map."""
    return -torch.log2(likelihoods.clamp_min(1e-9)).sum(dim=1)
