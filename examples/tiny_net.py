"""A model of your own, for ``splitbench --model examples/tiny_net.py:build``.

The factory returns an ``nn.Module``, or a dict with the module under ``"model"`` and what
splitbench cannot guess: the input size, the normalisation, the papers' (or your) names for
cuts. splitbench traces the forward with torch.fx and finds every valid cut itself.
"""

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """A residual block: no cut inside it, since its input is still needed at the end."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))) + x)


class TinyNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.stage1 = nn.Sequential(Block(16), Block(16))
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.stage2 = nn.Sequential(Block(32), Block(32))
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(F.relu(self.down(self.stage1(F.relu(self.stem(x))))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build() -> dict:
    return {
        "model": TinyNet(),
        "input_size": 32,
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2470, 0.2435, 0.2616),
        "split_points": {"bottleneck": "down"},  # your own name for a cut
    }
