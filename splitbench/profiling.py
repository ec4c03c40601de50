"""Per-layer profile of a zoo model: output shape, element count, MACs, parameters.

The rows are the papers' layers (seed 003 Fig. 3/4): each row ends at a named split point
and gathers the stages since the previous one (VGG16's ``conv1_1`` is a convolution and its
ReLU). ``all_stages=True`` gives one row per stage of the chain instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import pandas as pd
import torch

from splitbench.macs import trace_stages
from splitbench.zoo import ZooModel, count_parameters

PROFILE_COLUMNS = [
    "layer",
    "module",
    "type",
    "output_shape",
    "elements",
    "macs",
    "cum_macs",
    "params",
    "smaller_than_input",
]


@dataclass
class Profile:
    model: str
    input_shape: tuple[int, ...]
    table: pd.DataFrame  # PROFILE_COLUMNS, one row per layer in execution order

    @property
    def input_elements(self) -> int:
        return prod(self.input_shape)

    @property
    def total_macs(self) -> int:
        return int(self.table["macs"].sum())

    @property
    def total_params(self) -> int:
        return int(self.table["params"].sum())

    def row(self, layer: str) -> pd.Series:
        return self.table.set_index("layer").loc[layer]


def example_input(zoo_model: ZooModel, input_size: int | None = None) -> torch.Tensor:
    """A zero image of the model's input size (element counts and MACs do not depend on values)."""
    size = input_size or zoo_model.spec.input_size
    return torch.zeros(1, zoo_model.spec.input_channels, size, size)


def profile_model(zoo_model: ZooModel, input_size: int | None = None, all_stages: bool = False) -> Profile:
    """Profile ``zoo_model`` on a batch of one image of ``input_size`` (default: the model's)."""
    x = example_input(zoo_model, input_size)
    trunk = zoo_model.trunk
    macs, shapes = trace_stages(list(trunk.stages), x)
    input_elements = x[0].numel()

    rows, start = [], 0
    for index in range(len(trunk)):
        name = trunk.name_of(index)
        if not (all_stages or name is not None or index == len(trunk) - 1):
            continue
        members = range(start, index + 1)
        elements = prod(shapes[index])
        rows.append(
            {
                "layer": name or trunk.paths[index],
                "module": "+".join(trunk.paths[i] for i in members),
                "type": "+".join(type(trunk.stages[i]).__name__ for i in members),
                "output_shape": "x".join(map(str, shapes[index])),
                "elements": elements,
                "macs": sum(macs[i] for i in members),
                "params": count_parameters(trunk.stages[i] for i in members),
                "smaller_than_input": elements < input_elements,
            }
        )
        start = index + 1
    table = pd.DataFrame(rows)
    table.insert(table.columns.get_loc("macs") + 1, "cum_macs", table["macs"].cumsum())
    return Profile(zoo_model.spec.name, tuple(x.shape[1:]), table[PROFILE_COLUMNS])
