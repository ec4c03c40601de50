"""Result files: atomic replacement, readable by others like any file the user writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from splitbench.results import atomic_open, write_csv


def test_results_get_the_mode_of_an_ordinary_new_file(tmp_path: Path) -> None:
    written = write_csv(tmp_path / "table.csv", pd.DataFrame({"a": [1]}))
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert stat.S_IMODE(os.stat(written).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_a_killed_run_s_staging_folder_is_removed_by_the_next_set_and_nothing_of_it_published(tmp_path: Path) -> None:
    from splitbench.results import STAGING_PREFIX, write_result

    stale = tmp_path / f"{STAGING_PREFIX}killed"  # what a SIGKILL during writing leaves
    stale.mkdir()
    (stale / "run.csv").write_text("a\n1\n")
    (stale / ".run.csv.x.tmp").write_text("half")
    table = pd.DataFrame({"a": [2, 3]})
    write_result(tmp_path, "run", table, {"argv": ["test"]}, "# run")
    assert not list(tmp_path.glob(f"{STAGING_PREFIX}*"))
    assert pd.read_csv(tmp_path / "run.csv")["a"].tolist() == [2, 3]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["run.csv", "run.json", "run.md"]
