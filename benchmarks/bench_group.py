"""CPU time of grouped inference (issue 6's performance target).

For each model: 1000 CIFAR-10 test images at batch 100 through the dense model, then for
G = 2, 4, 8 the FLGC model as trained (dense weights × connection mask, "masked") and the
same model converted to grouped convolutions ("grouped"), with and without duplication.
Target: grouped faster than masked at G >= 4. Assignment logits are drawn at random with
unit spread, which gives the unequal group sizes training produces; the timing does not
depend on the weights' values. Prints one JSON line per configuration and a verdict.

    python benchmarks/bench_group.py [--models cifar_resnet20,cifar_resnet50] [--data DIR]
"""

from __future__ import annotations

import argparse
import json

import torch

from splitbench.data import open_dataset
from splitbench.data.tensors import decode_dataset
from splitbench.grouping.flgc import (
    GroupedConv2d,
    effective_counts,
    randomize_assignments,
    replace_convolutions,
    to_grouped,
)
from splitbench.timing import dataset_ms
from splitbench.training.augment import normalize
from splitbench.zoo import load_model

WEIGHTS = {"cifar_resnet20": "../shared/weights/cifar-resnet20-12fca82f.th",
           "cifar_resnet56": "../shared/weights/cifar-resnet56-4bfd9763.th"}


def flgc_model(name: str, groups: int, duplicate_top: int) -> torch.nn.Module:
    model = load_model(name, WEIGHTS.get(name, "none")).model.eval()
    replace_convolutions(model, groups, duplicate_top)
    return randomize_assignments(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cifar_resnet20,cifar_resnet50")
    parser.add_argument("--groups", default="2,4,8")
    parser.add_argument("--duplicate-top", default="0,3")
    parser.add_argument("--data", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    spec_images, _ = decode_dataset(open_dataset("cifar10", split="test", root=args.data).evenly_spaced(1000),
                                    progress=False)
    failures = []
    for name in args.models.split(","):
        dense = load_model(name, WEIGHTS.get(name, "none"))
        images = normalize(spec_images, dense.spec.preprocessing.mean, dense.spec.preprocessing.std)
        params, macs = effective_counts(dense.model.eval(), images[:1])
        dense_ms = dataset_ms(dense.model, images, 100, args.repeats)
        print(json.dumps({"model": name, "config": "dense", "params": params, "macs": macs, "cpu_ms_1000": dense_ms,
                          "threads": torch.get_num_threads()}), flush=True)
        for groups in map(int, args.groups.split(",")):
            for top in map(int, args.duplicate_top.split(",")):
                model = flgc_model(name, groups, top)
                masked_ms = dataset_ms(model, images, 100, args.repeats)
                grouped = to_grouped(model)
                layers = [m for m in grouped.modules() if isinstance(m, GroupedConv2d)]
                params, macs = effective_counts(grouped, images[:1])
                grouped_ms = dataset_ms(grouped, images, 100, args.repeats)
                print(json.dumps({"model": name, "config": f"G={groups} top={top}", "params": params, "macs": macs,
                                  "masked_ms_1000": masked_ms, "grouped_ms_1000": grouped_ms,
                                  "speedup_vs_masked": round(masked_ms / grouped_ms, 2),
                                  "speedup_vs_dense": round(dense_ms / grouped_ms, 2),
                                  "padded_layers": f"{sum(m.padded for m in layers)}/{len(layers)}"}), flush=True)
                if groups >= 4 and grouped_ms >= masked_ms:
                    failures.append(f"{name} G={groups} top={top}: grouped {grouped_ms} ms >= masked {masked_ms} ms")
    print("target (grouped faster than masked at G >= 4):", "met" if not failures else "MISSED: " + "; ".join(failures))


if __name__ == "__main__":
    main()
