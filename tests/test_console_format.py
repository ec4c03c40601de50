"""Console output a researcher can read: tables in 80 columns, one number format per column,
timings with their spread, plain log-axis labels (splitbench.cli.render, splitbench.timing)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from rich.console import Console

from conftest import run_in_process, zoo
from splitbench.cli import render
from splitbench.results import markdown_table
from splitbench.split import account_split
from splitbench.timing import Timing, dataset_timing, median_ms, time_ms

# seed 000 Table 1 as `rd --cost-only` writes it for MobileNetV2 at bottleneck3
COST = pd.DataFrame({
    "variant": ["none", "attention1", "attention2"], "feature_shape": ["24x56x56"] * 3, "channels": [32, 32, 32],
    "gmacs": [0.080282, 0.080359, 0.081964], "params": [57048, 57308, 59388], "param_size_mb": [0.228, 0.229, 0.238],
    "gmacs_over_none": [0.0, 7.7e-05, 0.001682], "param_mb_over_none": [0.0, 0.001, 0.01]})


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch):
    """The renderer's console, 80 columns wide, into a string (read it with ``screen.getvalue()``)."""
    text = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=text, width=80, color_system=None, legacy_windows=False))
    return text


def header_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("┃"))


def test_a_table_wider_than_80_columns_leaves_out_its_last_columns_and_names_them(screen: io.StringIO) -> None:
    render.show_table(COST, title="cost", source="/tmp/out/cost.csv")
    output = screen.getvalue()
    assert "…" not in output
    assert all(len(line) <= 80 for line in output.splitlines())
    headers = header_line(output).strip("┃").split("┃")
    assert [h.strip() for h in headers] == ["variant", "feature_shape", "channels", "gmacs", "params", "param_size_mb"]
    assert "(2 more columns in /tmp/out/cost.csv: gmacs_over_none, param_mb_over_none)" in output
    assert "attention2" in output and "57,048" in output


def test_a_table_that_fits_is_shown_whole_without_a_note(screen: io.StringIO) -> None:
    render.show_table(COST, columns=["variant", "gmacs", "params"])
    output = screen.getvalue()
    assert "more column" not in output and "…" not in output
    assert [h.strip() for h in header_line(output).strip("┃").split("┃")] == ["variant", "gmacs", "params"]


def test_text_columns_wrap_and_names_stay_whole(screen: io.StringIO) -> None:
    # the model zoo's listing: long identifiers, words that wrap; nothing is left out or cut
    rows = pd.DataFrame({"model": ["ssd_mobilenet_v2", "vgg16"], "task": ["detection", "classification"],
                         "input": [224, 224],
                         "split points": ["conv1 bottleneck1 bottleneck2 bottleneck3 bottleneck7 detector",
                                          "conv1_1 conv1_2 pool1 conv2_1 conv2_2 pool2 pool3 pool4 pool5 fc6 fc7 fc8"],
                         "description": ["SSD224 on MobileNetV2, sources bottleneck7 and bottleneck14→conv_last",
                                         "VGG16 (torchvision), ImageNet 224x224; seed 003's shared CNN"]})
    render.show_table(rows, title="zoo", source=None)
    output = screen.getvalue()
    assert "…" not in output and "more column" not in output
    assert "ssd_mobilenet_v2" in output and "classification" in output
    assert all(len(line) <= 80 for line in output.splitlines())


def test_rd_cost_only_fits_80_columns(screen: io.StringIO, tmp_path: Path) -> None:
    done = run_in_process("rd", "mobilenet_v2", "--weights", "none", "--cost-only", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    output = screen.getvalue()
    assert "…" not in output
    note = f"(2 more columns in {tmp_path / 'cost.csv'}: gmacs_over_none, param_mb_over_none)"
    assert re.sub(r"\s", "", note) in re.sub(r"\s", "", output)  # the line wraps where the path is long
    assert list(pd.read_csv(tmp_path / "cost.csv").columns) == list(COST.columns)  # the CSV keeps them all


def test_one_number_format_per_column() -> None:
    cells = lambda values: [render.number_format(values)(v) for v in values]  # noqa: E731
    assert cells([12050.0, 5032.0]) == ["12,050", "5,032"]  # was 1.205e+04 beside 5032
    assert cells([1792, 36928, 0]) == ["1,792", "36,928", "0"]  # was 1792 beside 36,928
    assert cells([12050.4, 5032.25, 0.5]) == ["12,050.4", "5,032.2", "0.5"]
    assert cells([0.0, 7.7e-05, 0.001682]) == ["0.000000", "0.000077", "0.001682"]
    assert cells([0.228, 0.229, 0.238]) == ["0.228", "0.229", "0.238"]  # no digits invented
    assert cells([71.88123, 9.7734]) == ["71.881", "9.773"]  # each keeps four digits
    assert cells([1254800, 68.0, 54.3]) == ["1,254,800.0", "68.0", "54.3"]  # rows of different figures
    spanning = cells([3.2e-9, 5.0, float("nan")])  # nine orders of magnitude: scientific, all of it
    assert spanning == ["3.200e-09", "5.000e+00", "n/a"]


def test_a_column_with_1_205e4_and_5032_renders_in_one_format(screen: io.StringIO) -> None:
    table = pd.DataFrame({"setup": ["a", "b", "c"], "bytes": [12050.0, 5032.0, 812.5], "ms": [1.5, 0.25, 12.0]})
    render.show_table(table)
    output = screen.getvalue()
    assert "e+" not in output
    assert " 12,050.0 " in output and " 5,032.0 " in output and " 812.5 " in output
    assert " 1.50 " in output and " 0.25 " in output and " 12.00 " in output


def test_markdown_writes_a_column_in_one_notation() -> None:
    table = pd.DataFrame({"codec": ["x", "y", "z"], "feature_bytes": [12050.0, 5032.0, 0.5],
                          "ratio": [0.0, 7.7e-05, 0.001682], "top1": [71.9, 70.25, 12.0]})
    text = markdown_table(table, floatfmt=".4g")
    assert "e+" not in text and "e-" not in text  # was 1.205e+04 beside 5032, 7.7e-05 beside 0.001682
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()[2:]]
    assert [row[1] for row in cells] == ["12050.0", "5032.0", "0.5"]
    assert [row[2] for row in cells] == ["0.000000", "0.000077", "0.001682"]
    # a column in one notation already is written as before (the committed overview stays the same)
    assert [row[3] for row in cells] == ["71.9", "70.25", "12"]
    plain = pd.DataFrame({"a": [0.5, 12.25, 3.0], "b": ["x", None, "z"]})
    assert markdown_table(plain) == plain.astype(object).where(plain.notna(), None).to_markdown(
        index=False, floatfmt="g", missingval="n/a")
    wide = markdown_table(pd.DataFrame({"v": [2.5e-9, 1.0, 3.0]}))  # nine orders of magnitude: scientific, all of it
    assert [line.strip("| ") for line in wide.splitlines()[2:]] == ["2.5e-09", "1.0e+00", "3.0e+00"]


def test_timing_of_a_small_op_has_its_spread_and_repeats() -> None:
    layer = torch.nn.Linear(64, 64)
    x = torch.randn(8, 64)
    timing = time_ms(layer, x, repeats=15)
    assert isinstance(timing, Timing) and timing.repeats == 15
    assert 0 < timing.p10_ms <= timing.median_ms <= timing.p90_ms
    assert time_ms(layer, x, 0) is None and median_ms(layer, x, 0) is None
    assert isinstance(median_ms(layer, x, 3), float)
    whole = dataset_timing(layer, torch.randn(40, 64), 10, 5)
    assert whole is not None and whole.repeats == 5 and whole.p10_ms <= whole.median_ms <= whole.p90_ms
    assert Timing.of([1.0, 2.0, 3.0, 100.0]) == Timing(2.5, 1.3, 70.9, 4)
    assert "p10–p90" in timing.describe() and "15 runs" in timing.describe()


def test_split_writes_the_spread_after_its_existing_columns() -> None:
    account = account_split(zoo("cifar_resnet20"), "layer2", repeats=4)
    summary = account.summary()
    existing = ["model", "split", "module", "tasks", "head_macs", "head_params", "tail_macs", "tail_params",
                "input_elements", "transfer_shape", "transfer_elements", "transfer_bytes_fp32", "transfer_bytes_uint8",
                "macs_separate", "macs_shared", "macs_saved", "reduction_percent", "head_ms", "tail_ms", "threads"]
    assert list(summary.columns) == [*existing, "head_ms_p10", "head_ms_p90", "tail_ms_p10", "tail_ms_p90", "repeats"]
    row = summary.iloc[0]
    assert row["head_ms_p10"] <= row["head_ms"] <= row["head_ms_p90"] and row["repeats"] == 4
    assert row["head_ms"] == account.head_timing.median_ms
    tasks = account.per_task()
    assert list(tasks.columns)[-4:] == ["tail_ms", "tail_ms_p10", "tail_ms_p90", "repeats"]
    assert tasks.iloc[0]["tail_ms_p10"] <= tasks.iloc[0]["tail_ms"] <= tasks.iloc[0]["tail_ms_p90"]


def test_plan_times_keep_their_means_and_add_the_spread() -> None:
    from splitbench.link.endpoints import SplitSetup
    from splitbench.link.plan import SPREAD_COLUMNS, CostTimer

    timer = CostTimer(zoo("cifar_resnet20"), SplitSetup("layer2", "minmax8"))
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(6)]
    timer.time(pictures[0], record=False)
    for index, picture in enumerate(pictures):
        timer.time(picture, index)
    row = timer.row()
    assert list(row) == ["setup", "at", "codec", "elements", "head_ms", "encode_ms", "decode_ms", "tail_ms",
                         "payload_bytes", "framing_bytes", "reply_bytes", *SPREAD_COLUMNS, "timed_runs"]
    assert row["timed_runs"] == 6
    for name, values in timer.times.items():
        assert row[name] == round(float(np.mean(values)), 3)  # the mean, as before
        assert row[f"{name}_p10"] <= row[f"{name}_p90"]
        assert min(values) <= row[f"{name}_p10"] + 1e-3 and row[f"{name}_p90"] <= max(values) + 1e-3


def _drawn_axes(module, monkeypatch: pytest.MonkeyPatch) -> list:
    """The figures ``module``'s plots draw, kept for reading back after they are saved."""
    figures = []
    real = module.save_figure

    def keep(path, draw, size=(10, 4.5)):  # type: ignore[no-untyped-def]
        def drawing(axes):  # type: ignore[no-untyped-def]
            figures.append(axes.figure)
            draw(axes)
        return real(path, drawing, size)

    monkeypatch.setattr(module, "save_figure", keep)
    return figures


def _visible_labels(axis) -> list[str]:  # type: ignore[no-untyped-def]
    low, high = sorted(axis.get_view_interval())
    return [tick.label1.get_text() for tick in axis.get_major_ticks()
            if low <= tick.get_loc() <= high and tick.label1.get_text()]


PLAIN = re.compile(r"^[0-9][0-9,]*(\.[0-9]+)?$")


@pytest.mark.parametrize("ratios", [[18.0, 31.3, 44.0, 60.0], [0.8, 3.1, 12.0, 95.0], [0.02, 0.9, 40.0, 300.0]])
def test_codec_plot_log_axis_reads_plain_numbers(ratios: list[float], monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    from splitbench.codecs import report

    figures = _drawn_axes(report, monkeypatch)
    table = pd.DataFrame({"model": "vgg16", "split": "conv4_1", "codec": ["none", "bpg", "bpg", "bpg", "bpg"],
                          "param": [None, 45, 40, 35, 30], "layout": "gray", "ratio_percent": [100.0, *ratios],
                          "top1": [71.6, 40.0, 60.0, 68.0, 70.0]})
    report.plot_codec(table, None, tmp_path / "codec.png")
    axes = figures[0].axes[0]
    assert axes.get_xscale() == "log"
    labels = _visible_labels(axes.xaxis)
    assert len(labels) >= 2, labels
    assert all(PLAIN.match(label) for label in labels), labels  # 30, 100, 300; not 3×10¹
    assert not any(t.get_text() for t in axes.xaxis.get_minorticklabels())


def test_link_stage_plot_log_axis_reads_plain_numbers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from splitbench.link import report

    figures = _drawn_axes(report, monkeypatch)
    summary = pd.DataFrame({"setup": ["edge", "layer2:minmax8"], "bandwidth_mbit": [None, 10.0], "rtt_ms": [0.0, 5.0],
                            "head_ms": [1000.0, 2.0], "encode_ms": [0.0, 0.5], "transfer_ms": [0.0, 4.0],
                            "server_ms": [0.0, 1.0]})
    report.plot_stages(tmp_path / "link.png", summary, "cifar_resnet20")
    axes = figures[0].axes[0]
    assert axes.get_yscale() == "log"
    labels = _visible_labels(axes.yaxis)
    assert len(labels) >= 2 and all(PLAIN.match(label) for label in labels), labels
