"""A compression model between an input and a frozen recogniser, and the RD loss (seed 000 eq. 1, seed 001 eq. 1).

``FeaturePipeline`` (seed 000): cached head features → :class:`FeatureCodec` → frozen tail.
``ImagePipeline`` (seed 001): uint8 images → :class:`ImageCodec` → frozen whole model, with
the optional auxiliary branch on ŷ. Both return the same :class:`RDOutput`, so one training
loop and one evaluation serve both.

Rates are in bits per pixel of the image the recogniser saw (224×224 for a split feature,
the codec's input size for an image), so curves of features and images share an axis.
"""

from __future__ import annotations

from collections.abc import Callable

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import nn

from splitbench.compression.image_codec import AuxiliaryBranch, ImageCodec
from splitbench.compression.models import FeatureCodec
from splitbench.errors import SplitbenchError

TARGETS = ("distill", "labels")


@dataclass
class RDOutput:
    logits: torch.Tensor
    likelihoods: dict[str, torch.Tensor]
    reconstruction: torch.Tensor  # what the codec decoded, in the space of `original`
    original: torch.Tensor
    aux_logits: torch.Tensor | None = None


def freeze(module: nn.Module) -> nn.Module:
    """Evaluation mode (batch-norm statistics fixed) and no parameter gradients."""
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def _frozen_forward(pipeline: nn.Module, recogniser: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The frozen recogniser on ``x``: in bf16 autocast while training with ``train_precision`` bf16.

    The codec and its entropy model stay in fp32 (likelihoods in bf16 would misestimate the
    rate); the frozen network behind them is most of the arithmetic. Evaluation is fp32.
    """
    bf16 = pipeline.training and getattr(pipeline, "train_precision", "fp32") == "bf16"
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = recogniser(x)
    return logits.float()


class FeaturePipeline(nn.Module):
    def __init__(self, codec: FeatureCodec, tail: nn.Module, image_pixels: int) -> None:
        super().__init__()
        self.codec, self.tail, self.image_pixels = codec, freeze(tail), image_pixels
        self.aux: nn.Module | None = None
        self.train_precision = "fp32"  # "bf16": the frozen tail in autocast while training

    def train(self, mode: bool = True) -> FeaturePipeline:
        super().train(mode)
        self.tail.eval()  # the recogniser stays frozen
        return self

    def forward(self, features: torch.Tensor) -> RDOutput:
        coded = self.codec(features)
        return RDOutput(_frozen_forward(self, self.tail, coded["x_hat"]), coded["likelihoods"], coded["x_hat"], features)

    def recognise(self, decoded: torch.Tensor) -> torch.Tensor:
        return self.tail(decoded)

    def codec_input(self, features: torch.Tensor) -> torch.Tensor:
        return features


class ImagePipeline(nn.Module):
    def __init__(self, codec: ImageCodec, recogniser: nn.Module, mean: tuple[float, ...], std: tuple[float, ...],
                 aux: AuxiliaryBranch | None = None) -> None:
        super().__init__()
        self.codec, self.recogniser, self.aux = codec, freeze(recogniser), aux
        self.train_precision = "fp32"  # "bf16": the frozen recogniser in autocast while training
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> ImagePipeline:
        super().train(mode)
        self.recogniser.eval()
        return self

    def codec_input(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() / 255.0 if images.dtype == torch.uint8 else images

    def recognise(self, decoded: torch.Tensor) -> torch.Tensor:
        return _frozen_forward(self, lambda x: _recognise_image(self.recogniser, x, self.mean, self.std), decoded)

    def forward(self, images: torch.Tensor) -> RDOutput:
        x = self.codec_input(images)
        coded = self.codec(x)
        aux_logits = self.aux(coded["y_hat"]) if self.aux is not None and self.training else None
        return RDOutput(self.recognise(coded["x_hat"]), coded["likelihoods"], coded["x_hat"], x, aux_logits)

    def inference(self) -> nn.Module:
        """What runs after training: codec and recogniser; the auxiliary branch is not part of it."""
        return _ImageInference(self.codec, self.recogniser, self.mean, self.std)


class _ImageInference(nn.Module):
    def __init__(self, codec: ImageCodec, recogniser: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.codec, self.recogniser = codec, recogniser
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _recognise_image(self.recogniser, self.codec(x)["x_hat"], self.mean, self.std)


def _recognise_image(recogniser: nn.Module, decoded: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The recogniser on a decoded image in [0, 1], normalised as it was trained."""
    return recogniser((decoded.clamp(0, 1) - mean) / std)


def pixels_of(pipeline: nn.Module, batch: torch.Tensor) -> int:
    """Pixels of one input image: the image behind a feature, or the coded image itself."""
    if isinstance(pipeline, FeaturePipeline):
        return pipeline.image_pixels
    return int(batch.shape[-2] * batch.shape[-1])


def bits(likelihoods: dict[str, torch.Tensor]) -> torch.Tensor:
    """Total −log2 likelihood of every latent (the estimated size in bits)."""
    return sum(torch.log(lik).sum() for lik in likelihoods.values()) / -math.log(2)


def bpp(likelihoods: dict[str, torch.Tensor], images: int, pixels: int) -> torch.Tensor:
    return bits(likelihoods) / (images * pixels)


def task_loss(logits: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, target: str) -> torch.Tensor:
    """E(y, ŷ): cross entropy against the uncompressed model's distribution, or the labels."""
    if target == "labels":
        return F.cross_entropy(logits, labels)
    if target != "distill":
        raise SplitbenchError(f"unknown --target '{target}'; valid: {', '.join(TARGETS)}")
    return -(F.softmax(teacher, dim=1) * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def rd_loss(output: RDOutput, teacher: torch.Tensor, labels: torch.Tensor, lam: float, alpha: float, target: str,
            pixels: int) -> tuple[torch.Tensor, dict[str, float]]:
    """L = λ·(E + α·E_aux) + bpp (seed 000 eq. 1 with α = 0; seed 001 eq. 1)."""
    task = task_loss(output.logits, teacher, labels, target)
    aux = task_loss(output.aux_logits, teacher, labels, target) if output.aux_logits is not None else None
    rate = bpp(output.likelihoods, output.logits.shape[0], pixels)
    loss = lam * (task + (alpha * aux if aux is not None else 0.0)) + rate
    parts = {"loss": loss.item(), "task": task.item(), "bpp": rate.item()}
    if aux is not None:
        parts["aux"] = aux.item()
    return loss, parts


def warmup_loss(output: RDOutput, rate_weight: float, pixels: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction pre-training, shared by every λ: MSE relative to the input's power, plus a little rate."""
    mse = F.mse_loss(output.reconstruction, output.original) / output.original.pow(2).mean().clamp_min(1e-12)
    rate = bpp(output.likelihoods, output.original.shape[0], pixels)
    loss = mse + rate_weight * rate
    return loss, {"loss": loss.item(), "relative_mse": mse.item(), "bpp": rate.item()}


def entropy_aux_loss(codec: nn.Module) -> torch.Tensor:
    """CompressAI's auxiliary loss: fits each EntropyBottleneck's quantiles (the CDF's support)."""
    return sum(m.loss() for m in codec.modules() if isinstance(m, EntropyBottleneck))


def update_entropy_tables(codec: nn.Module) -> None:
    """Build the CDF tables the range coder needs from the trained densities."""
    scale_table = _scale_table()
    for module in codec.modules():
        if isinstance(module, EntropyBottleneck):
            module.update(force=True)
        elif isinstance(module, GaussianConditional):
            module.update_scale_table(scale_table, force=True)


def _scale_table() -> torch.Tensor:
    # CompressAI's default: 64 scales, log-spaced between 0.11 and 256.
    return torch.exp(torch.linspace(math.log(0.11), math.log(256), 64))
