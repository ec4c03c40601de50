"""Model specifications: how to build a model, how to cut it, how to feed it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import nn

from splitbench.data.transforms import Preprocessing
from splitbench.errors import SplitbenchError
from splitbench.zoo.trunk import Stage, Trunk


@dataclass(frozen=True)
class ModelSpec:
    """Everything the tool needs to know about one named model.

    Attributes:
        name: the zoo name users type (``vgg16``).
        description: one line for listings and reports.
        task: ``classification`` or ``detection``.
        input_size: side of the square input the model is profiled and split at.
        preprocessing: how an image file becomes the model's input tensor.
        build: builds the model with random weights.
        stages: decomposes a built model into the chain of stages its forward runs.
        split_points: the papers' layer names, mapped to stage paths, in forward order.
        torchvision_weights: name for ``torchvision.models.get_model_weights`` when
            torchvision publishes weights for this architecture (``--weights default``).
        dataset: the data manifest the model is evaluated on by default.
        detector: zoo name of the detection model that shares this model's backbone
            (seed 003's multi-task accounting).
    """

    name: str
    description: str
    task: str
    input_size: int
    preprocessing: Preprocessing
    build: Callable[[], nn.Module]
    stages: Callable[[nn.Module], list[Stage]]
    split_points: Mapping[str, str]
    torchvision_weights: str | None = None
    dataset: str | None = None
    detector: str | None = None
    input_channels: int = field(default=3)

    def trunk(self, model: nn.Module) -> Trunk:
        return Trunk(self.stages(model), self.split_points)


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SplitbenchError(
            f"unknown model '{name}'; valid models: {', '.join(_REGISTRY)}"
        ) from None
