"""Feature compression models inserted at a split point (seed 000).

An autoencoder with an entropy model sits between the head and the tail of a frozen
network: encoder → quantisation → entropy model → decoder. Training adds uniform noise
in place of rounding (CompressAI's ``noise`` mode); evaluation rounds, and the entropy
model's ``compress``/``decompress`` turn the rounded latent into bytes and back.

Encoder (``N`` = ``channels``, every convolution 3×3, the second with stride 2):

    conv(C_in → N) · GDN · conv(N → N, /2) · [attention] · GDN · conv(N → N) → y

Decoder: conv(N → N) · IGDN · deconv(N → N, ×2) · IGDN · conv(N → C_in). The latent has N
channels at half the split tensor's resolution. ``attention1`` puts CBAM right after the
encoder's second convolution; ``attention2`` concatenates the features before and after
CBAM on channels and mixes them with a 1×1 convolution (seed 000, Fig. 1).
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN
from torch import nn

from splitbench.compression.cbam import CBAM, cbam_parameters
from splitbench.errors import SplitbenchError

VARIANTS = ("none", "attention1", "attention2")
ENTROPY_MODELS = ("factorized", "hyperprior")
# CompressAI's EntropyBottleneck with its default filters (3, 3, 3, 3): per channel, the
# density's matrices (3 + 9 + 9 + 9 + 3), biases (3 + 3 + 3 + 3 + 1), factors (4 × 3) and
# the three quantiles.
ENTROPY_BOTTLENECK_PARAMETERS_PER_CHANNEL = 33 + 13 + 12 + 3


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise SplitbenchError(f"unknown variant '{variant}'; valid variants: {', '.join(VARIANTS)}")
    return variant


def conv(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2)


def deconv(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2,
                              output_padding=stride - 1)


class SkipCBAM(nn.Module):
    """``attention2``: [h, CBAM(h)] concatenated on channels, then a 1×1 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.cbam = CBAM(channels)
        self.mix = conv(2 * channels, channels, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(torch.cat([x, self.cbam(x)], dim=1))


def _attention(variant: str, channels: int) -> nn.Module:
    if variant == "attention1":
        return CBAM(channels)
    if variant == "attention2":
        return SkipCBAM(channels)
    return nn.Identity()


class FactorizedEntropy(nn.Module):
    """A fully factorised prior (CompressAI's ``EntropyBottleneck``) on the latent."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.entropy_bottleneck = EntropyBottleneck(channels)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        y_hat, likelihoods = self.entropy_bottleneck(y)
        return y_hat, {"y": likelihoods}

    def compress(self, y: torch.Tensor) -> list[list[bytes]]:
        return [self.entropy_bottleneck.compress(y)]

    def decompress(self, strings: list[list[bytes]], size: tuple[int, int]) -> torch.Tensor:
        return self.entropy_bottleneck.decompress(strings[0], size)


class HyperpriorEntropy(nn.Module):
    """A scale hyperprior (Ballé et al. 2018): side information z predicts y's Gaussian scales."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.h_a = nn.Sequential(conv(channels, channels), nn.ReLU(inplace=True), conv(channels, channels, 5, 2),
                                 nn.ReLU(inplace=True), conv(channels, channels, 5, 2))
        self.h_s = nn.Sequential(deconv(channels, channels, 5, 2), nn.ReLU(inplace=True),
                                 deconv(channels, channels, 5, 2), nn.ReLU(inplace=True), conv(channels, channels))
        self.entropy_bottleneck = EntropyBottleneck(channels)
        self.gaussian_conditional = GaussianConditional(None)

    def _scales(self, z_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.h_s(z_hat)[..., : y.shape[-2], : y.shape[-1]]

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z = self.h_a(torch.abs(y))
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        y_hat, y_likelihoods = self.gaussian_conditional(y, self._scales(z_hat, y))
        return y_hat, {"y": y_likelihoods, "z": z_likelihoods}

    def compress(self, y: torch.Tensor) -> list[list[bytes]]:
        z = self.h_a(torch.abs(y))
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        indexes = self.gaussian_conditional.build_indexes(self._scales(z_hat, y))
        return [self.gaussian_conditional.compress(y, indexes), z_strings]

    def decompress(self, strings: list[list[bytes]], size: tuple[int, int]) -> torch.Tensor:
        z_size = ((size[0] + 3) // 4, (size[1] + 3) // 4)
        z_hat = self.entropy_bottleneck.decompress(strings[1], z_size)
        template = torch.empty(z_hat.shape[0], z_hat.shape[1], *size, device=z_hat.device)
        indexes = self.gaussian_conditional.build_indexes(self._scales(z_hat, template))
        return self.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype)


class FeatureCodec(nn.Module):
    """Encoder, entropy model and decoder for a C_in×H×W split tensor."""

    def __init__(self, in_channels: int, channels: int = 32, variant: str = "none",
                 entropy: str = "factorized") -> None:
        super().__init__()
        check_variant(variant)
        if entropy not in ENTROPY_MODELS:
            raise SplitbenchError(f"unknown entropy model '{entropy}'; valid: {', '.join(ENTROPY_MODELS)}")
        self.variant, self.entropy_name = variant, entropy
        self.encoder = nn.Sequential(
            conv(in_channels, channels), GDN(channels), conv(channels, channels, stride=2),
            _attention(variant, channels), GDN(channels), conv(channels, channels),
        )
        self.decoder = nn.Sequential(
            conv(channels, channels), GDN(channels, inverse=True), deconv(channels, channels),
            GDN(channels, inverse=True), conv(channels, in_channels),
        )
        self.entropy = FactorizedEntropy(channels) if entropy == "factorized" else HyperpriorEntropy(channels)

    def forward(self, x: torch.Tensor) -> dict[str, object]:
        y = self.encoder(x)
        y_hat, likelihoods = self.entropy(y)
        return {"x_hat": self.decoder(y_hat)[..., : x.shape[-2], : x.shape[-1]], "y_hat": y_hat,
                "likelihoods": likelihoods}

    def compress(self, x: torch.Tensor) -> dict[str, object]:
        y = self.encoder(x)
        return {"strings": self.entropy.compress(y), "shape": tuple(y.shape[-2:])}

    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int]) -> dict[str, torch.Tensor]:
        y_hat = self.entropy.decompress(strings, shape)
        return {"x_hat": self.decoder(y_hat), "y_hat": y_hat}


def _conv3_parameters(in_channels: int, out_channels: int) -> int:
    return 9 * in_channels * out_channels + out_channels


def expected_parameters(variant: str, in_channels: int, channels: int, entropy: str = "factorized") -> int:
    """The parameter count of :class:`FeatureCodec` by formula (for the tests and Table 1)."""
    n = channels
    gdn = n * n + n  # gamma and beta
    # Two N→N convolutions in the encoder, one and a 3×3 deconvolution (as many weights) in
    # the decoder, the convolutions from and back to C_in, two GDNs and two IGDNs.
    total = _conv3_parameters(in_channels, n) + 4 * _conv3_parameters(n, n) + _conv3_parameters(n, in_channels) + 4 * gdn
    if variant in ("attention1", "attention2"):
        total += cbam_parameters(n)
    if variant == "attention2":
        total += 2 * n * n + n  # the 1×1 convolution after the concatenation
    total += ENTROPY_BOTTLENECK_PARAMETERS_PER_CHANNEL * n
    if entropy == "hyperprior":
        total += _conv3_parameters(n, n) + 2 * (25 * n * n + n)  # h_a
        total += 2 * (25 * n * n + n) + _conv3_parameters(n, n)  # h_s
    return total
