"""ImageNet classifiers from torchvision, with the split-point names of the papers.

The models are torchvision's own builders, so torchvision checkpoints load into them with
strict keys; only the papers' names for their cuts are ours (see :mod:`splitbench.cuts`).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models

from splitbench.data.transforms import Preprocessing
from splitbench.zoo.registry import ModelSpec, register

IMAGENET_EVAL = Preprocessing(crop=224, resize=256)

# VGG16's convolution widths per block; "M" is a 2x2 max pooling.
_VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_split_points() -> dict[str, str]:
    """conv1_1 … conv5_3 (after their ReLU), pool1 … pool5, fc6 … fc8 (Caffe's names)."""
    points: dict[str, str] = {}
    index, block, conv = 0, 1, 1
    for width in _VGG16_CFG:
        if width == "M":
            points[f"pool{block}"] = f"features.{index}"
            index, block, conv = index + 1, block + 1, 1
        else:
            points[f"conv{block}_{conv}"] = f"features.{index + 1}"  # conv, then its ReLU
            index, conv = index + 2, conv + 1
    # fc6 and fc7 include their ReLU and dropout (identity at inference), as in Caffe.
    points.update({"fc6": "classifier.2", "fc7": "classifier.5", "fc8": "classifier.6"})
    return points


def build_vgg16() -> nn.Module:
    """torchvision's VGG16 with VGG's own initialisation, applied once.

    torchvision initialises the 124M fully connected weights twice (nn.Linear's default,
    then VGG's normal(0, 0.01)), which is most of ``splitbench profile vgg16``'s time.
    Building on the meta device and initialising once gives the same distribution, 1.3 s
    sooner on two cores.
    """
    with torch.device("meta"):
        model = models.vgg16(weights=None, init_weights=False)
    model.to_empty(device="cpu")
    for module in model.modules():  # VGG.__init__'s scheme (torchvision/models/vgg.py)
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)
    return model


def mobilenet_v2_split_points() -> dict[str, str]:
    """conv1, bottleneck1 … bottleneck17 (= ``features[N]``), conv_last, classifier."""
    points = {"conv1": "features.0.2"}
    points.update({f"bottleneck{n}": f"features.{n}" for n in range(1, 18)})
    points.update({"conv_last": "features.18.2", "classifier": "classifier.1"})
    return points


# He et al.'s stage names; the 3x3 max pooling opens conv2_x in their Table 1.
RESNET50_SPLIT_POINTS = {
    "conv1": "relu",
    "conv2_x": "layer1.2",
    "conv3_x": "layer2.3",
    "conv4_x": "layer3.5",
    "conv5_x": "layer4.2",
    "fc": "fc",
}

VGG16 = register(
    ModelSpec(
        name="vgg16",
        description="VGG16 (torchvision), ImageNet 224x224; seed 003's shared CNN",
        task="classification",
        input_size=224,
        preprocessing=IMAGENET_EVAL,
        build=build_vgg16,
        split_points=vgg16_split_points(),
        torchvision_weights="vgg16",
        dataset="imagenet-val-1300",
        train_dataset="imagenet-sample-1000",
        default_cuts={"codec": "pool4"},  # seed 003
        detector="ssd_vgg16",
    )
)

MOBILENET_V2 = register(
    ModelSpec(
        name="mobilenet_v2",
        description="MobileNetV2 (torchvision), ImageNet 224x224; seed 003's shared CNN",
        task="classification",
        input_size=224,
        preprocessing=IMAGENET_EVAL,
        build=lambda: models.mobilenet_v2(weights=None),
        split_points=mobilenet_v2_split_points(),
        torchvision_weights="mobilenet_v2",
        dataset="imagenet-val-1300",
        train_dataset="imagenet-sample-1000",
        # seed 003's codec cut; seed 001's learned codec at the 56×56 of ResNet-50's conv2_x
        default_cuts={"codec": "bottleneck6", "rd": "bottleneck3"},
        detector="ssd_mobilenet_v2",
    )
)

RESNET50 = register(
    ModelSpec(
        name="resnet50",
        description="ResNet-50 (torchvision), ImageNet 224x224; seed 000's backbone",
        task="classification",
        input_size=224,
        preprocessing=IMAGENET_EVAL,
        build=lambda: models.resnet50(weights=None),
        split_points=RESNET50_SPLIT_POINTS,
        torchvision_weights="resnet50",
        dataset="imagenet-val-1300",
        train_dataset="imagenet-sample-1000",
        default_cuts={"rd": "conv2_x"},  # seed 000
    )
)
