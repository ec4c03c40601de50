"""Checks that run before any work, and the plan that ``--dry-run`` prints instead of working.

Every command resolves its inputs in the same order: the arguments, the model and its cut
(built with random weights: no network), the data (folders, manifests, labels), the folders
it will write, the device; only then the weights, which may download. A problem therefore
surfaces in one line within seconds, before an hour of encoding or training, and never
after a download. ``--dry-run`` stops after these checks and prints what would run.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
from rich.table import Table

from splitbench.errors import SplitbenchError

NETWORK_PROBE_S = 3.0


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
    return path


def writable_file(path: Path | str, option: str) -> Path:
    """``path`` is a file (not a folder) whose folder can be written."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise SplitbenchError(f"{option} {path} is a folder, not a file")
    writable_folder(path.parent, option)
    return path


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def physical_cores() -> int:
    """Physical cores among the usable ones: hyper-threads share a core's vector units, so GEMMs gain nothing."""
    usable = usable_cores()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return usable
    cores, physical = set(), ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            physical = value.strip()
        elif key.strip() == "core id":
            cores.add((physical, value.strip()))
    return min(len(cores), usable) if cores else usable


def available_memory() -> int | None:
    """Bytes this process can still allocate: the kernel's MemAvailable, or less under a cgroup limit."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
        free = int(next(line.split()[1] for line in meminfo.splitlines() if line.startswith("MemAvailable:"))) * 1024
    except (OSError, StopIteration, ValueError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            free = min(free, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return free


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


def describe_weights(weights: str, torchvision_name: str | None, has_default: bool) -> str:
    """What ``--weights`` will load, checked without downloading anything.

    ``default`` weights that are not cached must be downloadable: where their host cannot
    be reached, this fails now rather than after the other checks' work.
    """
    if weights == "none":
        return "random (seeded)"
    if weights != "default":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise SplitbenchError(f"weights file not found: {path}")
        from splitbench.weights import check_weights_file

        kind = check_weights_file(path)
        return f"{path} ({kind}, {path.stat().st_size / 1e6:.1f} MB)"
    if torchvision_name is None:
        if has_default:
            return "the source's published weights (downloaded when needed)"
        raise SplitbenchError("--weights default: no published weights for this model; pass --weights PATH or none")
    from torchvision import models as tv_models

    enum = tv_models.get_model_weights(torchvision_name).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)
    if cached.is_file():
        return f"torchvision's {enum} (cached at {cached})"
    host = urlparse(enum.url).hostname or ""
    if not urllib.request.getproxies() and not reachable(host):  # behind a proxy, let torch.hub try
        raise SplitbenchError(
            f"torchvision's {enum} is not cached ({cached}) and {host} cannot be reached; "
            f"pass --weights PATH to a local copy"
        )
    size = enum.meta.get("_file_size")
    return f"torchvision's {enum} (downloads{f' {size:.0f} MB' if size else ''} to {cached})"


def reachable(host: str, port: int = 443, timeout: float = NETWORK_PROBE_S) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class Plan:
    """What a command is about to do, row by row; printed by ``--dry-run``."""

    command: str
    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, what: str, value: object) -> Plan:
        self.rows.append((what, str(value)))
        return self

    def finish(self, dry_run: bool) -> bool:
        """Print the plan and return True for a dry run (the caller then stops)."""
        if not dry_run:
            return False
        from splitbench.cli.render import console

        table = Table(title=f"splitbench {self.command} --dry-run: all inputs resolve", show_header=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for what, value in self.rows:
            table.add_row(what, value)
        console.print(table)
        console.print("dry run: nothing was computed, downloaded or written")
        return True
