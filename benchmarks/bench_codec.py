"""Times the 6-point BPG sweep of issue 3 and a naive per-image pipeline.

Ours: MobileNetV2 at bottleneck6 on imagenet-val-1300, BPG 4:0:0 at QP 10, 20, 30, 35, 40, 50,
from a cold feature cache: the head runs once per image (batched), encode/decode run in
``--workers`` processes, the tail runs batched on what comes back. Prints the wall time and,
per stage (head, quantize+tile, encode, decode, tail), seconds and images/s.

Naive: what a straightforward script does, per image and per QP: load and preprocess the image,
run the head (batch of 1), quantise and tile, write a PNG, run an external encoder process on it
(bpgenc where it is on PATH; here libbpg is not installed, so a separate Python process running
our encoder on the PNG stands in for it), run an external decoder process back to PNG, read it,
dequantise, run the tail (batch of 1). It is timed on ``--naive-images`` images and extrapolated.

Target (issue 3): <= 8 minutes on the 2-core reference machine, clearly faster than naive.

    python benchmarks/bench_codec.py [--limit 1300] [--workers N] [--naive-images 12]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QPS = (10, 20, 30, 35, 40, 50)
REPO = Path(__file__).resolve().parents[1]


def external(argv: list[str]) -> None:
    """The stand-in external tools: ``--encode-png IN.png OUT.bpg QP`` and ``--decode-bpg IN.bpg OUT.png``."""
    import imagecodecs

    from splitbench.codecs.bpg import decode_bpg, encode_bpg

    if argv[0] == "--encode-png":
        Path(argv[2]).write_bytes(encode_bpg(imagecodecs.png_decode(Path(argv[1]).read_bytes()), int(argv[3]), 8))
    else:
        Path(argv[2]).write_bytes(imagecodecs.png_encode(decode_bpg(Path(argv[1]).read_bytes())))


def ours(args: argparse.Namespace) -> tuple[float, int]:
    from splitbench.codecs import CodecSpec
    from splitbench.codecs.pipeline import layout_points
    from splitbench.codecs.sweep import SweepRequest, run_sweep, stage_timings
    from splitbench.zoo import load_model

    model = load_model("mobilenet_v2", str(args.weights))
    with tempfile.TemporaryDirectory() as cache:
        request = SweepRequest(model, "bottleneck6", "imagenet-val-1300", data_root=args.data, limit=args.limit,
                               cache_root=Path(cache), workers=args.workers)
        began = time.perf_counter()
        result = run_sweep(request, layout_points([CodecSpec("bpg", qp) for qp in QPS], ["gray"]))
        wall = time.perf_counter() - began
    images = int(result.table["images"].iloc[0])
    print(f"\nours: {len(QPS)} BPG points x {images} images in {wall:.1f} s wall "
          f"({len(QPS) * images / wall:.1f} image-points/s), {args.workers} workers, {os.cpu_count()} logical CPUs")
    for stage, figures in stage_timings(result).items():
        parallel = " (summed over workers; per worker)" if stage in ("quantize+tile", "encode", "decode") else ""
        print(f"  {stage:14s} {figures['seconds']:8.1f} s  {figures['images_per_s']:8.1f} images/s{parallel}")
    print("  top-1 per QP: " + ", ".join(f"{int(p)}: {t:.2f}" for p, t in zip(result.table["param"], result.table["top1"],
                                                                                 strict=True)))
    return wall, images


def naive(args: argparse.Namespace) -> float:
    """Seconds per (image, QP) of the naive pipeline."""
    import imagecodecs
    import numpy as np
    import torch

    from splitbench.codecs.features import Quantized, dequantize, quantize, tile, untile
    from splitbench.split import preprocessing_for
    from splitbench.data import open_dataset
    from splitbench.zoo import load_model

    model = load_model("mobilenet_v2", str(args.weights))
    head, tail = model.split("bottleneck6")
    dataset = open_dataset("imagenet-val-1300", root=args.data, limit=args.naive_images,
                           transform=preprocessing_for(model, "seed").transform())
    tool = [sys.executable, str(Path(__file__).resolve())]
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        png, coded, back = Path(folder, "tile.png"), Path(folder, "tile.bpg"), Path(folder, "back.png")
        for qp in QPS:
            for i in range(len(dataset)):
                image, _ = dataset[i]
                features = head(image[None])[0].numpy()
                quantized = quantize(features, 8)
                png.write_bytes(imagecodecs.png_encode(tile(quantized.values)))
                subprocess.run([*tool, "--encode-png", str(png), str(coded), str(qp)], check=True)
                subprocess.run([*tool, "--decode-bpg", str(coded), str(back)], check=True)
                values = untile(imagecodecs.png_decode(back.read_bytes()), features.shape)
                recovered = dequantize(Quantized(values, quantized.minimum, quantized.maximum, 8))
                tail(torch.from_numpy(np.ascontiguousarray(recovered))[None])
    per = (time.perf_counter() - began) / (len(QPS) * len(dataset))
    print(f"\nnaive: {per * 1000:.0f} ms per image and QP over {len(dataset)} images x {len(QPS)} QPs "
          f"(external encoder: a Python process per call; bpgenc is not installed here)")
    return per


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("--encode-png", "--decode-bpg"):
        external(sys.argv[1:])
        return
    shared = REPO.parent / "shared"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1300)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--naive-images", type=int, default=12)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SPLITBENCH_DATA", shared / "data")))
    parser.add_argument("--weights", type=Path, default=shared / "weights" / "mobilenet_v2-imagenet-int8dequant.pth")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    wall, images = ours(args)
    per = naive(args) if args.naive_images else None
    if per:
        estimate = per * images * len(QPS)
        print(f"naive, extrapolated to {images} images x {len(QPS)} QPs: {estimate / 60:.1f} min "
              f"(ours {wall / 60:.1f} min: {estimate / wall:.1f}x faster)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
