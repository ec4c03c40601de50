"""YOLO pre- and post-processing as darknet scores its COCO models.

Pre-processing follows darknet's ``detector map`` for a cfg without ``letter_box=1`` (as
``yolov4-tiny.cfg`` is): the RGB image, scaled to [0, 1], is stretched to the network size
(416×416) with darknet's ``resize_image``, a separable bilinear resize that maps corner pixel
to corner pixel (``align_corners=True``). No letterbox: the aspect ratio is not kept, exactly
as the network was evaluated by its authors. (OpenCV's ``blobFromImage`` stretches too, but
with half-pixel bilinear sampling; ``align_corners=False`` gives that.)

Post-processing follows darknet's ``[yolo]`` layer and ``validate_detector_map``: sigmoid on
x, y, objectness and classes; ``x·scale_x_y − (scale_x_y − 1)/2`` grid sensitivity; width
and height ``exp(t)·anchor / input size``; a score ``objectness × class probability`` for
every class (a box may be reported for several classes, as darknet's COCO output does) kept
above 0.005; greedy per-class NMS at IoU 0.45; boxes clipped to the image.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.ops import batched_nms

from splitbench.detection.darknet import Darknet, YoloSpec
from splitbench.errors import SplitbenchError

# darknet's validate_detector_map (the figures in its README): keep scores above 0.005,
# suppress same-class boxes overlapping by more than 0.45 IoU.
CONF_THRESHOLD = 0.005
NMS_IOU = 0.45

# COCO's 80 detection classes in darknet's coco.names order → their ids in COCO's 91-id
# scheme (instances_*.json numbers categories 1..90 with 10 gaps).
COCO80_TO_91: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90,
)

ImageInput = str | Path | Image.Image


@dataclass(frozen=True)
class Detections:
    """One image's detections, best first.

    Attributes:
        boxes: ``(n, 4)`` float32 ``x1, y1, x2, y2`` in pixels of the original image.
        scores: ``(n,)`` objectness × class probability.
        classes: ``(n,)`` int64 class index in ``coco.names`` order (0..79).
    """

    boxes: Tensor
    scores: Tensor
    classes: Tensor

    def __len__(self) -> int:
        return int(self.scores.numel())

    @property
    def category_ids(self) -> Tensor:
        """COCO category ids (91-id scheme) of :attr:`classes`."""
        return torch.tensor(COCO80_TO_91, dtype=torch.int64)[self.classes]

    def to_coco(self, image_id: int) -> list[dict]:
        """COCO results records (``bbox`` as x, y, w, h) for pycocotools' ``loadRes``."""
        xywh = self.boxes.clone()
        xywh[:, 2:] -= xywh[:, :2]
        return [{"image_id": int(image_id), "category_id": int(c), "bbox": [float(v) for v in box],
                 "score": float(s)}
                for box, s, c in zip(xywh.tolist(), self.scores.tolist(), self.category_ids.tolist())]


def load_rgb(image: ImageInput) -> Tensor:
    """``image`` (a path or a PIL image) as a ``(3, H, W)`` uint8 RGB tensor."""
    if isinstance(image, Image.Image):
        return _pil_to_tensor(image)
    try:
        with Image.open(image) as opened:
            return _pil_to_tensor(opened)
    except FileNotFoundError:
        raise SplitbenchError(f"image not found: {image}") from None
    except (UnidentifiedImageError, OSError) as error:
        raise SplitbenchError(f"cannot decode image {image}: {error}") from None


def _pil_to_tensor(image: Image.Image) -> Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def preprocess(images: Sequence[Tensor], size: tuple[int, int] = (416, 416), *,
               align_corners: bool = True) -> Tensor:
    """Stack ``(3, H, W)`` uint8 RGB images into the network's ``(N, 3, h, w)`` float input.

    Scaled to [0, 1] before resizing, as darknet does (it resizes float images).
    """
    batch = [F.interpolate(img.float().div(255.0)[None], size=size, mode="bilinear",
                           align_corners=align_corners, antialias=False) for img in images]
    return torch.cat(batch)


def decode(heads: Sequence[Tensor], specs: Sequence[YoloSpec],
           input_size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """Raw ``[yolo]`` inputs → boxes ``(N, K, 4)`` as normalised ``cx, cy, w, h``, objectness
    ``(N, K)`` and class probabilities ``(N, K, C)``, all heads concatenated."""
    parts = [_decode_head(raw, spec, input_size) for raw, spec in zip(heads, specs)]
    return tuple(torch.cat(p, dim=1) for p in zip(*parts))  # type: ignore[return-value]


def _decode_head(raw: Tensor, spec: YoloSpec, input_size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    n, _, rows, cols = raw.shape
    anchors = len(spec.anchors)
    # darknet lays each anchor's 5 + C channels out as consecutive planes.
    p = raw.float().view(n, anchors, 5 + spec.classes, rows, cols).permute(0, 1, 3, 4, 2)
    gy, gx = torch.meshgrid(torch.arange(rows, device=raw.device), torch.arange(cols, device=raw.device),
                            indexing="ij")
    s = spec.scale_x_y
    xy = torch.sigmoid(p[..., 0:2]) * s - 0.5 * (s - 1.0)
    cx = (xy[..., 0] + gx) / cols
    cy = (xy[..., 1] + gy) / rows
    anchor = torch.tensor(spec.anchors, dtype=torch.float32, device=raw.device).view(1, anchors, 1, 1, 2)
    wh = torch.exp(p[..., 2:4]) * anchor / torch.tensor([input_size[1], input_size[0]], device=raw.device)
    boxes = torch.stack([cx, cy, wh[..., 0], wh[..., 1]], dim=-1)
    return (boxes.reshape(n, -1, 4), torch.sigmoid(p[..., 4]).reshape(n, -1),
            torch.sigmoid(p[..., 5:]).reshape(n, -1, spec.classes))


def postprocess(heads: Sequence[Tensor], specs: Sequence[YoloSpec], input_size: tuple[int, int],
                image_sizes: Sequence[tuple[int, int]], *, conf_threshold: float = CONF_THRESHOLD,
                iou_threshold: float = NMS_IOU, max_detections: int | None = None) -> list[Detections]:
    """Raw head outputs of a batch → one :class:`Detections` per image (``image_sizes`` are
    ``(height, width)`` of the originals, to which boxes are scaled)."""
    boxes, objectness, probs = decode(heads, specs, input_size)
    scores = objectness.unsqueeze(-1) * probs
    return [select(boxes[i], scores[i], size, conf_threshold, iou_threshold, max_detections)
            for i, size in enumerate(image_sizes)]


def select(boxes: Tensor, scores: Tensor, image_size: tuple[int, int], conf_threshold: float = CONF_THRESHOLD,
           iou_threshold: float = NMS_IOU, max_detections: int | None = None) -> Detections:
    """One image's candidates (normalised ``cx, cy, w, h`` boxes ``(K, 4)``, per-class scores
    ``(K, C)``) → thresholded, per-class NMS'd, clipped detections in pixels."""
    height, width = image_size
    box_index, classes = (scores > conf_threshold).nonzero(as_tuple=True)
    chosen = scores[box_index, classes]
    cx, cy, w, h = boxes[box_index].unbind(-1)
    scale = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1) * scale
    # NMS on the unclipped boxes, then clip, as darknet does.
    keep = batched_nms(xyxy, chosen, classes, iou_threshold)
    if max_detections is not None:
        keep = keep[:max_detections]
    xyxy = xyxy[keep]
    xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width)
    xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height)
    return Detections(xyxy.cpu(), chosen[keep].cpu(), classes[keep].cpu())


@torch.no_grad()
def detect(model: Darknet, images: Iterable[ImageInput | Tensor], *, batch_size: int = 8,
           conf_threshold: float = CONF_THRESHOLD, iou_threshold: float = NMS_IOU,
           max_detections: int | None = None, align_corners: bool = True) -> list[Detections]:
    """Detect objects in ``images`` (paths, PIL images or ``(3, H, W)`` uint8 RGB tensors).

    Runs ``model`` on its own device in batches; returns one :class:`Detections` per image,
    in order, with boxes in that image's pixels.
    """
    model.eval()
    device = next(model.parameters()).device
    results: list[Detections] = []
    pending: list[Tensor] = []
    for image in images:
        pending.append(image if isinstance(image, Tensor) else load_rgb(image))
        if len(pending) == batch_size:
            results += _detect_batch(model, pending, device, conf_threshold, iou_threshold,
                                     max_detections, align_corners)
            pending = []
    if pending:
        results += _detect_batch(model, pending, device, conf_threshold, iou_threshold,
                                 max_detections, align_corners)
    return results


def _detect_batch(model: Darknet, images: list[Tensor], device: torch.device, conf_threshold: float,
                  iou_threshold: float, max_detections: int | None, align_corners: bool) -> list[Detections]:
    batch = preprocess(images, model.input_size, align_corners=align_corners).to(device)
    heads = model(batch)
    sizes = [(int(img.shape[1]), int(img.shape[2])) for img in images]
    return postprocess(heads, model.yolo, model.input_size, sizes, conf_threshold=conf_threshold,
                       iou_threshold=iou_threshold, max_detections=max_detections)
