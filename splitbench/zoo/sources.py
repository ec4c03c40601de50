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
import numbers
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torchvision import models as tv_models

from splitbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from splitbench.errors import SplitbenchError, unknown_name
from splitbench.zoo.registry import ModelSpec

if TYPE_CHECKING:
    from splitbench.detection.yolo import Detections

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
        build=lambda: tv_models.get_model(name, weights=None, **_built_for(name, size)),
        torchvision_weights=name,
        dataset="imagenet-val-1300" if classes == 1000 else None,
        train_dataset="imagenet-sample-1000" if classes == 1000 else None,
        source="torchvision",
    )


def _built_for(name: str, size: int) -> dict[str, Any]:
    """Builder arguments that make a model without weights the architecture of its default weights.

    A ViT's position embeddings fix its input size at build time. torchvision builds
    ``vit_h_14`` at 518 when it loads the default (SWAG) weights, but at 224 without them, which
    neither the input size (taken from those weights' transforms) nor the weights fit.
    """
    if tv_models.get_model_builder(name).__module__ == tv_models.vision_transformer.__name__:
        return {"image_size": size}
    return {}


def decode_torchvision_detections(model: nn.Module, outputs: Any, image_sizes: Sequence[tuple[int, int]]) -> list[Detections]:
    """torchvision's eval-mode detections (a dict per image: boxes ``x1, y1, x2, y2`` in the input
    image's pixels, COCO's 91-id labels, scores) as :class:`~splitbench.detection.yolo.Detections`.

    Labels that are none of COCO's 80 detection categories (the 91-id scheme's gaps, which no
    COCO-trained head predicts) are dropped: no ground truth could match them.
    """
    from splitbench.detection.yolo import COCO80_TO_91, Detections

    to_80 = torch.full((max(COCO80_TO_91) + 2,), -1, dtype=torch.int64)
    to_80[torch.tensor(COCO80_TO_91)] = torch.arange(len(COCO80_TO_91))
    decoded = []
    for found in outputs:
        labels = found["labels"].cpu().clamp(0, len(to_80) - 1)
        classes = to_80[labels]
        keep = classes >= 0
        decoded.append(Detections(found["boxes"].detach().float().cpu()[keep], found["scores"].detach().float().cpu()[keep],
                                  classes[keep]))
    return decoded


def _backbone_spec(name: str) -> ModelSpec:
    """A detection or segmentation model, cut in its backbone (profiled at 224×224 by default).

    A detector's eval-mode forward takes the images at their own sizes and resizes and
    normalises them itself; its detections are scored like any detector's.
    """
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
        dataset="coco-val2017-mini" if task == "detection" else None,  # torchvision's detectors are COCO's
        decode_detections=decode_torchvision_detections if task == "detection" else None,
        image_list_input=task == "detection",
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
        train_dataset="imagenet-sample-1000" if classes == 1000 else None,
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
    factory = import_factory(name)
    torch.manual_seed(0)  # the probe build is the first load's model: seeded like every build
    model, options = _unpack(_call_factory(factory, name), name)
    first = [model]  # the probe build serves the first load; later loads call the factory again

    def build() -> nn.Module:
        return first.pop() if first else _unpack(_call_factory(factory, name), name)[0]

    return ModelSpec(
        name=name,
        description=f"{type(model).__name__} from {name}, {options.input_size}x{options.input_size}",
        task=options.task,
        input_size=options.input_size,
        input_channels=options.input_channels,
        preprocessing=Preprocessing(crop=options.input_size, resize=options.resize, mean=options.mean, std=options.std),
        build=build,
        split_points=options.split_points,
        dataset=options.dataset,
        leaf_modules=options.leaf_modules,
        source="factory",
    )


@dataclass(frozen=True)
class FactoryOptions:
    """What a factory's dict may say besides its ``model``, each with the default it replaces."""

    input_size: int = DEFAULT_INPUT_SIZE
    input_channels: int = 3
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: int | None = None
    task: str = "classification"
    dataset: str | None = None
    split_points: dict[str, str] = field(default_factory=dict)
    leaf_modules: tuple[str, ...] = ()


FACTORY_KEYS = ("model", *(option.name for option in fields(FactoryOptions)))
TASKS = ("classification", "detection", "segmentation")


def factory_options(built: Mapping[str, Any], name: str) -> FactoryOptions:
    """The one check of a factory's dict: every key known, every value of its kind, as one line each.

    A value of the wrong kind would otherwise surface later as a traceback (``int('big')``) or,
    worse, as something else: ``tuple("0.5")`` is three characters, ``tuple("layer1")`` six names.
    """
    for key in built:
        if key not in FACTORY_KEYS:
            raise unknown_name("key", str(key), FACTORY_KEYS, where=f" in the dict of model factory {name}")
    where = f"model factory {name}"
    return FactoryOptions(
        input_size=_whole(built, "input_size", DEFAULT_INPUT_SIZE, 8, where),
        input_channels=_whole(built, "input_channels", 3, 1, where),
        mean=_three_numbers(built, "mean", IMAGENET_MEAN, where),
        std=_three_numbers(built, "std", IMAGENET_STD, where, positive=True),
        resize=_whole(built, "resize", None, 1, where),
        task=_choice(built, "task", "classification", TASKS, where),
        dataset=_text(built, "dataset", where),
        split_points=_name_map(built, "split_points", where),
        leaf_modules=_names(built, "leaf_modules", where),
    )


def _whole(built: Mapping[str, Any], key: str, default: Any, minimum: int, where: str) -> Any:
    """A whole number ≥ ``minimum`` (``32.0`` counts), or ``default`` (its type: int or None) when absent."""
    value = built.get(key)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise SplitbenchError(f"{where}: {key} must be a whole number ≥ {minimum}, got {value!r}")
    return int(value)


def _three_numbers(built: Mapping[str, Any], key: str, default: tuple[float, float, float], where: str,
                   positive: bool = False) -> tuple[float, float, float]:
    value = built.get(key)
    if value is None:
        return default
    if hasattr(value, "tolist"):  # a NumPy array or a tensor
        value = value.tolist()
    given = tuple(value) if isinstance(value, (list, tuple)) else ()
    if len(given) != 3 or not all(isinstance(n, numbers.Real) and not isinstance(n, bool) for n in given) \
            or (positive and min(given) <= 0):
        kind = "positive numbers" if positive else "numbers"
        raise SplitbenchError(f"{where}: {key} must be 3 {kind} (one per colour channel), got {value!r}")
    return tuple(float(n) for n in given)  # type: ignore[return-value]


def _choice(built: Mapping[str, Any], key: str, default: str, valid: tuple[str, ...], where: str) -> str:
    value = built.get(key, default)
    if value not in valid:
        raise SplitbenchError(f"{where}: {key} must be one of {', '.join(valid)}, got {value!r}")
    return value


def _text(built: Mapping[str, Any], key: str, where: str) -> str | None:
    value = built.get(key)
    if value is not None and not isinstance(value, str):
        raise SplitbenchError(f"{where}: {key} must be a data set name, got {value!r}")
    return value


def _name_map(built: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    value = built.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise SplitbenchError(f"{where}: {key} must map your names to cut names or module paths "
                              f"({{'bottleneck': 'layer2'}}), got {value!r}")
    return dict(value)


def _names(built: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = built.get(key)
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise SplitbenchError(f"{where}: {key} must be a list of module paths or class names, got {value!r}")
    return tuple(value)


def import_factory(name: str, kind: str = "model") -> Callable[..., Any]:
    """The user's ``FUNCTION`` in ``FILE.py`` or ``package.module`` (a ``kind``: model, codec); every
    failure is one line naming the file or module."""
    location, _, function = name.rpartition(":")
    if not function:
        raise SplitbenchError(f"{kind} '{name}' names no function after the colon (FILE.py:FUNCTION)")
    if location.endswith(".py") or "/" in location:
        path = Path(location).expanduser()
        if not path.is_file():
            raise SplitbenchError(f"{kind} file not found: {path}")
        module_name = f"splitbench_user_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise SplitbenchError(f"cannot import {path}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look modules up here
        try:
            spec.loader.exec_module(module)
        except SystemExit as exit:
            raise SplitbenchError(f"importing {path} called sys.exit({exit.code!r})") from None
        except Exception as error:
            raise SplitbenchError(f"importing {path} failed: {type(error).__name__}: {_first_line(error)}") from None
    else:
        try:
            module = importlib.import_module(location)
        except SystemExit as exit:
            raise SplitbenchError(f"importing module '{location}' called sys.exit({exit.code!r})") from None
        except Exception as error:
            raise SplitbenchError(f"cannot import module '{location}': {type(error).__name__}: {_first_line(error)}") from None
    factory = getattr(module, function, None)
    if not callable(factory):
        raise SplitbenchError(f"{location} has no function '{function}'")
    return factory


def _call_factory(factory: Callable[[], Any], name: str) -> Any:
    try:
        return factory()
    except SystemExit as exit:  # not an Exception: it would end splitbench with the factory's code
        raise SplitbenchError(f"model factory {name} called sys.exit({exit.code!r}) instead of returning a model") from None
    except Exception as error:
        raise SplitbenchError(f"model factory {name} raised {type(error).__name__}: {_first_line(error)}") from None


def _unpack(built: Any, name: str) -> tuple[nn.Module, FactoryOptions]:
    model = built.get("model") if isinstance(built, Mapping) else built
    if not isinstance(model, nn.Module):
        raise SplitbenchError(
            f"model factory {name} returned {type(model).__name__}, not an nn.Module "
            f"(or a dict with the module under 'model')"
        )
    return model, factory_options(built, name) if isinstance(built, Mapping) else FactoryOptions()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
