"""Models: one resolver for every source, and their cuts.

>>> from splitbench.zoo import load_model
>>> model = load_model("resnet18")            # torchvision by name; also timm:NAME, FILE.py:FN
>>> cuts = model.cuts()                        # every valid split point, from the traced graph
>>> head, tail = cuts.split("layer2")          # real modules: tail(head(x)) == model(x)

The zoo's own models (the papers' networks) add the papers' names for their cuts
(``vgg16``'s ``pool4``, ``mobilenet_v2``'s ``bottleneck6``), which resolve like any cut name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

# Importing the model modules registers their specs, in the order listings show them.
from splitbench.zoo import imagenet, vit, cifar_resnet, ssd  # noqa: F401  (registration)
from splitbench.cuts import Cut, CutGraph
from splitbench.errors import SplitbenchError
from splitbench.preflight import available_memory
from splitbench.zoo.registry import ModelSpec, list_models, unknown_model, zoo_spec
from splitbench.zoo.sources import TIMM_PREFIX, factory_spec, is_factory, timm_spec, torchvision_names, torchvision_spec
from splitbench.weights import WeightsInfo, load_weights

__all__ = [
    "Cut",
    "CutGraph",
    "ModelSpec",
    "ZooModel",
    "count_parameters",
    "get_spec",
    "list_models",
    "load_model",
]


def get_spec(name: str) -> ModelSpec:
    """The one model resolver: zoo name, torchvision name, ``timm:NAME`` or ``FILE.py:FN``."""
    spec = zoo_spec(name)
    if spec is not None:
        return spec
    if name.startswith(TIMM_PREFIX):
        return timm_spec(name)
    if is_factory(name):
        return factory_spec(name)
    if name in torchvision_names():
        return torchvision_spec(name)
    raise unknown_model(name, [*list_models(), *torchvision_names()])


@dataclass
class ZooModel:
    """A built model in evaluation mode, where its weights came from, and its cuts."""

    spec: ModelSpec
    model: nn.Module
    weights: WeightsInfo
    leaf_modules: tuple[str, ...] = ()
    _graphs: dict[int, CutGraph] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def traced(self) -> nn.Module:
        """What the cuts are taken in: the model, or its ``spec.cut_module`` (a detector's backbone)."""
        return self.model.get_submodule(self.spec.cut_module) if self.spec.cut_module else self.model

    def example_input(self, input_size: int | None = None) -> torch.Tensor:
        """A zero image of the model's input size (counts and MACs do not depend on values)."""
        size = input_size or self.spec.input_size
        return torch.zeros(1, self.spec.input_channels, size, size)

    def output_classes(self) -> int:
        """How many classes a classifier scores (one forward pass of a zero image)."""
        was_training = self.model.training
        with torch.no_grad():
            logits = self.model.eval()(self.example_input())
        self.model.train(was_training)
        return int(logits.shape[-1])

    def cuts(self, input_size: int | None = None) -> CutGraph:
        """The traced graph with every valid cut, measured at ``input_size`` (default: the model's)."""
        size = input_size or self.spec.input_size
        if size not in self._graphs:
            if size > self.spec.input_size:
                self._check_memory(size)
            self._graphs[size] = CutGraph.trace(
                self.traced, self.example_input(size), leaf_modules=(*self.spec.leaf_modules, *self.leaf_modules),
                aliases=dict(self.spec.split_points))
        return self._graphs[size]

    def _check_memory(self, size: int) -> None:
        """Refuse an input size whose activations would not fit in this machine's free memory.

        Tracing keeps every operation's output, so the need is about the sum of the outputs'
        sizes. It is taken from the graph at the model's own size and scaled by the pixels
        (activations grow with the area of the input), before anything large is allocated.
        """
        base = self.cuts(self.spec.input_size)
        elements = sum(math.prod(node.shape) for node in base.nodes if node.shape)
        need = 4 * elements * (size / self.spec.input_size) ** 2 * 2  # fp32; ×2 for what a layer holds while it runs
        free = available_memory()
        if free is not None and need > free:
            raise SplitbenchError(
                f"--input-size {size}: {self.spec.name} would need about {need / 2**30:,.0f} GiB for its activations; "
                f"this machine has {free / 2**30:,.1f} GiB available"
            )

    def load_weights(self, weights: str) -> ZooModel:
        """Load ``weights`` (``none``, ``default`` or a file path) into the model, in place.

        Commands build the model with random weights first, check every other input, and
        load (perhaps download) the weights last.
        """
        spec = self.spec
        self.weights = load_weights(self.model, spec.name, weights, spec.torchvision_weights, spec.default_weights)
        self.model.eval()
        return self

    def describe_weights(self, weights: str) -> str:
        """What ``weights`` will load, checked without downloading (see :mod:`splitbench.preflight`)."""
        from splitbench.preflight import describe_weights

        return describe_weights(weights, self.spec.torchvision_weights, self.spec.default_weights is not None)

    def split(self, at: str, input_size: int | None = None) -> tuple[nn.Module, nn.Module]:
        """Head and tail at the cut named ``at``."""
        graph = self.cuts(input_size)
        return graph.split(graph.resolve(at))


def load_model(name: str, weights: str = "none", *, leaf_modules: Iterable[str] = (),
               mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> ZooModel:
    """Build model ``name`` (any source) and load ``weights`` (``none``, ``default`` or a file path).

    ``leaf_modules`` (module paths or type names) are kept whole when the model is traced
    for its cuts: the way out for a submodule that torch.fx cannot trace. ``mean`` and
    ``std`` replace the normalisation of the source's preprocessing (for a model whose
    source does not say what it was trained with).
    """
    spec = get_spec(name)
    if mean is not None or std is not None:
        preprocessing = replace(spec.preprocessing, mean=tuple(mean or spec.preprocessing.mean),
                                std=tuple(std or spec.preprocessing.std))
        spec = replace(spec, preprocessing=preprocessing)
    torch.manual_seed(0)  # the same random weights on every run, for comparable timings
    model = spec.build().eval()
    return ZooModel(spec, model, WeightsInfo("none"), tuple(leaf_modules)).load_weights(weights)


def count_parameters(modules: Iterable[nn.Module]) -> int:
    """Number of distinct parameter elements in ``modules`` (shared tensors counted once)."""
    seen: dict[int, int] = {}
    for module in modules:
        for parameter in module.parameters():
            seen[id(parameter)] = parameter.numel()
    return sum(seen.values())
