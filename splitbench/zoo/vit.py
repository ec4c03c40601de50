"""The CIFAR-10 Vision Transformer of seed 002 (vit-pytorch's ``ViT``).

The model is vit-pytorch's class with a forward that torch.fx can trace (the same function),
so its checkpoints keep vit-pytorch's key names and its cuts come from the traced graph.
"""

from __future__ import annotations

from pathlib import Path

import torch
from vit_pytorch import ViT

from splitbench.data.transforms import CIFAR10_MEAN, CIFAR10_STD, Preprocessing
from splitbench.zoo.registry import ModelSpec, register

# Seed 002's configuration (CIFAR-10, 32x32 inputs, 4x4 patches).
VIT_CIFAR10_CONFIG = dict(
    image_size=32,
    patch_size=4,
    num_classes=10,
    dim=512,
    depth=6,
    heads=8,
    mlp_dim=512,
    dropout=0.1,
    emb_dropout=0.1,
)


class SplittableViT(ViT):
    """vit-pytorch's ``ViT`` with a forward that torch.fx can trace, computing the same function.

    vit-pytorch reads the batch size from the image and tiles the class token with
    ``einops.repeat``; that size would then cross every cut inside the patch embedding.
    Here it is read from the embedded patches instead, just before it is used. The
    parameters and their names are vit-pytorch's, so its checkpoints load unchanged.
    """

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.to_patch_embedding(img)
        # reshape(-1, dim) accepts both vit-pytorch layouts: (1, 1, dim) in older releases,
        # (1, dim) in newer ones (likewise for the position embedding).
        dim = x.shape[-1]
        cls_tokens = self.cls_token.reshape(1, 1, dim).expand(x.shape[0], -1, -1)
        x = torch.cat((cls_tokens, x), dim=1)
        x = x + self.pos_embedding.reshape(-1, dim)[: x.shape[1]]
        x = self.dropout(x)
        for attention, feedforward in self.transformer.layers:
            x = attention(x) + x
            x = feedforward(x) + x
        x = self.transformer.norm(x)
        x = x.mean(dim=1) if self.pool == "mean" else x[:, 0]
        return self.mlp_head(self.to_latent(x))


def vit_split_points(depth: int) -> dict[str, str]:
    """patch_embed, block1 … blockN (after each block's second residual addition), head."""
    points = {"patch_embed": "to_patch_embedding"}
    points.update({f"block{i + 1}": f"add_{2 * i + 2}" for i in range(depth)})
    points["head"] = "mlp_head"
    return points


# The reference checkpoint trained by `splitbench train vit` and committed with the repository.
REFERENCE_CHECKPOINT = Path("reports") / "checkpoints" / "vit-cifar10-fp16.safetensors"


def reference_checkpoint() -> Path | None:
    """The committed reference ViT: under the working folder, else beside the installed package."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / REFERENCE_CHECKPOINT).is_file():
            return root / REFERENCE_CHECKPOINT
    return None


VIT = register(
    ModelSpec(
        name="vit",
        description="ViT for CIFAR-10 (vit-pytorch; image 32, patch 4, dim 512, depth 6, heads 8); seed 002",
        task="classification",
        input_size=32,
        preprocessing=Preprocessing(crop=32, resize=None, mean=CIFAR10_MEAN, std=CIFAR10_STD),
        build=lambda: SplittableViT(**VIT_CIFAR10_CONFIG),
        leaf_modules=("vit_pytorch.vit.Attention",),
        split_points=vit_split_points(VIT_CIFAR10_CONFIG["depth"]),
        dataset="cifar10",
    )
)
