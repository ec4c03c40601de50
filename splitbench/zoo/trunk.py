"""A model seen as a chain of stages, so that any cut between two stages is a split point.

Split computing transmits exactly one tensor from the edge to the server. That is only
possible at a point where the rest of the network depends on nothing but that tensor,
i.e. between two stages of a chain. Every zoo model is therefore described as a
:class:`Trunk`: an ordered list of stages whose sequential execution *is* the model's
forward pass (tests check this for every model). Containers that are themselves chains
(``nn.Sequential``) are opened up; blocks with skip connections (an inverted residual, a
ResNet bottleneck, a transformer block) stay whole, because cutting inside them would need
two tensors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from splitbench.errors import SplitbenchError


@dataclass(frozen=True)
class Stage:
    """One link of the chain: ``module`` maps the previous stage's output to the next input.

    ``path`` is the module's path in the original model (``features.23``); stages that are
    written as functions in the original forward (a flatten, a functional pooling) get a
    descriptive path of their own (``flatten``).
    """

    path: str
    module: nn.Module


def open_sequentials(path: str, module: nn.Module) -> list[Stage]:
    """Expand chain containers (recursively) into their children.

    A container is a chain when it is an ``nn.Sequential`` that keeps Sequential's own
    forward (torchvision's ``Conv2dNormActivation`` does; a subclass that overrides forward
    may not be a chain and stays whole).
    """
    if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
        stages: list[Stage] = []
        for name, child in module.named_children():
            stages += open_sequentials(f"{path}.{name}" if path else name, child)
        return stages
    return [Stage(path, module)]


def chain(parts: Iterable[tuple[str, nn.Module]]) -> list[Stage]:
    """Stages for a model whose forward runs ``parts`` one after the other."""
    stages: list[Stage] = []
    for path, module in parts:
        stages += open_sequentials(path, module)
    return stages


class Trunk(nn.Module):
    """Runs a model as a chain of stages and cuts it at named or module-path split points.

    ``split_points`` maps the papers' layer names (``pool4``, ``bottleneck6``) to stage
    paths. ``resolve`` accepts either kind of name and returns the index of the last stage
    of the head.
    """

    def __init__(self, stages: Sequence[Stage], split_points: Mapping[str, str]) -> None:
        super().__init__()
        self.paths = [stage.path for stage in stages]
        # Registered as a ModuleList so that .to(), .eval() and parameters() see the stages;
        # the modules are shared with the original model, not copied.
        self.stages = nn.ModuleList(stage.module for stage in stages)
        self.split_points = dict(split_points)
        unknown = [p for p in self.split_points.values() if p not in self.paths]
        if unknown:
            raise ValueError(f"split points refer to paths that are not stages: {unknown}")
        self._name_of_path = {path: name for name, path in self.split_points.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x

    def __len__(self) -> int:
        return len(self.stages)

    def name_of(self, index: int) -> str | None:
        """The paper's name of the cut after stage ``index``, if it has one."""
        return self._name_of_path.get(self.paths[index])

    def resolve(self, at: str) -> int:
        """Index of the last head stage for a split-point name or module path."""
        if at in self.split_points:
            return self.paths.index(self.split_points[at])
        if at in self.paths:
            return self.paths.index(at)
        # A container path (``layer1``, ``features``) cuts after its last stage, provided
        # the container's stages form a contiguous run of the chain.
        inside = [i for i, path in enumerate(self.paths) if path.startswith(at + ".")]
        if inside and inside == list(range(inside[0], inside[-1] + 1)):
            return inside[-1]
        raise SplitbenchError(self._unknown_split_message(at))

    def _unknown_split_message(self, at: str) -> str:
        names = ", ".join(self.split_points)
        enclosing = [i for i, p in enumerate(self.paths) if at.startswith(p + ".")]
        if enclosing and self._has_submodule(enclosing[0], at):
            return (
                f"cannot split at '{at}': it lies inside '{self.paths[enclosing[0]]}', a block with a skip "
                f"connection, so no single tensor crosses there; valid split points: {names}, "
                f"or a stage path such as '{self.paths[len(self.paths) // 2]}'"
            )
        return (
            f"unknown split point '{at}'; valid split points: {names} "
            f"(or a module path such as '{self.paths[len(self.paths) // 2]}')"
        )

    def _has_submodule(self, index: int, path: str) -> bool:
        try:
            self.stages[index].get_submodule(path[len(self.paths[index]) + 1 :])
        except AttributeError:
            return False
        return True

    def head(self, index: int) -> nn.Sequential:
        """Stages ``0..index`` (the edge side)."""
        return nn.Sequential(*self.stages[: index + 1])

    def tail(self, index: int) -> nn.Sequential:
        """Stages after ``index`` (the server side)."""
        return nn.Sequential(*self.stages[index + 1 :])


def count_parameters(modules: Iterable[nn.Module]) -> int:
    """Number of distinct parameter elements in ``modules`` (shared tensors counted once)."""
    seen: dict[int, int] = {}
    for module in modules:
        for parameter in module.parameters():
            seen[id(parameter)] = parameter.numel()
    return sum(seen.values())
