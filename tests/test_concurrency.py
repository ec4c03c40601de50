"""Concurrent runs: one feature cache shared by simultaneous codec sweeps, one --out folder
written by simultaneous runs.

The audit that started this: two `codec` runs started together on one --cache both exited 0,
one reporting the uncompressed top-1 as 0.0 (true value 65.0), and the wrong figure stayed in
the cache for later runs. The cause: growing the cache swapped in a new, still empty
features.npy under the other run, whose meta.json already counted those rows as computed; that
run's `none` point read zeros. Creating and growing the cache now happen under a lock.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
from conftest import SHARED_DATA, needs_shared_data, needs_shared_weights, shared_weights

from splitbench.results import LOCK_NAME, STAGING_PREFIX, locked, verify_tables

MEASURED = ["codec", "param", "images", "feature_bytes", "jpeg_bytes", "top1", "top5"]
REPEATS = 3


def _codec_args(cache: Path | str, out: Path | str) -> list[str]:
    """A small real sweep: MobileNetV2 (shared weights) at bottleneck3, 10 images, no codec,
    8-bit min-max and WebP, in one process (no encoder pool)."""
    return ["codec", "mobilenet_v2", "--weights", str(shared_weights("mobilenet_v2-imagenet-int8dequant.pth")),
            "--at", "bottleneck3", "--dataset", "imagenet-val-1300", "--data", str(SHARED_DATA), "--limit", "10",
            "--codec", "none,minmax8,webp", "--quality", "50", "--layout", "gray", "--workers", "1",
            "--cache", str(cache), "--out", str(out)]


# One process runs the command REPEATS times, each on a fresh cache, through the same entry
# point as the console script: one torch start-up instead of REPEATS (the machine has 2 cores).
SIDE = textwrap.dedent("""
    import json
    import sys

    from splitbench.cli import main

    for args in json.loads(sys.argv[1]):
        try:
            main(args)
        except SystemExit as done:
            if done.code:
                raise
""")


def _started(runs: list[list[str]]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", SIDE, json.dumps(runs)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _finished(run: subprocess.Popen[str]) -> str:
    _, stderr = run.communicate(timeout=900)
    assert run.returncode == 0, stderr
    assert "error" not in stderr and "Traceback" not in stderr, stderr
    return stderr


@needs_shared_data
@needs_shared_weights
def test_concurrent_sweeps_on_one_cache_measure_what_a_lone_run_measures(tmp_path: Path) -> None:
    # At the same time: a lone run on its own cache, and two processes that each sweep fresh
    # caches 0, 1, 2 in turn, both on the same cache each time.
    lone = _started([_codec_args(tmp_path / "lone-cache", tmp_path / "lone")])
    sides = [_started([_codec_args(tmp_path / f"cache{i}", tmp_path / f"out{i}{side}") for i in range(REPEATS)])
             for side in "ab"]
    _finished(lone)
    notes = [_finished(side) for side in sides]
    expected = pd.read_csv(tmp_path / "lone" / "codec.csv")[MEASURED]
    top1 = dict(zip(expected["codec"], expected["top1"]))
    assert top1["none"] > 30 and top1["minmax8"] > 30  # a real figure, not the 0.0 of an empty feature map
    lone_features = np.load(next((tmp_path / "lone-cache").glob("features/*/features.npy")))
    for i in range(REPEATS):
        for side in "ab":
            pd.testing.assert_frame_equal(pd.read_csv(tmp_path / f"out{i}{side}" / "codec.csv")[MEASURED], expected)
        # what stays in the cache for later runs: the same features and the same per-point hits
        folder = next((tmp_path / f"cache{i}").glob("features/*"))
        assert np.allclose(np.load(folder / "features.npy"), lone_features, atol=1e-5)
        stored = sorted(100 * float(np.load(p)["hit1"].mean()) for p in (folder / "points").glob("*.npz"))
        assert stored == sorted(expected["top1"])
    # the two took turns on a shared cache: one waited for the other's head pass (said, in one note)
    assert any("waiting for another run computing the features" in n for n in notes)


WRITER = textwrap.dedent("""
    import sys
    import time
    from pathlib import Path

    import pandas as pd

    from splitbench.results import result_set, write_csv, write_result, write_text

    out, tag, sets = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    for number in range(sets):
        table = pd.DataFrame({"tag": [tag] * 50, "set": [number] * 50, "row": range(50)})
        with result_set(out):
            write_result(out, "run", table, {"tag": tag, "set": number}, f"# {tag} {number}")
            time.sleep(0.02)  # a set takes a while to write, so the two writers' sets overlap in time
            write_csv(out / "extra.csv", table.assign(extra=1))
            write_text(out / "run.png", f"{tag} {number}")
        # between sets, as a real run computes: the observer, whose lock polls every 50 ms, gets
        # its turns (two writers re-taking the lock at once starved it: it saw one set only)
        time.sleep(0.06)
""")


def _consistent(out: Path) -> tuple[str, int]:
    """The (tag, set) every file of the result set in ``out`` carries; they must agree."""
    tables = [pd.read_csv(out / name) for name in ("run.csv", "extra.csv")]
    tags = {(str(t["tag"].iloc[0]), int(t["set"].iloc[0])) for t in tables}
    tag, number = (out / "run.png").read_text().split()
    tags.add((tag, int(number)))
    assert (out / "run.md").read_text() == f"# {tag} {number}\n"
    assert len(tags) == 1, f"files of different runs in one set: {tags}"
    assert verify_tables(out) == 2  # the sidecar describes exactly these tables
    return tags.pop()


def test_runs_into_one_out_folder_publish_whole_sets_and_never_interleave(tmp_path: Path) -> None:
    out = tmp_path / "out"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(out), tag, "25"], stderr=subprocess.PIPE, text=True)
               for tag in ("A", "B")]
    seen = set()
    while any(w.poll() is None for w in writers):
        if (out / "run.json").is_file():
            with locked(out / LOCK_NAME, "waiting"):  # between two publications
                seen.add(_consistent(out))
        time.sleep(0.02)
    for writer in writers:
        assert writer.wait() == 0, writer.stderr.read() if writer.stderr else ""
    final = _consistent(out)
    assert final in {("A", 24), ("B", 24)} and len(seen) > 1
    assert sorted(p.name for p in out.iterdir()) == sorted([LOCK_NAME, "run.csv", "run.md", "run.json", "extra.csv",
                                                            "run.png"])
    assert not list(out.glob(f"{STAGING_PREFIX}*"))
