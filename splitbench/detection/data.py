"""Detection data sets as every command sees data: an ordered ``(image, label)`` list.

A :class:`DetectionDataset` is an :class:`~splitbench.data.ImageDataset` whose label is the
image's COCO id, with its checked ground truth (:class:`~splitbench.detection.CocoDataset`)
beside it, so the feature cache, ``--limit`` and the content fingerprint work unchanged, and
scoring finds each image's boxes by its id. Three sources:

* ``coco:DIR`` — ``DIR/instances.json`` with the images in ``DIR/images``;
  ``coco:FILE.json`` — that file, with the images in ``images/`` beside it (or, without such
  a folder, beside it).
* ``voc:DIR`` — PASCAL VOC's ``Annotations/*.xml`` and ``JPEGImages/`` (``--split`` names an
  ``ImageSets/Main`` list), converted to COCO ids (:mod:`splitbench.detection.voc`).
* a manifest of layout ``coco`` (``coco-val2017-mini``), checked against its file list and
  the sha256 of its annotations.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from splitbench.data.datasets import ImageDataset
from splitbench.data.manifests import Manifest, SplitInfo, file_list_sha256
from splitbench.detection.coco import CocoDataset
from splitbench.errors import SplitbenchError

DETECTION_PREFIXES = ("coco:", "voc:")
Transform = Callable[[Image.Image], Any] | None


class DetectionDataset(ImageDataset):
    """Images with boxes: ``samples`` are ``(path, COCO image id)`` in id order; ``ground_truth``
    holds the boxes of exactly these images."""

    def __init__(self, ground_truth: CocoDataset, transform: Transform = None,
                 provenance: dict[str, Any] | None = None) -> None:
        super().__init__([(str(image.path), image.id) for image in ground_truth.images], transform, provenance)
        self.ground_truth = ground_truth

    def image_sizes(self, image_ids: Sequence[int]) -> list[tuple[int, int]]:
        """(height, width) of each image as its record gives it: boxes are drawn, and scored, there."""
        sizes = {image.id: (image.height, image.width) for image in self.ground_truth.images}
        return [sizes[int(i)] for i in image_ids]

    def _subset(self, picks: Sequence[int], provenance: dict[str, Any]) -> DetectionDataset:
        ground_truth = self.ground_truth.subset(self.samples[i][1] for i in picks)
        return DetectionDataset(ground_truth, self.transform, {**self._provenance, **provenance})


def is_detection_dataset(name: str) -> bool:
    return name.startswith(DETECTION_PREFIXES)


def open_user_detection(name: str, split: str | None, transform: Transform, limit: int | None) -> DetectionDataset:
    """``coco:DIR``, ``coco:FILE.json`` or ``voc:DIR``."""
    kind, _, location = name.partition(":")
    path = Path(location).expanduser()
    if kind == "voc":
        from splitbench.detection.voc import load_voc

        if not path.is_dir():
            raise SplitbenchError(f"voc: {path} is not a folder")
        ground_truth = load_voc(path, split)
        folder = path
    else:
        if split is not None:
            raise SplitbenchError(f"coco: data sets have no splits; drop --split {split}")
        ground_truth, folder = _coco_location(path)
    provenance = {"dataset": name, "split": split, "directory": str(folder)}
    return _dataset(ground_truth, transform, provenance, limit)


def _coco_location(path: Path) -> tuple[CocoDataset, Path]:
    if path.is_dir():
        return CocoDataset.load(path), path
    if path.suffix.lower() != ".json" or not path.is_file():
        raise SplitbenchError(f"coco: {path} is neither a folder holding instances.json nor a .json file")
    images = "images" if (path.parent / "images").is_dir() else "."
    return CocoDataset.load(path.parent, path.name, images), path.parent


def open_manifest_detection(manifest: Manifest, info: SplitInfo, dataset_dir: Path, files: list[str],
                            transform: Transform, limit: int | None) -> DetectionDataset:
    """A ``coco`` manifest's split, its annotations checked against the manifest's sha256."""
    assert info.annotations is not None, "coco splits name their annotations file"
    annotations = dataset_dir / info.annotations
    if info.annotations_sha256 is not None and annotations.is_file():
        found = annotations_sha256(annotations)
        if found != info.annotations_sha256:
            raise SplitbenchError(f"dataset {manifest.name}: {annotations} differs from the manifest's "
                                  f"(sha256 expected {info.annotations_sha256[:12]}…, found {found[:12]}…)")
    ground_truth = CocoDataset.load(dataset_dir, info.annotations, info.path)
    provenance = {"dataset": manifest.name, "split": info.name, "directory": str(dataset_dir),
                  "file_list_sha256": file_list_sha256(files)}
    if manifest.test_only:
        provenance["test_only"] = True
    return _dataset(ground_truth, transform, provenance, limit)


def _dataset(ground_truth: CocoDataset, transform: Transform, provenance: dict[str, Any],
             limit: int | None) -> DetectionDataset:
    """The data set with the provenance every result records: annotations file and sha256,
    image and box counts, the file list's checksum."""
    annotations = ground_truth.annotation_file
    provenance = {
        "file_list_sha256": file_list_sha256(image.path.name for image in ground_truth.images),
        **provenance,
        "task": "detection",
        "annotations": str(annotations),
        "annotations_sha256": annotations_sha256(annotations),
        "categories": len(ground_truth.categories),
        "limit": limit,
    }
    dataset = DetectionDataset(ground_truth, transform, provenance)
    return dataset._subset(range(min(limit, len(dataset))), {}) if limit is not None else dataset


def annotations_sha256(path: Path) -> str:
    """sha256 of an annotations file, or of a folder's XML files (VOC): each file's name and
    sha256, in name order."""
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    for file in sorted(path.glob("*.xml")):
        digest.update(f"{file.name}\0{hashlib.sha256(file.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()
