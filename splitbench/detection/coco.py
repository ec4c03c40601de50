"""A COCO-format detection data set (``instances.json`` + an images folder), checked on load,
and its mAP through pycocotools' ``COCOeval`` (the reference implementation: no AP is
computed here).

>>> data = CocoDataset.load(Path("coco-val2017-mini"))              # doctest: +SKIP
>>> coco_map(detect(model, data.image_paths()), data)["map50"]      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from splitbench.errors import SplitbenchError

if TYPE_CHECKING:  # pycocotools is imported only where COCOeval runs
    from pycocotools.coco import COCO

    from splitbench.detection.yolo import Detections

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# COCO's boxes are floats derived from polygons; allow them to overhang the border by a
# rounding error before calling a box "outside the image".
BOX_SLACK_PX = 0.5

# COCOeval's largest maxDets (Params.maxDets = [1, 10, 100]): it scores the best this many
# detections of each category in each image and never looks at the rest.
COCO_MAX_DETECTIONS = 100

# COCOeval.stats, in the order summarize() prints them.
STAT_NAMES = ("map", "map50", "map75", "map_small", "map_medium", "map_large",
              "mar1", "mar10", "mar100", "mar_small", "mar_medium", "mar_large")


@dataclass(frozen=True)
class CocoImage:
    """One image record: its id, its file and the size the annotations were drawn on."""

    id: int
    path: Path
    width: int
    height: int


@dataclass(frozen=True)
class CocoDataset:
    """A checked COCO instances data set.

    Attributes:
        annotation_file: the ``instances.json`` it was read from.
        images: image records in id order.
        categories: category id → name.
        document: the JSON document (kept whole: pycocotools needs it as it is).
    """

    annotation_file: Path
    images: tuple[CocoImage, ...]
    categories: dict[int, str]
    document: dict[str, Any]

    @classmethod
    def load(cls, root: Path, annotation_file: str | Path = "instances.json", images_dir: str | Path = "images",
             *, allow_unlisted_images: bool = False) -> CocoDataset:
        """Read and check ``root/annotation_file`` with its images in ``root/images_dir``.

        Fails in one line on a missing or corrupt JSON, a record whose image file is missing,
        a box outside its image, an unknown category id, an annotation of an image with no
        record, and (unless ``allow_unlisted_images``) an image file with no record.
        """
        root = Path(root)
        json_path = root / annotation_file
        return cls.from_document(_read_json(json_path), json_path, root / images_dir,
                                 allow_unlisted_images=allow_unlisted_images)

    @classmethod
    def from_document(cls, document: dict[str, Any], source: Path, image_root: Path, *,
                      allow_unlisted_images: bool = False) -> CocoDataset:
        """A COCO document held in memory (another format converted, say), checked like a file.

        ``source`` is what messages name as where the annotations came from.
        """
        for key in ("images", "annotations", "categories"):
            if not isinstance(document.get(key), list):
                raise SplitbenchError(f"COCO annotations {source} have no '{key}' list")
        categories = _categories(document, source)
        images = _images(document, source, image_root)
        _check_annotations(document, source, {img.id: img for img in images}, categories)
        if not allow_unlisted_images:
            _check_no_unlisted(image_root, images, source)
        return cls(source, tuple(sorted(images, key=lambda img: img.id)), categories, document)

    def __len__(self) -> int:
        return len(self.images)

    def image_paths(self) -> list[Path]:
        return [img.path for img in self.images]

    def subset(self, image_ids: Iterable[int]) -> CocoDataset:
        """The same data set restricted to ``image_ids`` (and their annotations)."""
        wanted = set(image_ids)
        unknown = wanted - {img.id for img in self.images}
        if unknown:
            raise SplitbenchError(f"image ids not in {self.annotation_file}: {sorted(unknown)[:5]}")
        document = dict(self.document)
        document["images"] = [r for r in self.document["images"] if r["id"] in wanted]
        document["annotations"] = [a for a in self.document["annotations"] if a["image_id"] in wanted]
        images = tuple(img for img in self.images if img.id in wanted)
        return CocoDataset(self.annotation_file, images, self.categories, document)

    def first(self, count: int) -> CocoDataset:
        """The first ``count`` images by id (a small, reproducible slice for quick checks)."""
        return self.subset(img.id for img in self.images[:count])

    def coco(self) -> COCO:
        """A pycocotools ``COCO`` index of this data set (built from memory, quietly).

        It gets its own copy: COCOeval writes an ``ignore`` flag into the annotations.
        """
        from pycocotools.coco import COCO

        index = COCO()
        index.dataset = copy.deepcopy(self.document)
        with contextlib.redirect_stdout(io.StringIO()):
            index.createIndex()
        return index


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SplitbenchError(f"COCO annotations not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SplitbenchError(f"cannot read COCO annotations {path}: {error}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise SplitbenchError(f"COCO annotations {path} are not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise SplitbenchError(f"COCO annotations {path}: expected a JSON object, got {type(document).__name__}")
    return document


def _categories(document: dict[str, Any], path: Path) -> dict[int, str]:
    try:
        return {int(c["id"]): str(c["name"]) for c in document["categories"]}
    except (KeyError, TypeError, ValueError):
        raise SplitbenchError(f"COCO annotations {path}: a category lacks an integer 'id' or a 'name'") from None


def _images(document: dict[str, Any], path: Path, image_root: Path) -> list[CocoImage]:
    images: list[CocoImage] = []
    seen: set[int] = set()
    for record in document["images"]:
        try:
            image = CocoImage(int(record["id"]), image_root / record["file_name"],
                              int(record["width"]), int(record["height"]))
        except (KeyError, TypeError, ValueError):
            raise SplitbenchError(f"COCO annotations {path}: image record {_short(record)} needs "
                                  "id, file_name, width and height") from None
        if image.id in seen:
            raise SplitbenchError(f"COCO annotations {path}: image id {image.id} has two records")
        if not image.path.is_file():
            raise SplitbenchError(f"image file missing for image id {image.id}: {image.path}")
        seen.add(image.id)
        images.append(image)
    return images


def _check_annotations(document: dict[str, Any], path: Path, images: dict[int, CocoImage],
                       categories: dict[int, str]) -> None:
    for ann in document["annotations"]:
        try:
            ann_id, image_id, category_id = int(ann["id"]), int(ann["image_id"]), int(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            raise SplitbenchError(f"COCO annotations {path}: annotation {_short(ann)} needs id, image_id, "
                                  "category_id and a 4-number bbox") from None
        image = images.get(image_id)
        if image is None:
            raise SplitbenchError(f"annotation {ann_id} is for image id {image_id}, which has no image record "
                                  f"in {path}")
        if category_id not in categories:
            raise SplitbenchError(f"annotation {ann_id} has unknown category id {category_id} "
                                  f"(not among the {len(categories)} categories of {path})")
        if (w <= 0 or h <= 0 or x < -BOX_SLACK_PX or y < -BOX_SLACK_PX
                or x + w > image.width + BOX_SLACK_PX or y + h > image.height + BOX_SLACK_PX):
            raise SplitbenchError(f"annotation {ann_id}: bbox [{x:g}, {y:g}, {w:g}, {h:g}] (x, y, w, h) is empty "
                                  f"or outside image {image_id} ({image.path.name}, {image.width}x{image.height})")


def _check_no_unlisted(image_root: Path, images: Sequence[CocoImage], path: Path) -> None:
    if not image_root.is_dir():
        raise SplitbenchError(f"images folder not found: {image_root} (for {path})")
    listed = {img.path.resolve() for img in images}
    unlisted = sorted(p.name for p in image_root.iterdir()
                      if p.suffix.lower() in IMAGE_SUFFIXES and p.resolve() not in listed)
    if unlisted:
        more = f" and {len(unlisted) - 3} more" if len(unlisted) > 3 else ""
        raise SplitbenchError(f"image {', '.join(unlisted[:3])}{more} in {image_root} has no record in {path}")


def _short(record: Any) -> str:
    text = json.dumps(record, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def coco_countable(found: Detections, per_category: int = COCO_MAX_DETECTIONS) -> Detections:
    """The detections COCOeval can count: the first ``per_category`` of each class, in order.

    ``found`` is best first (as the decoders return it), so these are each category's best,
    and COCOeval, which sorts each image's and category's detections by score (a stable sort)
    and keeps the first ``COCO_MAX_DETECTIONS``, scores them exactly as it scores ``found``:
    what ``serve`` sends a detector's client is bounded, and its mAP is ``eval``'s.
    """
    import numpy as np
    import torch

    from splitbench.detection.yolo import Detections

    classes = found.classes.numpy()
    order = np.argsort(classes, kind="stable")
    grouped = classes[order]
    rank = np.empty(len(classes), dtype=np.int64)
    rank[order] = np.arange(len(classes)) - np.searchsorted(grouped, grouped, side="left")
    keep = torch.from_numpy(rank < per_category)
    return found if bool(keep.all()) else Detections(found.boxes[keep], found.scores[keep], found.classes[keep])


def coco_results(detections: Sequence[Detections], dataset: CocoDataset) -> list[dict]:
    """Detections (one per image of ``dataset``, in its order) as COCO results records."""
    if len(detections) != len(dataset.images):
        raise SplitbenchError(f"{len(detections)} detection lists for {len(dataset.images)} images")
    return [record for dets, image in zip(detections, dataset.images) for record in dets.to_coco(image.id)]


def coco_map(detections: Sequence[Detections], dataset: CocoDataset) -> dict[str, float]:
    """COCO bbox metrics of ``detections`` (one per image of ``dataset``, in its order).

    Returns COCOeval's 12 summary numbers as fractions: ``map`` (AP@[.5:.95]), ``map50``,
    ``map75``, ``map_small`` … ``mar100`` …, exactly as ``COCOeval.summarize`` computes them.
    """
    return evaluate_results(coco_results(detections, dataset), dataset)


def evaluate_results(results: list[dict], dataset: CocoDataset) -> dict[str, float]:
    """COCOeval bbox summary of COCO results records over ``dataset``'s images."""
    from pycocotools.cocoeval import COCOeval

    if not results:  # loadRes cannot take an empty list; nothing detected scores zero
        return {name: 0.0 for name in STAT_NAMES}
    ground_truth = dataset.coco()
    with contextlib.redirect_stdout(io.StringIO()):
        predictions = ground_truth.loadRes(results)
        evaluator = COCOeval(ground_truth, predictions, "bbox")
        evaluator.params.imgIds = [img.id for img in dataset.images]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}
