"""Training throughput of a zoo classifier (images/s of augment + forward + backward + step).

Prints one JSON line. The ViT reference run used it to size its schedule to the GPU time
it had; on the 2-core CPU it tells how long one CIFAR-10 epoch takes.

    python benchmarks/bench_train.py [--model vit] [--device auto] [--batch-size 512] [--steps 20] [--compile]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from splitbench.training import CifarAugment
from splitbench.training.augment import normalize
from splitbench.training.trainer import TrainConfig, pick_device
from splitbench.zoo import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()

    device = pick_device(args.device)
    zoo_model = load_model(args.model, "none")
    model = zoo_model.model.to(device).train()
    forward = torch.compile(model) if args.compile else model
    config = TrainConfig(batch_size=args.batch_size, compile=args.compile)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    size = zoo_model.spec.input_size
    images = torch.randint(0, 256, (args.batch_size, 3, size, size), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (args.batch_size,), device=device)
    augment = CifarAugment()
    mean, std = zoo_model.spec.preprocessing.mean, zoo_model.spec.preprocessing.std

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = torch.nn.functional.cross_entropy(forward(normalize(augment(images), mean, std)).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    started = time.perf_counter()
    for _ in range(3):  # warm-up (and compilation)
        step()
    _sync(device)
    warmup_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    elapsed = time.perf_counter() - started
    print(json.dumps({
        "model": args.model, "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(), "batch_size": args.batch_size, "compile": args.compile,
        "warmup_s": round(warmup_s, 2), "images_per_s": round(args.steps * args.batch_size / elapsed, 1),
        "epoch_s_cifar10": round(50_000 / (args.steps * args.batch_size / elapsed), 2),
    }))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
