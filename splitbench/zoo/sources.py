"""Where models come from besides the zoo: torchvision by name, timm, and the user's own factory.

Each source turns a name into a :class:`~splitbench.zoo.registry.ModelSpec`, so that every
command treats a user's network exactly like a paper's:

* ``resnet18`` — any name in ``torchvision.models.list_models()``; input size and
  preprocessing come from its default weights' transforms (read offline, no download).
* ``timm:convnext_atto`` — ``timm.create_model``; preprocessing from timm's data config.
* ``path/to/net.py:build`` or ``package.module:build`` — a callable returning an
  ``nn.Module``, or a dict ``{"model": module, "input_size": 32, "mean": (…), "std": (…),
  "resize": 36, "leaf_modules": [...], "split_points": {...}}`` where the model needs more
  than the defaults (224, ImageNet normalisation).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models as tv_models

from splitbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from splitbench.errors import SplitbenchError
from splitbench.zoo.registry import ModelSpec

TIMM_PREFIX = "timm:"
DEFAULT_INPUT_SIZE = 224



@cache
def torchvision_names() -> tuple[str, ...]:
    """torchvision's classification models, then its detection and segmentation models."""
    return tuple(tv_models.list_models(module=tv_models)) + dense_prediction_names()


@cache
def dense_prediction_names() -> tuple[str, ...]:
    """Detection and segmentation models: they take image lists or return dicts of several
    tensors, so their cuts are taken in their ``backbone``, the part a split sends from."""
    return tuple(tv_models.list_models(module=tv_models.detection) + tv_models.list_models(module=tv_models.segmentation))


def is_factory(name: str) -> bool:
    """``file.py:fn`` or ``package.module:fn`` (a colon, not the timm prefix)."""
    return ":" in name and not name.startswith(TIMM_PREFIX)


def torchvision_spec(name: str) -> ModelSpec:
    """Any torchvision classification model, with its weights' preprocessing."""
    if name in dense_prediction_names():
        return _backbone_spec(name)
    weights = tv_models.get_model_weights(name).DEFAULT
    preprocessing, size = _torchvision_preprocessing(weights)
    classes = len(weights.meta.get("categories") or ()) or 1000
    return ModelSpec(
        name=name,
        description=f"{name} (torchvision), {classes} classes, {size}x{size}",
        task="classification",
        input_size=size,
        preprocessing=preprocessing,
        build=lambda: tv_models.get_model(name, weights=None),
        torchvision_weights=name,
        dataset="imagenet-val-1300" if classes == 1000 else None,
        source="torchvision",
    )


def _backbone_spec(name: str) -> ModelSpec:
    """A detection or segmentation model, cut in its backbone (profiled at 224×224 by default)."""
    task = "detection" if name in tv_models.list_models(module=tv_models.detection) else "segmentation"
    return ModelSpec(
        name=name,
        description=f"{name} (torchvision {task}); cuts in its backbone",
        task=task,
        input_size=DEFAULT_INPUT_SIZE,
        preprocessing=Preprocessing(crop=DEFAULT_INPUT_SIZE, resize=None),
        # weights_backbone=None: no ImageNet backbone download for a random-weights build
        build=lambda: tv_models.get_model(name, weights=None, weights_backbone=None),
        torchvision_weights=name,
        cut_module="backbone",
        source="torchvision",
    )


def _torchvision_preprocessing(weights: Any) -> tuple[Preprocessing, int]:
    """The ``ImageClassification`` transform of torchvision's weights, as a Preprocessing."""
    transform = weights.transforms()
    crop = int(transform.crop_size[0])
    resize = int(transform.resize_size[0]) if transform.resize_size else None
    interpolation = transform.interpolation.value
    return Preprocessing(crop=crop, resize=resize, mean=tuple(transform.mean), std=tuple(transform.std),
                         interpolation=interpolation), crop


def timm_spec(name: str) -> ModelSpec:
    """``timm:NAME``: timm's model, its default data config, and its pretrained weights for ``default``."""
    architecture = name.removeprefix(TIMM_PREFIX)
    try:
        import timm
        from timm.data import resolve_data_config
    except ImportError:
        raise SplitbenchError("timm models need timm: pip install 'splitbench[timm]'") from None
    if not timm.is_model(architecture):
        from splitbench.zoo.registry import unknown_model

        raise unknown_model(name, [TIMM_PREFIX + n for n in timm.list_models()])
    probe = timm.create_model(architecture, pretrained=False)
    config = resolve_data_config({}, model=probe)
    channels, size, _ = config["input_size"]
    crop_pct = config.get("crop_pct") or 1.0
    preprocessing = Preprocessing(
        crop=size,
        resize=int(size / crop_pct) if crop_pct < 1 else None,
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        interpolation=config.get("interpolation", "bilinear") if config.get("interpolation") in
        ("nearest", "bilinear", "bicubic") else "bilinear",
    )
    classes = getattr(probe, "num_classes", 1000)
    return ModelSpec(
        name=name,
        description=f"{architecture} (timm), {classes} classes, {size}x{size}",
        task="classification",
        input_size=size,
        input_channels=channels,
        preprocessing=preprocessing,
        build=lambda: timm.create_model(architecture, pretrained=False),
        default_weights=lambda model: _timm_pretrained(architecture, model),
        dataset="imagenet-val-1300" if classes == 1000 else None,
        source="timm",
    )


def _timm_pretrained(architecture: str, model: nn.Module) -> str:
    """Load timm's published weights (from the Hugging Face hub) into ``model``; returns their tag."""
    import timm

    try:
        pretrained = timm.create_model(architecture, pretrained=True)
    except Exception as error:  # no network, unknown tag, hub errors: all mean "not here"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SplitbenchError(
            f"cannot get timm's pretrained weights for {architecture}: {reason}; "
            f"without a network, pass --weights PATH to a local copy"
        ) from None
    model.load_state_dict(pretrained.state_dict())
    return str(getattr(pretrained, "pretrained_cfg", {}).get("hf_hub_id") or architecture)


def factory_spec(name: str) -> ModelSpec:
    """``FILE.py:FUNCTION`` or ``package.module:FUNCTION``: the user's own model."""
    factory = _import_factory(name)
    torch.manual_seed(0)  # the probe build is the first load's model: seeded like every build
    built = _call_factory(factory, name)
    model, options = _unpack(built, name)
    size = int(options.get("input_size", DEFAULT_INPUT_SIZE))
    mean = tuple(options.get("mean", IMAGENET_MEAN))
    std = tuple(options.get("std", IMAGENET_STD))
    resize = options.get("resize")
    preprocessing = Preprocessing(crop=size, resize=int(resize) if resize else None, mean=mean, std=std)
    first = [model]  # the probe build serves the first load; later loads call the factory again

    def build() -> nn.Module:
        return first.pop() if first else _unpack(_call_factory(factory, name), name)[0]

    return ModelSpec(
        name=name,
        description=f"{type(model).__name__} from {name}, {size}x{size}",
        task=str(options.get("task", "classification")),
        input_size=size,
        input_channels=int(options.get("input_channels", 3)),
        preprocessing=preprocessing,
        build=build,
        split_points=dict(options.get("split_points", {})),
        dataset=options.get("dataset"),
        leaf_modules=tuple(options.get("leaf_modules", ())),
        source="factory",
    )


def _import_factory(name: str) -> Callable[[], Any]:
    location, _, function = name.rpartition(":")
    if not function:
        raise SplitbenchError(f"model '{name}' names no function after the colon (FILE.py:FUNCTION)")
    if location.endswith(".py") or "/" in location:
        path = Path(location).expanduser()
        if not path.is_file():
            raise SplitbenchError(f"model file not found: {path}")
        module_name = f"splitbench_user_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise SplitbenchError(f"cannot import {path}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look modules up here
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            raise SplitbenchError(f"importing {path} failed: {type(error).__name__}: {_first_line(error)}") from None
    else:
        try:
            module = importlib.import_module(location)
        except Exception as error:
            raise SplitbenchError(f"cannot import module '{location}': {type(error).__name__}: {_first_line(error)}") from None
    factory = getattr(module, function, None)
    if not callable(factory):
        raise SplitbenchError(f"{location} has no function '{function}'")
    return factory


def _call_factory(factory: Callable[[], Any], name: str) -> Any:
    try:
        return factory()
    except Exception as error:
        raise SplitbenchError(f"model factory {name} raised {type(error).__name__}: {_first_line(error)}") from None


def _unpack(built: Any, name: str) -> tuple[nn.Module, Mapping[str, Any]]:
    if isinstance(built, Mapping):
        model, options = built.get("model"), built
    else:
        model, options = built, {}
    if not isinstance(model, nn.Module):
        raise SplitbenchError(
            f"model factory {name} returned {type(model).__name__}, not an nn.Module "
            f"(or a dict with the module under 'model')"
        )
    return model, options


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
