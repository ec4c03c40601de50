"""He et al.'s CIFAR-10 ResNets (20, 56 layers) with option-A shortcuts, and seed 004's ResNet-50.

Option A (He et al. 2016, §4.2): where a block halves the resolution and doubles the
width, the shortcut subsamples with stride 2 and pads the new channels with zeros, so the
shortcut has no parameters. Module names follow Yerlan Idelbayev's widely used
implementation, whose checkpoints (``../shared/weights/cifar-resnet*.th``) therefore load
with strict keys once their ``module.`` prefix is stripped.

``cifar_resnet50`` is seed 004's network: torchvision's bottleneck ResNet-50 for 10 classes
with the 7×7 stride-2 stem replaced by a 3×3 stride-1 convolution and no max pooling, so
32×32 images keep their resolution into conv2_x. No weights are published for it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

from splitbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from splitbench.zoo.imagenet import RESNET50_SPLIT_POINTS
from splitbench.zoo.registry import ModelSpec, register


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: stride-2 subsampling, new channels zero-padded on both sides."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.pad = extra_channels // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        downsample = stride != 1 or in_planes != planes
        self.shortcut: nn.Module = ZeroPadShortcut(planes - in_planes) if downsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: widths 16, 32, 64; n blocks per stage."""

    def __init__(self, depth: int, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, blocks, stride=1)
        self.layer2 = self._stage(16, 32, blocks, stride=2)
        self.layer3 = self._stage(32, 64, blocks, stride=2)
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def _split_points(depth: int) -> dict[str, str]:
    last = (depth - 2) // 6 - 1
    points = {"conv1": "relu"}
    points.update({f"layer{i}": f"layer{i}.{last}" for i in (1, 2, 3)})
    points["fc"] = "linear"
    return points


# The shared checkpoints were trained on inputs normalised with ImageNet's mean and std.
CIFAR_RESNET_PREPROCESSING = Preprocessing(crop=32, resize=None, mean=IMAGENET_MEAN, std=IMAGENET_STD)

for _depth in (20, 56):
    register(
        ModelSpec(
            name=f"cifar_resnet{_depth}",
            description=f"ResNet-{_depth} for CIFAR-10 (He et al. 2016, option-A shortcuts), 32x32",
            task="classification",
            input_size=32,
            preprocessing=CIFAR_RESNET_PREPROCESSING,
            build=lambda depth=_depth: CifarResNet(depth),
            split_points=_split_points(_depth),
            dataset="cifar10",
        )
    )


def build_cifar_resnet50() -> nn.Module:
    """ResNet-50 for CIFAR-10 as seed 004 §4 describes: 3×3 stem, stride 1, no max pooling."""
    model = models.resnet50(weights=None, num_classes=10)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


register(
    ModelSpec(
        name="cifar_resnet50",
        description="ResNet-50 for CIFAR-10 with a 3x3 stride-1 stem, no max pooling (seed 004), 32x32",
        task="classification",
        input_size=32,
        preprocessing=CIFAR_RESNET_PREPROCESSING,
        build=build_cifar_resnet50,
        split_points=RESNET50_SPLIT_POINTS,
        dataset="cifar10",
    )
)
