"""PASCAL VOC annotations (``Annotations/*.xml`` + ``JPEGImages/``) as a checked COCO data set.

VOC's 20 classes are all COCO categories, so each object takes its COCO id (``aeroplane`` →
airplane, 5; ``tvmonitor`` → tv, 72; …) and the converted ground truth lists those 20
categories only. A COCO-trained detector is then scored by the same ``COCOeval`` as on COCO,
over VOC's 20 classes: COCOeval evaluates the ground truth's categories, so detections of
COCO's other 60 classes are not counted. The figures are COCO's (AP@[.5:.95] with 101-point
interpolation; AP50 is the closest to VOC's mAP, which interpolates 11 points in VOC2007).

Boxes: VOC's pixel coordinates are 1-based and inclusive, so ``xmin..xmax`` becomes
``x = xmin − 1``, ``w = xmax − xmin + 1`` (Detectron's conversion). A ``difficult`` object
becomes a crowd region (``iscrowd=1``): VOC's own evaluation ignores difficult objects, and
COCOeval's nearest equivalent ignores detections that match a crowd region instead of
counting them as false positives.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

from splitbench.detection.coco import IMAGE_SUFFIXES, CocoDataset
from splitbench.errors import SplitbenchError

# VOC class → (COCO category id, COCO name).
VOC_TO_COCO: dict[str, tuple[int, str]] = {
    "aeroplane": (5, "airplane"), "bicycle": (2, "bicycle"), "bird": (16, "bird"), "boat": (9, "boat"),
    "bottle": (44, "bottle"), "bus": (6, "bus"), "car": (3, "car"), "cat": (17, "cat"), "chair": (62, "chair"),
    "cow": (21, "cow"), "diningtable": (67, "dining table"), "dog": (18, "dog"), "horse": (19, "horse"),
    "motorbike": (4, "motorcycle"), "person": (1, "person"), "pottedplant": (64, "potted plant"),
    "sheep": (20, "sheep"), "sofa": (63, "couch"), "train": (7, "train"), "tvmonitor": (72, "tv"),
}


def load_voc(root: Path, image_set: str | None = None) -> CocoDataset:
    """``root/Annotations/*.xml`` with ``root/JPEGImages`` as a :class:`CocoDataset`.

    ``image_set`` reads the image ids from ``root/ImageSets/Main/<image_set>.txt`` (VOC's
    ``test``, ``val`` …); without it every XML file is one image, and every image in
    ``JPEGImages`` must have one. Image ids are 1, 2, … in the order of the file names.
    """
    annotations = root / "Annotations"
    if not annotations.is_dir():
        raise SplitbenchError(f"voc: {root} has no Annotations folder (expected Annotations/*.xml and JPEGImages/)")
    files = _annotation_files(root, annotations, image_set)
    document: dict[str, Any] = {"images": [], "annotations": [], "categories": [
        {"id": coco_id, "name": name, "supercategory": voc} for voc, (coco_id, name) in VOC_TO_COCO.items()]}
    for image_id, path in enumerate(files, start=1):
        image, objects = _read_annotation(path, image_id, len(document["annotations"]))
        document["images"].append(image)
        document["annotations"] += objects
    return CocoDataset.from_document(document, annotations, root / "JPEGImages",
                                     allow_unlisted_images=image_set is not None)


def _annotation_files(root: Path, annotations: Path, image_set: str | None) -> list[Path]:
    if image_set is None:
        files = sorted(annotations.glob("*.xml"))
        if not files:
            raise SplitbenchError(f"voc: no annotation files in {annotations}")
        return files
    listing = root / "ImageSets" / "Main" / f"{image_set}.txt"
    if not listing.is_file():
        raise SplitbenchError(f"voc: no image set '{image_set}': {listing} not found")
    names = [line.split()[0] for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    missing = [name for name in names if not (annotations / f"{name}.xml").is_file()]
    if missing:
        raise SplitbenchError(f"voc: {listing} lists {missing[0]}, which has no {annotations / (missing[0] + '.xml')}")
    return [annotations / f"{name}.xml" for name in names]


def _read_annotation(path: Path, image_id: int, first_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One XML file → its COCO image record and annotations (ids from ``first_id + 1``)."""
    try:
        tree = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as error:
        raise SplitbenchError(f"voc: cannot read {path}: {error}") from None
    name = _text(tree, "filename", path)
    if not name.lower().endswith(IMAGE_SUFFIXES):
        name = f"{name}.jpg"  # some converters drop the suffix; VOC's images are JPEG
    image = {"id": image_id, "file_name": name, "width": int(_number(tree, "size/width", path)),
             "height": int(_number(tree, "size/height", path))}
    objects = [_object(element, path, image_id, first_id + i + 1) for i, element in enumerate(tree.iter("object"))]
    return image, objects


def _object(element: ElementTree.Element, path: Path, image_id: int, ann_id: int) -> dict[str, Any]:
    label = _text(element, "name", path).strip().lower()
    if label not in VOC_TO_COCO:
        raise SplitbenchError(f"voc: {path}: object '{label}' is not one of VOC's 20 classes")
    x1, y1, x2, y2 = (_number(element, f"bndbox/{key}", path) for key in ("xmin", "ymin", "xmax", "ymax"))
    width, height = x2 - x1 + 1, y2 - y1 + 1
    difficult = element.findtext("difficult", "0").strip() == "1"
    return {"id": ann_id, "image_id": image_id, "category_id": VOC_TO_COCO[label][0],
            "bbox": [x1 - 1, y1 - 1, width, height], "area": width * height, "iscrowd": int(difficult)}


def _text(element: ElementTree.Element, key: str, path: Path) -> str:
    value = element.findtext(key)
    if value is None or not value.strip():
        raise SplitbenchError(f"voc: {path} has no <{key}>")
    return value.strip()


def _number(element: ElementTree.Element, key: str, path: Path) -> float:
    text = _text(element, key, path)
    try:
        return float(text)
    except ValueError:
        raise SplitbenchError(f"voc: {path}: <{key}> is {text!r}, not a number") from None
