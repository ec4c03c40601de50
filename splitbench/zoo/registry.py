"""Model specifications: how to build a model, how to feed it, and the papers' names for its cuts."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

from splitbench.data.transforms import Preprocessing
from splitbench.errors import SplitbenchError

if TYPE_CHECKING:
    from splitbench.detection.yolo import Detections
    from splitbench.weights import WeightsInfo

# A detector's output for a batch (and the model that made it) → one Detections per image,
# boxes in the pixels of the original images, whose (height, width) are given.
DetectionDecoder = Callable[[nn.Module, Any, Sequence[tuple[int, int]]], "list[Detections]"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything the tool needs to know about one model, whatever its source.

    Attributes:
        name: what users type (``vgg16``, ``resnet18``, ``timm:resnet18``, ``net.py:build``).
        description: one line for listings and reports.
        task: ``classification`` or ``detection``.
        input_size: side of the square input the model is profiled and split at.
        preprocessing: how an image file becomes the model's input tensor.
        build: builds the model with random weights.
        split_points: the papers' layer names, mapped to cut names or module paths
            (see :mod:`splitbench.cuts`), in forward order.
        torchvision_weights: name for ``torchvision.models.get_model_weights`` when
            torchvision publishes weights for this architecture (``--weights default``).
        default_weights: loads the source's published weights into a built model, for
            sources other than torchvision (timm, a package's files); returns their name, or
            a whole ``WeightsInfo`` where it knows their sha256. ``None`` where there are none.
        default_weights_note: what ``default`` loads, checked without loading it (for
            ``--dry-run``); ``None``: "the source's published weights".
        dataset: the data manifest the model is evaluated on by default.
        train_dataset: the data a command that trains on this model's features uses by
            default (``None``: the train split of ``dataset``).
        default_cuts: the papers' split point per study (``codec``, ``rd``), where a
            command's ``--at`` defaults to one.
        detector: zoo name of the detection model that shares this model's backbone
            (seed 003's multi-task accounting).
        leaf_modules: module paths or type names that tracing keeps whole (no cut inside).
        cut_module: the submodule whose forward the cuts are taken in (a detector's
            ``backbone``); empty for the whole model.
        source: ``zoo``, ``torchvision``, ``timm``, ``factory`` or ``export`` (a pruned model's file).
        decode_detections: a detector's outputs → detections (``None``: not a detector whose
            outputs splitbench can score, such as the random-weight SSD224s).
        image_list_input: the model takes a list of images at their own sizes and resizes and
            normalises them itself (torchvision's detectors); otherwise a batch of
            ``preprocessing``'s tensors.
    """

    name: str
    description: str
    task: str
    input_size: int
    preprocessing: Preprocessing
    build: Callable[[], nn.Module]
    split_points: Mapping[str, str] = field(default_factory=dict)
    torchvision_weights: str | None = None
    default_weights: Callable[[nn.Module], str | WeightsInfo] | None = None
    default_weights_note: Callable[[], str] | None = None
    dataset: str | None = None
    train_dataset: str | None = None
    default_cuts: Mapping[str, str] = field(default_factory=dict)
    detector: str | None = None
    input_channels: int = 3
    leaf_modules: tuple[str, ...] = ()
    cut_module: str = ""
    source: str = "zoo"
    decode_detections: DetectionDecoder | None = None
    image_list_input: bool = False


    def default_cut(self, study: str) -> str | None:
        """The papers' split point of ``study`` (``codec``, ``rd``) for this model, if they have one."""
        return self.default_cuts.get(study)


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """The zoo's own models (the papers' networks); any torchvision or timm model works too."""
    return list(_REGISTRY)


def zoo_spec(name: str) -> ModelSpec | None:
    return _REGISTRY.get(name)


def unknown_model(name: str, candidates: list[str]) -> SplitbenchError:
    """One line: the name, close matches among ``candidates``, the valid kinds of name."""
    close = difflib.get_close_matches(name, list(dict.fromkeys(candidates)), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return SplitbenchError(
        f"unknown model '{name}'; {hint}valid models: the zoo ({', '.join(_REGISTRY)}), any name in "
        f"torchvision.models.list_models(), timm:NAME, or FILE.py:FUNCTION / package.module:FUNCTION"
    )
