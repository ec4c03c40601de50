"""Checks that run before any work, and the plan that ``--dry-run`` prints instead of working.

Every command resolves its inputs in the same order: the arguments, the model and its cut
(built with random weights: no network), the data (folders, manifests, labels), the folders
it will write, the device; only then the weights, which may download. A problem therefore
surfaces in one line within seconds, before an hour of encoding or training, and never
after a download. ``--dry-run`` stops after these checks and prints what would run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

# The machine's probes (splitbench.checks) lie below the zoo and the executors; commands import them from here.
from splitbench.checks import physical_cores, reachable, usable_cores  # noqa: F401
from splitbench.errors import SplitbenchError

FORWARD_PROBE_S = 0.8  # a dry run's timing probe for its estimate


def writable_folder(path: Path | str, option: str) -> Path:
    """``path`` is a folder that exists or can be created, and files can be written in it.

    Nothing is created: the nearest existing folder is probed with a temporary file, which
    is what counts on read-only mounts and for users without write permission.
    """
    path = Path(path).expanduser()
    try:
        if path.exists() and not path.is_dir():
            raise SplitbenchError(f"{option} {path} is a file, not a folder")
        existing = path
        while not existing.exists():
            existing = existing.parent
    except OSError as error:  # a parent folder that this user may not enter
        raise SplitbenchError(f"{option} {path} cannot be reached ({error.strerror or error})") from None
    if not existing.is_dir():
        raise SplitbenchError(f"{option} {path}: {existing} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".splitbench-probe-")
    except OSError as error:
        raise SplitbenchError(f"{option} {path} cannot be written ({error.strerror or error})") from None
    os.close(handle)
    os.unlink(probe)
    if option == "--out":  # a folder of results: never one that another configuration's results fill
        from splitbench.runs import check_folder

        check_folder(path)
    return path


def writable_file(path: Path | str, option: str) -> Path:
    """``path`` is a file (not a folder) whose folder can be written."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise SplitbenchError(f"{option} {path} is a folder, not a file")
    writable_folder(path.parent, option)
    return path


def worker_count(requested: int | None, items: int, option: str = "--workers") -> int:
    """Worker processes for ``items`` CPU-bound tasks: at most one per usable core and one per item.

    ``None`` means one per core. More processes than cores only share them (and each holds a
    copy of the model); more than items sit idle. A clamped request is said in one line.
    """
    cores = usable_cores()
    if requested is None:
        return max(1, min(cores, items))
    if requested == 0:  # in-process, where the command allows it
        return 0
    chosen = max(1, min(requested, cores, items))
    if chosen < requested:
        reason = f"{cores} usable cores" if chosen == cores else f"{items} items of work"
        print(f"note: {option} {requested}: using {chosen} ({reason})", file=sys.stderr)
    return chosen


@dataclass
class Plan:
    """What a command is about to do, row by row; printed by ``--dry-run`` (the command line renders it)."""

    command: str
    rows: list[tuple[str, str | Callable[[], str]]] = field(default_factory=list)

    def add(self, what: str, value: object) -> Plan:
        self.rows.append((what, str(value)))
        return self

    def estimate(self, model: torch.nn.Module, example: torch.Tensor, images: int, settings: int = 1,
                 what: str = "settings") -> Plan:
        """An ``estimate`` row: one forward pass of ``model`` per image and setting, timed on ``example``.

        Only a dry run times it (:func:`forward_seconds`: under a second after one warm-up pass, which for a
        large model on a slow CPU may itself take longer); a real run skips the probe.
        """
        self.rows.append(("estimate", lambda: estimate_line(model, example, images, settings, what)))
        return self

    def lines(self) -> list[tuple[str, str]]:
        """The rows as text: a lazy row (an estimate) is worked out here, and only here."""
        return [(what, value() if callable(value) else value) for what, value in self.rows]

    def finish(self, dry_run: bool, show: Callable[[Plan], None]) -> bool:
        """For a dry run, hand the plan to ``show`` and return True (the caller then stops); else False.

        ``show`` prints it: the command line passes :func:`splitbench.cli.render.show_plan`. A real
        run shows nothing and works out no lazy row (no timing probe).
        """
        if not dry_run:
            return False
        show(self)
        return True


def estimate_line(model: torch.nn.Module, example: torch.Tensor, images: int, settings: int = 1,
                  what: str = "settings") -> str:
    """``~4 min (forward pass 38 ms/image × 1,300 images × 5 settings)``, or why there is no estimate."""
    try:
        seconds = forward_seconds(model, example)
    except Exception as error:  # noqa: BLE001 - a dry run reports its checks, not the probe's failure
        return f"none (the timing pass failed: {str(error).splitlines()[0] if str(error) else type(error).__name__})"
    times = f" × {settings:,} {what}" if settings != 1 else ""
    return f"{_rough(seconds * images * settings)} (forward pass {_milliseconds(seconds)}/image × {images:,} images{times})"


def forward_seconds(model: torch.nn.Module, example: torch.Tensor, *, batch: int = 8,
                    budget_s: float = FORWARD_PROBE_S) -> float:
    """Seconds per image of a forward pass of ``model`` (eval mode, no autograd) on ``example`` (1×C×H×W).

    Passes of the one image until they stop getting faster (the first set up kernels and can
    take fifty times longer), then up to two more while they fit in about ``budget_s``: of
    ``batch`` copies (a run's per-image cost at batch size) where that fits, else of the one
    image; the fastest counts.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            passes = [_settled(model, example)]
            copies = example.expand(batch, *example.shape[1:]).contiguous()
            deadline = time.perf_counter() + budget_s
            while len(passes) < 3:
                guess, left = min(passes), deadline - time.perf_counter()
                if guess * batch <= left:
                    passes.append(_timed(model, copies) / batch)
                elif guess <= left:
                    passes.append(_timed(model, example))
                else:
                    break
    finally:
        model.train(was_training)
    return min(passes)


def _settled(model: torch.nn.Module, example: torch.Tensor, most: int = 5) -> float:
    """The time of one pass once passes stop getting faster: the first few set up kernels and
    reorder weights (the first two passes of MobileNetV2 take 2 s and 0.6 s, the third 0.04 s)."""
    previous = _timed(model, example)
    for _ in range(most - 1):
        current = _timed(model, example)
        if current > 0.7 * previous:
            return min(current, previous)
        previous = current
    return previous


def _timed(model: torch.nn.Module, inputs: torch.Tensor) -> float:
    began = time.perf_counter()
    model(inputs)
    return time.perf_counter() - began


def _milliseconds(seconds: float) -> str:
    ms = 1000 * seconds
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms" if ms >= 1 else f"{ms:.2f} ms"


def _rough(seconds: float) -> str:
    """``~40 s``, ``~4 min``, ``~2.5 h``: an estimate's precision."""
    if seconds < 1:
        return "<1 s"
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"
