"""Manifests, data-root resolution, dataset loading, preprocessing and worker error reporting."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from splitbench.data import (
    Manifest,
    Preprocessing,
    SplitInfo,
    compute_file_list_checksum,
    file_list_sha256,
    list_manifests,
    load_manifest,
    open_dataset,
    resolve_data_root,
    verify_manifest,
)
from splitbench.data import hashes
from splitbench.data.manifests import class_folder_names, dataset_directory
from splitbench.errors import SplitbenchError
from splitbench.evaluation import evaluate_topk

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data not found at {SHARED_DATA}")

# What /work/shared/data/README.md says each split holds; the manifests must agree.
SHIPPED_SPLITS = {
    ("imagenet-val-1300", "val"): (1300, 725),
    ("imagenet-sample-1000", "train"): (1000, 1000),
    ("cifar10", "train"): (50000, 10),
    ("cifar10", "test"): (10000, 10),
    ("coco-val2017-mini", "val"): (158, 80),
}


@pytest.fixture(autouse=True)
def _no_data_root_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their data root explicitly; a developer's SPLITBENCH_DATA must not leak in."""
    monkeypatch.delenv("SPLITBENCH_DATA", raising=False)


# --- shipped manifests against the shared data --------------------------------------------


def test_list_manifests_names_the_shipped_datasets() -> None:
    assert list_manifests() == ["cifar10", "coco-val2017-mini", "ilsvrc2012-val", "imagenet-sample-1000",
                                "imagenet-val-1300"]


@pytest.mark.parametrize(("name", "split"), sorted(SHIPPED_SPLITS))
def test_manifest_counts_match_the_published_sizes(name: str, split: str) -> None:
    info = load_manifest(name).split(split)
    assert (info.files, info.classes) == SHIPPED_SPLITS[name, split]
    assert info.file_list_sha256 is not None and len(info.file_list_sha256) == 64


def test_full_ilsvrc_manifest_checks_count_and_classes_but_not_names() -> None:
    manifest = load_manifest("ilsvrc2012-val")
    info = manifest.split()
    assert (manifest.layout, info.path, info.files, info.classes) == ("class_folders", "val", 50000, 1000)
    assert info.file_list_sha256 is None


@pytest.mark.parametrize(("name", "split"), sorted(SHIPPED_SPLITS))
@pytest.mark.shared
@needs_shared_data
def test_manifest_matches_shared_data(name: str, split: str) -> None:
    manifest = load_manifest(name)
    info = manifest.split(split)
    dataset_dir = dataset_directory(manifest, SHARED_DATA)

    assert compute_file_list_checksum(dataset_dir / info.path, dataset_dir) == (info.files, info.file_list_sha256)
    assert len(verify_manifest(manifest, SHARED_DATA, split)) == info.files
    if manifest.layout == "class_folders":
        assert len(class_folder_names(dataset_dir / info.path)) == info.classes
    elif manifest.layout == "coco":  # detection: the annotations are checked by their sha256 as well
        document = json.loads((dataset_dir / info.annotations).read_bytes())
        assert hashlib.sha256((dataset_dir / info.annotations).read_bytes()).hexdigest() == info.annotations_sha256
        assert len(document["categories"]) == info.classes and len(document["images"]) == info.files
    else:
        with (dataset_dir / info.labels).open(newline="") as handle:
            assert len({row["label"] for row in csv.DictReader(handle)}) == info.classes


@pytest.mark.shared
@needs_shared_data
def test_open_shared_datasets_gives_sorted_labelled_samples() -> None:
    cifar = open_dataset("cifar10", root=SHARED_DATA)  # default split: test
    assert len(cifar) == 10000
    assert [label for _, label in cifar.samples[::1000]] == list(range(10))  # airplane=0 … truck=9
    assert cifar.provenance()["file_list_sha256"] == load_manifest("cifar10").split("test").file_list_sha256

    imagenet = open_dataset("imagenet-val-1300", root=SHARED_DATA, limit=2)
    assert [(Path(path).name, label) for path, label in imagenet.samples] == [
        ("ILSVRC2012_val_00000347.JPEG", 472),
        ("ILSVRC2012_val_00000355.JPEG", 260),
    ]


@needs_shared_data
def test_the_two_limit_rules_take_a_prefix_or_every_class() -> None:
    cifar = open_dataset("cifar10", root=SHARED_DATA)  # class-sorted: 1000 images a class
    first, spread = cifar.limited(20, "first"), cifar.limited(20, "spread")
    assert [label for _, label in first.samples] == [0] * 20  # a prefix: airplanes only
    assert sorted({label for _, label in spread.samples}) == list(range(10))  # every class, 2 each
    assert spread.samples[0] == cifar.samples[0] and spread.samples[-1] == cifar.samples[-1]
    assert first.samples == open_dataset("cifar10", root=SHARED_DATA, limit=20).samples  # open_dataset's limit
    assert cifar.limited(None, "first") is cifar and cifar.limited(10_000, "spread") is cifar
    with pytest.raises(ValueError, match="unknown limit rule 'last'; valid: first, spread"):
        cifar.limited(5, "last")


# --- manifest and data-root errors --------------------------------------------------------


def test_unknown_manifest_lists_valid_names() -> None:
    with pytest.raises(SplitbenchError, match="unknown dataset 'imagenet'; did you mean imagenet-val-1300.*cifar10, coco-val2017-mini, ilsvrc2012-val"):
        load_manifest("imagenet")


def test_unknown_split_lists_valid_splits() -> None:
    with pytest.raises(SplitbenchError, match="unknown split 'val' for dataset cifar10; valid splits: test, train"):
        load_manifest("cifar10").split("val")


def test_explicit_root_wins_over_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, from_env = tmp_path / "explicit", tmp_path / "env"
    explicit.mkdir(), from_env.mkdir()
    monkeypatch.setenv("SPLITBENCH_DATA", str(from_env))
    assert resolve_data_root(explicit) == explicit
    assert resolve_data_root(str(explicit)) == explicit
    assert resolve_data_root(None) == from_env


def test_missing_root_says_how_to_give_one() -> None:
    with pytest.raises(SplitbenchError, match="pass --data DIR or set SPLITBENCH_DATA"):
        resolve_data_root(None)


def test_nonexistent_root_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SplitbenchError, match=f"{tmp_path / 'nowhere'}.*--data"):
        resolve_data_root(tmp_path / "nowhere")
    monkeypatch.setenv("SPLITBENCH_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(SplitbenchError, match="elsewhere.*SPLITBENCH_DATA"):
        resolve_data_root(None)


# --- a tiny labels_csv dataset written on the fly -----------------------------------------

COLOURS = {"c.jpg": (0, 0, 255), "a.jpg": (255, 0, 0), "b.jpg": (0, 255, 0)}  # written out of order
LABELS = {"a.jpg": 0, "b.jpg": 1, "c.jpg": 2, "corrupt.jpg": 3}


def write_tiny_dataset(root: Path, listed: dict[str, int] = LABELS) -> Manifest:
    """``root/tiny``: three real JPEGs, one corrupt file, labels.csv listing ``listed``."""
    images = root / "tiny" / "images"
    images.mkdir(parents=True)
    for file, colour in COLOURS.items():
        Image.new("RGB", (8, 8), colour).save(images / file, quality=95)
    (images / "corrupt.jpg").write_bytes(b"this is not a JPEG")
    with (root / "tiny" / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "wnid"])
        writer.writerows((file, label, f"n{label:08d}") for file, label in reversed(listed.items()))
    split = SplitInfo("val", "images", files=4, classes=4, file_list_sha256=None, labels="labels.csv")
    return Manifest("tiny", "four test images", "tiny", "labels_csv", {"val": split})


def test_samples_are_sorted_and_limit_takes_a_prefix(tmp_path: Path) -> None:
    manifest = write_tiny_dataset(tmp_path)
    everything = open_dataset("tiny", root=tmp_path, manifest=manifest)
    assert [(Path(path).name, label) for path, label in everything.samples] == sorted(LABELS.items())

    first_two = open_dataset("tiny", root=tmp_path, manifest=manifest, limit=2)
    assert first_two.samples == everything.samples[:2]
    assert first_two.provenance() == {
        "dataset": "tiny",
        "split": "val",
        "directory": str(tmp_path / "tiny"),
        "file_list_sha256": file_list_sha256(f"images/{file}" for file in LABELS),
        "limit": 2,
        "label_space": 4,
        "labels_sha256": hashlib.sha256((tmp_path / "tiny" / "labels.csv").read_bytes()).hexdigest(),
        "images": 2,
        "content_sha256": first_two.fingerprint(),
    }
    # the content fingerprint covers what the names do not: the bytes and the labels
    assert first_two.fingerprint() != everything.fingerprint()


def _swap_in_place(path: Path, other: Path) -> None:
    """Overwrite ``path`` with ``other``'s bytes (the same size) and give it back its mtime, as ``cp -p`` would."""
    before = path.stat()
    assert other.stat().st_size == before.st_size
    path.write_bytes(other.read_bytes())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


def test_an_image_replaced_in_place_with_its_mtime_restored_changes_the_fingerprint(tmp_path: Path) -> None:
    manifest = write_tiny_dataset(tmp_path)
    images = tmp_path / "tiny" / "images"
    time.sleep(hashes._SETTLE_S + 0.1)  # old enough to be remembered: the warm case is the one that failed
    store = tmp_path / "file-hashes"
    before = open_dataset("tiny", root=tmp_path, manifest=manifest).fingerprint(store)
    assert len(next(store.iterdir()).read_text().splitlines()) == 4  # every digest remembered
    # the metadata key saw nothing here: same name, inode, size and mtime, other pixels
    _swap_in_place(images / "a.jpg", images / "b.jpg")
    after = open_dataset("tiny", root=tmp_path, manifest=manifest).fingerprint(store)
    assert after != before
    assert after == open_dataset("tiny", root=tmp_path, manifest=manifest).fingerprint(tmp_path / "empty-store")


def test_a_rerun_takes_unchanged_files_digests_from_the_store(tmp_path: Path) -> None:
    manifest = write_tiny_dataset(tmp_path)
    time.sleep(hashes._SETTLE_S + 0.1)
    store = tmp_path / "file-hashes"
    honest = open_dataset("tiny", root=tmp_path, manifest=manifest).fingerprint(store)
    # proof that the store is read, not the files: a digest forged in the store is believed ...
    (stored,) = store.iterdir()
    lines = stored.read_text().splitlines()
    forged = [line[:-64] + "0" * 64 if line.split("\0")[0].endswith("a.jpg") else line for line in lines]
    stored.write_text("\n".join(forged) + "\n")
    assert open_dataset("tiny", root=tmp_path, manifest=manifest).fingerprint(store) != honest
    # ... until the file's ctime moves (a chmod is enough), when it is read again
    (tmp_path / "tiny" / "images" / "a.jpg").chmod(0o644)
    assert open_dataset("tiny", root=tmp_path, manifest=manifest).fingerprint(store) == honest


def test_files_changed_a_moment_ago_are_hashed_but_not_remembered(tmp_path: Path) -> None:
    manifest = write_tiny_dataset(tmp_path)  # just written: within a timestamp tick of a rewrite
    store = tmp_path / "file-hashes"
    open_dataset("tiny", root=tmp_path, manifest=manifest).fingerprint(store)
    assert not store.exists()


def test_images_decode_to_their_colour_and_label(tmp_path: Path) -> None:
    dataset = open_dataset("tiny", root=tmp_path, manifest=write_tiny_dataset(tmp_path))
    image, label = dataset[1]
    assert label == 1 and image.mode == "RGB" and image.size == (8, 8)
    red, green, blue = image.getpixel((4, 4))
    assert green > 240 and red < 15 and blue < 15  # JPEG keeps a flat colour within a few levels


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    dataset = open_dataset("tiny", root=tmp_path, manifest=write_tiny_dataset(tmp_path))
    corrupt = tmp_path / "tiny" / "images" / "corrupt.jpg"
    with pytest.raises(SplitbenchError, match=f"^corrupt image: {corrupt} \\(cannot identify image file\\)$"):
        dataset[3]


def test_truncated_image_is_named(tmp_path: Path) -> None:
    dataset = open_dataset("tiny", root=tmp_path, manifest=write_tiny_dataset(tmp_path))
    path = tmp_path / "tiny" / "images" / "a.jpg"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SplitbenchError, match=f"^corrupt image: {path} "):
        dataset[0]


def test_listed_file_that_is_missing_is_named(tmp_path: Path) -> None:
    manifest = write_tiny_dataset(tmp_path, listed={**LABELS, "gone.jpg": 4})
    with pytest.raises(SplitbenchError, match="missing image: .*images/gone.jpg \\(listed in .*labels.csv"):
        open_dataset("tiny", root=tmp_path, manifest=manifest)


def test_image_removed_after_opening_is_named(tmp_path: Path) -> None:
    dataset = open_dataset("tiny", root=tmp_path, manifest=write_tiny_dataset(tmp_path))
    (tmp_path / "tiny" / "images" / "b.jpg").unlink()
    with pytest.raises(SplitbenchError, match="missing image: .*b.jpg"):
        dataset[1]


def test_unlabelled_image_is_named(tmp_path: Path) -> None:
    manifest = write_tiny_dataset(tmp_path, listed={file: LABELS[file] for file in ("a.jpg", "b.jpg", "c.jpg")})
    with pytest.raises(SplitbenchError, match="1 image\\(s\\) have no label .*corrupt.jpg"):
        open_dataset("tiny", root=tmp_path, manifest=manifest)


# --- verification of a class_folders dataset ----------------------------------------------


def write_class_folders(root: Path, per_class: dict[str, int]) -> Path:
    for class_name, count in per_class.items():
        folder = root / "folders" / "test" / class_name
        folder.mkdir(parents=True)
        for index in range(count):
            Image.new("RGB", (4, 4), (index, 0, 0)).save(folder / f"{index:04d}.jpg")
    return root / "folders"


def folders_manifest(files: int, classes: int, sha256: str | None) -> Manifest:
    split = SplitInfo("test", "test", files=files, classes=classes, file_list_sha256=sha256)
    return Manifest("folders", "class folders", "folders", "class_folders", {"test": split})


def test_class_folder_labels_follow_alphabetical_order(tmp_path: Path) -> None:
    dataset_dir = write_class_folders(tmp_path, {"zebra": 1, "ant": 2, "empty": 0})
    count, sha = compute_file_list_checksum(dataset_dir / "test")
    dataset = open_dataset("folders", root=tmp_path, manifest=folders_manifest(count, 3, sha))
    # "empty" still takes index 1, as in torchvision's ImageFolder, so "zebra" is 2.
    assert [(Path(path).parent.name, label) for path, label in dataset.samples] == [("ant", 0), ("ant", 0), ("zebra", 2)]


def test_verification_reports_count_classes_and_names(tmp_path: Path) -> None:
    dataset_dir = write_class_folders(tmp_path, {"ant": 2, "bee": 1})
    count, sha = compute_file_list_checksum(dataset_dir / "test")
    assert count == 3

    with pytest.raises(SplitbenchError, match="dataset folders, split test .*expected 4 image files, found 3"):
        verify_manifest(folders_manifest(4, 2, sha), tmp_path, "test")
    with pytest.raises(SplitbenchError, match="expected 3 class folders, found 2"):
        verify_manifest(folders_manifest(3, 3, None), tmp_path, "test")
    with pytest.raises(SplitbenchError, match="3 files as expected, but their names differ"):
        verify_manifest(folders_manifest(3, 2, "0" * 64), tmp_path, "test")
    with pytest.raises(SplitbenchError, match=f"dataset folders not found: {tmp_path / 'elsewhere' / 'folders'}"):
        verify_manifest(folders_manifest(3, 2, sha), tmp_path / "elsewhere", "test")
    assert verify_manifest(folders_manifest(3, 2, sha), tmp_path, "test") == [
        "test/ant/0000.jpg",
        "test/ant/0001.jpg",
        "test/bee/0000.jpg",
    ]


def test_hidden_and_non_image_files_are_ignored(tmp_path: Path) -> None:
    dataset_dir = write_class_folders(tmp_path, {"ant": 2})
    (dataset_dir / "test" / "ant" / ".DS_Store").write_bytes(b"")
    (dataset_dir / "test" / "ant" / "notes.txt").write_text("not an image")
    assert compute_file_list_checksum(dataset_dir / "test") == (2, file_list_sha256(["test/ant/0000.jpg", "test/ant/0001.jpg"]))


# --- preprocessing -------------------------------------------------------------------------


def test_imagenet_preprocessing_crops_and_normalises() -> None:
    image = Image.new("RGB", (227, 227), (255, 0, 102))
    tensor = Preprocessing(crop=224, resize=256).transform()(image)
    assert tensor.shape == (3, 224, 224)
    # By hand: (255/255 - 0.485) / 0.229 = 2.24891, (0 - 0.456) / 0.224 = -2.03571,
    # (102/255 - 0.406) / 0.225 = (0.4 - 0.406) / 0.225 = -0.02667.
    expected = torch.tensor([2.24891, -2.03571, -0.02667]).view(3, 1, 1).expand(3, 224, 224)
    torch.testing.assert_close(tensor, expected, atol=1e-4, rtol=0)


def test_preprocessing_without_resize_only_crops() -> None:
    preprocessing = Preprocessing(crop=32, resize=None, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    tensor = preprocessing.transform()(Image.new("RGB", (32, 32), (255, 255, 255)))
    assert tensor.shape == (3, 32, 32) and torch.all(tensor == 1.0)
    assert preprocessing.describe() == {
        "resize_short_side": None,
        "center_crop": 32,
        "interpolation": "bilinear",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
    }


def test_unknown_interpolation_lists_valid_ones() -> None:
    with pytest.raises(SplitbenchError, match="unknown interpolation 'lanczos'; valid: nearest, bilinear, bicubic"):
        Preprocessing(crop=224, interpolation="lanczos")


# --- evaluation: accuracy bookkeeping and errors from DataLoader workers ------------------


class RanksClassesInOrder(nn.Module):
    """Scores class 0 highest, then 1, 2, ...: predictions do not depend on the image."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.arange(10, 0, -1, dtype=torch.float32).expand(len(images), 10)


def test_evaluate_topk_counts_hits(tmp_path: Path) -> None:
    manifest = write_tiny_dataset(tmp_path)
    dataset = open_dataset("tiny", root=tmp_path, manifest=manifest, transform=Preprocessing(crop=8).transform(), limit=3)
    result = evaluate_topk(RanksClassesInOrder(), dataset, batch_size=2, workers=0, progress=False)
    assert (result.images, result.top5) == (3, 100.0)  # labels 0, 1, 2
    assert result.top1 == pytest.approx(100 / 3)


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_image_in_a_worker_surfaces_as_one_line_error(tmp_path: Path, workers: int) -> None:
    dataset = open_dataset(
        "tiny", root=tmp_path, manifest=write_tiny_dataset(tmp_path), transform=Preprocessing(crop=8).transform()
    )
    corrupt = tmp_path / "tiny" / "images" / "corrupt.jpg"
    with pytest.raises(SplitbenchError) as caught:
        evaluate_topk(RanksClassesInOrder(), dataset, batch_size=4, workers=workers, progress=False)
    assert str(caught.value) == f"corrupt image: {corrupt} (cannot identify image file)"
