"""Where a command's computation runs: device, precision, threads, torchrun ranks and the executor.

Every command that trains (``train``, ``group``, ``rd``) resolves the same five choices, with the
same checks, in :meth:`Runtime.resolve`; the dry-run plan and the provenance read them back from
the one object instead of each command wiring ``pick_device``, ``resolve_precision``,
``distributed.from_environment`` and the executor spec together itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from splitbench.checks import physical_cores
from splitbench.errors import SplitbenchError
from splitbench.executors import ExecutorSpec
from splitbench.training import distributed
from splitbench.training.trainer import pick_device, resolve_precision


@dataclass(frozen=True)
class Runtime:
    """The resolved device, precision, threads, process group and executor of one run."""

    device: torch.device
    precision: str  # resolved: bf16 or fp32
    precision_requested: str  # as asked: auto, bf16 or fp32
    executor: ExecutorSpec
    ranks: distributed.Group = field(default_factory=distributed.Group)
    threads: int = 1

    @classmethod
    def resolve(cls, device: str = "auto", precision: str = "auto", executor: str = "local", *,
                join: bool = True) -> Runtime:
        """Resolve the options and join torchrun's process group where the environment names one.

        ``join=False`` stays one process (a command that computes nothing, such as rd's
        ``--cost-only``). Raises a one-line :class:`SplitbenchError` for a Ray executor with a
        GPU (each Ray point runs on one CPU) and for an executor other than local under torchrun.
        """
        spec = ExecutorSpec.parse(executor)
        chosen = pick_device(device)
        resolved = resolve_precision(precision, chosen)
        if spec.kind == "ray" and chosen.type == "cuda":
            raise SplitbenchError("--executor ray runs each point on one CPU of a Ray worker; train on the GPU with "
                                  "--executor local (or torchrun), or pass --device cpu")
        ranks = distributed.from_environment(chosen) if join else distributed.Group()
        if ranks.distributed and spec.kind != "local":
            distributed.leave(ranks)
            raise SplitbenchError("under torchrun every point trains in the ranks' own processes: use --executor local")
        # torchrun's ranks on one CPU share its cores; a GPU run keeps the host's for data loading
        threads = max(1, physical_cores() // ranks.world) if chosen.type == "cpu" else physical_cores()
        return cls(chosen, resolved, precision, spec, ranks, threads)

    @property
    def main(self) -> bool:
        """Whether this process writes results and shows progress (rank 0, or the only process)."""
        return self.ranks.main

    @property
    def in_process(self) -> bool:
        """Whether points run in this process (their progress bars can show), not on Ray workers."""
        return self.executor.kind == "local"

    def processes(self) -> str:
        """The dry-run plan's text for torchrun's ranks ("" in one process)."""
        if not self.ranks.distributed:
            return ""
        return f"{self.ranks.world} (DDP, {'nccl' if self.device.type == 'cuda' else 'gloo'})"

    def use_threads(self) -> None:
        """Set torch's thread count for this process (its share of the cores under torchrun)."""
        torch.set_num_threads(self.threads)

    def leave(self) -> None:
        """Leave torchrun's process group (every rank calls it once, at the end)."""
        distributed.leave(self.ranks)

    def provenance(self) -> dict[str, Any]:
        """The fields a result's provenance records about where it ran."""
        return {"device": str(self.device), "precision": self.precision,
                "precision_requested": self.precision_requested, "executor": str(self.executor),
                "processes": self.ranks.world, "threads": self.threads}
