"""Training one compression model per λ, resumably, and evaluating it with real bitstreams.

A point's folder holds ``last.pt`` (weights, optimisers, history; rewritten atomically after
every epoch, loaded with ``weights_only=True``), the codec's weights after each epoch
(``epoch-N.pt``), each rank's random generator (``rng-R.pt``) and, once evaluated after N epochs, ``point-epochsN.json``. A rerun skips
finished points and continues an interrupted one from its last epoch; a longer training
budget continues a shorter one (the learning rate is constant, so epoch N of a 16-epoch run
is epoch N of an N-epoch run), and a shorter one reads its weights back. Warm-up
(reconstruction pre-training, shared by every λ of a variant) is a point of its own, so each
λ starts from the same weights.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from splitbench.compression.export import load_codec_state
from splitbench.compression.pipeline import (
    RDOutput,
    bits,
    entropy_aux_loss,
    pixels_of,
    rd_loss,
    update_entropy_tables,
    warmup_loss,
)
from splitbench.errors import SplitbenchError
from splitbench.metrics import percent, top1_hits, topk_hit_masks
from splitbench.progress import track
from splitbench.points import PointStore
from splitbench.training.distributed import Group
from splitbench.training.guard import DivergenceGuard
from splitbench.weights import read_tensor_file, write_tensor_file

CHECKPOINT = "last.pt"


@dataclass(frozen=True)
class RDSettings:
    """The training recipe; stored in every checkpoint, and a resumed run must match it.

    ``epochs`` is the budget, not the recipe: a run of more epochs continues a run of fewer.
    """

    epochs: int = 2
    warmup_epochs: int = 4
    batch_size: int = 16
    lr: float = 1e-3
    aux_lr: float = 1e-3
    warmup_rate_weight: float = 0.01
    target: str = "distill"
    seed: int = 0
    precision: str = "fp32"  # "bf16": the frozen network behind the codec in autocast while training

    def recipe(self) -> dict[str, Any]:
        """The settings as checkpoints and caches record them: without the budget (``epochs``), and
        without the precision where it is fp32, the default, as before precision existed."""
        recorded = asdict(self)
        recorded.pop("epochs")
        if self.precision == "fp32":
            recorded.pop("precision")
        return recorded


@dataclass
class TrainingSet:
    """Inputs (features or uint8 images), the uncompressed model's logits, the labels."""

    inputs: torch.Tensor
    teacher: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


Objective = Callable[[RDOutput, torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, dict[str, float]]]


def rd_objective(lam: float, alpha: float, target: str) -> Objective:
    return lambda output, teacher, labels, pixels: rd_loss(output, teacher, labels, lam, alpha, target, pixels)


def warmup_objective(rate_weight: float) -> Objective:
    return lambda output, teacher, labels, pixels: warmup_loss(output, rate_weight, pixels)


def train(pipeline: nn.Module, data: TrainingSet, objective: Objective, epochs: int, settings: RDSettings,
          folder: Path, device: torch.device, *, description: str, progress: bool = True,
          group: Group = Group()) -> list[dict[str, float]]:
    """The pipeline's codec (and auxiliary branch) as trained for ``epochs``; the history of those epochs.

    Only what ``folder`` lacks is trained: an interrupted or shorter run continues from its
    last epoch, and a longer one gives back its weights after ``epochs`` epochs. Under torchrun (``group`` of several ranks) every rank takes its share of each batch and
    the gradients are summed over the ranks, so a step follows the whole batch's loss; rank 0
    alone writes the checkpoints.
    """
    trainable = [p for n, p in pipeline.named_parameters() if p.requires_grad and not n.endswith("quantiles")]
    quantiles = [p for n, p in pipeline.named_parameters() if n.endswith("quantiles")]
    optimizer = torch.optim.Adam(trainable, lr=settings.lr)
    aux_optimizer = torch.optim.Adam(quantiles, lr=settings.aux_lr)
    history = _resume(folder, pipeline, optimizer, aux_optimizer, settings)
    _restore_rng(folder, group.rank, len(history), device)
    if len(history) >= epochs:  # trained this far before (perhaps further): those epochs' weights
        if len(history) > epochs:
            load_trainable(pipeline, read_tensor_file(_epoch_file(folder, epochs), "training checkpoint"))
        return history[:epochs]
    pipeline.train_precision = settings.precision
    generator = torch.Generator().manual_seed(settings.seed)
    for _ in range(len(history)):  # the permutations of the epochs already run
        torch.randperm(len(data), generator=generator)
    steps = (len(data) + settings.batch_size - 1) // settings.batch_size
    # What is saved: the codec's (and auxiliary branch's) tensors, the entropy models' quantiles among them.
    trained = [(f"{name}.{key}", tensor) for name, module in _trained_modules(pipeline).items()
               for key, tensor in [*module.named_parameters(), *module.named_buffers()]]
    guard = DivergenceGuard(trained, folder / CHECKPOINT, device, ranks_agree=not group.distributed)
    with track(description, epochs * steps, unit="steps", enabled=progress and group.main,
               completed=len(history) * steps) as bar:
        for epoch in range(len(history), epochs):
            row = _epoch(pipeline, data, objective, optimizer, aux_optimizer, settings, device,
                         torch.randperm(len(data), generator=generator), lambda info: bar.advance(info=info),
                         group, lambda loss, step: guard.after_step(loss, epoch, step))
            guard.check(epoch, None, row.get("loss"))  # before this epoch's files: the last good ones stay
            history.append({"epoch": epoch + 1, **row})
            _save_rng(folder, group.rank, len(history), device)
            if group.main:
                _save(folder, pipeline, optimizer, aux_optimizer, settings, history)
    group.barrier()  # rank 0 has written last.pt: a next budget resumes from it on every rank
    return history


def _epoch(pipeline, data: TrainingSet, objective: Objective, optimizer, aux_optimizer, settings: RDSettings,
           device: torch.device, order: torch.Tensor, advance: Callable[[str], None],
           group: Group = Group(),
           after_step: Callable[[torch.Tensor, int], None] = lambda loss, step: None) -> dict[str, float]:
    """One epoch in ``order``; ``after_step(loss, step)`` after each step (the divergence guard)."""
    pipeline.train()
    trainable = [p for param_group in optimizer.param_groups for p in param_group["params"]]
    sums: dict[str, float] = {}
    began, count, steps = time.perf_counter(), 0, 0
    for start in range(0, len(order), settings.batch_size):
        whole = order[start : start + settings.batch_size]
        index = whole[group.shard(len(whole), torch.device("cpu"))]
        # The loss is a mean over this rank's share; weighted by the share's size, the ranks'
        # summed gradients are the gradient of the mean over the whole batch.
        share = len(index) / len(whole) if len(whole) >= group.world else 1 / group.world
        batch = data.inputs[index].to(device)
        output = pipeline(batch)
        loss, parts = objective(output, data.teacher[index].to(device), data.labels[index].to(device),
                                pixels_of(pipeline, batch))
        optimizer.zero_grad(set_to_none=True)
        (loss * share if group.distributed else loss).backward()
        if group.distributed:
            _sum_gradients(trainable, group)
        optimizer.step()
        # The quantiles' loss does not depend on the data: every rank computes the same step.
        aux_optimizer.zero_grad(set_to_none=True)
        entropy_aux_loss(pipeline.codec).backward()
        aux_optimizer.step()
        after_step(loss, steps + 1)
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value * len(index)
        count, steps = count + len(index), steps + 1
        advance(" ".join(f"{k} {v / count:.3f}" for k, v in sums.items()))
    seconds = time.perf_counter() - began
    if group.distributed:  # the epoch's means over every rank's images
        totals = group.sum(torch.tensor([*sums.values(), count], dtype=torch.float64, device=device))  # nccl: on the GPU
        sums, count = dict(zip(sums, totals[:-1].tolist())), int(totals[-1])
    return {**{k: v / count for k, v in sums.items()}, "seconds": seconds, "step_s": seconds / steps}


def _sum_gradients(parameters: list[nn.Parameter], group: Group) -> None:
    """Every rank's gradients summed, in one flat buffer (one all-reduce per step, not per tensor)."""
    with_grad = [p for p in parameters if p.grad is not None]
    flat = group.sum(torch.cat([p.grad.reshape(-1) for p in with_grad]))
    for parameter, summed in zip(with_grad, flat.split([p.numel() for p in with_grad])):
        parameter.grad.copy_(summed.view_as(parameter.grad))


def _save(folder: Path, pipeline, optimizer, aux_optimizer, settings: RDSettings,
          history: list[dict[str, float]]) -> None:
    trainable = _trainable_state(pipeline)
    # The epoch's file first: last.pt never runs ahead of it.
    write_tensor_file(_epoch_file(folder, len(history)), trainable, "training checkpoint")
    state = {"trainable": trainable, "optimizer": optimizer.state_dict(), "aux_optimizer": aux_optimizer.state_dict(),
             "settings": settings.recipe(), "history": history}
    write_tensor_file(folder / CHECKPOINT, state, "training checkpoint")


def _epoch_file(folder: Path, epoch: int) -> Path:
    return folder / f"epoch-{epoch}.pt"


def _trained_modules(pipeline: nn.Module) -> dict[str, nn.Module]:
    """The codec and the auxiliary branch, if any: what trains; the frozen recogniser does not."""
    return {"codec": pipeline.codec, **({"aux": pipeline.aux} if pipeline.aux is not None else {})}


def _trainable_state(pipeline: nn.Module) -> dict[str, torch.Tensor]:
    """The codec's (and auxiliary branch's) tensors; the frozen recogniser is not saved."""
    return {f"{name}.{key}": value for name, module in _trained_modules(pipeline).items()
            for key, value in module.state_dict().items()}


def load_trainable(pipeline: nn.Module, state: dict[str, torch.Tensor]) -> None:
    load_codec_state(pipeline.codec, _part(state, "codec."))
    aux = _part(state, "aux.")
    if pipeline.aux is not None and aux:
        pipeline.aux.load_state_dict(aux)


def epoch_codec_state(folder: Path, epochs: int) -> dict[str, torch.Tensor] | None:
    """The codec's tensors after ``epochs`` (a point folder's epoch checkpoint); None where it is gone."""
    path = _epoch_file(folder, epochs)
    return _part(read_tensor_file(path, "training checkpoint"), "codec.") if path.is_file() else None


def _part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of one trained module (``codec.``, ``aux.``) in a checkpoint, under their own names."""
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def _save_rng(folder: Path, rank: int, epochs: int, device: torch.device) -> None:
    """This rank's generator after ``epochs``: the quantisation noise comes from the global
    generator, and a continued run resumes each rank's own stream."""
    state = torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()
    write_tensor_file(folder / f"rng-{rank}.pt", {"epochs": epochs, "device": device.type, "state": state},
                      "training checkpoint")


def _restore_rng(folder: Path, rank: int, epochs: int, device: torch.device) -> None:
    path = folder / f"rng-{rank}.pt"
    if not epochs or not path.exists():
        return
    saved = read_tensor_file(path, "training checkpoint")
    # Another epoch (a stop between the two files) or another device's generator: a fresh stream.
    if saved["epochs"] == epochs and saved["device"] == device.type:
        if device.type == "cuda":
            torch.cuda.set_rng_state(saved["state"], device)
        else:
            torch.set_rng_state(saved["state"])


def _resume(folder: Path, pipeline, optimizer, aux_optimizer, settings: RDSettings) -> list[dict[str, float]]:
    path = folder / CHECKPOINT
    if not path.exists():
        return []
    state = read_tensor_file(path, "training checkpoint")
    if state["settings"] != settings.recipe():
        raise SplitbenchError(f"{path} was trained with another recipe ({state['settings']}); "
                              f"delete it or use another --cache")
    load_trainable(pipeline, state["trainable"])
    optimizer.load_state_dict(state["optimizer"])
    aux_optimizer.load_state_dict(state["aux_optimizer"])
    return list(state["history"])


def load_finished(folder: Path, pipeline: nn.Module, epochs: int) -> None:
    """Load a point's weights after ``epochs`` epochs into ``pipeline``."""
    load_trainable(pipeline, read_tensor_file(_epoch_file(folder, epochs), "training checkpoint"))


@torch.inference_mode()
def evaluate(pipeline: nn.Module, data: TrainingSet, batch_size: int, device: torch.device, *,
             progress: bool = True) -> dict[str, Any]:
    """Accuracy of the decoded bitstreams; estimated (−log2 likelihood) and actual bpp side by side."""
    pipeline.eval()
    codec = pipeline.codec
    update_entropy_tables(codec)
    estimated_bits = actual_bytes = top1 = top5 = agree = 0.0
    pixels = 0
    began = time.perf_counter()
    with track("evaluating", len(data), unit="images", enabled=progress, transient=True) as bar:
        for start in range(0, len(data), batch_size):
            batch = data.inputs[start : start + batch_size].to(device)
            x = pipeline.codec_input(batch)
            likelihoods = codec(x)["likelihoods"]
            estimated_bits += float(bits(likelihoods))
            coded = codec.compress(x)
            actual_bytes += sum(len(s) for strings in coded["strings"] for s in strings)
            decoded = codec.decompress(coded["strings"], coded["shape"])["x_hat"][..., : x.shape[-2], : x.shape[-1]]
            logits = pipeline.recognise(decoded).float()
            labels = data.labels[start : start + batch_size].to(device)
            hit1, hit5 = topk_hit_masks(logits, labels)
            top1 += float(hit1.sum())
            top5 += float(hit5.sum())
            agree += float(top1_hits(logits, data.teacher[start : start + batch_size].to(device).argmax(1)).sum())
            pixels += len(batch) * pixels_of(pipeline, batch)
            bar.advance(len(batch))
    count = len(data)
    return {"bpp_estimated": estimated_bits / pixels, "bpp_actual": 8 * actual_bytes / pixels,
            "top1": percent(top1, count), "top5": percent(top5, count), "agreement": percent(agree, count),
            "test_images": count, "eval_s": time.perf_counter() - began}


def read_point(folder: Path, epochs: int, test: dict[str, Any]) -> dict[str, Any] | None:
    """A point's row after ``epochs``, if it was evaluated on ``test`` (else its weights are tested again)."""
    saved = PointStore(folder).get(_result_name(epochs))  # missing or damaged: evaluated again
    if not isinstance(saved, dict) or "row" not in saved:
        return None
    return saved["row"] if saved.get("test") == json.loads(json.dumps(test)) else None


def write_point(folder: Path, row: dict[str, Any], test: dict[str, Any]) -> None:
    """Keep a point's row (evaluated after ``row["epochs"]`` epochs) for reruns, in the point's folder
    (which also holds its training checkpoints)."""
    PointStore(folder).put(_result_name(row["epochs"]), {"row": row, "test": test})


def _result_name(epochs: int) -> str:
    return f"point-epochs{epochs}"

