"""Defects of the hostile-input audit (issue 18), each at its mechanism."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import SHARED_DATA, needs_shared_data, zoo
from splitbench.codecs.sweep import SweepRequest, _open_feature_cache, preprocessing_for
from splitbench.data import open_dataset


def _swapped_root(tmp_path: Path) -> Path:
    """imagenet-val-1300 with every file name pointing at another image (the labels unchanged)."""
    source = SHARED_DATA / "imagenet-val-1300"
    images = tmp_path / "root" / "imagenet-val-1300" / "images"
    images.mkdir(parents=True)
    names = sorted(path.name for path in (source / "images").iterdir())
    for name, other in zip(names, names[1:] + names[:1]):
        (images / name).symlink_to(source / "images" / other)
    shutil.copy(source / "labels.csv", images.parent / "labels.csv")
    return tmp_path / "root"


@needs_shared_data
def test_the_same_names_under_another_root_are_other_data(tmp_path: Path) -> None:
    root = _swapped_root(tmp_path)
    shared = open_dataset("imagenet-val-1300", root=SHARED_DATA)
    swapped = open_dataset("imagenet-val-1300", root=root)
    # the manifest's checksum covers names only, and they agree ...
    assert shared.provenance()["file_list_sha256"] == swapped.provenance()["file_list_sha256"]
    # ... but the content fingerprint, which every cache keys on, does not
    assert shared.fingerprint() != swapped.fingerprint()
    model = zoo("mobilenet_v2")
    folders = []
    for data_root, dataset in ((SHARED_DATA, shared), (root, swapped)):
        request = SweepRequest(model, "bottleneck6", "imagenet-val-1300", data_root=data_root,
                               cache_root=tmp_path / "cache")
        folders.append(_open_feature_cache(request, dataset, preprocessing_for(model, "seed"), "features.6").folder)
    assert folders[0] != folders[1]


@needs_shared_data
def test_a_truncated_image_changes_the_fingerprint(tmp_path: Path) -> None:
    root = _swapped_root(tmp_path)
    before = open_dataset("imagenet-val-1300", root=root).fingerprint()
    victim = sorted((root / "imagenet-val-1300" / "images").iterdir())[7]
    data = victim.read_bytes()
    victim.unlink()
    victim.write_bytes(data[: len(data) // 2])
    assert open_dataset("imagenet-val-1300", root=root).fingerprint() != before
