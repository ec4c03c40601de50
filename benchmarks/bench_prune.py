"""Timings of seed 002's pruning pipeline on the CPU (issue 4's performance targets).

Prints: Taylor scoring of all 3072 attention channels on a 1000-image proxy set (target
<= 2 min on 2 cores); exact scoring on N proxy images (target <= 30 min for 64 images;
``--exact-images 8`` times a prefix and extrapolates linearly, since the cost is linear in
the images) and its rank agreement with Taylor on the same images; CPU time for 1000 test
images of the original and the 50 % models.

    python benchmarks/bench_prune.py --checkpoint reports/checkpoints/vit-cifar10-fp16.safetensors [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from splitbench.data import open_dataset
from splitbench.data.tensors import decode_dataset
from splitbench.pruning import channel_groups, prune_vit, select_channels
from splitbench.pruning.scores import (
    DEFAULT_ALPHA,
    channel_losses,
    importance_scores,
    weight_scores,
)
from splitbench.pruning.sweep import estimator_agreement
from splitbench.timing import dataset_ms
from splitbench.training.augment import normalize
from splitbench.zoo import load_model


def images(split: str, count: int, root: str | None, spec) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = decode_dataset(open_dataset("cifar10", split=split, root=root).evenly_spaced(count), progress=False)
    return normalize(x, spec.preprocessing.mean, spec.preprocessing.std), y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="reports/checkpoints/vit-cifar10-fp16.safetensors")
    parser.add_argument("--data", default=None)
    parser.add_argument("--taylor-images", type=int, default=1000)
    parser.add_argument("--exact-images", type=int, default=8)
    parser.add_argument("--exact-target-images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    zoo_model = load_model("vit", args.checkpoint)
    model, spec = zoo_model.model.eval(), zoo_model.spec
    groups = channel_groups(model)
    report: dict[str, object] = {"threads": torch.get_num_threads(), "checkpoint_sha256": zoo_model.weights.sha256}

    proxy, proxy_labels = images("train", args.taylor_images, args.data, spec)
    started = time.perf_counter()
    taylor = channel_losses(model, proxy, proxy_labels, groups, estimator="taylor")
    report["taylor_s"] = round(time.perf_counter() - started, 1)
    report["taylor_images"] = args.taylor_images

    started = time.perf_counter()
    subset = proxy[: args.exact_images], proxy_labels[: args.exact_images]
    exact = channel_losses(model, *subset, groups, estimator="exact")
    exact_s = time.perf_counter() - started
    # How far the Taylor estimate ranks channels like exact removal, on the same images.
    overall = estimator_agreement(exact, channel_losses(model, *subset, groups, estimator="taylor"), DEFAULT_ALPHA)[-1]
    report["spearman_exact_vs_taylor_same_images"] = {k: v for k, v in overall.items() if k.startswith("spearman")}
    report["exact_s"] = round(exact_s, 1)
    report["exact_images"] = args.exact_images
    report[f"exact_s_extrapolated_{args.exact_target_images}"] = round(exact_s * args.exact_target_images / args.exact_images, 1)

    test, _ = images("test", 1000, args.data, spec)
    models = {
        "original": model,
        "weight-uniform-0.5": prune_vit(model, select_channels(weight_scores(model, groups), 0.5, "uniform")),
        "importance-global-0.5": prune_vit(model, select_channels(importance_scores(taylor), 0.5, "global")),
    }
    for name, candidate in models.items():
        candidate.eval()
        report[f"{name}_ms_1000_b100"] = dataset_ms(candidate, test, 100, args.repeats)
        report[f"{name}_ms_1000_b1"] = dataset_ms(candidate, test, 1, args.repeats)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
