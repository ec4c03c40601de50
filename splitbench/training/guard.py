"""Divergence: the one guard that stops every training loop (train, group, rd) in one line.

A diverged run otherwise goes on to its end: NaN weights train, evaluate and export as well
as finite ones (an audit exported a model that was 99.99 % NaN with exit code 0). The guard
is asked after every optimizer step and before every checkpoint; a checkpoint is written
only after it passed, so the last good checkpoint stays on disk and nothing non-finite is
ever saved or exported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from splitbench.errors import SplitbenchError
from splitbench.finite import all_finite, count_non_finite, describe, non_finite_tensors

# Steps between checks on a GPU: a check reads a flag back, which waits for the queued
# kernels. On a CPU it costs nothing of the kind, and every step is checked.
GPU_CHECK_EVERY = 25


class DivergenceGuard:
    """Raises a one-line :class:`SplitbenchError` once the loss or the trained parameters stop being finite.

    Under torchrun the loss of one rank's share is that rank's alone; stopping on it would
    leave the other ranks waiting in their next all-reduce. There (``ranks_agree=False``)
    only the parameters, identical on every rank after a step, and losses already summed
    over the ranks are checked.
    """

    def __init__(self, named_parameters: Sequence[tuple[str, torch.Tensor]], checkpoint: Path, device: torch.device,
                 *, ranks_agree: bool = True) -> None:
        self.named = [(name, parameter) for name, parameter in named_parameters]
        self.checkpoint = checkpoint
        self.every = GPU_CHECK_EVERY if device.type == "cuda" else 1
        self.ranks_agree = ranks_agree

    def after_step(self, loss: torch.Tensor, epoch: int, step: int, *, force: bool = False) -> None:
        """Called after each optimizer step (``epoch`` from 0, ``step`` from 1); ``force`` before a checkpoint."""
        if force or step % self.every == 0:
            self.check(epoch, step, loss if self.ranks_agree else None)

    def check(self, epoch: int, step: int | None, loss: torch.Tensor | float | None = None) -> None:
        """Raise if ``loss`` (where given) or any parameter is NaN or ±Inf; ``step`` None: at the epoch's end."""
        loss = loss.detach() if isinstance(loss, torch.Tensor) else loss
        bad_loss = loss is not None and count_non_finite(loss) > 0
        if not bad_loss and all_finite([parameter.detach() for _, parameter in self.named]):
            return
        counts = non_finite_tensors({name: parameter.detach() for name, parameter in self.named})
        found = ([f"the loss is {float(loss)}"] if bad_loss else []) + (
            [f"the weights hold {describe(counts, len(self.named))}"] if counts else [])
        when = f"epoch {epoch + 1}, step {step}" if step is not None else f"the end of epoch {epoch + 1}"
        raise SplitbenchError(f"training diverged at {when}: {', '.join(found)}; "
                              f"stopped without saving: {self._kept()}; try a lower --lr")

    def _kept(self) -> str:
        if self.checkpoint.is_file():
            return f"the last good checkpoint {self.checkpoint} is kept"
        return "no checkpoint had been written yet"
