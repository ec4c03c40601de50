"""What a result was measured with: arguments, versions, weights, data, commit, hardware."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from splitbench import __version__

# Packages whose versions can move a figure; absent optional ones are recorded as null.
_PACKAGES = [
    "splitbench",
    "torch",
    "torchvision",
    "numpy",
    "pandas",
    "pillow",
    "fvcore",
    "vit-pytorch",
    "imagecodecs",
    "av",
    "compressai",
]


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    # a checkout used through PYTHONPATH (the GPU example) has no installed metadata
    versions["splitbench"] = versions["splitbench"] or __version__
    return versions


def git_commit() -> dict[str, Any]:
    """The commit of the splitbench checkout in use (null when installed from a wheel)."""
    source = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    # Changes under reports/ are results, not code: regenerating them must not mark later
    # results of the same run as made from a dirty tree.
    status = git("status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)reports") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "gpu": gpu,
        "torch_threads": torch.get_num_threads(),
    }


_WARNINGS: list[str] = []


def warn(message: str) -> None:
    """Say in one stderr line that the run does something dubious, and record it in the result.

    For input that is valid but probably not meant (training on a test set, labels from
    another label space): the run goes on, and the provenance of what it writes says so.
    """
    _WARNINGS.append(message)
    print(f"warning: {message}", file=sys.stderr)


def recorded_warnings() -> list[str]:
    """The warnings this run has given so far."""
    return list(_WARNINGS)


def clear_warnings() -> None:
    """Forget earlier warnings (one command per process; tests run several in one)."""
    _WARNINGS.clear()


def collect(
    command: str,
    arguments: dict[str, Any],
    *,
    weights: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    wall_s: float | None = None,
) -> dict[str, Any]:
    """The JSON sidecar of one result (with the command-line run's resolved configuration and key)."""
    from splitbench.runs import current

    run = current()
    return {
        "command": command,
        "argv": sys.argv[1:],
        "config": None if run is None else {"key": run.key(), "options": run.options},
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in arguments.items()},
        "weights": weights,
        "data": data,
        "versions": package_versions(),
        "git": git_commit(),
        "hardware": hardware(),
        "wall_s": None if wall_s is None else round(wall_s, 3),
        "warnings": list(_WARNINGS),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
