"""Data-parallel training under ``torchrun``: its environment contract, and the few collectives used.

``torchrun --nproc-per-node N splitbench train …`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; each joins one process
group (gloo on CPU, nccl on CUDA). Every rank draws the same permutation and augmentation from
the same seed and trains on its share of each global batch; DistributedDataParallel averages
the gradients, so a step sees the global batch as one process would. Only rank 0 writes
checkpoints, results and progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce

from splitbench.errors import SplitbenchError


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def shard(self, count: int, device: torch.device) -> torch.Tensor:
        """Positions of this rank's share of a batch of ``count`` (all of it when it is smaller than the world)."""
        if count < self.world:
            return torch.arange(count, device=device)
        return torch.arange(self.rank, count, self.world, device=device)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over all ranks (in place)."""
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the global batch: every rank's share, summed.

    torch's SyncBatchNorm does this on CUDA only; on CPU (gloo) each rank would otherwise
    normalise its share by itself, and training would no longer be the one-process run.
    The sums travel through ``torch.distributed.nn``'s all_reduce, which gradients cross too.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        dims = [d for d in range(x.dim()) if d != 1]
        count = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
        sums = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        channels = x.shape[1]
        total = sums[-1]
        mean = sums[:channels] / total
        var = sums[channels:2 * channels] / total - mean * mean
        with torch.no_grad():
            self.num_batches_tracked += 1
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            self.running_var.mul_(1 - momentum).add_(var.detach() * total / (total - 1), alpha=momentum)
        shape = [1, channels] + [1] * (x.dim() - 2)
        normalised = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return normalised * self.weight.view(shape) + self.bias.view(shape) if self.affine else normalised


def global_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm computing global-batch statistics (in place; same state_dict keys)."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            replacement = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                          child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            setattr(module, name, replacement)
        else:
            global_batchnorm(child)
    return module


def from_environment(device: torch.device) -> Group:
    """The group ``torchrun`` describes in the environment, joined; a single process without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group()
    missing = [name for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise SplitbenchError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: start with torchrun")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Group(rank, world, local_rank)


def leave(group: Group) -> None:
    if group.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
