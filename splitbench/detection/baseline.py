"""Baseline mAP of YOLOv4-tiny on a COCO-format data set, with the OpenCV reference beside it.

    python -m splitbench.detection.baseline --data ../shared/data/coco-val2017-mini [--reference]

Prints one line per pipeline (AP@[.5:.95], AP50, detections, seconds) and, with ``--out``,
writes them as JSON. ``--reference`` adds OpenCV on the same input blob, OpenCV end to end
(its own JPEG decoding and ``blobFromImage`` resize) and the port with OpenCV's half-pixel
resize, and the largest difference between the port's and OpenCV's raw head outputs.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from splitbench.detection.coco import CocoDataset, coco_map
from splitbench.detection.darknet import OPENCV_BN_EPS, Darknet
from splitbench.detection.yolo import Detections, load_rgb, postprocess, preprocess
from splitbench.detection.yolov4_tiny import load_yolov4_tiny, yolov4_tiny_files

Pipeline = Callable[[list[torch.Tensor], list[Path]], list[Detections]]


def port_pipeline(model: Darknet, align_corners: bool = True) -> Pipeline:
    def run(images: list[torch.Tensor], _paths: list[Path]) -> list[Detections]:
        with torch.no_grad():
            heads = model(preprocess(images, model.input_size, align_corners=align_corners))
        return postprocess(heads, model.yolo, model.input_size, [tuple(i.shape[1:]) for i in images])
    return run


def opencv_pipelines(model: Darknet, stats: dict[str, float]) -> dict[str, Pipeline]:
    """OpenCV on the port's blob (also recording the head difference into ``stats``), and end to end."""
    import cv2

    from splitbench.detection import reference

    net = reference.opencv_net(yolov4_tiny_files())
    twin = load_yolov4_tiny(bn_eps=OPENCV_BN_EPS)  # the port with OpenCV's BN epsilon

    def same_blob(images: list[torch.Tensor], _paths: list[Path]) -> list[Detections]:
        blob = preprocess(images, model.input_size)
        with torch.no_grad():
            ours = twin(blob)
        heads, rows = reference.opencv_forward(net, blob, model.yolo)
        for a, b in zip(ours, heads):
            diff = (a - b).abs().max().item()
            stats["max_abs"] = max(stats.get("max_abs", 0.0), diff)
            stats["max_rel"] = max(stats.get("max_rel", 0.0), diff / b.abs().max().item())
        return reference.opencv_detections(rows, [tuple(i.shape[1:]) for i in images])

    def end_to_end(_images: list[torch.Tensor], paths: list[Path]) -> list[Detections]:
        decoded = [cv2.imread(str(p)) for p in paths]
        blob = cv2.dnn.blobFromImages(decoded, 1 / 255.0, model.input_size[::-1], swapRB=True, crop=False)
        return reference.opencv_detect(net, torch.from_numpy(blob), [d.shape[:2] for d in decoded], model.yolo)

    return {"opencv, same blob": same_blob, "opencv, end to end": end_to_end}


def run(data: CocoDataset, pipelines: dict[str, Pipeline], batch: int = 8) -> dict[str, dict[str, float]]:
    results: dict[str, list[Detections]] = {name: [] for name in pipelines}
    seconds = dict.fromkeys(pipelines, 0.0)
    paths = data.image_paths()
    for start in range(0, len(paths), batch):
        chunk = paths[start:start + batch]
        images = [load_rgb(p) for p in chunk]
        for name, pipeline in pipelines.items():
            began = time.perf_counter()
            results[name] += pipeline(images, chunk)
            seconds[name] += time.perf_counter() - began
    return {name: {**coco_map(dets, data), "detections": sum(map(len, dets)), "seconds": seconds[name]}
            for name, dets in results.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with instances.json and images/")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images by id")
    parser.add_argument("--reference", action="store_true", help="add the OpenCV pipelines")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    data = CocoDataset.load(args.data)
    if args.limit:
        data = data.first(args.limit)
    model = load_yolov4_tiny()
    stats: dict[str, float] = {}
    pipelines = {"port (darknet resize)": port_pipeline(model)}
    if args.reference:
        pipelines["port (half-pixel resize)"] = port_pipeline(model, align_corners=False)
        pipelines.update(opencv_pipelines(model, stats))
    figures = run(data, pipelines)
    for name, m in figures.items():
        print(f"{name:26s} AP {m['map']:.4f}  AP50 {m['map50']:.4f}  AP75 {m['map75']:.4f}  "
              f"{m['detections']:6d} dets  {m['seconds']:.1f} s")
    if stats:
        print(f"raw heads, port vs OpenCV: max abs {stats['max_abs']:.3g}, max rel {stats['max_rel']:.3g}")
    if args.out:
        args.out.write_text(json.dumps({"images": len(data), "threads": torch.get_num_threads(),
                                        "pipelines": figures, "heads": stats}, indent=2) + "\n")


if __name__ == "__main__":
    main()
