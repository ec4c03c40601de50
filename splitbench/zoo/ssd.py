"""SSD detectors at 224x224 input on VGG16 and MobileNetV2, as seed 003 wires them.

Seed 003 (§3) shares a classifier's first layers with an SSD detector and transmits a
single tensor, so the detector may take its first source feature map no earlier than the
split:

* **VGG16** (torchvision's ``ssd300_vgg16`` is the reference): the structure is unchanged,
  but the first source is the output of pool4 (512x14x14) instead of conv4_3.
* **MobileNetV2**: the first source is bottleneck7 (64x14x14) instead of conv4_3, and the
  output of bottleneck14 (160x7x7) feeds SSD's conv5_1 in place of VGG16's pool4.

Both keep SSD300's layer widths, its L2-normalised first source, 4/6/6/6/4/4 anchors per
location and 21 classes (PASCAL VOC). At 224x224 SSD300's two final unpadded 3x3
convolutions would shrink the maps below 1x1, so all four extra blocks here use 3x3
convolutions with stride 2 and padding 1 (maps 14, 7, 4, 2, 1 for VGG16). These models
feed the multi-task MAC accounting; no PASCAL VOC weights exist offline.

Each detector is a chain ``features`` → ``detector``: ``features`` is the classifier's own
prefix up to the first source (same module paths, so split points and classifier weights
carry over) and ``detector`` is everything after it, returning one tensor
``(N, anchors, 4 + classes)`` of box offsets and class logits.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models
from torchvision.models.detection.ssd import SSDHead

from splitbench.zoo.imagenet import IMAGENET_EVAL, mobilenet_v2_split_points, vgg16_split_points
from splitbench.zoo.registry import ModelSpec, register

VOC_CLASSES = 21  # 20 PASCAL VOC classes and background
ANCHORS_PER_LOCATION = [4, 6, 6, 6, 4, 4]
SSD_INPUT = 224


class L2Norm(nn.Module):
    """SSD's channel-wise L2 normalisation with a learned scale (initialised to 20)."""

    def __init__(self, channels: int, scale: float = 20.0) -> None:
        super().__init__()
        self.scale_weight = nn.Parameter(torch.full((channels,), scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale_weight.view(1, -1, 1, 1) * F.normalize(x)


def _conv_relu(in_channels: int, out_channels: int, **conv: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, **conv), nn.ReLU(inplace=True)]


def _fc6_fc7(in_channels: int) -> list[nn.Module]:
    """SSD's pool5 (3x3, stride 1) and the atrous fc6 and fc7 convolutions."""
    return [
        nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
        *_conv_relu(in_channels, 1024, kernel_size=3, padding=6, dilation=6),
        *_conv_relu(1024, 1024, kernel_size=1),
    ]


def _extra_blocks() -> nn.ModuleList:
    """conv8_2 … conv11_2 with SSD300's widths, each halving the map (see module doc)."""
    widths = [(1024, 256, 512), (512, 128, 256), (256, 128, 256), (256, 128, 256)]
    return nn.ModuleList(
        nn.Sequential(
            *_conv_relu(c_in, c_mid, kernel_size=1),
            *_conv_relu(c_mid, c_out, kernel_size=3, stride=2, padding=1),
        )
        for c_in, c_mid, c_out in widths
    )


class SSDDetector(nn.Module):
    """Everything of an SSD after its first source map: rest of the trunk, extras, heads."""

    def __init__(self, first_source_channels: int, trunk_rest: nn.Sequential) -> None:
        super().__init__()
        self.l2norm = L2Norm(first_source_channels)
        self.trunk_rest = trunk_rest
        self.extra = _extra_blocks()
        source_channels = [first_source_channels, 1024, 512, 256, 256, 256]
        self.head = SSDHead(source_channels, ANCHORS_PER_LOCATION, VOC_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sources = [self.l2norm(x)]
        x = self.trunk_rest(x)
        sources.append(x)
        for block in self.extra:
            x = block(x)
            sources.append(x)
        out = self.head(sources)
        return torch.cat((out["bbox_regression"], out["cls_logits"]), dim=-1)


class SSD224(nn.Module):
    def __init__(self, features: nn.Sequential, detector: SSDDetector) -> None:
        super().__init__()
        self.features = features
        self.detector = detector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.detector(self.features(x))


def ssd_vgg16() -> SSD224:
    # VGG16's convolutional part only: building the whole classifier would allocate and
    # initialise its 120M fully connected weights for nothing.
    features = models.vgg.make_layers(models.vgg.cfgs["D"])
    pool4 = 23
    conv5 = list(features[pool4 + 1 : 30])  # conv5_1 … conv5_3 with their ReLUs
    trunk_rest = nn.Sequential(*conv5, *_fc6_fc7(512))
    return SSD224(features[: pool4 + 1], SSDDetector(512, trunk_rest))


def ssd_mobilenet_v2() -> SSD224:
    features = models.mobilenet_v2(weights=None).features
    bottleneck7, bottleneck14 = 7, 14
    conv5 = [
        *_conv_relu(160, 512, kernel_size=3, padding=1),
        *_conv_relu(512, 512, kernel_size=3, padding=1),
        *_conv_relu(512, 512, kernel_size=3, padding=1),
    ]
    trunk_rest = nn.Sequential(*features[bottleneck7 + 1 : bottleneck14 + 1], *conv5, *_fc6_fc7(512))
    return SSD224(features[: bottleneck7 + 1], SSDDetector(64, trunk_rest))


def _prefix(points: dict[str, str], last: str) -> dict[str, str]:
    """The split points up to and including ``last``, then the detector's output."""
    names = list(points)
    kept = OrderedDict((name, points[name]) for name in names[: names.index(last) + 1])
    kept["detector"] = "detector"
    return kept


register(
    ModelSpec(
        name="ssd_vgg16",
        description="SSD224 on VGG16, first source pool4 (seed 003 §3); PASCAL VOC, 21 classes",
        task="detection",
        input_size=SSD_INPUT,
        preprocessing=IMAGENET_EVAL,
        build=ssd_vgg16,
        split_points=_prefix(vgg16_split_points(), "pool4"),
    )
)

register(
    ModelSpec(
        name="ssd_mobilenet_v2",
        description="SSD224 on MobileNetV2, sources bottleneck7 and bottleneck14→conv5_1 (seed 003 §3)",
        task="detection",
        input_size=SSD_INPUT,
        preprocessing=IMAGENET_EVAL,
        build=ssd_mobilenet_v2,
        split_points=_prefix(mobilenet_v2_split_points(), "bottleneck7"),
    )
)
