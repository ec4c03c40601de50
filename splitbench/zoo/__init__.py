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
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

# Importing the model modules registers their specs, in the order listings show them.
from splitbench.zoo import imagenet, vit, cifar_resnet, ssd, yolo  # noqa: F401  (registration)
from splitbench.checks import available_memory
from splitbench.cuts import Cut, CutGraph
from splitbench.data.datasets import ImageDataset, check_scored_data
from splitbench.errors import SplitbenchError
from splitbench.evaluation import class_scores
from splitbench.zoo.registry import ModelSpec, list_models, unknown_model, zoo_spec
from splitbench.zoo.vit_pruned import is_export, pruned_spec
from splitbench.zoo.sources import (DEFAULT_INPUT_SIZE, TIMM_PREFIX, factory_spec, is_factory, timm_spec,
                                    torchvision_names, torchvision_spec)
from splitbench.weights import AUTO, WeightsInfo, describe_weights, load_weights, torchvision_cache

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
    """The one model resolver: zoo name, torchvision name, ``timm:NAME``, ``FILE.py:FN`` or an export
    (``FILE.safetensors`` that ``prune --save-models`` wrote: the smaller model, with its weights)."""
    spec = zoo_spec(name)
    if spec is not None:
        return spec
    if is_export(name):
        return pruned_spec(name)
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
    _classes: int | None = field(default=None, repr=False)

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
        """How many classes a classifier scores (one forward pass of a zero image, done once)."""
        if self._classes is None:
            self._check_memory(self.spec.input_size)
            was_training = self.model.training
            with torch.no_grad():
                output = self.model.eval()(self.example_input())
            self.model.train(was_training)
            self._classes = int(class_scores(output, self.name).shape[-1])
        return self._classes

    def check_data(self, data: ImageDataset) -> ImageDataset:
        """Check a classifier against the data it will be scored on; returns ``data``, for chaining.

        The one place every command that scores a model on data (eval, codec, rd, prune,
        group, link, plan) checks it: labels the user listed beyond the model's outputs end
        the run by file and line, repeated or conflicting images and a label space other than
        the outputs are warned about (:func:`splitbench.data.datasets.check_scored_data`). A
        detector needs boxes and a classifier class labels: the other kind ends the run.
        """
        check_task_data(self.spec, data)
        if self.spec.task == "classification":
            check_scored_data(self.output_classes(), data, self.name)
        return data

    def require_classifier(self, command: str) -> ZooModel:
        """One line where ``command`` scores top-1/top-5 only and this model is not a classifier."""
        if self.spec.task != "classification":
            raise SplitbenchError(f"{command} scores classifiers by top-1/top-5; {self.name} is a {self.spec.task} "
                                  "model (detectors are scored by eval and codec)")
        return self

    def cuts(self, input_size: int | None = None) -> CutGraph:
        """The traced graph with every valid cut, measured at ``input_size`` (default: the model's)."""
        size = input_size or self.spec.input_size
        if size not in self._graphs:
            self._check_memory(size)
            self._graphs[size] = CutGraph.trace(
                self.traced, self.example_input(size), leaf_modules=(*self.spec.leaf_modules, *self.leaf_modules),
                aliases=dict(self.spec.split_points))
        return self._graphs[size]

    def _check_memory(self, size: int) -> None:
        """Refuse an input size whose activations would not fit in this machine's free memory.

        Tracing keeps every operation's output, so the need is about the sum of the outputs'
        sizes. It is taken from the graph at a size known to be sane and scaled by the pixels
        (activations grow with the area of the input), before anything large is allocated.
        That size is the model's own, except for a user's factory, whose own size is one of the
        sizes checked: its graph is measured at 224 at most. A model that runs at its own size
        only gives no graph there; its input alone is then the (lower) estimate.
        """
        base = min(self.spec.input_size, DEFAULT_INPUT_SIZE) if self.spec.source == "factory" else self.spec.input_size
        if size <= base:
            return
        try:
            elements = sum(math.prod(node.shape) for node in self.cuts(base).nodes if node.shape)
            about = "about"
        except SplitbenchError:
            elements, about = self.spec.input_channels * base * base, "at least"
        need = 4 * elements * (size / base) ** 2 * 2  # fp32; ×2 for what a layer holds while it runs
        free = available_memory()
        if free is not None and need > free:
            asked = f"--input-size {size}" if size != self.spec.input_size else f"input size {size}"
            raise SplitbenchError(
                f"{asked}: {self.spec.name} would need {about} {need / 2**30:,.0f} GiB for its activations; "
                f"this machine has {free / 2**30:,.1f} GiB available"
            )

    def resolve_weights(self, weights: str, pretrained: bool = False) -> tuple[str, str | None]:
        """What ``--weights`` loads: ``auto`` becomes ``default`` or ``none``, anything else stays.

        ``pretrained``: the command's figures depend on the weights (eval, codec, rd, serve,
        link, plan). ``auto`` then means the model's published weights if they are already on
        this machine (nothing is downloaded), else random init; elsewhere (profile, split, and
        train and group, which train from scratch) it means random init. Returns the choice
        and, where ``auto`` fell back to random init for a command that wanted real weights,
        why and how to get them (else None).
        """
        if self.spec.source == "export" and (weights == AUTO or _same_file(weights, self.spec.name)):
            return "default", None  # an export's weights are part of it (also where named again as --weights)
        if weights != AUTO:
            return weights, None
        if not pretrained:
            return "none", None
        found, text = published_weights_here(self.spec)
        return ("default", None) if found else ("none", text)

    def load_weights(self, weights: str, *, pretrained: bool = False) -> ZooModel:
        """Load ``weights`` (``auto``, ``none``, ``default`` or a file path) into the model, in place.

        Commands build the model with random weights first, check every other input, and
        load (perhaps download) the weights last. ``auto`` is resolved by
        :meth:`resolve_weights`; where it falls back to random init although the command's
        figures depend on the weights, one warning line says so (recorded in the result's
        provenance as ``random weights: …``).
        """
        spec = self.spec
        chosen, random_because = self.resolve_weights(weights, pretrained)
        if random_because is not None:
            from splitbench import provenance

            provenance.warn(f"random weights: {random_because}")
        info = load_weights(self.model, spec.name, chosen, spec.torchvision_weights, spec.default_weights)
        self.weights = replace(info, requested=weights) if weights == AUTO else info
        self.model.eval()
        return self

    def describe_weights(self, weights: str, *, pretrained: bool = False) -> str:
        """What ``weights`` will load (``auto`` resolved as :meth:`load_weights` will), checked
        without downloading (:func:`splitbench.weights.describe_weights`)."""
        chosen, random_because = self.resolve_weights(weights, pretrained)
        if chosen == "default" and self.spec.default_weights_note is not None:
            described = self.spec.default_weights_note()
        else:
            described = describe_weights(chosen, self.spec.torchvision_weights, self.spec.default_weights is not None)
        if weights != AUTO:
            return described
        return f"auto: {described}, as {random_because}" if random_because else f"auto: {described}"

    def split(self, at: str, input_size: int | None = None) -> tuple[nn.Module, nn.Module]:
        """Head and tail at the cut named ``at``."""
        graph = self.cuts(input_size)
        return graph.split(graph.resolve(at))


def _same_file(one: str, other: str) -> bool:
    return Path(one).expanduser().resolve() == Path(other).expanduser().resolve()


def published_weights_here(spec: ModelSpec) -> tuple[bool, str]:
    """Whether ``spec``'s published weights are on this machine without a download: (True,
    where they are) or (False, why not and how to get them). Reads no weights file."""
    if spec.torchvision_weights is not None:
        enum, cached = torchvision_cache(spec.torchvision_weights)
        if cached.is_file():
            return True, f"torchvision's {enum} (cached at {cached})"
        return False, (f"{spec.name}'s published weights (torchvision's {enum}) are not on this machine; "
                       "--weights default downloads them, --weights PATH loads a file")
    if spec.default_weights_note is not None:  # a package's files (yolov4_tiny)
        try:
            return True, spec.default_weights_note()
        except SplitbenchError as error:
            return False, f"{spec.name}'s published weights are not on this machine ({error})"
    if spec.source == "timm":
        cached = _timm_cached(spec.name.removeprefix(TIMM_PREFIX))
        if cached is not None:
            return True, f"timm's pretrained weights (cached at {cached})"
        return False, (f"timm's pretrained weights for {spec.name} are not in this machine's cache; "
                       "--weights default downloads them, --weights PATH loads a file")
    if spec.default_weights is not None:
        return False, (f"{spec.name}'s published weights are not known to be on this machine; "
                       "--weights default loads them, --weights PATH loads a file")
    return False, f"{spec.name} has no published weights; pass --weights PATH to a trained checkpoint"


def _timm_cached(architecture: str) -> str | None:
    """Where timm's pretrained weights for ``architecture`` are cached (Hugging Face hub or
    torch.hub), without any network access; None where they are not (or timm cannot say)."""
    try:
        import timm
        from huggingface_hub import try_to_load_from_cache

        config = timm.models.get_pretrained_cfg(architecture)
        if config is None:
            return None
        if config.hf_hub_id:
            repo, _, revision = config.hf_hub_id.partition("@")
            for filename in (config.hf_hub_filename, "model.safetensors", "pytorch_model.bin"):
                found = try_to_load_from_cache(repo, filename, revision=revision or None) if filename else None
                if isinstance(found, str):
                    return found
        if config.url:
            path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(config.url)
            return str(path) if path.is_file() else None
    except Exception:  # an older timm or hub API, a broken cache: not known to be here
        return None
    return None


def check_task_data(spec: ModelSpec, data: ImageDataset) -> None:
    """One line where a detector meets class labels, or a classifier meets boxes."""
    holds_boxes = getattr(data, "ground_truth", None) is not None  # a DetectionDataset
    if spec.task == "detection" and not holds_boxes:
        raise SplitbenchError(f"{spec.name} is a detection model and {data.name} holds class labels, not boxes; "
                              "pass a detection data set: --dataset coco-val2017-mini, coco:DIR or voc:DIR")
    if spec.task != "detection" and holds_boxes:
        raise SplitbenchError(f"{data.name} holds boxes for detection; {spec.name} is a {spec.task} model "
                              "(pass a data set with class labels)")


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
