"""Per-cut profile of a model: output shape, element count, MACs, parameters.

One row per valid cut (:mod:`splitbench.cuts`), in execution order: the tensor that would
cross the network there, and the MACs and parameters of the operations since the previous
cut, so that ``cum_macs`` is the head's cost. Rows carry the papers' layer names where the
zoo gives them (VGG16's ``conv1_1``). ``rows="paper"`` keeps only those named cuts, each
row gathering the operations since the previous one (seed 003 Fig. 3/4: VGG16's ``conv1_1``
is a convolution and its ReLU); ``rows="nodes"`` lists every operation of the traced graph,
with whether a cut after it is valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import pandas as pd

from splitbench.errors import SplitbenchError
from splitbench.zoo import ZooModel

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
    "valid_cut",
]


@dataclass
class Profile:
    model: str
    input_shape: tuple[int, ...]
    table: pd.DataFrame  # PROFILE_COLUMNS, one row per cut (or node) in execution order

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


ROWS = ("cuts", "paper", "nodes")


def profile_model(zoo_model: ZooModel, input_size: int | None = None, rows: str = "cuts") -> Profile:
    """Profile ``zoo_model`` on a batch of one image of ``input_size`` (default: the model's).

    ``rows``: ``cuts`` (every valid cut), ``paper`` (the papers' named layers only) or
    ``nodes`` (every operation).
    """
    if rows not in ROWS:
        raise SplitbenchError(f"unknown profile rows '{rows}'; valid: {', '.join(ROWS)}")
    if rows == "paper" and not zoo_model.spec.split_points:
        raise SplitbenchError(f"{zoo_model.spec.name} has no paper layer names; list its cuts instead")
    graph = zoo_model.cuts(input_size)
    input_elements = prod(graph.input_shape)
    paper_names = list(zoo_model.spec.split_points)
    if rows == "nodes":
        table_rows = [
            {
                "layer": node.cut and graph.paper_name(graph.resolve(node.cut), paper_names) or node.name,
                "module": node.name,
                "type": node.kind,
                "output_shape": "x".join(map(str, node.shape)) if node.shape is not None else "",
                "elements": prod(node.shape) if node.shape is not None else 0,
                "macs": node.macs,
                "params": node.params,
                "smaller_than_input": node.shape is not None and prod(node.shape) < input_elements,
                "valid_cut": node.cut is not None,
            }
            for node in graph.nodes
        ]
    else:
        table_rows = [
            {
                "layer": graph.paper_name(cut, paper_names) or cut.name,
                "module": cut.name,
                "type": cut.kind,
                "output_shape": "x".join(map(str, cut.shape)),
                "elements": cut.elements,
                "macs": cut.macs,
                "params": cut.params,
                "smaller_than_input": cut.elements < input_elements,
                "valid_cut": True,
                "named": graph.paper_name(cut, paper_names) is not None,
            }
            for cut in graph.cuts
        ]
        # Operations after the last cut (a model returning several tensors) still cost.
        rest_macs = graph.total_macs - graph.cuts[-1].cum_macs if graph.cuts else graph.total_macs
        rest_params = graph.total_params - graph.cuts[-1].cum_params if graph.cuts else graph.total_params
        if rest_macs or rest_params:
            table_rows.append({"layer": "output", "module": "output", "type": "", "output_shape": "", "elements": 0,
                         "macs": rest_macs, "params": rest_params, "smaller_than_input": False, "valid_cut": False})
    table = pd.DataFrame(table_rows)
    if rows == "paper":
        table = _gather_paper_rows(table)
    table = table.drop(columns="named", errors="ignore")
    table.insert(table.columns.get_loc("macs") + 1, "cum_macs", table["macs"].cumsum())
    return Profile(zoo_model.spec.name, graph.input_shape, table[PROFILE_COLUMNS])


def _gather_paper_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One row per named layer (and the last cut), summing the cuts since the previous row."""
    named = table["named"] | (table.index == len(table) - 1)
    group = named.iloc[::-1].cumsum().iloc[::-1]  # each cut belongs to the next named row
    gathered = table.groupby(group, sort=False).agg(
        layer=("layer", "last"), module=("module", lambda m: "+".join(m)), type=("type", lambda t: "+".join(t)),
        output_shape=("output_shape", "last"), elements=("elements", "last"), macs=("macs", "sum"),
        params=("params", "sum"), smaller_than_input=("smaller_than_input", "last"), valid_cut=("valid_cut", "last"))
    return gathered.reset_index(drop=True)
