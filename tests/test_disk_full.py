"""A full disk, on a real small tmpfs: one line and exit code 2, never half a result set.

Before: `--out` on a full disk ended in a long ENOSPC traceback and left a CSV without its
JSON or plot; `--cache` died of SIGBUS (a sparse memory-mapped file grown on a full disk).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import SHARED_DATA, needs_shared_data, needs_shared_weights, run_in_process, shared_weights

from splitbench.errors import SplitbenchError
from splitbench.pruning.sweep import SweepSettings, prune_store
from splitbench.results import LOCK_NAME, STAGING_PREFIX, verify_tables


@pytest.fixture
def small_disk() -> Iterator[Callable[[str], Path]]:
    """``small_disk(size)``: a fresh tmpfs of ``size`` (say "400k"), unmounted afterwards."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = Path(tempfile.mkdtemp(prefix="splitbench-full-"))
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            point.rmdir()
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)
        point.rmdir()


def _fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` up to ``leave`` free bytes."""
    free = shutil.disk_usage(disk).free
    (disk / "filler").write_bytes(b"\0" * max(free - leave, 0))


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_a_full_disk_under_out_keeps_the_previous_result_set_whole(small_disk) -> None:
    out = small_disk("400k") / "out"
    first = run_in_process("profile", "resnet18", "--out", str(out))
    assert first.returncode == 0, first.stderr
    before = _digests(out)
    assert set(before) == {LOCK_NAME, "config.yaml", "profile.csv", "profile.md", "profile.json", "profile.png"}

    _fill(out.parent, leave=24 * 1024)  # the CSV and the Markdown fit; the plot (~45 kB) does not
    # The same configuration (a folder keeps one; see runs.check_folder): the new set differs from
    # the old in its provenance (finish time, wall time), so a published set would show.
    full = run_in_process("profile", "resnet18", "--out", str(out))
    assert full.returncode == 2
    line = _one_error_line(full.stderr)
    assert line.startswith(f"error: no space left on the device for {out}: this run's results were not published")
    assert "profile.png did not fit" in line
    assert _digests(out) == before  # the previous set, byte for byte, and nothing of the new one
    assert not list(out.glob(f"{STAGING_PREFIX}*"))

    (out.parent / "filler").unlink()
    again = run_in_process("profile", "resnet18", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert verify_tables(out) == 1 and _digests(out)["profile.json"] != before["profile.json"]


@needs_shared_data
@needs_shared_weights
def test_a_full_disk_under_the_feature_cache_ends_in_one_line_not_sigbus(small_disk, tmp_path: Path) -> None:
    cache = small_disk("1m") / "cache"  # the features of 8 images at bottleneck3 need 2.4 MB
    done = subprocess.run(
        [sys.executable, "-m", "splitbench", "codec", "mobilenet_v2",
         "--weights", str(shared_weights("mobilenet_v2-imagenet-int8dequant.pth")), "--at", "bottleneck3",
         "--dataset", "imagenet-val-1300", "--data", str(SHARED_DATA), "--limit", "8", "--codec", "none",
         "--workers", "1", "--cache", str(cache), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, f"exit {done.returncode} (-7: SIGBUS): {done.stderr}"
    line = _one_error_line(done.stderr)
    assert line.startswith(f"error: no space left on the device for the feature cache {cache}/features/")
    assert "the features of 8 images need 2 MB; free space or pass --cache elsewhere" in line
    assert not (tmp_path / "out").exists()  # nothing published
    assert not list(cache.rglob("*.grow.npy"))  # the half-grown file is gone, the cache usable again


def test_a_full_disk_under_a_point_cache_ends_in_one_line_and_leaves_no_temporary(small_disk) -> None:
    disk = small_disk("64k")
    cache = prune_store(disk, "checkpoint", SweepSettings(), test_images=10)
    cache.put("small", {"top1": 50.0})
    _fill(disk, leave=0)
    with pytest.raises(SplitbenchError, match=r"^no space left on the device for .*/large\.json; nothing half-written"):
        cache.put("large", {"values": list(range(20_000))})
    assert cache.get("small") == {"top1": 50.0} and cache.get("large") is None
    assert sorted(p.name for p in cache.directory.iterdir()) == ["small.json"]
