"""The same darknet model through OpenCV's darknet importer (``cv2.dnn.readNetFromDarknet``):
an independent implementation to check the PyTorch port against.

OpenCV is an optional dependency (``opencv-python<5``: OpenCV 5 dropped the darknet
importer); importing this module without it fails in one line.

Two levels of reference:

- :func:`opencv_heads`: the raw tensors that feed the ``[yolo]`` layers, to compare with the
  port's outputs on the same input blob;
- :func:`opencv_detect`: detections from OpenCV's own ``[yolo]`` decoding (its Region layer)
  and its own NMS (``cv2.dnn.NMSBoxesBatched``), to compare mAPs.

:func:`opencv_forward` gives both from one pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from splitbench.detection.darknet import YoloSpec
from splitbench.detection.yolo import CONF_THRESHOLD, NMS_IOU, Detections
from splitbench.detection.yolov4_tiny import DarknetFiles
from splitbench.errors import SplitbenchError

try:
    import cv2
except ImportError as error:  # not installed, or a non-headless build without libGL
    raise SplitbenchError(f"the OpenCV reference needs opencv-python<5 ({error}): "
                          "pip install 'splitbench[detection]'") from None


def opencv_net(files: DarknetFiles, conf_threshold: float = CONF_THRESHOLD) -> cv2.dnn.Net:
    """``files`` loaded by OpenCV's darknet importer, on its plain CPU backend.

    OpenCV's ``[yolo]`` layer zeroes every class score at or below the cfg's ``thresh``,
    which defaults to 0.2 there; darknet evaluates at 0.005. The cfg is therefore read with
    ``thresh=conf_threshold`` added to each ``[yolo]`` section (in memory: nothing is written).
    """
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromDarknet"):
        raise SplitbenchError(f"OpenCV {cv2.__version__} has no darknet importer: install opencv-python<5")
    cfg = re.sub(r"^\[yolo\][ \t]*$", f"[yolo]\nthresh={conf_threshold}",
                 files.cfg.read_text(encoding="utf-8"), flags=re.MULTILINE)
    net = cv2.dnn.readNetFromDarknet(np.frombuffer(cfg.encode(), dtype=np.uint8),
                                     np.fromfile(files.weights, dtype=np.uint8))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net


def head_layer_names(net: cv2.dnn.Net, specs: Sequence[YoloSpec]) -> list[str]:
    """OpenCV's names of the layers whose outputs feed the ``[yolo]`` layers.

    The importer names layers after darknet's indices (``conv_29``); every YOLO cfg puts a
    linear ``[convolutional]`` right before each ``[yolo]``.
    """
    names = [f"conv_{spec.layer - 1}" for spec in specs]
    known = set(net.getLayerNames())
    missing = [name for name in names if name not in known]
    if missing:
        raise SplitbenchError(f"OpenCV's network has no layer {', '.join(missing)}")
    return names


def opencv_forward(net: cv2.dnn.Net, blob: torch.Tensor,
                   specs: Sequence[YoloSpec]) -> tuple[list[torch.Tensor], np.ndarray]:
    """One OpenCV pass over ``blob`` (``(N, 3, h, w)`` float in [0, 1], RGB): the raw
    ``[yolo]`` inputs, and OpenCV's decoded rows ``(N, K, 85)`` (``cx, cy, w, h`` normalised,
    objectness, 80 class scores already multiplied by objectness and thresholded)."""
    heads = head_layer_names(net, specs)
    decoded = list(net.getUnconnectedOutLayersNames())
    net.setInput(np.ascontiguousarray(blob.numpy(), dtype=np.float32))
    outputs = [np.array(out) for out in net.forward(heads + decoded)]
    count = blob.shape[0]
    rows = np.concatenate([out.reshape(count, -1, out.shape[-1]) for out in outputs[len(heads):]], axis=1)
    return [torch.from_numpy(out) for out in outputs[:len(heads)]], rows


def opencv_heads(net: cv2.dnn.Net, blob: torch.Tensor, specs: Sequence[YoloSpec]) -> list[torch.Tensor]:
    """Raw ``[yolo]`` inputs computed by OpenCV on ``blob``."""
    return opencv_forward(net, blob, specs)[0]


def opencv_detections(rows: np.ndarray, image_sizes: Sequence[tuple[int, int]], *,
                      conf_threshold: float = CONF_THRESHOLD, iou_threshold: float = NMS_IOU) -> list[Detections]:
    """Detections by OpenCV alone from :func:`opencv_forward`'s rows: its Region layers
    decoded them, ``cv2.dnn.NMSBoxesBatched`` suppresses (the net must come from
    :func:`opencv_net` with the same ``conf_threshold``)."""
    return [_suppress(sample, width, height, conf_threshold, iou_threshold)
            for sample, (height, width) in zip(rows, image_sizes)]


def opencv_detect(net: cv2.dnn.Net, blob: torch.Tensor, image_sizes: Sequence[tuple[int, int]],
                  specs: Sequence[YoloSpec], *, conf_threshold: float = CONF_THRESHOLD,
                  iou_threshold: float = NMS_IOU) -> list[Detections]:
    """OpenCV's detections on ``blob`` (one per image; ``image_sizes`` are ``(height, width)``)."""
    rows = opencv_forward(net, blob, specs)[1]
    return opencv_detections(rows, image_sizes, conf_threshold=conf_threshold, iou_threshold=iou_threshold)


def _suppress(rows: np.ndarray, width: int, height: int, conf_threshold: float,
              iou_threshold: float) -> Detections:
    box_index, classes = np.nonzero(rows[:, 5:] > conf_threshold)
    scores = rows[box_index, 5 + classes]
    cx, cy, w, h = (rows[box_index, i] for i in range(4))
    xywh = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height], axis=1)
    keep = np.asarray(cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), classes.tolist(),
                                              conf_threshold, iou_threshold), dtype=np.int64).reshape(-1)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    x1, y1 = xywh[keep, 0], xywh[keep, 1]
    xyxy = np.stack([np.clip(x1, 0, width), np.clip(y1, 0, height),
                     np.clip(x1 + xywh[keep, 2], 0, width), np.clip(y1 + xywh[keep, 3], 0, height)], axis=1)
    return Detections(torch.from_numpy(xyxy.astype(np.float32)).reshape(-1, 4),
                      torch.from_numpy(scores[keep].astype(np.float32)),
                      torch.from_numpy(classes[keep].astype(np.int64)))
