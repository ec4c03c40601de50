"""Per-channel scores of seed 002: weight, importance (distillation loss) and stability.

Higher score = more important = kept longer.

- **weight** (``zhu2021vision``, seed §3.1): L1 norm of the channel's weights in the block's
  last layer — column ``i`` of ``to_out`` for an attention channel, column ``j`` of the
  second Linear for an MLP channel.
- **importance** (seed eq. 1, after UP-ViT): the loss of the model *without* the channel,
  ``L = L_CE(y, p) + α · L_KL(q, p)``, with ``q`` the unpruned teacher's and ``p`` the
  pruned model's class probabilities, averaged over a proxy set of training images.
- **stability** (seed eq. 2, the proposal): regress the per-channel ``L_KL`` on ``L_CE``
  by least squares over all channels of a target kind, and score ``L_CE − |ŷ − L_KL|``:
  a channel whose two losses disagree (large residual) is judged unstable and pruned
  earlier than its ``L_CE`` alone would say.

The per-channel losses come from one of two estimators:

- ``exact``: really run the model without the channel (gate 0) from the channel's block
  on, reusing the cached tokens entering that block; several channels are evaluated in one
  batch by replicating the proxy tokens.
- ``taylor``: an expansion around the unpruned model from per-sample gates ``g`` (one
  forward pass, two backward passes). Removing a channel is Δg = −1, so to first order
  ``L_CE ≈ L_CE(1) − ∂L_CE/∂g``. KL and its gradient are zero at ``g = 1``, so its first
  non-zero term is second order: ``L_KL ≈ ½ F``, with ``F`` the gate's Fisher information
  ``E_x E_{y~q} (∂ log p(y|x)/∂g)²``. The second backward pass estimates ``F`` with one
  label per image drawn from the teacher (seeded), which is unbiased; ``fisher="exact"``
  sums over all classes instead (one backward pass per class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from vit_pytorch.vit import ViT

from splitbench.errors import SplitbenchError
from splitbench.pruning.vit_channels import ChannelGroup, block_input, embed, run_blocks

METHODS = ("weight", "importance", "stability")
ESTIMATORS = ("exact", "taylor")
DEFAULT_ALPHA = 1.0

Scores = dict[ChannelGroup, torch.Tensor]


@dataclass
class ChannelLosses:
    """Mean L_CE and L_KL over the proxy set of the model without each channel."""

    ce: Scores
    kl: Scores
    base_ce: float
    estimator: str
    proxy_images: int


@dataclass(frozen=True)
class StabilityFit:
    """The least-squares line ``L_KL ≈ slope · L_CE + intercept`` of one target kind."""

    target: str
    slope: float
    intercept: float


def weight_scores(model: ViT, groups: list[ChannelGroup]) -> Scores:
    scores = {}
    for group in groups:
        attention, feedforward = model.transformer.layers[group.block]
        last = attention.to_out[0] if group.target == "attention" else feedforward.net[4]
        scores[group] = last.weight.detach().abs().sum(dim=0).float().cpu()
    return scores


def importance_scores(losses: ChannelLosses, alpha: float = DEFAULT_ALPHA) -> Scores:
    return {g: losses.ce[g] + alpha * losses.kl[g] for g in losses.ce}


def stability_scores(losses: ChannelLosses) -> tuple[Scores, list[StabilityFit]]:
    scores: Scores = {}
    fits = []
    for target in dict.fromkeys(g.target for g in losses.ce):
        groups = [g for g in losses.ce if g.target == target]
        ce = torch.cat([losses.ce[g] for g in groups]).double()
        kl = torch.cat([losses.kl[g] for g in groups]).double()
        slope, intercept = _least_squares(ce, kl)
        fits.append(StabilityFit(target, slope, intercept))
        for group in groups:
            estimate = slope * losses.ce[group].double() + intercept
            scores[group] = (losses.ce[group].double() - (estimate - losses.kl[group].double()).abs()).float()
    return scores, fits


def _least_squares(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    x_mean, y_mean = x.mean(), y.mean()
    variance = ((x - x_mean) ** 2).sum()
    slope = (((x - x_mean) * (y - y_mean)).sum() / variance) if variance > 0 else torch.tensor(0.0)
    return float(slope), float(y_mean - slope * x_mean)


def channel_losses(
    model: ViT,
    images: torch.Tensor,
    labels: torch.Tensor,
    groups: list[ChannelGroup],
    *,
    estimator: str = "taylor",
    fisher: str = "sampled",
    batch_size: int = 64,
    channels_per_pass: int = 16,
    on_progress: Callable[[int], None] | None = None,
) -> ChannelLosses:
    """Per-channel L_CE and L_KL (means over ``images``), by ``estimator``.

    ``images`` are normalised float tensors; ``model`` is used in eval mode (no dropout)
    and is not modified. ``on_progress(n)`` is called as channels (exact) or images
    (taylor) are done.
    """
    if estimator not in ESTIMATORS:
        raise SplitbenchError(f"unknown estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}")
    model.eval()
    with torch.no_grad():
        teacher = torch.cat([model(b) for b in images.split(batch_size)]).log_softmax(-1)
        base_ce = float(F.cross_entropy(teacher, labels))
    if estimator == "exact":
        ce, kl = _exact(model, images, labels, teacher, groups, batch_size, channels_per_pass, on_progress)
    else:
        ce, kl = _taylor(model, images, labels, teacher, groups, batch_size, fisher, on_progress)
    return ChannelLosses(ce, kl, base_ce, estimator, len(images))


def _exact(model, images, labels, teacher, groups, batch_size, channels_per_pass, on_progress) -> tuple[Scores, Scores]:
    ce = {g: torch.zeros(g.size, dtype=torch.float64) for g in groups}
    kl = {g: torch.zeros(g.size, dtype=torch.float64) for g in groups}
    # Each pass runs channels_per_pass copies of an image batch: about batch_size samples.
    image_batch = max(1, batch_size // channels_per_pass)
    with torch.no_grad():
        for block in sorted({g.block for g in groups}):
            block_groups = [g for g in groups if g.block == block]
            for start in range(0, len(images), image_batch):
                x = block_input(model, images[start : start + image_batch], block)
                y, q = labels[start : start + image_batch], teacher[start : start + image_batch]
                for group in block_groups:
                    _exact_group(model, group, x, y, q, ce[group], kl[group], channels_per_pass)
            if on_progress is not None:
                on_progress(sum(g.size for g in block_groups))
    count = len(images)
    return ({g: (v / count).float() for g, v in ce.items()}, {g: (v / count).float() for g, v in kl.items()})


def _exact_group(model, group, x, y, q, ce_sum, kl_sum, channels_per_pass) -> None:
    """Add, for every channel of ``group``, the summed losses over this image batch."""
    n = len(x)
    for first in range(0, group.size, channels_per_pass):
        channels = torch.arange(first, min(first + channels_per_pass, group.size))
        k = len(channels)
        gate = torch.ones(k, group.size, dtype=x.dtype, device=x.device)
        gate[torch.arange(k), channels] = 0.0
        logits = run_blocks(model, x.repeat(k, 1, 1), group.block, {(group.block, group.target): gate.repeat_interleave(n, 0)})
        log_p = logits.log_softmax(-1).view(k, n, -1)
        ce_sum[channels] += F.nll_loss(log_p.flatten(0, 1), y.repeat(k), reduction="none").view(k, n).sum(1).double()
        q_rep = q.unsqueeze(0).expand(k, -1, -1)
        kl_sum[channels] += (q_rep.exp() * (q_rep - log_p)).sum(-1).sum(1).double()


def _taylor(model, images, labels, teacher, groups, batch_size, fisher, on_progress) -> tuple[Scores, Scores]:
    if fisher not in ("sampled", "exact"):
        raise ValueError(f"fisher must be 'sampled' or 'exact', got {fisher!r}")
    grad_ce = {g: torch.zeros(g.size, dtype=torch.float64) for g in groups}
    fisher_sum = {g: torch.zeros(g.size, dtype=torch.float64) for g in groups}
    ce_sum = 0.0
    draws = torch.Generator().manual_seed(0)
    for start in range(0, len(images), batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        q = teacher[start : start + batch_size].exp()
        gates = {(g.block, g.target): torch.ones(len(x), g.size, requires_grad=True) for g in groups}
        log_p = run_blocks(model, embed(model, x), 0, gates).log_softmax(-1)
        ce = F.nll_loss(log_p, y, reduction="sum")
        ce_sum += float(ce.detach())
        # Per-sample gates: the gradient of a sum over images w.r.t. gate[n] is image n's own.
        for group, grad in zip(groups, torch.autograd.grad(ce, list(gates.values()), retain_graph=True)):
            grad_ce[group] += grad.sum(0).double()
        if fisher == "sampled":
            drawn = torch.multinomial(q.float(), 1, generator=draws).squeeze(1)
            grads = torch.autograd.grad(log_p.gather(1, drawn[:, None]).sum(), list(gates.values()))
            for group, grad in zip(groups, grads):
                fisher_sum[group] += grad.pow(2).sum(0).double()
        else:
            for cls in range(log_p.shape[1]):
                grads = torch.autograd.grad(log_p[:, cls].sum(), list(gates.values()), retain_graph=cls + 1 < log_p.shape[1])
                for group, grad in zip(groups, grads):
                    fisher_sum[group] += (q[:, cls : cls + 1] * grad.pow(2)).sum(0).double()
        if on_progress is not None:
            on_progress(len(x))
    count = len(images)
    base = ce_sum / count
    ce = {g: (base - grad_ce[g] / count).float() for g in groups}
    kl = {g: (0.5 * fisher_sum[g] / count).float() for g in groups}
    return ce, kl


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    import pandas as pd

    ranks_a = pd.Series(a.double().numpy()).rank()
    ranks_b = pd.Series(b.double().numpy()).rank()
    return float(ranks_a.corr(ranks_b))  # Pearson of ranks; pandas' own spearman needs scipy
