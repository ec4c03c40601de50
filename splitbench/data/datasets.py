"""Image classification datasets opened through their manifests.

Every dataset is reduced to the same thing, a sorted list of (path, label), so that sample
``i`` is the same image on every machine and ``limit=N`` always means the same N images.
Decoding problems are reported as :class:`SplitbenchError` naming the file, because a bare
``PIL.UnidentifiedImageError`` from inside a DataLoader worker does not say which image of
60 000 is broken.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from splitbench.data.hashes import Digests, content_digests
from splitbench.data.images import load_rgb_image
from splitbench.data.manifests import (
    Manifest,
    SplitInfo,
    class_folder_names,
    dataset_directory,
    file_list_sha256,
    load_manifest,
    resolve_data_root,
    verify_manifest,
)
from splitbench.data.user import is_user_dataset, user_samples
from splitbench.errors import SplitbenchError
from splitbench.provenance import warn

# Paths are kept as strings: building 50 000 Path objects costs most of a second.
Sample = tuple[str, int]


class ImageDataset(Dataset):
    """A fixed, ordered list of (image path, label) with an optional transform.

    ``dataset[i]`` is ``(transform(image), label)``; without a transform the image is the
    decoded RGB ``PIL.Image`` (as in torchvision), which is what image codecs want.
    ``origins`` says where the user listed each sample (``line 7`` of a CSV, ``class folder
    cats``), for messages about their labels; manifests' data sets have none.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[[Image.Image], Any] | None = None,
        provenance: dict[str, Any] | None = None,
        origins: Sequence[str] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self._provenance = dict(provenance or {})
        self.origins = list(origins) if origins is not None else None
        self._digests: Digests | None = None
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        image = load_rgb_image(path)
        return (self.transform(image) if self.transform is not None else image), label

    def fingerprint(self, hash_cache: Path | None = None) -> str:
        """sha256 over every sample's content (the sha256 of its bytes) and label, in order.

        File names alone (the manifests' checksum) cannot tell two data roots apart that hold
        the same names with other contents, nor sizes and times an image replaced in place;
        the bytes can. Each file's digest is remembered under ``hash_cache`` (default
        ``cache/file-hashes``) with its inode, size, mtime and ctime, so a rerun reads only
        the files that changed (:mod:`splitbench.data.hashes`). Caches key on it.
        """
        if self._fingerprint is not None:
            return self._fingerprint
        digests, digest = self._content(hash_cache), hashlib.sha256()
        for content, (_, label) in zip(digests.values, self.samples):
            digest.update(f"{content}\0{label}\n".encode())
        digests.remember()  # runs that key caches or write results ask for it; a dry run never does
        self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def content_digests(self) -> list[str]:
        """The sha256 of every sample's file, in order, without writing them to the store.

        Checks before any work (``--dry-run`` included) use these and leave the cache folder
        alone; :meth:`fingerprint` then writes them.
        """
        return self._content(None).values

    def _content(self, hash_cache: Path | None) -> Digests:
        if self._digests is None:  # computed once per data set object
            self._digests = content_digests((path for path, _ in self.samples), hash_cache)
        return self._digests

    def provenance(self) -> dict[str, Any]:
        """Which data produced a result: manifest, split, folder, checksum, images used."""
        return {**self._provenance, "images": len(self), "content_sha256": self.fingerprint()}

    @property
    def name(self) -> str:
        """The data set as the user named it (a manifest, ``imagefolder:DIR`` or ``csv:FILE``)."""
        return str(self._provenance.get("dataset") or self._provenance.get("folder") or "the data")

    @property
    def label_space(self) -> int | None:
        """How many classes a label indexes (1000 for ImageNet sets, even those with fewer present)."""
        return self._provenance.get("label_space")

    @property
    def test_only(self) -> bool:
        """Whether the manifest says this is a test set, never to be trained or calibrated on."""
        return bool(self._provenance.get("test_only"))

    def limited(self, count: int | None, rule: str) -> ImageDataset:
        """At most ``count`` of the images (all for ``None``), picked by one of the two ``--limit`` rules:

        - ``first``: the first ``count`` of the sorted order, so that a quick run is a prefix of the
          full one (eval, codec, link, plan: figures per image; :func:`open_dataset`'s ``limit``);
        - ``spread``: ``count`` spread evenly over the order (:meth:`evenly_spaced`), so that a
          class-sorted set keeps every class (train, prune, group, rd: they fit on the images).
        """
        if rule not in LIMIT_RULES:
            raise ValueError(f"unknown limit rule {rule!r}; valid: {', '.join(LIMIT_RULES)}")
        if count is None or count >= len(self.samples):
            return self
        if rule == "first":
            return self._subset(range(count), {"limit": count})
        return self.evenly_spaced(count)

    def evenly_spaced(self, count: int) -> ImageDataset:
        """``count`` samples spread evenly over the dataset's order (first and last included).

        Class-folder datasets are sorted by class, so a prefix (``limit``) holds one class
        only; an evenly spaced subset holds every class in proportion, deterministically.
        """
        if not 1 <= count <= len(self.samples):
            raise SplitbenchError(f"cannot take {count} of {len(self.samples)} images")
        step = (len(self.samples) - 1) / (count - 1) if count > 1 else 0.0
        return self._subset([round(i * step) for i in range(count)], {"evenly_spaced": count})

    def _subset(self, picks: Sequence[int], provenance: dict[str, Any]) -> ImageDataset:
        """The samples at ``picks``, with their origins and the provenance updated by ``provenance``."""
        origins = [self.origins[i] for i in picks] if self.origins is not None else None
        return ImageDataset([self.samples[i] for i in picks], self.transform, {**self._provenance, **provenance}, origins)


LIMIT_RULES = ("first", "spread")  # see ImageDataset.limited

# Names of data that is not a manifest: the part after the colon is a path, not a split.
NOT_MANIFESTS = ("imagefolder:", "csv:", "coco:", "voc:")


def manifest_split(text: str) -> tuple[str, str | None]:
    """``MANIFEST:SPLIT`` → (manifest, split); ``MANIFEST``, ``imagefolder:DIR`` and the like → (text, None)."""
    if text.startswith(NOT_MANIFESTS):
        return text, None
    name, _, split = text.partition(":")
    return name, split or None


def open_named(text: str, root: Path | str | None, limit: int | None = None) -> ImageDataset:
    """A ``--dataset``/``--train-dataset`` value (``MANIFEST[:SPLIT]``, ``imagefolder:DIR``, …), opened, not decoded."""
    name, split = manifest_split(text)
    return open_dataset(name, split=split, root=root, limit=limit)


def dataset_and_split(model: str, dataset: str | None, split: str | None, default: str | None) -> tuple[str, str | None]:
    """``--dataset`` (``MANIFEST:SPLIT`` too) and ``--split``, else the model's own data set (``default``)."""
    text = dataset or default
    if text is None:
        raise SplitbenchError(f"{model} has no default data set; pass --dataset")
    name, own = manifest_split(text)
    if own is not None and split is not None and own != split:
        raise SplitbenchError(f"--dataset {dataset} names split {own} and --split {split}; give one")
    return name, own or split


def check_training_data(train: ImageDataset, test: ImageDataset | None, option: str = "--train-dataset") -> None:
    """Warn (one line, recorded in the provenance) when a run trains or calibrates on test images."""
    if train.test_only:
        warn(f"{option}: {train.name} is a test set (its manifest says never to train or calibrate on it); "
             "the results are not a fair test")
    if test is not None:
        shared = {os.path.realpath(path) for path, _ in train.samples} & {os.path.realpath(path) for path, _ in test.samples}
        if shared:
            warn(f"{option}: {len(shared)} of the {len(test)} test images are also training images")


def check_scored_data(outputs: int, data: ImageDataset, model: str) -> None:
    """Everything about the labels a classifier with ``outputs`` classes is scored on, checked once.

    Every command that scores a model on data calls this (through ``ZooModel.check_data``).
    The user's own labels (``csv:``, ``imagefolder:``) must be classes the model outputs, and
    their repeats are warned about; any data set's label space is compared with the outputs.
    """
    if data.origins is not None:
        check_listed_labels(outputs, data, model)
        warn_about_repeats(data)
    check_label_space(outputs, data, model)


def check_listed_labels(outputs: int, data: ImageDataset, model: str) -> None:
    """A label the user listed that the model cannot output ends the run, naming where it was listed.

    It would otherwise be scored as a silent miss.
    """
    if not data.samples or data.origins is None or max(label for _, label in data.samples) < outputs:
        return
    index = next(i for i, (_, label) in enumerate(data.samples) if label >= outputs)
    path, label = data.samples[index]
    raise SplitbenchError(f"{data.name}, {data.origins[index]}: label {label} of {path} is outside "
                          f"0..{outputs - 1} ({model} has {outputs} outputs)")


def check_label_space(outputs: int, data: ImageDataset, model: str) -> None:
    """Warn (one line, recorded) when the model's classes are not the data's: every hit would be chance."""
    if data.label_space is not None and outputs != data.label_space:
        warn(f"{model} has {outputs} outputs but the labels of {data.name} index "
             f"{data.label_space} classes; its top-1 there measures nothing")


def warn_about_repeats(data: ImageDataset) -> None:
    """Warn (a line each) about an image listed twice under one label, and one listed under two.

    Images are the same when their bytes are: a copy in another class folder, a symlink or a
    CSV row naming the same file again. A repeat is scored once per listing; an image under
    two labels is scored wrong at least once.
    """
    listings: dict[str, list[int]] = {}
    for index, digest in enumerate(data.content_digests()):
        listings.setdefault(digest, []).append(index)
    repeated, conflicting = [], []
    for indices in listings.values():
        by_label: dict[int, list[int]] = {}
        for index in indices:
            by_label.setdefault(data.samples[index][1], []).append(index)
        twice = next((same for same in by_label.values() if len(same) > 1), None)
        if twice is not None:
            repeated.append((twice[0], twice[1]))
        if len(by_label) > 1:
            first, second = (same[0] for same in list(by_label.values())[:2])
            conflicting.append((first, second))
    if repeated:
        first, again = repeated[0]
        warn(f"{data.name}: {len(repeated)} image(s) listed more than once under the same label, e.g. "
             f"{_listing(data, first)} and {_listing(data, again)}; each listing is scored")
    if conflicting:
        first, other = conflicting[0]
        warn(f"{data.name}: {len(conflicting)} image(s) listed under two or more labels (conflicting), e.g. "
             f"{_listing(data, first, label=True)} and {_listing(data, other, label=True)}; at most one is right")


def _listing(data: ImageDataset, index: int, label: bool = False) -> str:
    """``/x/a.png (line 7, label 3)``: an image and where it was listed."""
    path, value = data.samples[index]
    notes = ([data.origins[index]] if data.origins is not None else []) + ([f"label {value}"] if label else [])
    return f"{path} ({', '.join(notes)})" if notes else path


def open_dataset(
    name: str,
    *,
    split: str | None = None,
    root: Path | str | None = None,
    transform: Callable[[Image.Image], Any] | None = None,
    limit: int | None = None,
    manifest: Manifest | None = None,
) -> ImageDataset:
    """Open the dataset ``name`` from the data root, after checking it against its manifest.

    ``name`` may also be the user's own data, ``imagefolder:PATH`` or ``csv:FILE``
    (:mod:`splitbench.data.user`), or detection data, ``coco:PATH`` or ``voc:DIR``
    (:mod:`splitbench.detection.data`), which need no data root. Detection data sets (these
    and manifests of layout ``coco``) label each image with its COCO id.

    ``root`` is the ``--data`` value (else ``$SPLITBENCH_DATA``); ``split`` defaults to the
    manifest's default split. ``limit`` keeps the first N images of the sorted order, so a
    quick run is a prefix of the full one. Pass ``manifest`` to use one that is not shipped
    (tests, private datasets); ``name`` is then only checked against it.
    """
    if limit is not None and limit < 1:
        raise SplitbenchError(f"--limit must be a positive number of images, got {limit}")
    if manifest is None and name.startswith(("coco:", "voc:")):  # boxes, not class labels
        from splitbench.detection.data import open_user_detection

        return open_user_detection(name, split, transform, limit)
    if manifest is None and is_user_dataset(name):
        if split is not None:
            raise SplitbenchError(f"{name.partition(':')[0]}: data sets have no splits; drop --split {split}")
        user = user_samples(name)
        dataset = ImageDataset(user.samples, transform, {**user.provenance, "limit": limit}, user.origins)
        return dataset._subset(range(min(limit, len(dataset))), {}) if limit is not None else dataset
    if manifest is None:
        manifest = load_manifest(name)
    elif manifest.name != name:
        raise ValueError(f"open_dataset({name!r}) was given the manifest of {manifest.name!r}")

    try:
        data_root = resolve_data_root(root)
    except SplitbenchError as error:
        raise SplitbenchError(f"{error} holding {_expected_layout(manifest)}, "
                              f"or pass your own images as --dataset imagefolder:DIR or csv:FILE") from None
    info = manifest.split(split)
    files = verify_manifest(manifest, data_root, info.name)
    dataset_dir = dataset_directory(manifest, data_root)
    if manifest.layout == "coco":
        from splitbench.detection.data import open_manifest_detection

        return open_manifest_detection(manifest, info, dataset_dir, files, transform, limit)
    samples = _samples(manifest, info, dataset_dir, files)
    if limit is not None:
        samples = samples[:limit]
    provenance = {
        "dataset": manifest.name,
        "split": info.name,
        "directory": str(dataset_dir),
        "file_list_sha256": file_list_sha256(files),
        "limit": limit,
    }
    provenance["label_space"] = manifest.label_space or info.classes
    if manifest.test_only:
        provenance["test_only"] = True
    if info.labels is not None:
        provenance["labels_sha256"] = hashlib.sha256((dataset_dir / info.labels).read_bytes()).hexdigest()
    return ImageDataset(samples, transform, provenance)


def _expected_layout(manifest: Manifest) -> str:
    """Where a manifest's images go under the data root, in a few words."""
    if manifest.layout == "class_folders":
        return f"{manifest.directory}/<split>/<class>/<image>"
    if manifest.layout == "coco":
        return f"{manifest.directory}/instances.json with {manifest.directory}/images/<image>"
    return f"{manifest.directory}/<images> with a labels CSV (file,label)"


def _samples(manifest: Manifest, info: SplitInfo, dataset_dir: Path, files: list[str]) -> list[Sample]:
    if manifest.layout == "class_folders":
        return _class_folder_samples(info, dataset_dir, files)
    return _labels_csv_samples(info, dataset_dir, files, manifest.label_space)


def _class_folder_samples(info: SplitInfo, dataset_dir: Path, files: list[str]) -> list[Sample]:
    """Label = index of the class folder in sorted order (torchvision's ImageFolder convention).

    Classes come from the folders, not from the files, so that an empty class folder still
    takes its index instead of shifting every later label.
    """
    index = {name: label for label, name in enumerate(class_folder_names(dataset_dir / info.path))}
    depth = len(info.path.split("/"))  # files are "<split path>/<class>/.../<image>"
    samples = []
    for file in files:
        parts = file.split("/")  # manifests' paths are POSIX strings; Path() is slow for 50 000
        if len(parts) <= depth + 1:
            raise SplitbenchError(f"image outside a class folder: {dataset_dir / file}")
        samples.append((os.path.join(dataset_dir, file), index[parts[depth]]))
    return samples


def _labels_csv_samples(info: SplitInfo, dataset_dir: Path, files: list[str], label_space: int | None) -> list[Sample]:
    """Labels from the CSV; every listed file must exist and every image must be listed."""
    assert info.labels is not None, "labels_csv splits name their labels file"
    labels_path = dataset_dir / info.labels
    on_disk = set(files)
    labelled: dict[str, int] = {}
    for line, file, label in _read_labels_csv(labels_path):
        if label_space is not None and not 0 <= label < label_space:  # scored as a silent miss otherwise
            raise SplitbenchError(f"{labels_path}, line {line}: label {label} of {file} is outside 0..{label_space - 1} "
                                  f"({label_space} classes)")
        relative = (Path(info.path) / file).as_posix()
        if relative not in on_disk:
            raise SplitbenchError(f"missing image: {dataset_dir / relative} (listed in {labels_path}, line {line})")
        if relative in labelled:
            raise SplitbenchError(f"{labels_path}, line {line}: {file} is listed twice")
        labelled[relative] = label
    unlabelled = on_disk.difference(labelled)
    if unlabelled:
        raise SplitbenchError(
            f"{len(unlabelled)} image(s) have no label in {labels_path}, e.g. {dataset_dir / min(unlabelled)}"
        )
    return [(os.path.join(dataset_dir, relative), labelled[relative]) for relative in files]


def _read_labels_csv(path: Path) -> Iterator[tuple[int, str, int]]:
    """(line number, file, label) rows of a ``file,label[,wnid]`` CSV."""
    if not path.is_file():
        raise SplitbenchError(f"labels file not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
            raise SplitbenchError(f"{path}: expected a header with columns file,label, got {reader.fieldnames}")
        for row in reader:
            try:
                label = int(row["label"])
            except (TypeError, ValueError):
                raise SplitbenchError(f"{path}, line {reader.line_num}: label {row['label']!r} is not an integer") from None
            yield reader.line_num, row["file"], label


_WORKER_ERROR_MARKER = f"{SplitbenchError.__module__}.{SplitbenchError.__qualname__}: "


@contextlib.contextmanager
def worker_errors_unwrapped() -> Iterator[None]:
    """Turn a SplitbenchError re-raised by a DataLoader worker back into its one-line message.

    A DataLoader re-raises a worker's exception as the same type, but with a message made of
    "Caught SplitbenchError in DataLoader worker process 0." and the whole worker traceback,
    which the command line would print verbatim. The traceback's last line is
    ``splitbench.errors.SplitbenchError: <original message>``; keep only that message.
    """
    try:
        yield
    except SplitbenchError as error:
        message = str(error)
        if "DataLoader worker" not in message or _WORKER_ERROR_MARKER not in message:
            raise
        original = message.rsplit(_WORKER_ERROR_MARKER, 1)[1].strip()
        raise SplitbenchError(original) from None
