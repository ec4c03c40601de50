"""The model zoo: named models with their input, preprocessing and split points.

>>> from splitbench.zoo import load_model
>>> zoo_model = load_model("vgg16", weights="none")
>>> zoo_model.trunk.resolve("pool4")  # index of the last stage on the edge side
23
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# Importing the model modules registers their specs, in the order listings show them.
from splitbench.zoo import imagenet, vit, cifar_resnet, ssd  # noqa: F401  (registration)
from splitbench.zoo.registry import ModelSpec, get_spec, list_models
from splitbench.zoo.trunk import Stage, Trunk, count_parameters
from splitbench.weights import WeightsInfo, load_weights

__all__ = [
    "ModelSpec",
    "Stage",
    "Trunk",
    "ZooModel",
    "count_parameters",
    "get_spec",
    "list_models",
    "load_model",
]


@dataclass
class ZooModel:
    """A built model in evaluation mode, its chain of stages, and where its weights came from."""

    spec: ModelSpec
    model: nn.Module
    trunk: Trunk
    weights: WeightsInfo


def load_model(name: str, weights: str = "none") -> ZooModel:
    """Build zoo model ``name`` and load ``weights`` (``none``, ``default`` or a file path)."""
    spec = get_spec(name)
    if weights == "none":
        torch.manual_seed(0)  # the same random weights on every run, for comparable timings
    model = spec.build()
    info = load_weights(model, spec.name, weights, spec.torchvision_weights)
    model.eval()
    return ZooModel(spec, model, spec.trunk(model).eval(), info)
