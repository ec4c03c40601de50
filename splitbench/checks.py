"""What this machine offers, probed without side effects: cores, free memory, whether a host answers.

The lowest of the checks that commands run before any work (:mod:`splitbench.preflight`):
the zoo (a model's memory need), the executors (cores, a Ray address) and the weights (a
download's host) ask the same questions, so the answers live here, below all of them.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

NETWORK_PROBE_S = 3.0


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


def reachable(host: str, port: int = 443, timeout: float = NETWORK_PROBE_S) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
