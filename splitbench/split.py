"""Split execution and MAC accounting, for one task or several sharing a head (seed 003).

Seed 003 runs n task models whose first layers are one shared CNN (eq. 1–4):

* separate models:  MAC(models) = Σ_k MAC(model_k)                         (eq. 1)
* shared head:      MAC(models) = MAC(CNN_shared) + Σ_k MAC(model_k,latter) (eq. 3)

so sharing saves (n − 1) · MAC(CNN_shared). The reduction is reported in percent of the
separate total. The edge runs the head once and transmits one tensor; its size is
reported as float32 and as 8-bit min-max quantised (plus the min and max, 2 × 4 bytes of
side information, which the receiver needs to dequantise).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd
import torch

from splitbench.errors import SplitbenchError
from splitbench.metrics import Timing, time_ms
from splitbench.data import Preprocessing
from splitbench.zoo import ZooModel, load_model

TASKS = ("classification", "detection")
MINMAX_SIDE_INFO_BYTES = 8  # min and max as float32
PREPROCESS = ("seed", "model")  # how a split run sizes its pictures (preprocessing_for)


@dataclass
class TaskSplit:
    """One task model cut at the shared split point."""

    task: str
    model: str
    cut: str  # the cut's name in this task's model
    macs_total: int
    macs_head: int
    params_total: int
    params_tail: int
    head_shape: tuple[int, ...]
    tail_ms: float | None = None
    tail_timing: Timing | None = None  # tail_ms with its spread (p10, p90) and the number of timed runs

    @property
    def macs_tail(self) -> int:
        return self.macs_total - self.macs_head


@dataclass
class SplitAccount:
    model: str
    split: str
    module: str
    input_shape: tuple[int, ...]
    transfer_shape: tuple[int, ...]
    head_params: int
    head_ms: float | None
    threads: int
    tasks: list[TaskSplit]
    head_timing: Timing | None = None  # head_ms with its spread (p10, p90) and the number of timed runs
    repeats: int = 0  # timed runs per latency

    @property
    def head_macs(self) -> int:
        return self.tasks[0].macs_head

    @property
    def transfer_elements(self) -> int:
        return int(torch.Size(self.transfer_shape).numel())

    @property
    def macs_separate(self) -> int:
        return sum(t.macs_total for t in self.tasks)  # eq. 1

    @property
    def macs_shared(self) -> int:
        return self.head_macs + sum(t.macs_tail for t in self.tasks)  # eq. 3

    @property
    def reduction_percent(self) -> float:
        return 100.0 * (self.macs_separate - self.macs_shared) / self.macs_separate

    def summary(self) -> pd.DataFrame:
        primary = self.tasks[0]
        row = {
            "model": self.model,
            "split": self.split,
            "module": self.module,
            "tasks": ",".join(t.task for t in self.tasks),
            "head_macs": self.head_macs,
            "head_params": self.head_params,
            "tail_macs": primary.macs_tail,
            "tail_params": primary.params_tail,
            "input_elements": int(torch.Size(self.input_shape).numel()),
            "transfer_shape": "x".join(map(str, self.transfer_shape)),
            "transfer_elements": self.transfer_elements,
            "transfer_bytes_fp32": 4 * self.transfer_elements,
            "transfer_bytes_uint8": self.transfer_elements + MINMAX_SIDE_INFO_BYTES,
            "macs_separate": self.macs_separate,
            "macs_shared": self.macs_shared,
            "macs_saved": self.macs_separate - self.macs_shared,
            "reduction_percent": round(self.reduction_percent, 4),
            "head_ms": self.head_ms,
            "tail_ms": primary.tail_ms,
            "threads": self.threads,
            # the spread of the medians above, over the same runs (after the existing columns: CI compares those by name)
            **_spread("head_ms", self.head_timing),
            **_spread("tail_ms", primary.tail_timing),
            "repeats": self.repeats,
        }
        return pd.DataFrame([row])

    def per_task(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "task": t.task,
                    "model": t.model,
                    "macs_total": t.macs_total,
                    "macs_head": t.macs_head,
                    "macs_tail": t.macs_tail,
                    "params_total": t.params_total,
                    "params_tail": t.params_tail,
                    "tail_ms": t.tail_ms,
                    **_spread("tail_ms", t.tail_timing),
                    "repeats": self.repeats,
                }
                for t in self.tasks
            ]
        )


def _spread(name: str, timing: Timing | None) -> dict[str, float | None]:
    """``name_p10`` and ``name_p90`` of ``timing`` (None where nothing was timed)."""
    return {f"{name}_p10": timing.p10_ms if timing else None, f"{name}_p90": timing.p90_ms if timing else None}


def task_models(zoo_model: ZooModel, tasks: list[str]) -> dict[str, ZooModel]:
    """The model that serves each task; the detector shares ``zoo_model``'s backbone."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise SplitbenchError(f"unknown task '{(unknown or [''])[0]}'; valid tasks: {', '.join(TASKS)}")
    spec = zoo_model.spec
    chosen: dict[str, ZooModel] = {}
    for task in tasks:
        if task == spec.task:
            chosen[task] = zoo_model
        elif task == "detection" and spec.detector:
            chosen[task] = load_model(spec.detector)  # no detection weights exist offline
        else:
            raise SplitbenchError(
                f"no {task} model shares {spec.name}'s layers; multi-task accounting is "
                f"defined for vgg16 and mobilenet_v2 (classification,detection)"
            )
    return chosen


def _resolve_in(task_model: ZooModel, at: str, primary: ZooModel, input_size: int | None):
    try:
        return task_model.cuts(input_size).resolve(at)
    except SplitbenchError:
        shared = list(task_model.spec.split_points)[-2]
        raise SplitbenchError(
            f"{task_model.spec.name} shares {primary.spec.name}'s layers only up to '{shared}': "
            f"split at or before it for multi-task accounting"
        ) from None


def account_split(
    zoo_model: ZooModel,
    at: str,
    tasks: list[str] | None = None,
    *,
    repeats: int = 5,
    input_size: int | None = None,
) -> SplitAccount:
    """Cut ``zoo_model`` at ``at`` and account MACs, parameters, bytes and latency per task."""
    tasks = tasks or [zoo_model.spec.task]
    models = task_models(zoo_model, tasks)
    graph = zoo_model.cuts(input_size)
    cut = graph.resolve(at)
    x = zoo_model.example_input(input_size)

    splits = []
    for task, task_model in models.items():
        task_graph = task_model.cuts(input_size)
        task_cut = _resolve_in(task_model, at, zoo_model, input_size) if task_model is not zoo_model else cut
        splits.append(
            TaskSplit(
                task=task,
                model=task_model.spec.name,
                cut=task_cut.name,
                macs_total=task_graph.total_macs,
                macs_head=task_cut.cum_macs,
                params_total=task_graph.total_params,
                params_tail=task_graph.total_params - task_cut.cum_params,
                head_shape=task_cut.shape,
            )
        )
    _check_same_head(splits)

    head, tail = graph.split(cut)
    with torch.inference_mode():
        transmitted = head(x)
    head_timing = time_ms(head, x, repeats)
    for split, task_model in zip(splits, models.values()):
        split.tail_timing = time_ms(task_model.cuts(input_size).tail(split.cut), transmitted, repeats)
        split.tail_ms = split.tail_timing.median_ms if split.tail_timing else None

    return SplitAccount(
        model=zoo_model.spec.name,
        split=at,
        module=cut.name,
        input_shape=tuple(x.shape[1:]),
        transfer_shape=tuple(transmitted.shape[1:]),
        head_params=cut.cum_params,
        head_ms=head_timing.median_ms if head_timing else None,
        threads=torch.get_num_threads(),
        tasks=splits,
        head_timing=head_timing,
        repeats=max(repeats, 0),
    )


def _check_same_head(splits: list[TaskSplit]) -> None:
    """Sharing is only sound if every task's head computes the same tensor."""
    first = splits[0]
    for other in splits[1:]:
        if (other.macs_head, other.head_shape) != (first.macs_head, first.head_shape):
            raise SplitbenchError(
                f"{other.model}'s layers up to the split differ from {first.model}'s "
                f"({other.macs_head} vs {first.macs_head} MACs, {other.head_shape} vs {first.head_shape})"
            )


def preprocessing_for(model: ZooModel, preprocess: str) -> Preprocessing:
    """``seed``: the whole image resized to the input size (seed 003 eq. 5–6); ``model``: the zoo's."""
    spec = model.spec.preprocessing
    if preprocess == "model":
        return spec
    if preprocess == "seed":
        return replace(spec, square=True)
    raise SplitbenchError(f"unknown preprocessing '{preprocess}'; valid: {', '.join(PREPROCESS)}")


def feature_shape(model: ZooModel, at: str, preprocessing: Preprocessing) -> tuple[int, int, int]:
    """C×H×W of the tensor at the cut ``at``, for an input of the preprocessing's size."""
    with torch.inference_mode():
        out = model.cuts().head(at)(model.example_input(preprocessing.crop))
    if out.dim() != 4:
        raise SplitbenchError(f"the output at the split is {tuple(out.shape[1:])}, not C×H×W planes an image codec can carry")
    return tuple(int(s) for s in out.shape[1:])  # type: ignore[return-value]
