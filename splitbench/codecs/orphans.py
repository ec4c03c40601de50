"""Processes that end with their parent: no worker outlives the sweep that started it."""

from __future__ import annotations

import os
import signal
import sys


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent ends (``prctl(PR_SET_PDEATHSIG)``).

    The kernel delivers it, so it works whatever this process is busy with. Elsewhere than
    Linux this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, sig, 0, 0, 0)
    if os.getppid() != parent:  # the parent ended before the request took effect
        os._exit(1)
