"""Options shared by several commands, so that they read and behave the same everywhere.

Numbers from the command line go through two parsers only: :func:`float_option` for a single
float (every float option of every command), :func:`split_numbers` for a comma-separated list.
Both refuse NaN and ±Inf, which every range check lets through (``nan <= 0`` is false).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from splitbench.errors import SplitbenchError
from splitbench.finite import count_non_finite
from splitbench.values import parse_number, split_names, split_numbers  # noqa: F401 (the commands import them from here)

ModelArgument = Annotated[
    Optional[str],
    typer.Argument(
        help="A zoo model (`splitbench models`), any torchvision classification model (resnet18), "
        "timm:NAME, or your own: FILE.py:FUNCTION or package.module:FUNCTION returning an nn.Module.",
        show_default=False,
    ),
]
ModelOption = Annotated[
    Optional[str],
    typer.Option("--model", help="The model, as an option instead of the first argument (same forms).",
                 show_default=False),
]
Leaf = Annotated[
    Optional[str],
    typer.Option("--leaf", help="Comma-separated module paths or class names to keep whole when tracing "
                 "(for submodules torch.fx cannot trace; no cut lies inside them)."),
]
Dataset = Annotated[
    Optional[str],
    typer.Option("--dataset", help="The data scored on: a data manifest, MANIFEST:SPLIT for one of its splits "
                 "(default: the model's own data set, its test split where the command also trains), or your own "
                 "images: imagefolder:DIR (class folders; ImageNet wnid names map to the 1000 classes) or csv:FILE "
                 "(path,label); for a detector, coco:DIR (instances.json + images/) or voc:DIR (Annotations/ + "
                 "JPEGImages/)."),
]
TrainDataset = Annotated[
    Optional[str],
    typer.Option("--train-dataset", help="The data trained (or calibrated) on, in --dataset's forms (default: the "
                 "model's own data set's train split; rd: imagenet-sample-1000 for an ImageNet model)."),
]
Split = Annotated[
    Optional[str],
    typer.Option("--split", help="Split of the --dataset manifest (default: the manifest's own; --dataset "
                 "MANIFEST:SPLIT says the same)."),
]
Limit = Annotated[
    Optional[int],
    typer.Option("--limit", min=1, help="Evaluation images: score on N of them only (default: all; link 20 and "
                 "plan 5, which time every image; plan --search 200)."),
]
TrainLimit = Annotated[
    Optional[int],
    typer.Option("--train-limit", min=1, help="Training images: train on N of them only, spread evenly over the "
                 "set (default: all)."),
]
Mean = Annotated[
    Optional[str],
    typer.Option("--mean", help="Normalisation mean per channel, e.g. 0.5,0.5,0.5 (default: the model source's)."),
]
Std = Annotated[
    Optional[str],
    typer.Option("--std", help="Normalisation std per channel, e.g. 0.25,0.25,0.25 (default: the model source's)."),
]
DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="Resolve model, weights, cut, data, outputs and device, print the plan, "
                 "and stop (exit 2 with the first problem)."),
]
Precision = Annotated[
    str,
    typer.Option("--precision", help="Training precision: auto (bf16 autocast where the device computes bf16 "
                 "natively: a GPU, a CPU with AVX512_BF16 or AMX), bf16 or fp32."),
]
ExecutorOption = Annotated[
    str,
    typer.Option("--executor", help="Where the sweep's tasks run: local (processes on this machine) or "
                 "ray[:ADDRESS] (a local Ray cluster, or the one at ADDRESS; pip install 'splitbench[ray]')."),
]
Weights = Annotated[
    str,
    typer.Option(
        "--weights",
        help="auto (the default): the model's published weights where this command's figures depend on them "
        "(eval, codec, rd, serve, link, plan) and they are already on this machine, else random init with a "
        "warning; random init where they do not (profile, split) or training starts from scratch (train, "
        "group); prune: the repository's reference ViT. none: random init (seeded). default: the published "
        "weights, downloaded once if needed. Or a path to a state_dict/checkpoint (.pth, .th, .safetensors).",
    ),
]
OutDir = Annotated[
    Optional[Path],
    typer.Option("--out", help="Directory for CSV, Markdown, JSON sidecar and plots."),
]
DataRoot = Annotated[
    Optional[Path],
    typer.Option("--data", help="Data root holding the datasets (default: $SPLITBENCH_DATA)."),
]
InputSize = Annotated[
    Optional[int],
    typer.Option("--input-size", min=8, help="Square input side (default: the model's own)."),
]
CACHE = Path("cache")
Cache = Annotated[
    Path,
    typer.Option("--cache", help="Folder of reusable work (features, checkpoints, finished points) that later "
                 "runs pick up; deleting it costs time, not results."),
]
Workers = Annotated[
    Optional[int],
    typer.Option("--workers", min=1, help="Parallel workers doing the command's own work: codec's encoding "
                 "processes (default: one per usable core), serve's threads answering requests (default: 1)."),
]
LoaderWorkers = Annotated[
    int,
    typer.Option("--loader-workers", min=0, help="Processes reading and decoding images (0: in this process)."),
]
Repeats = Annotated[
    int,
    typer.Option("--repeats", min=0, help="Timed repetitions, of which the median is reported (0: no timing; "
                 "plan needs 1 or more)."),
]
Device = Annotated[
    str,
    typer.Option("--device", help="Where to train or run: auto (a GPU when present), cpu or cuda[:N]."),
]
Seed = Annotated[
    int,
    typer.Option("--seed", min=0, help="Seed of the initialisation, the data order and the augmentation."),
]
BatchSize = Annotated[
    int,
    typer.Option("--batch-size", min=1, help="Images per batch (each command's default is its recipe's)."),
]
Bits = Annotated[
    int,
    typer.Option("--bits", help="Min-max quantisation bits before an image codec (eq. 7): 8, 10, 12 or 16."),
]
Preprocess = Annotated[
    str,
    typer.Option("--preprocess", help="seed: resize the picture to the model's square input (224x224 as in "
                 "seed 003; 416x416 for yolov4_tiny); model: the zoo's resize+crop."),
]


class FiniteFloat:
    """Typer's ``parser`` for a float option: a finite number within ``[minimum, maximum]``.

    Raises :class:`SplitbenchError` naming the option (typer's own range check, which
    ``parser`` replaces, would let NaN through and accept Inf).
    """

    def __init__(self, option: str, minimum: float | None = None, maximum: float | None = None) -> None:
        self.option, self.minimum, self.maximum = option, minimum, maximum

    def __call__(self, value: str | float) -> float:
        number = parse_number(value, float)
        if number is None or count_non_finite(number) or not self._in_range(number):
            raise SplitbenchError(f"{self.option} takes a finite number{self._range()}, got {value!r}")
        return number

    def _in_range(self, number: float) -> bool:
        return (self.minimum is None or number >= self.minimum) and (self.maximum is None or number <= self.maximum)

    def _range(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f" from {self.minimum:g} to {self.maximum:g}"
        if self.minimum is not None:
            return f" ≥ {self.minimum:g}"
        return f" ≤ {self.maximum:g}" if self.maximum is not None else ""


def float_option(option: str, *, minimum: float | None = None, maximum: float | None = None,
                 help_text: str | None = None) -> typer.models.OptionInfo:
    """``typer.Option`` for a float: every float option is declared with this (tests/test_option_parsers.py checks)."""
    return typer.Option(option, parser=FiniteFloat(option, minimum, maximum), metavar="FLOAT", help=help_text)


def pick_model(argument: str | None, option: str | None, default: str | None = None) -> str:
    """The model named by the argument or by ``--model`` (not both), else ``default``."""
    if argument and option and argument != option:
        raise SplitbenchError(f"two models given: '{argument}' and --model '{option}'; give one")
    chosen = argument or option or default
    if not chosen:
        raise SplitbenchError("no model given: name one (splitbench models lists the zoo) or pass --model")
    return chosen


def normalisation(text: str | None, option: str) -> tuple[float, ...] | None:
    """``--mean``/``--std``: three positive-or-any numbers, one per input channel."""
    if text is None:
        return None
    values = tuple(split_numbers(text, option))
    if len(values) != 3:
        raise SplitbenchError(f"{option} takes 3 numbers (one per channel), got {text!r}")
    if option == "--std" and min(values) <= 0:
        raise SplitbenchError(f"--std must be positive, got {text!r}")
    return values


def folder_name(text: str) -> str:
    """A data set or model name as one folder name (``csv:/a/b.csv`` → ``csv-a-b.csv``)."""
    return re.sub(r"[^\w.-]+", "-", text).strip("-")


def default_out(command: str, run: str) -> Path:
    """The run's own folder, ``runs/<command>/<run>-<key>/`` (see :func:`splitbench.runs.run_folder`):
    apart from the committed reproductions, and one per configuration."""
    from splitbench.runs import run_folder

    return run_folder(command, run)
