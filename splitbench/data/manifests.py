"""Dataset manifests: what a dataset folder must contain, so that results name their data exactly.

A manifest (``data_manifests/<name>.json``, installed as ``splitbench.data_manifests``) records
where a dataset lives under the data root, how its labels are stored, and, per split, how many
image files it holds and a checksum of their names. Checking the *names* rather than the bytes
keeps verification at a few hundred milliseconds for 60 000 files, and still catches the usual
accidents: a partial copy, a missing class folder, a different subset of the same dataset.

The file-list checksum of a split is the sha256 of its image paths, relative to the dataset
directory in POSIX form, sorted as strings, joined by ``"\\n"`` and encoded as UTF-8. Image files
are those with a suffix in :data:`IMAGE_SUFFIXES` (any case); hidden files are skipped, so that a
``.DS_Store`` does not fail verification. :func:`compute_file_list_checksum` regenerates it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from splitbench.errors import SplitbenchError, unknown_name

DATA_ROOT_ENV = "SPLITBENCH_DATA"
LAYOUTS = ("labels_csv", "class_folders", "coco")  # coco: instances JSON + images (detection)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

_MANIFEST_PACKAGE = "splitbench.data_manifests"


@dataclass(frozen=True)
class SplitInfo:
    """One split of a dataset, as its manifest describes it.

    ``path`` is the folder holding the split's images, relative to the dataset directory.
    ``labels`` is the labels CSV (relative to the dataset directory) for the ``labels_csv``
    layout, whose ``file`` column is relative to ``path``; ``None`` for ``class_folders``.
    ``annotations`` is the COCO instances JSON of the ``coco`` layout (detection), checked
    against ``annotations_sha256``.
    ``file_list_sha256`` is ``None`` where the list is not known in advance (it is then not
    checked, but the count still is).
    """

    name: str
    path: str
    files: int
    classes: int
    file_list_sha256: str | None
    labels: str | None = None
    annotations: str | None = None  # coco layout: the instances JSON, relative to the dataset directory
    annotations_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": self.path}
        if self.labels is not None:
            entry["labels"] = self.labels
        if self.annotations is not None:
            entry.update(annotations=self.annotations, annotations_sha256=self.annotations_sha256)
        entry.update(files=self.files, classes=self.classes, file_list_sha256=self.file_list_sha256)
        return entry


@dataclass(frozen=True)
class Manifest:
    """A dataset: its folder under the data root, label layout and splits."""

    name: str
    description: str
    directory: str
    layout: str
    splits: dict[str, SplitInfo] = field(default_factory=dict)
    default_split: str | None = None
    label_space: int | None = None  # labels index this many classes (1000 for ImageNet), not only those present
    test_only: bool = False  # a test set: training or calibrating on it is warned about and recorded

    def __post_init__(self) -> None:
        # Manifests ship with the package, so a malformed one is a bug, not a user error.
        if self.layout not in LAYOUTS:
            raise ValueError(f"manifest {self.name}: layout {self.layout!r} is not one of {LAYOUTS}")
        if not self.splits:
            raise ValueError(f"manifest {self.name} has no splits")
        if self.default_split is not None and self.default_split not in self.splits:
            raise ValueError(f"manifest {self.name}: default split {self.default_split!r} is not a split")

    def split(self, name: str | None = None) -> SplitInfo:
        """The named split, or the default one; an unknown name lists the valid splits."""
        if name is None:
            name = self._default_split_name()
        if name not in self.splits:
            raise unknown_name("split", name, sorted(self.splits), f" for dataset {self.name}")
        return self.splits[name]

    def _default_split_name(self) -> str:
        if self.default_split is not None:
            return self.default_split
        if len(self.splits) == 1:
            return next(iter(self.splits))
        raise SplitbenchError(
            f"dataset {self.name} has several splits; choose one of: {', '.join(sorted(self.splits))}"
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        splits = {
            split_name: SplitInfo(
                name=split_name,
                path=entry["path"],
                files=int(entry["files"]),
                classes=int(entry["classes"]),
                file_list_sha256=entry.get("file_list_sha256"),
                labels=entry.get("labels"),
                annotations=entry.get("annotations"),
                annotations_sha256=entry.get("annotations_sha256"),
            )
            for split_name, entry in data["splits"].items()
        }
        return cls(
            name=data["name"],
            description=data["description"],
            directory=data["directory"],
            layout=data["layout"],
            splits=splits,
            default_split=data.get("default_split"),
            label_space=data.get("label_space"),
            test_only=bool(data.get("test_only", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "directory": self.directory,
            "layout": self.layout,
        }
        if self.default_split is not None:
            data["default_split"] = self.default_split
        if self.label_space is not None:
            data["label_space"] = self.label_space
        if self.test_only:
            data["test_only"] = True
        data["splits"] = {name: split.to_dict() for name, split in self.splits.items()}
        return data


def list_manifests() -> list[str]:
    """Names of the datasets that splitbench ships a manifest for, sorted."""
    folder = resources.files(_MANIFEST_PACKAGE)
    return sorted(entry.name.removesuffix(".json") for entry in folder.iterdir() if entry.name.endswith(".json"))


def load_manifest(name: str) -> Manifest:
    """The shipped manifest called ``name``; an unknown name lists the valid ones."""
    entry = resources.files(_MANIFEST_PACKAGE) / f"{name}.json"
    if not entry.is_file():
        raise unknown_name("dataset", name, list_manifests())
    return Manifest.from_dict(json.loads(entry.read_text(encoding="utf-8")))


def resolve_data_root(explicit: Path | str | None) -> Path:
    """The data root: ``explicit`` (the ``--data`` option) if given, else ``$SPLITBENCH_DATA``."""
    if explicit is not None and str(explicit) != "":
        root, source = Path(explicit), "--data"
    elif os.environ.get(DATA_ROOT_ENV):
        root, source = Path(os.environ[DATA_ROOT_ENV]), DATA_ROOT_ENV
    else:
        raise SplitbenchError(f"no data root: pass --data DIR or set {DATA_ROOT_ENV}=DIR")
    root = root.expanduser()
    if not _is_folder(root):
        raise SplitbenchError(f"data root does not exist or is not a folder: {root} (from {source})")
    if not os.access(root, os.R_OK | os.X_OK):
        raise SplitbenchError(f"data root cannot be read (permission denied): {root} (from {source})")
    return root


def _is_folder(path: Path) -> bool:
    """``path.is_dir()``, but a folder this user may not look into raises one line instead of a traceback."""
    try:
        return path.is_dir()
    except PermissionError:
        raise SplitbenchError(f"{path} cannot be read (permission denied)") from None


def iter_image_files(folder: Path, relative_to: Path) -> Iterator[str]:
    """Image files below ``folder`` (recursively), as POSIX paths relative to ``relative_to``.

    Uses ``os.scandir`` rather than ``Path.rglob`` or opening images: it reads the file type
    from the directory entry, which keeps 60 000 files well under a second.
    """
    prefix = Path(os.path.relpath(folder, relative_to)).as_posix()
    prefix = "" if prefix == "." else prefix + "/"
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                yield from iter_image_files(Path(entry.path), relative_to)
            elif entry.name.lower().endswith(IMAGE_SUFFIXES):
                yield prefix + entry.name


def list_image_files(folder: Path, relative_to: Path) -> list[str]:
    """:func:`iter_image_files`, sorted as strings (the order that the checksum and datasets use)."""
    return sorted(iter_image_files(folder, relative_to))


def file_list_sha256(relative_paths: Iterable[str]) -> str:
    """sha256 of sorted relative paths joined by newlines: the manifests' file-list checksum."""
    return hashlib.sha256("\n".join(sorted(relative_paths)).encode("utf-8")).hexdigest()


def compute_file_list_checksum(split_folder: Path | str, dataset_dir: Path | str | None = None) -> tuple[int, str]:
    """(file count, file-list checksum) of the images in ``split_folder``.

    Paths are taken relative to ``dataset_dir`` (default: ``split_folder``'s parent, which is
    the dataset directory for every shipped layout: ``cifar10-jpeg/test``,
    ``imagenet-val-1300/images``). Use it to regenerate a manifest entry.
    """
    split_folder = Path(split_folder)
    files = list_image_files(split_folder, Path(dataset_dir) if dataset_dir is not None else split_folder.parent)
    return len(files), file_list_sha256(files)


def class_folder_names(split_folder: Path) -> list[str]:
    """Sorted names of the class folders of a ``class_folders`` split; a label is an index here."""
    with os.scandir(split_folder) as entries:
        return sorted(entry.name for entry in entries if entry.is_dir() and not entry.name.startswith("."))


def dataset_directory(manifest: Manifest, root: Path) -> Path:
    """Where ``manifest``'s dataset lives under the data root ``root``."""
    return Path(root) / manifest.directory


def verify_manifest(manifest: Manifest, root: Path | str, split: str | None = None) -> list[str]:
    """Check that a split on disk is the one the manifest describes; return its sorted file list.

    Checks, in order: the dataset and split folders exist, the file count matches, for
    ``class_folders`` the number of class folders matches (a missing class would silently
    shift every later label), and the file-list checksum matches when the manifest has one.
    The returned relative paths (POSIX, relative to the dataset directory) save callers a
    second scan.
    """
    info = manifest.split(split)
    dataset_dir = dataset_directory(manifest, Path(root))
    if not _is_folder(dataset_dir):
        raise SplitbenchError(f"dataset {manifest.name} not found: {dataset_dir} is not a folder")
    split_folder = dataset_dir / info.path
    if not _is_folder(split_folder):
        raise SplitbenchError(f"dataset {manifest.name}, split {info.name}: {split_folder} is not a folder")

    files = list_image_files(split_folder, dataset_dir)
    where = f"dataset {manifest.name}, split {info.name} ({split_folder})"
    if len(files) != info.files:
        raise SplitbenchError(f"{where}: expected {info.files} image files, found {len(files)}")
    if manifest.layout == "class_folders":
        found_classes = len(class_folder_names(split_folder))
        if found_classes != info.classes:
            raise SplitbenchError(f"{where}: expected {info.classes} class folders, found {found_classes}")
    if info.file_list_sha256 is not None:
        found_sha = file_list_sha256(files)
        if found_sha != info.file_list_sha256:
            raise SplitbenchError(
                f"{where}: {len(files)} files as expected, but their names differ from the manifest "
                f"(file-list sha256 expected {info.file_list_sha256[:12]}…, found {found_sha[:12]}…)"
            )
    return files
