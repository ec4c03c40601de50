"""`splitbench report`: the overview is current, and --check catches a drift and names it."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import (
    REPO,
    run_in_process,
    SHARED_DATA,
    SHARED_WEIGHTS,
    needs_shared_data,
    needs_shared_weights,
)
from typer.testing import CliRunner

from splitbench.cli import app
from splitbench.errors import SplitbenchError
from splitbench.overview import render_overview
from splitbench.regression import (
    Baseline,
    Figure,
    compare,
    load_baselines,
    parse_slices,
    update_baselines,
)
from splitbench.results import (
    LOCK_NAME,
    markdown_table,
    read_sidecar,
    read_table,
    result_set,
    verify_tables,
    write_csv,
    write_result,
)

BASELINES = REPO / "reports" / "baselines" / "regression.csv"


def committed_reports(folder: Path) -> Path:
    """reports/ as committed (running a command, e.g. the README's `splitbench profile vgg16`,
    rewrites results in the working tree); the working tree where this is not a git checkout."""
    if not (REPO / ".git").exists():
        return REPO / "reports"
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD", "reports"], capture_output=True, check=True)
    tarfile.open(fileobj=io.BytesIO(archive.stdout)).extractall(folder, filter="data")
    return folder / "reports"


def test_committed_overview_is_what_report_renders(tmp_path: Path) -> None:
    reports = committed_reports(tmp_path)
    committed = (reports / "README.md").read_text(encoding="utf-8")
    assert render_overview(reports) == committed, "run `splitbench report` and commit reports/README.md"


def test_overview_puts_the_papers_figures_beside_ours() -> None:
    page = render_overview(REPO / "reports")
    assert "| mobilenet_v2 | bottleneck6 | classification,detection |" in page
    assert "9.77" in page and "42.31" in page  # seed 003's reductions
    assert "31.3" in page  # seed 003's BPG QP 35 ratio beside ours
    assert "](codec/codec.png)" in page and "## Provenance" in page
    # seed 000 Table 1 beside ours, the RD runs with their BD tables and plots
    assert "| attention2 |" in page and "5.77" in page and "3.7397" in page
    assert "](rd/mobilenet_v2-bottleneck3/rd.png)" in page and "BD-rate" in page
    assert "Not reproduced yet" not in page


def test_tolerances() -> None:
    assert Figure("a", 10).holds(10) and not Figure("a", 10).holds(11)
    assert Figure("a", 77.0, "abs", 1.0).holds(76.0) and not Figure("a", 77.0, "abs", 1.0).holds(75.9)
    assert Figure("t", 200.0, "ratio", 2.5).holds(90.0) and not Figure("t", 200.0, "ratio", 2.5).holds(79.0)
    assert Figure("t", 20.0, "ratio", 2.5).holds(49.0) and not Figure("t", 20.0, "ratio", 2.5).holds(51.0)


def test_compare_names_drifts_new_and_missing_metrics() -> None:
    baselines = {"codec.jpeg_bytes": Baseline(572732.0, "exact", 0.0), "codec.gone": Baseline(1.0, "abs", 0.5),
                 "codec.top1": Baseline(70.0, "abs", 2.0), "profile.vit.params": Baseline(9524842.0, "exact", 0.0)}
    # the file's tolerance decides (the figure's own, ±0, would flag 71)
    figures = [Figure("codec.jpeg_bytes", 600000), Figure("codec.new", 3), Figure("codec.top1", 71.0, "abs", 0.0)]
    drifts = {d.metric: d for d in compare(figures, baselines, ["codec"])}
    assert set(drifts) == {"codec.jpeg_bytes", "codec.new", "codec.gone"}  # profile was not run: not missing
    assert drifts["codec.jpeg_bytes"].line() == "codec.jpeg_bytes: baseline 572732, now 600000, tolerance exact"
    assert drifts["codec.new"].line() == "codec.new: baseline missing, now 3, tolerance exact"
    assert drifts["codec.gone"].line() == "codec.gone: baseline 1, now missing, tolerance ±0.5"


def test_update_replaces_the_slices_run_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "baselines.csv"
    changes = update_baselines(path, [Figure("a.x", 1), Figure("a.old", 5), Figure("b.y", 2.5, "abs", 1.0)], ["a", "b"])
    assert changes == ["a.x: new, 1", "a.old: new, 5", "b.y: new, 2.5"]
    table = pd.read_csv(path)
    table.loc[table["metric"] == "a.x", "tolerance"] = 0.5  # a hand-edited tolerance survives updates
    table.to_csv(path, index=False)
    assert update_baselines(path, [Figure("a.x", 3)], ["a"]) == ["a.x: 1 -> 3", "a.old: dropped (no longer measured)"]
    assert load_baselines(path) == {"a.x": Baseline(3.0, "exact", 0.5), "b.y": Baseline(2.5, "abs", 1.0)}


def test_a_baselines_file_with_a_repeated_metric_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "baselines.csv"
    path.write_text("metric,value,kind,tolerance\na.x,1,exact,0\na.x,2,exact,0\n")
    with pytest.raises(SplitbenchError, match="metric listed twice: a.x"):
        load_baselines(path)


@pytest.mark.parametrize(("args", "message"), [
    (["--only", "codec,bogus"], "error: unknown slice bogus; valid: profile, split, eval, codec, codec_detection, prune, group, rd"),
    (["--baselines", "/no/such/baselines.csv"], "error: missing baselines file: /no/such/baselines.csv"),
])
def test_bad_check_input_ends_in_one_line(args: list[str], message: str) -> None:
    done = run_in_process("report", "--check", *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr


def test_committed_baselines_cover_every_slice() -> None:
    metrics = load_baselines(BASELINES)
    assert {m.split(".")[0] for m in metrics} == set(parse_slices(None))
    assert metrics["profile.vgg16.macs"].value == 15_470_289_408 and metrics["codec.jpeg_bytes"].value == 572_732


@needs_shared_data
@needs_shared_weights
def test_a_changed_jpeg_quality_is_caught_and_restoring_it_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    argv = ["report", "--check", "--only", "codec", "--data", str(SHARED_DATA), "--weights-dir", str(SHARED_WEIGHTS)]
    monkeypatch.setattr("splitbench.codecs.cache.JPEG_QUALITY", 90)
    changed = CliRunner().invoke(app, argv, env={"COLUMNS": "200", **os.environ})
    assert changed.exit_code == 1, changed.output
    assert "DRIFT codec.jpeg_bytes: baseline 572732, now " in changed.output
    assert not any(line.startswith("DRIFT codec.bpg") for line in changed.output.splitlines())  # features unchanged

    monkeypatch.setattr("splitbench.codecs.cache.JPEG_QUALITY", 75)
    restored = CliRunner().invoke(app, argv)
    assert restored.exit_code == 0, restored.output
    assert "within tolerance" in restored.output


# --- committed tables are checked, not trusted ----------------------------------------------------


def _working_reports(folder: Path) -> Path:
    """A copy of reports/ as it is in the working tree (its sidecars record their tables)."""
    shutil.copytree(REPO / "reports", folder / "reports")
    return folder / "reports"


def test_every_committed_result_sidecar_records_its_tables() -> None:
    reports = REPO / "reports"
    sidecars = [p for p in reports.rglob("*.json") if "git" in read_sidecar(p)]
    assert len(sidecars) >= 39
    for sidecar in sidecars:
        tables = read_sidecar(sidecar)["tables"]
        assert f"{sidecar.stem}.csv" in tables, sidecar
        assert set(next(iter(tables.values()))) == {"rows", "columns", "sha256"}  # the keys the writer writes
    assert verify_tables(reports) >= 70  # all but the benchmarks' and the link runs kept for comparison
    codec = read_sidecar(reports / "codec" / "codec.json")["tables"]["codec.csv"]
    assert codec["rows"] == len(pd.read_csv(reports / "codec" / "codec.csv")) and codec["columns"][:3] == ["model", "split", "codec"]


def _cut_inside_the_last_row(path: Path) -> None:
    content = path.read_bytes()
    path.write_bytes(content[: content.rstrip(b"\n").rfind(b"\n") + 12])


def _drop_the_last_row(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))


def _change_a_figure(path: Path) -> None:  # same shape, one top-1 a point higher
    table = pd.read_csv(path)
    table.loc[0, "top1"] += 1
    path.write_text(table.to_csv(index=False, lineterminator="\n"))


@pytest.mark.parametrize(("damage", "message"), [
    (_cut_inside_the_last_row, "it ends inside a row (no final newline); truncated?"),
    (_drop_the_last_row, "rows, reports/codec/codec.json records"),
    (_change_a_figure, "its sha256 is not the one recorded in reports/codec/codec.json"),
])
def test_a_damaged_committed_table_is_refused_in_one_line(tmp_path: Path, damage, message: str) -> None:
    reports = _working_reports(tmp_path)
    damage(reports / "codec" / "codec.csv")
    done = run_in_process("report", "--reports", "reports", "--out", "overview.md", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: reports/codec/codec.csv is damaged: ") and message in done.stderr
    assert done.stderr.count("\n") == 1 and not (tmp_path / "overview.md").exists()
    # --check looks at them too, before minutes of measuring
    check = run_in_process("report", "--check", "--dry-run", "--reports", "reports",
                           "--baselines", str(BASELINES), cwd=tmp_path)
    assert check.returncode == 2 and check.stderr.startswith("error: reports/codec/codec.csv is damaged: ")


def test_a_table_without_a_record_is_still_read_whole_rows_only(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("a,b\n1,2\n3\n")
    with pytest.raises(SplitbenchError, match=r"table.csv is damaged: line 3 has 1 fields, the header 2"):
        read_table(path)
    path.write_text("a,b\n1,2\n3,4\n")
    assert read_table(path)["b"].tolist() == [2, 4]


@pytest.mark.parametrize(("value", "shown"), [("abc", "'abc'"), ("", "empty"), ("inf", "'inf'")])
def test_a_baselines_value_that_is_not_a_number_is_refused_by_line(tmp_path: Path, value: str, shown: str) -> None:
    path = tmp_path / "baselines.csv"
    path.write_text(f"metric,value,kind,tolerance\na.x,1,exact,0\na.y,{value},abs,1\n")
    done = run_in_process("report", "--check", "--dry-run", "--baselines", str(path))
    assert done.returncode == 2
    assert done.stderr == f"error: {path}, line 3: the value of a.y is {shown}, not a finite number\n"


# --- what the writer records, and its rule for missing and infinite numbers -------------------------


def test_the_writer_records_each_table_of_the_set_in_its_sidecar(tmp_path: Path) -> None:
    table = pd.DataFrame({"codec": ["none", "bpg"], "param": [None, 35.0], "top1": [70.0, 69.5]})
    with result_set(tmp_path):
        write_result(tmp_path, "codec", table, {"command": "codec", "warnings": []}, "# codec", optional=["param"])
        write_csv(tmp_path / "extra.csv", table[["codec"]])
    tables = read_sidecar(tmp_path / "codec.json")["tables"]
    assert sorted(tables) == ["codec.csv", "extra.csv"]
    content = (tmp_path / "codec.csv").read_bytes()
    assert content == b"codec,param,top1\nnone,,70.0\nbpg,35.0,69.5\n"  # a missing value: an empty cell
    assert tables["codec.csv"] == {"rows": 2, "columns": ["codec", "param", "top1"],
                                   "sha256": hashlib.sha256(content).hexdigest()}
    assert verify_tables(tmp_path) == 2


def test_a_missing_number_where_one_is_promised_is_said_and_recorded(tmp_path: Path, capsys) -> None:
    table = pd.DataFrame({"codec": ["none", "bpg"], "top1": [70.0, float("nan")]})
    write_result(tmp_path, "codec", table, {"command": "codec", "warnings": []}, markdown_table(table))
    assert capsys.readouterr().err == "warning: codec.csv: column top1 has no value in 1 of 2 row(s)\n"
    assert read_sidecar(tmp_path / "codec.json")["warnings"] == ["codec.csv: column top1 has no value in 1 of 2 row(s)"]
    assert "| bpg     |    n/a |" in (tmp_path / "codec.md").read_text()


def test_an_infinite_number_is_a_bug_and_publishes_nothing(tmp_path: Path) -> None:
    table = pd.DataFrame({"codec": ["none"], "ratio": [float("inf")]})
    with pytest.raises(ValueError, match="codec.csv: column ratio holds inf in 1 row"):
        write_result(tmp_path / "out", "codec", table, {"command": "codec"}, "# codec")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [LOCK_NAME]
