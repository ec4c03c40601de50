"""CBAM (Woo et al., ECCV 2018): a channel gate followed by a spatial gate.

Seed 000 puts it into the encoder of a feature compression model. Both gates multiply the
features by weights in (0, 1), so a CBAM block keeps its input's shape.
"""

from __future__ import annotations

import torch
from torch import nn

REDUCTION = 16
SPATIAL_KERNEL = 7


class ChannelGate(nn.Module):
    """Average- and max-pooled descriptors through one shared MLP, summed, sigmoid."""

    def __init__(self, channels: int, reduction: int = REDUCTION) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel gate, shape B×C×1×1."""
        pooled = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        return torch.sigmoid(pooled)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


class SpatialGate(nn.Module):
    """Channel-wise max and mean, a 7×7 convolution, sigmoid."""

    def __init__(self, kernel: int = SPATIAL_KERNEL) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Per-position gate, shape B×1×H×W."""
        described = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(described))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


class CBAM(nn.Module):
    def __init__(self, channels: int, reduction: int = REDUCTION) -> None:
        super().__init__()
        self.channel = ChannelGate(channels, reduction)
        self.spatial = SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


def cbam_parameters(channels: int, reduction: int = REDUCTION) -> int:
    """CBAM's parameter count: the MLP (two linear layers with biases) and the 7×7 conv."""
    hidden = max(channels // reduction, 1)
    return 2 * channels * hidden + hidden + channels + 2 * SPATIAL_KERNEL**2
