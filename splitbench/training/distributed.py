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

    def barrier(self) -> None:
        """Wait until every rank reaches this point (nothing to wait for in one process)."""
        if self.distributed:
            dist.barrier()

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


def global_batchnorm(module: nn.Module, device: torch.device | None = None) -> nn.Module:
    """``module`` with every BatchNorm computing global-batch statistics (in place; same state_dict keys).

    On CUDA that is torch's SyncBatchNorm; elsewhere :class:`GlobalBatchNorm`. Each remembers the
    class it replaced, for :func:`local_batchnorm`.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            kind = nn.SyncBatchNorm if device is not None and device.type == "cuda" else GlobalBatchNorm
            replacement = kind(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            replacement.replaced = type(child)
            setattr(module, name, _on_device_of(child, replacement))
        else:
            global_batchnorm(child, device)
    return module


def local_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm that :func:`global_batchnorm` replaced back to its own class (in place).

    After training: what the model does next (re-estimating statistics, measuring, exporting)
    happens in each process on its own, with no other rank to sum with.
    """
    for name, child in module.named_children():
        original = getattr(child, "replaced", None)
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and original is not None:
            restored = original(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            restored.load_state_dict(child.state_dict())
            setattr(module, name, _on_device_of(child, restored))
        else:
            local_batchnorm(child)
    return module


def _on_device_of(old: nn.Module, new: nn.Module) -> nn.Module:
    tensors = [*old.parameters(), *old.buffers()]
    return new.to(tensors[0].device) if tensors else new


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
    group = Group(rank, world, local_rank)
    _check_same_splitbench(group, device)
    return group


def _check_same_splitbench(group: Group, device: torch.device) -> None:
    """Every rank runs the same splitbench (version and commit), or all stop with one line.

    A node without splitbench cannot start its ranks at all (torchrun reports their import
    error and ends the job); a node with another version or checkout would start and train
    something else under the same step count. Compared as fixed-size byte tensors: what
    crosses between ranks is never unpickled.
    """
    from splitbench import __version__
    from splitbench.provenance import git_commit

    identity = f"{__version__} {git_commit()['commit'] or 'no-git'}".encode()[:IDENTITY_BYTES]
    mine = torch.zeros(IDENTITY_BYTES, dtype=torch.uint8)
    mine[: len(identity)] = torch.tensor(list(identity), dtype=torch.uint8)
    mine = mine.to(device)
    everyone = [torch.zeros_like(mine) for _ in range(group.world)]
    dist.all_gather(everyone, mine)
    seen = [bytes(t.cpu().tolist()).rstrip(b"\0").decode(errors="replace") for t in everyone]
    if len(set(seen)) > 1:
        ranks = ", ".join(f"rank {rank}: {text}" for rank, text in enumerate(seen))
        raise SplitbenchError(f"the torchrun processes run different splitbench installs ({ranks}); "
                              "install the same version on every node")


IDENTITY_BYTES = 96


def leave(group: Group) -> None:
    if group.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
