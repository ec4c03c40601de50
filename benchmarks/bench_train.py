"""Training throughput of a zoo classifier in fp32, bf16 autocast and bf16 + torch.compile.

One run measures images/s (augment + forward + backward + Adam step) for each precision,
then trains ``--parity-steps`` steps from the same seed and the same batches in fp32 and in
bf16 and compares the loss curves. Prints one JSON line per measurement and a summary.
Run it while nothing else runs on the machine.

    python benchmarks/bench_train.py [--model vit] [--device auto] [--batch-size 64]
        [--steps 10] [--parity-steps 200] [--modes fp32,bf16,bf16+compile]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from splitbench.training import CifarAugment
from splitbench.training.augment import normalize
from splitbench.preflight import physical_cores
from splitbench.training.trainer import native_bf16, pick_device
from splitbench.zoo import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per mode, after 3 warm-up steps")
    parser.add_argument("--parity-steps", type=int, default=200, help="steps of the fp32/bf16 loss comparison (0: skip)")
    parser.add_argument("--modes", default="fp32,bf16,bf16+compile")
    args = parser.parse_args()

    device = pick_device(args.device)
    torch.set_num_threads(physical_cores())
    context = {"model": args.model, "device": str(device), "threads": torch.get_num_threads(),
               "native_bf16": native_bf16(device), "batch_size": args.batch_size,
               "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    print(json.dumps(context))
    speeds = {}
    for mode in args.modes.split(","):
        speeds[mode] = throughput(args.model, device, mode, args.batch_size, args.steps)
    summary = {**speeds}
    if "fp32" in speeds:
        summary.update({f"{mode}/fp32": round(speeds[mode]["images_per_s"] / speeds["fp32"]["images_per_s"], 3)
                        for mode in speeds if mode != "fp32"})
    if args.parity_steps:
        fp32 = losses(args.model, device, "fp32", args.batch_size, args.parity_steps)
        bf16 = losses(args.model, device, "bf16", args.batch_size, args.parity_steps)
        gaps = [abs(a - b) / a for a, b in zip(fp32, bf16, strict=True)]
        window = max(1, len(fp32) // 10)
        summary["parity"] = {
            "steps": args.parity_steps,
            "fp32_loss_last": round(sum(fp32[-window:]) / window, 4),
            "bf16_loss_last": round(sum(bf16[-window:]) / window, 4),
            "max_relative_gap": round(max(gaps), 4),
            "mean_relative_gap": round(sum(gaps) / len(gaps), 4),
        }
    print(json.dumps(summary))


def _setup(model_name: str, device: torch.device, batch_size: int, seed: int = 0):
    torch.manual_seed(seed)
    zoo_model = load_model(model_name, "none")
    model = zoo_model.model.to(device).train()
    spec = zoo_model.spec
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch_size * 4, 3, spec.input_size, spec.input_size), dtype=torch.uint8,
                           generator=generator).to(device)
    labels = torch.randint(0, 10, (batch_size * 4,), generator=generator).to(device)
    return model, images, labels, spec.preprocessing.mean, spec.preprocessing.std


def _stepper(model, device: torch.device, mode: str, mean, std):
    forward = torch.compile(model) if mode.endswith("+compile") else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    augment = CifarAugment(randaugment_ops=0)

    def step(images: torch.Tensor, labels: torch.Tensor) -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode.startswith("bf16")):
            loss = torch.nn.functional.cross_entropy(forward(normalize(augment(images), mean, std)).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def throughput(model_name: str, device: torch.device, mode: str, batch_size: int, steps: int) -> dict[str, float]:
    model, images, labels, mean, std = _setup(model_name, device, batch_size)
    step = _stepper(model, device, mode, mean, std)
    batches = list(zip(images.split(batch_size), labels.split(batch_size)))
    started = time.perf_counter()
    for i in range(3):  # warm-up (and compilation)
        step(*batches[i % len(batches)])
    warmup_s = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(steps):
        step(*batches[i % len(batches)])
    elapsed = time.perf_counter() - started
    row = {"mode": mode, "images_per_s": round(steps * batch_size / elapsed, 2), "warmup_s": round(warmup_s, 1),
           "epoch_min_cifar10": round(50_000 / (steps * batch_size / elapsed) / 60, 1)}
    print(json.dumps(row), flush=True)
    return row


def losses(model_name: str, device: torch.device, mode: str, batch_size: int, steps: int) -> list[float]:
    """Loss per step from the same initialisation, batches and augmentation draws."""
    model, images, labels, mean, std = _setup(model_name, device, batch_size)
    step = _stepper(model, device, mode, mean, std)
    batches = list(zip(images.split(batch_size), labels.split(batch_size)))
    torch.manual_seed(1)
    return [step(*batches[i % len(batches)]) for i in range(steps)]


if __name__ == "__main__":
    main()
