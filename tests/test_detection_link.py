"""serve / link / plan with a detector: yolov4_tiny's real weights split at pool2 over a real
loopback server, scored by COCOeval on real COCO images, as ``eval`` and ``codec`` score it.

Figures (CPU, the 8 lowest-id images of coco-val2017-mini): eval gives AP@[.5:.95] 22.917 %
and AP50 44.47 %, and so does link's ``none`` setup, to the last digit written; minmax8 over
the link gives 23.034 / 44.579. It must be within ``MINMAX_TOLERANCE`` of codec's minmax8 row:
link runs the head one picture at a time and codec runs it in batches, and a last-bit
difference can move a value across a quantisation step. On the committed 40-image run
(``reports/link/yolov4_tiny``) the two are equal.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import zmq

from conftest import needs_detector, SHARED_DATA, needs_shared_data, run_in_process

MINI = SHARED_DATA / "coco-val2017-mini"
IMAGES = 8
MINMAX_TOLERANCE = 0.5  # points of mAP and mAP@.5 between minmax8 over the link and codec's minmax8 row
COMMON = ["--weights", "default", "--dataset", "coco-val2017-mini", "--data", str(SHARED_DATA)]

pytestmark = [
    needs_shared_data,
    pytest.mark.skipif(not MINI.is_dir(), reason=f"no COCO mini set at {MINI}"),
    needs_detector,
]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> pd.Series:
    out = tmp_path_factory.mktemp("eval")
    done = run_in_process("eval", "yolov4_tiny", *COMMON, "--limit", str(IMAGES), "--loader-workers", "0",
                          "--out", str(out))
    assert done.returncode == 0, done.stderr
    return pd.read_csv(out / "eval.csv").iloc[0]


@pytest.fixture(scope="module")
def server():
    """``serve yolov4_tiny --at pool2 --codec none`` on an ephemeral loopback port."""
    process = subprocess.Popen([sys.executable, "-m", "splitbench", "serve", "yolov4_tiny", "--weights", "default",
                                "--at", "pool2", "--codec", "none", "--port", "0", "--threads", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()  # type: ignore[union-attr]
    if not line.startswith("listening on tcp://127.0.0.1:"):
        process.kill()
        pytest.fail(f"server did not start: {line!r} {process.stderr.read()}")  # type: ignore[union-attr]
    yield line.split()[2]
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0 and "stopped: answered" in out


@pytest.fixture(scope="module")
def linked(server: str, tmp_path_factory) -> Path:
    """link over the running server, paced by the app's token bucket at 100 Mbit/s."""
    out = tmp_path_factory.mktemp("link")
    done = run_in_process("link", "yolov4_tiny", *COMMON, "--at", "pool2", "--codec", "none", "--server", server,
                          "--shaper", "app", "--bandwidth", "100", "--limit", str(IMAGES), "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def _raw_exchange(endpoint: str, header: dict, payload: bytes) -> tuple[bytes, dict]:
    """One request on a bare DEALER socket: the reply's bytes as they came, and their JSON."""
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(endpoint)
    try:
        socket.send_multipart([json.dumps({"v": 1, "op": "infer", "id": "raw", **header}).encode(), payload])
        assert socket.poll(60_000), "no reply within 60 s"
        frames = socket.recv_multipart()
    finally:
        socket.close()
    assert len(frames) == 1
    return frames[0], json.loads(frames[0])


def test_serve_replies_detections_as_json_numbers_in_the_original_images_pixels(server: str) -> None:
    from splitbench.data import open_dataset
    from splitbench.detection.coco import COCO_MAX_DETECTIONS
    from splitbench.detection.yolo import COCO80_TO_91
    from splitbench.link.client import LinkClient
    from splitbench.link.endpoints import Sender, SplitSetup
    from splitbench.zoo import load_model

    with LinkClient(server) as client:
        info = client.info()
    assert (info["model"], info["task"], info["at"], info["codec"], info["shape"]) == \
        ("yolov4_tiny", "detection", "layers.17", "none", [256, 26, 26])
    model = load_model("yolov4_tiny", weights="default")
    image, image_id = open_dataset("coco-val2017-mini", root=SHARED_DATA, limit=1)[0]
    sender = Sender(model, SplitSetup("layers.17", "none"))
    sent = sender.send(sender.picture(image))
    assert sent.header["image_size"] == [image.height, image.width]
    raw, reply = _raw_exchange(server, sent.header, sent.payload)
    assert reply["ok"] and "top5" not in reply and set(reply["server_s"]) == {"decode", "tail"}
    found = reply["detections"]
    assert 0 < len(found) <= COCO_MAX_DETECTIONS * 80
    for x, y, w, h, score, category in found:  # plain JSON numbers: no strings, no pickles, nothing nested
        assert all(type(v) is float for v in (x, y, w, h, score)) and type(category) is int
        assert 0 <= x <= x + w <= image.width + 1e-3 and 0 <= y <= y + h <= image.height + 1e-3
        assert 0.005 < score <= 1 and category in COCO80_TO_91
    assert [row[4] for row in found] == sorted((row[4] for row in found), reverse=True)  # best first
    # float32's shortest decimals, not float64's 17 digits: 0.1, not 0.10000000149011612
    text = raw.decode()
    numbers = re.findall(r"[-\d.e]+", text[text.index('"detections":') + 13:text.index('"server_s":')])
    lengths = sorted(len(number) for number in numbers if "." in number)
    assert lengths[-1] <= 16  # float64 would write most of them in 17 to 19
    assert len(raw) < 80 * len(found) + 200
    # what the server sent is what eval's decoder makes of the whole model's outputs (the best ten:
    # another process's threads may move a last bit, and the order of near-equal scores with it)
    picture = sender.picture(image)
    with torch.inference_mode():
        outputs = model.model(picture.tensor[None])
    expected = model.spec.decode_detections(model.model, outputs, [(image.height, image.width)])[0].to_coco(image_id)
    assert len(found) == pytest.approx(len(expected), abs=2)
    for row, record in zip(found[:10], expected[:10]):
        assert row[5] == record["category_id"] and row[4] == pytest.approx(record["score"], abs=1e-4)
        assert row[:4] == pytest.approx(record["bbox"], abs=1e-2)
    # a detector's request must say where to draw the boxes
    _, refused = _raw_exchange(server, {k: v for k, v in sent.header.items() if k != "image_size"}, sent.payload)
    assert not refused["ok"] and "image_size" in refused["error"]


def test_link_none_gives_evals_map_and_its_detections(linked: Path, evaluated: pd.Series) -> None:
    summary = pd.read_csv(linked / "link.csv")
    assert len(summary) == 1
    row = summary.iloc[0]
    assert (row["setup"], row["images"], row["bandwidth_mbit"]) == ("layers.17:none", IMAGES, 100.0)
    assert "top1" not in summary.columns and {"map", "map50", "detections"} <= set(summary.columns)
    assert row["map"] == evaluated["map"] and row["map50"] == evaluated["map50"]  # the same code, the same numbers
    images = pd.read_csv(linked / "link_images.csv")
    assert len(images) == IMAGES and "found" not in images.columns and "hit1" not in images.columns
    assert images["detections"].sum() == evaluated["detections"]  # none over COCOeval's 100 per category here
    assert (images["payload_bytes"] == 256 * 26 * 26 * 4).all()
    assert (images["reply_bytes"] > 20 * images["detections"]).all()  # the reply carries the boxes
    assert row["transfer_ms"] > 8 * 256 * 26 * 26 * 4 / 100e6 * 1e3 * 0.9  # 692 kB at 100 Mbit/s: 55 ms or more
    assert "map50" in (linked / "link.md").read_text()
    sidecar = json.loads((linked / "link.json").read_text())
    assert sidecar["arguments"]["task"] == "detection"
    assert sidecar["data"]["annotations_sha256"].startswith("0ec8d52ba7a3")


def test_link_minmax8_is_codecs_minmax8_within_a_small_tolerance(evaluated: pd.Series, tmp_path: Path) -> None:
    # link starts its own server for the cut here (as it does without --server)
    link = run_in_process("link", "yolov4_tiny", *COMMON, "--at", "pool2", "--codec", "minmax8", "--shaper", "app",
                          "--bandwidth", "100", "--limit", str(IMAGES), "--out", str(tmp_path / "link"))
    assert link.returncode == 0, link.stderr
    codec = run_in_process("codec", "yolov4_tiny", *COMMON, "--at", "pool2", "--codec", "none,minmax8",
                           "--limit", str(IMAGES), "--workers", "1", "--cache", str(tmp_path / "cache"),
                           "--out", str(tmp_path / "codec"))
    assert codec.returncode == 0, codec.stderr
    linked = pd.read_csv(tmp_path / "link" / "link.csv").iloc[0]
    rows = pd.read_csv(tmp_path / "codec" / "codec.csv").set_index("codec")
    assert rows.loc["none", "map"] == evaluated["map"]
    assert linked["setup"] == "layers.17:minmax8"
    assert linked["map"] == pytest.approx(rows.loc["minmax8", "map"], abs=MINMAX_TOLERANCE)
    assert linked["map50"] == pytest.approx(rows.loc["minmax8", "map50"], abs=MINMAX_TOLERANCE)
    # one byte per element and the 8-byte range, as codec counts them
    assert linked["payload_bytes"] * IMAGES == rows.loc["minmax8", "feature_bytes"]


def test_plan_times_a_detector_and_validates_with_map(linked: Path, tmp_path: Path) -> None:
    done = run_in_process("plan", "yolov4_tiny", *COMMON, "--at", "pool2", "--codec", "none", "--bandwidth", "100",
                          "--limit", "1", "--repeats", "1", "--validate", str(linked / "link.csv"),
                          "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    costs = pd.read_csv(tmp_path / "times.csv").set_index("setup")
    assert list(costs.index) == ["input", "layers.17:none", "edge"]
    assert costs.loc["layers.17:none", "payload_bytes"] == 256 * 26 * 26 * 4
    assert costs.loc["layers.17:none", "reply_bytes"] > 500  # the detections travel back
    validation = pd.read_csv(tmp_path / "validation.csv").set_index("setup")
    measured = pd.read_csv(linked / "link.csv").iloc[0]
    assert "top1" not in validation.columns
    assert validation.loc["layers.17:none", "map"] == measured["map"]
    assert validation.loc["layers.17:none", "map50"] == measured["map50"]


def _one_line_error(done, message: str) -> None:
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and done.stderr.startswith("error: "), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["link", "yolov4_tiny", "--weights", "default", "--dataset", "imagenet-val-1300", "--at", "pool2"],
     "yolov4_tiny is a detection model and imagenet-val-1300 holds class labels, not boxes"),
    (["plan", "yolov4_tiny", "--weights", "default", "--dataset", "imagenet-val-1300", "--at", "pool2"],
     "yolov4_tiny is a detection model and imagenet-val-1300 holds class labels, not boxes"),
    (["link", "ssdlite320_mobilenet_v3_large", "--weights", "none", "--at", "input"],
     "ssdlite320_mobilenet_v3_large is a detection model cut in its backbone"),
    (["serve", "ssdlite320_mobilenet_v3_large", "--weights", "none", "--at", "input"],
     "serve splits classifiers (top-1) and detectors"),
])
def test_bad_detector_input_ends_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    extra = ["--data", str(SHARED_DATA), "--out", str(tmp_path)] if args[0] != "serve" else []
    _one_line_error(run_in_process(*args, *extra, "--dry-run"), message)


# -- the pieces, without a server -----------------------------------------------------------------

def test_only_what_cocoeval_counts_is_sent_and_the_bound_is_pycocotools() -> None:
    from pycocotools.cocoeval import Params

    from splitbench.detection.coco import COCO_MAX_DETECTIONS, coco_countable
    from splitbench.detection.yolo import Detections

    assert COCO_MAX_DETECTIONS == Params(iouType="bbox").maxDets[-1]
    classes = torch.tensor([0] * 150 + [1] * 3 + [0] * 2)
    scores = torch.linspace(1.0, 0.01, len(classes))
    kept = coco_countable(Detections(torch.rand(len(classes), 4), scores, classes))
    assert kept.classes.tolist() == [0] * 100 + [1] * 3 and torch.equal(kept.scores[:100], scores[:100])


def test_detections_travel_as_float32_and_nonsense_is_refused() -> None:
    from splitbench.link.protocol import ProtocolError, float32_numbers, parse_request, read_detections, request_frames

    values = np.random.default_rng(0).random(10_000).astype(np.float32) * 640
    numbers = float32_numbers(values)
    assert (np.asarray(json.loads(json.dumps(numbers))).astype(np.float32) == values).all()
    rows = read_detections([[*float32_numbers([1.5, 2.25, 3.0, 4.0, 0.1]), 18]])
    assert rows[0, 4] == float(np.float32(0.1)) and rows[0, 5] == 18
    for bad in ([[1, 2, 3, 4, 0.5]], [[1, 2, -3, 4, 0.5, 1]], [[1, 2, 3, 4, 0.5, 1.5]], [["1", 2, 3, 4, 0.5, 1]],
                [[1, 2, 3, 4, 0.5, True]], "boxes", [[1, 2, 3, 4, 0.5, 1]] * 10_001):
        with pytest.raises(ProtocolError):
            read_detections(bad)
    frames = request_frames("infer", "a", b"", input="features", codec="none", shape=[3], image_size=[480, 640])
    assert parse_request(frames).image_size == (480, 640)
    for size in ([480], [0, 640], [480, 1 << 16], ["480", 640]):
        with pytest.raises(ProtocolError, match="image_size must be"):
            parse_request(request_frames("infer", "a", b"", input="features", codec="none", shape=[3], image_size=size))
