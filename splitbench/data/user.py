"""The user's own data: ``imagefolder:PATH`` (class folders) and ``csv:FILE`` (path,label).

Both become a fixed (path, label) list like a manifest's data set (class folders sorted
by path, a CSV in its own order), with the same
provenance: the folder or file, the image count and the sha256 of the file list (and of
the labels file), so a result says which images produced it.

* ``imagefolder:PATH`` — ``PATH/<class>/**/<image>``. Folders named by ImageNet wnids
  (``n01440764``) take the wnid's index among the 1000 ILSVRC2012 classes, so a subset of
  ImageNet scores against an ImageNet model's outputs; other names take their index in
  sorted order (torchvision's ``ImageFolder``).
* ``csv:FILE`` — a header ``path,label`` (``file`` is accepted for ``path``); relative
  paths are relative to the CSV's folder.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from splitbench.data.manifests import file_list_sha256
from splitbench.errors import SplitbenchError

USER_PREFIXES = ("imagefolder:", "csv:")
INT64_MAX = 2**63 - 1  # labels become an int64 tensor
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
_WNID = re.compile(r"n\d{8}")


def is_user_dataset(name: str) -> bool:
    return name.startswith(USER_PREFIXES)


@cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ILSVRC2012 class wnids in class-index order (sorted, as torchvision numbers them)."""
    text = resources.files("splitbench.data_manifests").joinpath("imagenet_wnids.txt").read_text()
    return tuple(text.split())


def user_samples(name: str) -> UserData:
    """(path, label) samples of ``imagefolder:PATH`` or ``csv:FILE``, where each was listed, and their provenance."""
    kind, _, location = name.partition(":")
    path = Path(location).expanduser()
    if kind == "imagefolder":
        return _image_folder(path)
    return _csv_samples(path)


class UserData(NamedTuple):
    """The samples, where each was listed (``line 7``, ``class folder cats``) for messages, and the provenance."""

    samples: list[tuple[str, int]]
    origins: list[str]
    provenance: dict[str, object]


def _image_folder(root: Path) -> UserData:
    if not root.is_dir():
        raise SplitbenchError(f"imagefolder: {root} is not a folder")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise SplitbenchError(f"imagefolder: {root} has no class folders (expected {root}/<class>/<image>)")
    wnids = imagenet_wnids()
    imagenet = all(_WNID.fullmatch(c) for c in classes) and set(classes) <= set(wnids)
    index = {wnid: i for i, wnid in enumerate(wnids)} if imagenet else {c: i for i, c in enumerate(classes)}
    samples, relative = [], []
    for name in classes:
        for folder, dirs, files in os.walk(root / name):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for file in sorted(files):
                if file.lower().endswith(IMAGE_EXTENSIONS) and not file.startswith("."):
                    full = os.path.join(folder, file)
                    samples.append((full, index[name]))
                    relative.append(os.path.relpath(full, root).replace(os.sep, "/"))
    if not samples:
        raise SplitbenchError(f"imagefolder: no images under {root} ({', '.join(IMAGE_EXTENSIONS)})")
    order = sorted(range(len(samples)), key=relative.__getitem__)
    origins = [f"class folder {relative[i].split('/', 1)[0]}" for i in order]
    provenance = {
        "dataset": f"imagefolder:{root}",
        "split": None,
        "directory": str(root),
        "classes": len(classes),
        "label_space": 1000 if imagenet else len(classes),
        "labels": "imagenet wnid index" if imagenet else "sorted folder index",
        "file_list_sha256": file_list_sha256(relative),
    }
    return UserData([samples[i] for i in order], origins, provenance)


def _csv_samples(path: Path) -> UserData:
    if not path.is_file():
        raise SplitbenchError(f"csv: labels file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is no column name
    except (OSError, UnicodeDecodeError) as error:
        raise SplitbenchError(f"csv: cannot read {path}: {error}") from None
    reader = csv.DictReader(text.splitlines())
    fields = set(reader.fieldnames or ())
    column = "path" if "path" in fields else "file" if "file" in fields else None
    if column is None or "label" not in fields:
        raise SplitbenchError(f"csv: {path} needs a header with columns path,label, got {reader.fieldnames}")
    samples, relative, origins = [], [], []
    for row in reader:
        where = f"csv: {path}, line {reader.line_num}"
        label = _label(row["label"], where)
        if not (row[column] or "").strip():  # a short row leaves None, an empty cell ""
            raise SplitbenchError(f"{where}: no image {column} (label {label})")
        image = Path(row[column]).expanduser()
        full = image if image.is_absolute() else path.parent / image
        if not full.is_file():
            raise SplitbenchError(f"csv: missing image {full} ({path}, line {reader.line_num})")
        samples.append((str(full), label))
        relative.append(row[column])
        origins.append(f"line {reader.line_num}")
    if not samples:
        raise SplitbenchError(f"csv: {path} lists no images")
    provenance = {
        "dataset": f"csv:{path}",
        "split": None,
        "directory": str(path.parent),
        "file_list_sha256": file_list_sha256(relative),
        "labels_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }
    return UserData(samples, origins, provenance)


def _label(text: str | None, where: str) -> int:
    """A CSV cell as a class index: a whole number from 0 to int64's largest."""
    try:
        label = int(text)  # type: ignore[arg-type]  (None: a row with fewer cells than the header)
    except (TypeError, ValueError):
        raise SplitbenchError(f"{where}: label {text!r} is not an integer") from None
    if label < 0:
        raise SplitbenchError(f"{where}: label {label} is negative")
    if label > INT64_MAX:
        raise SplitbenchError(f"{where}: label {label} is beyond the largest class index (int64, {INT64_MAX})")
    return label
