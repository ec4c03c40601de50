"""Detection across the tool: ``eval``, ``codec``, ``profile``/``split`` of yolov4_tiny on real COCO
images with the package's real weights, the COCO and VOC readers, and the bad inputs, each one line.

Figures (CPU, darknet's thresholds 0.005 / NMS 0.45): on the 4 lowest-id images of
coco-val2017-mini, eval gives AP@[.5:.95] 18.77 % and AP50 33.22 %, and so does codec's
``none`` row; all 158 images give 25.10 / 44.39 (``reports/eval/yolov4_tiny-coco-val2017-mini``).
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import needs_detector, SHARED_DATA, coco_copy, run_in_process

MINI = SHARED_DATA / "coco-val2017-mini"
HANDFUL = 4  # images: every call below stays a few seconds

pytestmark = [
    pytest.mark.skipif(not MINI.is_dir(), reason=f"no COCO mini set at {MINI}"),
    needs_detector,
]
MAP_MEASURED, MAP50_MEASURED = 18.77, 33.22  # percent, the 4 images
MAP_TOLERANCE = 0.5  # points, across torch builds and CPUs


def _one_line_error(done, message: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {message}") or message in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr


@pytest.fixture(scope="module")
def handful():
    from splitbench.detection import CocoDataset

    return CocoDataset.load(MINI).first(HANDFUL)


@pytest.fixture(scope="module")
def detected(handful):
    """The detection package's own figures on the handful: detect(), then coco_map()."""
    from splitbench.detection import coco_map, detect, load_yolov4_tiny

    return coco_map(detect(load_yolov4_tiny(), handful.image_paths()), handful)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    done = run_in_process("eval", "yolov4_tiny", "--data", str(SHARED_DATA), "--limit", str(HANDFUL),
                          "--loader-workers", "0", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_eval_prints_and_writes_the_map_of_coco_map(evaluated, detected) -> None:
    row = pd.read_csv(evaluated / "eval.csv").iloc[0]
    assert row["map"] == round(100 * detected["map"], 3) and row["map50"] == round(100 * detected["map50"], 3)
    assert row["map"] == pytest.approx(MAP_MEASURED, abs=MAP_TOLERANCE)
    assert row["map50"] == pytest.approx(MAP50_MEASURED, abs=MAP_TOLERANCE)
    sidecar = json.loads((evaluated / "eval.json").read_text())
    assert sidecar["arguments"]["task"] == "detection"
    assert sidecar["weights"]["sha256"] == "cf9fbfd0f6d4869b35762f56100f50ed05268084078805f0e7989efe5bb8ca87"
    assert sidecar["data"]["annotations_sha256"].startswith("0ec8d52ba7a3")
    assert sidecar["arguments"]["preprocessing"]["resampling"] == "darknet"


def test_codec_none_row_is_evals_map(evaluated, tmp_path: Path) -> None:
    done = run_in_process("codec", "yolov4_tiny", "--data", str(SHARED_DATA), "--limit", str(HANDFUL),
                          "--codec", "none,bpg:35@gray", "--workers", "1", "--cache", str(tmp_path / "cache"),
                          "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "out" / "codec.csv")
    assert list(table["codec"]) == ["none", "bpg"] and set(table["split"]) == {"pool2"}
    none, bpg = table.iloc[0], table.iloc[1]
    evaluated_row = pd.read_csv(evaluated / "eval.csv").iloc[0]
    assert none["map"] == evaluated_row["map"] and none["map50"] == evaluated_row["map50"]
    # 256x26x26 float32 per image; the JPEG is the 416x416 picture the detector sees
    assert none["feature_bytes"] == HANDFUL * 256 * 26 * 26 * 4 and none["jpeg_bytes"] > 0
    assert 0 < bpg["feature_bytes"] < none["feature_bytes"] / 20 and bpg["map_drop"] == round(none["map"] - bpg["map"], 3)
    markdown = (tmp_path / "out" / "codec.md").read_text()
    assert "Beside seed 003 (Tables 8–9)" in markdown and "MobileNetV2_kept" in markdown


def test_split_of_yolov4_tiny_is_exact_and_accounted(tmp_path: Path) -> None:
    from splitbench.zoo import load_model

    model = load_model("yolov4_tiny", "default")
    head, tail = model.split("pool2")
    x = torch.rand(1, 3, 416, 416, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(tail(head(x)), model.model(x)))
    done = run_in_process("split", "yolov4_tiny", "--at", "pool2", "--repeats", "0", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    row = pd.read_csv(tmp_path / "split.csv").iloc[0]
    assert row["transfer_shape"] == "256x26x26" and row["tasks"] == "detection"
    assert row["head_macs"] + row["tail_macs"] == 3_466_268_416  # darknet prints 6.9 BFLOPs (2 x MACs)


def _corrupt(document: dict, root: Path) -> None:
    (root / "instances.json").write_text(json.dumps(document)[:-40])


def _extra_image(document: dict, root: Path) -> None:
    shutil.copy(root / "images" / document["images"][0]["file_name"], root / "images" / "000000999999.jpg")


def _missing_image(document: dict, root: Path) -> None:
    (root / "images" / document["images"][1]["file_name"]).unlink()


@pytest.mark.parametrize("edit, message", [
    (_corrupt, "COCO annotations .*instances.json are not valid JSON"),
    (_extra_image, "image 000000999999.jpg in .*images has no record in"),
    (_missing_image, "image file missing for image id 802"),
], ids=["corrupt-json", "image-without-record", "record-without-image"])
def test_bad_coco_data_ends_in_one_line(tmp_path: Path, edit, message: str) -> None:
    import re

    root = coco_copy(tmp_path, edit)
    done = run_in_process("eval", "yolov4_tiny", "--dataset", f"coco:{root}", "--dry-run", "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and re.match(f"error: {message}", done.stderr), done.stderr
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["eval", "mobilenet_v2", "--weights", "none", "--task", "detection"],
     "--task detection: mobilenet_v2 is a classification model"),
    (["eval", "yolov4_tiny", "--task", "segmentation"], "unknown task 'segmentation'"),
    (["eval", "yolov4_tiny", "--dataset", "imagenet-val-1300"],
     "yolov4_tiny is a detection model and imagenet-val-1300 holds class labels, not boxes"),
    (["eval", "yolov4_tiny", "--dataset", f"imagefolder:{SHARED_DATA / 'cifar10-jpeg' / 'test'}"],
     "yolov4_tiny is a detection model and imagefolder:"),
    (["eval", "mobilenet_v2", "--weights", "none", "--dataset", "coco-val2017-mini"],
     "coco-val2017-mini holds boxes for detection; mobilenet_v2 is a classification model"),
    (["codec", "mobilenet_v2", "--weights", "none", "--dataset", "coco-val2017-mini"],
     "coco-val2017-mini holds boxes for detection"),
    (["eval", "ssd_vgg16", "--weights", "none"], "ssd_vgg16 is a detection model whose outputs splitbench cannot score"),
    (["codec", "ssdlite320_mobilenet_v3_large", "--weights", "none", "--at", "features.0"],
     "ssdlite320_mobilenet_v3_large is cut in its backbone"),
    (["eval", "ssdlite320_mobilenet_v3_large", "--weights", "default", "--dataset", "coco-val2017-mini"],
     "torchvision's SSDLite320_MobileNet_V3_Large_Weights.COCO_V1 is not cached"),
], ids=["task-on-classifier", "unknown-task", "class-labels-for-detector", "class-folders-for-detector",
        "boxes-for-classifier", "boxes-for-classifier-codec", "undecodable-detector", "codec-on-backbone-cut",
        "torchvision-default-offline"])
def test_task_and_data_mismatches_end_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    done = run_in_process(*args, "--data", str(SHARED_DATA), "--dry-run", "--out", str(tmp_path))
    _one_line_error(done, message)


def test_a_torchvision_detector_evaluates_from_a_weights_file(tmp_path: Path, handful) -> None:
    """``--weights PATH`` (no detector weights exist offline: the file holds the seeded random
    build's); its eval-mode dicts are scored by the same COCOeval as yolov4_tiny's."""
    from splitbench.scoring import coco_figures
    from splitbench.zoo import load_model
    from splitbench.zoo.sources import decode_torchvision_detections

    model = load_model("ssdlite320_mobilenet_v3_large")
    weights = tmp_path / "ssdlite.pth"
    torch.save(model.model.state_dict(), weights)
    done = run_in_process("eval", "ssdlite320_mobilenet_v3_large", "--weights", str(weights), "--data", str(SHARED_DATA),
                          "--limit", "2", "--loader-workers", "0", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    row = pd.read_csv(tmp_path / "out" / "eval.csv").iloc[0]
    two = handful.first(2)
    from torchvision.transforms.functional import to_tensor
    from PIL import Image

    with torch.no_grad():
        outputs = model.model([to_tensor(Image.open(p).convert("RGB")) for p in two.image_paths()])
    found = decode_torchvision_detections(model.model, outputs, [])
    figures = coco_figures(found, [i.id for i in two.images], two)
    assert row["detections"] == sum(map(len, found)) > 0
    assert row["map"] == round(figures["map"], 3) and row["map50"] == round(figures["map50"], 3)


def _write_voc(root: Path, handful) -> None:
    """The handful's annotations as PASCAL VOC XML (VOC's classes only), images copied."""
    from splitbench.detection.voc import VOC_TO_COCO

    to_voc = {coco_id: voc for voc, (coco_id, _) in VOC_TO_COCO.items()}
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for image in handful.images:
        shutil.copy(image.path, root / "JPEGImages" / image.path.name)
        tree = ElementTree.Element("annotation")
        ElementTree.SubElement(tree, "filename").text = image.path.name
        size = ElementTree.SubElement(tree, "size")
        ElementTree.SubElement(size, "width").text, ElementTree.SubElement(size, "height").text = (
            str(image.width), str(image.height))
        for ann in handful.document["annotations"]:
            if ann["image_id"] == image.id and ann["category_id"] in to_voc and not ann["iscrowd"]:
                x, y, w, h = ann["bbox"]
                obj = ElementTree.SubElement(tree, "object")
                ElementTree.SubElement(obj, "name").text = to_voc[ann["category_id"]]
                ElementTree.SubElement(obj, "difficult").text = "0"
                box = ElementTree.SubElement(obj, "bndbox")
                for key, value in zip(("xmin", "ymin", "xmax", "ymax"), (x + 1, y + 1, x + w, y + h)):
                    ElementTree.SubElement(box, key).text = f"{value:.2f}"
        ElementTree.ElementTree(tree).write(root / "Annotations" / f"{image.path.stem}.xml")


def test_voc_annotations_become_coco_ids_and_bad_ones_end_in_one_line(tmp_path: Path, handful) -> None:
    from splitbench.data import open_dataset
    from splitbench.errors import SplitbenchError

    root = tmp_path / "voc"
    _write_voc(root, handful)
    data = open_dataset(f"voc:{root}")
    assert len(data) == HANDFUL and len(data.ground_truth.categories) == 20
    people = [a for a in data.ground_truth.document["annotations"] if a["category_id"] == 1]
    originals = [a for a in handful.document["annotations"] if a["category_id"] == 1 and not a["iscrowd"]]
    assert len(people) == len(originals) > 0
    assert people[0]["bbox"] == pytest.approx(originals[0]["bbox"], abs=0.01)  # 1-based inclusive, converted back
    xml = root / "Annotations" / f"{handful.images[0].path.stem}.xml"
    xml.write_text(xml.read_text().replace("<name>person</name>", "<name>unicorn</name>", 1))
    with pytest.raises(SplitbenchError, match="object 'unicorn' is not one of VOC's 20 classes"):
        open_dataset(f"voc:{root}")
    xml.write_text("<annotation><filename>")
    with pytest.raises(SplitbenchError, match="voc: cannot read .*xml"):
        open_dataset(f"voc:{root}")
