"""Seconds per training step of ``splitbench rd`` and the projected time of one λ point.

Times warm-up steps (codec only), RD steps (codec + frozen tail, forward and backward) and
evaluation with real bitstreams, per variant, on random features of the split's shape (the
time does not depend on the values), then projects one point of the committed recipe
(by default seed 000's: 1000 training images, batch 16, 4 warm-up and 2 RD epochs, 1300 test
images; the warm-up is shared by every λ of a variant and reported apart) against the
20-minute target. Prints one JSON line per variant.

    python benchmarks/bench_rd.py                     # MobileNetV2 at bottleneck3 (seed 000's committed run)
    python benchmarks/bench_rd.py --model cifar_resnet20 --at input --channels 16 --train-images 5000 \
        --test-images 500 --warmup-epochs 6 --epochs 3  # seed 001's committed run
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from splitbench.split import feature_shape
from splitbench.compression.data import INPUT
from splitbench.compression.models import VARIANTS
from splitbench.compression.pipeline import rd_loss, warmup_loss
from splitbench.compression.sweep import IMAGE_VARIANTS, build_pipeline
from splitbench.compression.train import RDSettings, TrainingSet, evaluate
from splitbench.training.trainer import pick_device
from splitbench.zoo import load_model

TARGET_S = 20 * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--at", default="bottleneck3")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=None, help="--at input: image side (default: the model's)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--train-images", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2, help="RD epochs per λ")
    parser.add_argument("--warmup-epochs", type=int, default=4)
    parser.add_argument("--test-images", type=int, default=1300)
    parser.add_argument("--eval-images", type=int, default=64, help="images timed through the range coder")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = pick_device(args.device)
    settings = RDSettings(epochs=args.epochs, warmup_epochs=args.warmup_epochs)
    zoo_model = load_model(args.model, "none")
    size = zoo_model.spec.input_size
    if args.at == INPUT:
        side = args.image_size or size
        inputs = torch.randint(0, 256, (settings.batch_size, 3, side, side), dtype=torch.uint8)
        variants, alpha, pixels = IMAGE_VARIANTS, 0.1, side * side
    else:
        shape = feature_shape(zoo_model, args.at, zoo_model.spec.preprocessing)
        inputs = torch.randn(settings.batch_size, *shape)
        variants, alpha, pixels = VARIANTS, 0.0, size * size
    with torch.inference_mode():
        classes = zoo_model.model(torch.zeros(1, 3, size, size)).shape[1]
    teacher = torch.randn(settings.batch_size, classes)
    labels = teacher.argmax(1)
    steps_per_epoch = -(-args.train_images // settings.batch_size)
    for variant in variants:
        pipeline = build_pipeline(zoo_model, args.at, variant, args.channels, "factorized", alpha,
                                  tuple(inputs.shape[1:]), 0).to(device)
        optimizer = torch.optim.Adam([p for p in pipeline.parameters() if p.requires_grad], lr=settings.lr)
        batch = inputs.to(device)

        def step(warm: bool, pipeline=pipeline, batch=batch, optimizer=optimizer) -> None:
            output = pipeline(batch)
            loss, _ = (warmup_loss(output, settings.warmup_rate_weight, pixels) if warm else
                       rd_loss(output, teacher.to(device), labels.to(device), 1.0, alpha, settings.target, pixels))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        pipeline.train()
        warmup_step_s, rd_step_s = (_seconds(lambda warm=warm: step(warm), args.steps) for warm in (True, False))
        test = TrainingSet(*(_tiled(t, args.eval_images) for t in (inputs, teacher, labels)))
        eval_s = evaluate(pipeline, test, 4 * settings.batch_size, device, progress=False)["eval_s"]
        eval_total = eval_s / args.eval_images * args.test_images
        point_s = rd_step_s * steps_per_epoch * settings.epochs + eval_total
        warmup_total = warmup_step_s * steps_per_epoch * settings.warmup_epochs
        print(json.dumps({
            "model": args.model, "at": args.at, "variant": variant, "device": str(device),
            "threads": torch.get_num_threads(), "batch_size": settings.batch_size,
            "warmup_step_s": round(warmup_step_s, 3), "rd_step_s": round(rd_step_s, 3),
            "eval_ms_per_image": round(1000 * eval_s / args.eval_images, 1),
            "point_s": round(point_s, 1), "shared_warmup_s": round(warmup_total, 1),
            "point_with_warmup_s": round(point_s + warmup_total, 1), "target_s": TARGET_S,
            "within_target": point_s + warmup_total <= TARGET_S,
        }))


def _tiled(batch: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` items: the batch repeated."""
    return batch.repeat(-(-count // len(batch)), *[1] * (batch.dim() - 1))[:count]


def _seconds(step, steps: int) -> float:
    step()  # first call: allocation and lazy initialisation
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps


if __name__ == "__main__":
    main()
