"""Head features on disk: computed once per (model, weights, split, data, preprocessing), resumable.

A sweep runs every codec point on the same features, so the head runs once per image ever:
the features of the whole data set live in one float32 ``.npy`` (memory-mapped, so that
encoding workers read them without copies), next to the labels and the byte size of each
input image as the seed measures it (resized to the model's input and saved as JPEG, Pillow,
quality 75). ``meta.json`` records how many leading images are done and is replaced atomically
after each batch: an interrupted run resumes where it stopped. The folder name is a hash of
everything that determines the features, so a change of any of them starts a new cache.

Concurrent runs on one cache: creating and filling it happen under a lock file
(``.splitbench.lock``), so one run computes the missing rows while another waits and then finds
them done. Readers need no lock: rows below ``computed`` never change, and growing swaps in a
new file that already holds them (a reader's open map keeps the old one). The grown file is
allocated on disk before it is mapped, so a full disk ends in one line (ENOSPC) instead of
SIGBUS on the first write into a page the file system cannot provide.
"""

from __future__ import annotations

import errno
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from splitbench.data import ImageDataset, Preprocessing, worker_errors_unwrapped
from splitbench.errors import SplitbenchError
from splitbench.points import content_key
from splitbench.results import LOCK_NAME, atomic_open, disk_errors, locked, write_json

CACHE_VERSION = 1
JPEG_QUALITY = 75  # seed 003 §5: the input JPEG the ratio is measured against (Pillow)


def jpeg_file(image: Image.Image, quality: int | None = None) -> bytes:
    """``image`` saved as JPEG by Pillow with ``quality`` (default ``JPEG_QUALITY``; Pillow's
    default 4:2:0 subsampling): the upload that seed 003 compares feature bytes with."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY if quality is None else quality)
    return buffer.getvalue()


def jpeg_size(image: Image.Image, quality: int | None = None) -> int:
    """Bytes of :func:`jpeg_file`."""
    return len(jpeg_file(image, quality))


class _InputAndJpeg:
    """Dataset transform: (normalised model input, JPEG bytes of the same pixels)."""

    def __init__(self, preprocessing: Preprocessing) -> None:
        self.preprocessing = preprocessing

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, int]:
        # One call: a detector's input is resized from the float image, not from the picture.
        model_input, seen = self.preprocessing.input_and_picture(image)
        return model_input, jpeg_size(seen)


def cache_key(fields: dict[str, Any]) -> str:
    """The codecs' keys (features, points): :func:`~splitbench.points.content_key` at this version."""
    return content_key(fields, version=CACHE_VERSION, digits=20)


@dataclass
class FeatureCache:
    """The cached head outputs of one (model, weights, split, data, preprocessing)."""

    folder: Path
    fields: dict[str, Any]
    total: int  # images in the data set
    shape: tuple[int, int, int]  # C, H, W of one feature tensor

    @property
    def features_path(self) -> Path:
        return self.folder / "features.npy"

    def meta(self) -> dict[str, Any]:
        path = self.folder / "meta.json"
        return json.loads(path.read_text()) if path.is_file() else {"computed": 0}

    @property
    def computed(self) -> int:
        return int(self.meta()["computed"])

    def features(self, count: int) -> np.ndarray:
        return np.load(self.features_path, mmap_mode="r")[:count]

    def labels(self, count: int) -> np.ndarray:
        return np.load(self.folder / "labels.npy")[:count]

    def jpeg_bytes(self, count: int) -> np.ndarray:
        return np.load(self.folder / "jpeg_bytes.npy")[:count]


def _exclusive(cache: FeatureCache) -> Any:
    """The cache's lock: held while creating or growing it (another run waits, then reuses the rows)."""
    return locked(cache.folder / LOCK_NAME, f"waiting for another run computing the features in {cache.folder}")


def open_cache(root: Path, fields: dict[str, Any], total: int, shape: tuple[int, int, int]) -> FeatureCache:
    """The cache folder for ``fields`` under ``root``, created (empty) if new."""
    cache = FeatureCache(root / "features" / cache_key(fields), fields, total, shape)
    with disk_errors(cache.folder):
        cache.folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(cache):
        _initialise(cache, total, shape)
    return cache


def _initialise(cache: FeatureCache, total: int, shape: tuple[int, int, int]) -> None:
    # meta.json is written last: a folder without it (a run interrupted while creating it) is
    # created again from scratch rather than read half-made. Under the lock: two runs that both
    # saw no meta.json would otherwise reset each other's rows.
    if not (cache.folder / "meta.json").is_file():
        # No rows yet: fill_cache grows the file to the images a run asks for (a --limit 20
        # run on a 50 000-image split must not reserve 50 000 feature maps).
        with atomic_open(cache.features_path, "wb") as handle:
            np.save(handle, np.zeros((0, *shape), dtype=np.float32))
        for name, array in (("labels.npy", np.full(total, -1, dtype=np.int64)), ("jpeg_bytes.npy", np.zeros(total, dtype=np.int64))):
            with atomic_open(cache.folder / name, "wb") as handle:
                np.save(handle, array)
        _write_meta(cache, 0, 0.0)


def _write_meta(cache: FeatureCache, computed: int, head_s: float) -> None:
    write_json(cache.folder / "meta.json", {"computed": computed, "head_s": round(head_s, 3),
                                            "shape": list(cache.shape), "fields": cache.fields})


def fill_cache(
    cache: FeatureCache,
    head: torch.nn.Module,
    dataset: ImageDataset,
    preprocessing: Preprocessing,
    count: int,
    *,
    batch_size: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> float:
    """Run the head on images ``computed … count − 1``; seconds spent in the head itself.

    Under the cache's lock: another run on the same cache computing the same rows at the same
    time would swap its own, still empty, file in under this one's finished rows.
    """
    if cache.computed >= count:
        return 0.0
    with _exclusive(cache):
        return _fill(cache, head, dataset, preprocessing, count, batch_size, on_batch)


def _fill(cache: FeatureCache, head: torch.nn.Module, dataset: ImageDataset, preprocessing: Preprocessing,
          count: int, batch_size: int, on_batch: Callable[[int], None] | None) -> float:
    start = cache.computed  # read again under the lock: another run may have done them meanwhile
    if start >= count:
        return 0.0
    subset = ImageDataset(dataset.samples[start:count], _InputAndJpeg(preprocessing))
    features = _grown(cache, start, count)
    labels, jpegs = np.load(cache.folder / "labels.npy"), np.load(cache.folder / "jpeg_bytes.npy")
    head = head.to(memory_format=torch.channels_last).eval()
    head_s, done = float(cache.meta().get("head_s", 0.0)), start
    with worker_errors_unwrapped(), torch.inference_mode():
        for (inputs, sizes), targets in DataLoader(subset, batch_size=batch_size, shuffle=False):
            began = time.perf_counter()
            outputs = head(inputs.contiguous(memory_format=torch.channels_last))
            head_s += time.perf_counter() - began
            features[done : done + len(targets)] = outputs.float().contiguous().numpy()
            labels[done : done + len(targets)], jpegs[done : done + len(targets)] = targets.numpy(), sizes.numpy()
            done += len(targets)
            _checkpoint(cache, features, labels, jpegs, done, head_s)
            if on_batch:
                on_batch(len(targets))
    return head_s


def _grown(cache: FeatureCache, computed: int, rows: int) -> np.memmap:
    """features.npy with room for ``rows`` images, its first ``computed`` rows kept.

    A larger file is written beside the old one and swapped in atomically, so an interruption
    while growing leaves the old file and its finished rows intact.
    """
    current = np.load(cache.features_path, mmap_mode="r") if computed else None
    if current is not None and len(current) >= rows:
        return np.load(cache.features_path, mmap_mode="r+")
    staging = cache.features_path.with_suffix(".grow.npy")
    grown = _allocated(staging, (rows, *cache.shape))
    for begin in range(0, computed, 256):  # in slices: the finished rows may not fit in memory
        grown[begin : min(begin + 256, computed)] = current[begin : min(begin + 256, computed)]
    grown.flush()
    del grown, current
    os.replace(staging, cache.features_path)
    return np.load(cache.features_path, mmap_mode="r+")


def _allocated(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A new float32 ``.npy`` of ``shape`` whose blocks are allocated on disk, memory-mapped.

    ``open_memmap`` makes a sparse file: a full disk would then surface as SIGBUS when a page
    is first written. ``posix_fallocate`` reserves the blocks now, failing with ENOSPC instead
    (glibc writes zeros where the file system cannot allocate them natively).
    """
    try:
        mapped = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        del mapped
        with open(path, "r+b") as handle:
            os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
    except BaseException as error:
        path.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            megabytes = 4 * int(np.prod(shape)) / 1e6
            raise SplitbenchError(f"no space left on the device for the feature cache {path.parent}: the features of "
                                  f"{shape[0]} images need {megabytes:,.0f} MB; free space or pass --cache elsewhere") from None
        raise
    return np.load(path, mmap_mode="r+")


def _checkpoint(cache: FeatureCache, features: np.memmap, labels: np.ndarray, jpegs: np.ndarray,
                done: int, head_s: float) -> None:
    """Flush the features, then the small arrays, then the counter that makes them count."""
    features.flush()
    for name, array in (("labels.npy", labels), ("jpeg_bytes.npy", jpegs)):
        with atomic_open(cache.folder / name, "wb") as handle:
            np.save(handle, array)
    _write_meta(cache, done, head_s)
