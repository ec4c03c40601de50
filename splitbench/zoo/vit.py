"""The CIFAR-10 Vision Transformer of seed 002 (vit-pytorch's ``ViT``).

The model is vit-pytorch's class itself, so its checkpoints keep vit-pytorch's key names.
Its forward mixes modules with a few tensor operations (class token, position embedding,
pooling); the stage wrappers below reproduce those operations exactly so the chain of
stages computes the same function.
"""

from __future__ import annotations

import torch
from torch import nn
from vit_pytorch import ViT

from splitbench.data.transforms import CIFAR10_MEAN, CIFAR10_STD, Preprocessing
from splitbench.zoo.registry import ModelSpec, register
from splitbench.zoo.trunk import Stage, chain

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


class ClassTokenAndPositions(nn.Module):
    """Prepends the class token and adds the position embedding (ViT.forward's middle)."""

    def __init__(self, vit: ViT) -> None:
        super().__init__()
        self.cls_token = vit.cls_token
        self.pos_embedding = vit.pos_embedding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # reshape(-1, dim) accepts both vit-pytorch layouts: (1, 1, dim) in older releases,
        # (1, dim) in newer ones (likewise for the position embedding).
        dim = x.shape[-1]
        cls_tokens = self.cls_token.reshape(1, -1, dim).expand(x.shape[0], -1, -1)
        x = torch.cat((cls_tokens, x), dim=1)
        return x + self.pos_embedding.reshape(-1, dim)[: x.shape[1]]


class TransformerBlock(nn.Module):
    """One pre-norm encoder block: attention and MLP, each with its residual connection."""

    def __init__(self, attention: nn.Module, feedforward: nn.Module) -> None:
        super().__init__()
        self.attention = attention
        self.feedforward = feedforward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(x) + x
        return self.feedforward(x) + x


class TokenPool(nn.Module):
    """The class token's output (``pool='cls'``) or the mean over tokens (``'mean'``)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1) if self.mode == "mean" else x[:, 0]


def vit_stages(model: ViT) -> list[Stage]:
    blocks = [
        (f"transformer.layers.{i}", TransformerBlock(attention, feedforward))
        for i, (attention, feedforward) in enumerate(model.transformer.layers)
    ]
    return chain(
        [("to_patch_embedding", model.to_patch_embedding), ("embed", ClassTokenAndPositions(model))]
        + [("dropout", model.dropout)]
        + blocks
        + [
            ("transformer.norm", model.transformer.norm),
            ("pool", TokenPool(model.pool)),
            ("to_latent", model.to_latent),
            ("mlp_head", model.mlp_head),
        ]
    )


def vit_split_points(depth: int) -> dict[str, str]:
    points = {"patch_embed": "to_patch_embedding.3"}
    points.update({f"block{i + 1}": f"transformer.layers.{i}" for i in range(depth)})
    points["head"] = "mlp_head"
    return points


VIT = register(
    ModelSpec(
        name="vit",
        description="ViT for CIFAR-10 (vit-pytorch; image 32, patch 4, dim 512, depth 6, heads 8); seed 002",
        task="classification",
        input_size=32,
        preprocessing=Preprocessing(crop=32, resize=None, mean=CIFAR10_MEAN, std=CIFAR10_STD),
        build=lambda: ViT(**VIT_CIFAR10_CONFIG),
        stages=vit_stages,
        split_points=vit_split_points(VIT_CIFAR10_CONFIG["depth"]),
        dataset="cifar10",
    )
)
