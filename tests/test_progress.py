"""Progress: plain throttled lines where standard error is no terminal, a rich bar where it is; dry-run estimates."""

from __future__ import annotations

import multiprocessing
import os
import pty
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import REPO, SHARED_DATA, SHARED_WEIGHTS, needs_shared_data, needs_shared_weights
from splitbench import progress
from splitbench.cli.render import show_plan
from splitbench.evaluation import progress_bar
from splitbench.preflight import Plan, estimate_line, forward_seconds
from splitbench.progress import Bar, duration, track, track_iter

ESCAPE = "\x1b"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(progress, "_clock", fake)
    monkeypatch.setenv(progress.INTERVAL_VARIABLE, "30")
    return fake


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


def test_a_plain_line_has_counts_share_rate_and_time_left() -> None:
    bar = Bar(None, "codec points", 40, "points", completed=12)
    bar.initial, bar.started = 0, 0.0  # 12 points in 29.27 s: 0.41 points/s, 28 left: 68 s
    assert bar.line(12 / 0.41) == "codec points: 12/40 (30%), 0.41 points/s, ETA 1 min 08 s"
    assert bar.line(12 / 0.41, final=True) == "codec points: 12/40 (30%), 0.41 points/s, stopped after 29 s"
    unknown = Bar(None, "per-channel losses", None, "channels", completed=1500)
    unknown.initial, unknown.started = 0, 0.0
    assert unknown.line(3.0) == "per-channel losses: 1,500 channels, 500 channels/s"
    assert [duration(s) for s in (0.42, 42, 68, 3 * 3600 + 5 * 60)] == ["0.4 s", "42 s", "1 min 08 s", "3 h 05 min"]


def test_plain_lines_come_at_most_every_interval_and_end_with_a_final_line(
        clock: FakeClock, capsys: pytest.CaptureFixture) -> None:
    with track("codec points", 40, unit="points") as bar:
        for _ in range(40):  # one point a second
            clock.now += 1
            bar.advance()
    err = capsys.readouterr().err
    # nothing for the first 30 s (a quick command stays quiet), then a line, then the final one
    assert _lines(err) == ["codec points: 30/40 (75%), 1.0 points/s, ETA 10 s",
                           "codec points: 40/40 (100%), 1.0 points/s, done in 40 s"]
    assert ESCAPE not in err


def test_the_interval_comes_from_the_environment(clock: FakeClock, capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.INTERVAL_VARIABLE, "10")
    with track("images", 100, unit="images") as bar:
        for _ in range(50):
            clock.now += 1
            bar.advance(2)
    assert [line.split(",")[0] for line in _lines(capsys.readouterr().err)] == \
        ["images: 20/100 (20%)", "images: 40/100 (40%)", "images: 60/100 (60%)", "images: 80/100 (80%)",
         "images: 100/100 (100%)"]


def test_nested_bars_print_indented_blocks_and_short_inner_bars_no_final_line(
        clock: FakeClock, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.INTERVAL_VARIABLE, "6")
    with track("epochs", 3, unit="epochs", completed=1) as epochs:  # resumed after epoch 1
        for epoch in range(1, 3):
            with track(f"epoch {epoch + 1}", 500, unit="images", transient=True) as images:
                for _ in range(5):  # 5 s an epoch: shorter than the interval
                    clock.now += 1
                    images.advance(100)
            epochs.advance(info=f"loss {1 / (epoch + 1):.3f}")
    assert _lines(capsys.readouterr().err) == [
        "epochs: 2/3 (66%), 0.17 epochs/s, ETA 6.0 s, loss 0.500",  # the first block, after 6 s:
        "  epoch 3: 100/500 (20%), 100 images/s, ETA 4.0 s",  # the outer bar above the inner one
        "epochs: 3/3 (100%), 0.2 epochs/s, done in 10 s, loss 0.333",  # the epochs done since the resume count
    ]


def test_an_inner_bar_that_ran_for_the_interval_gets_its_final_line(
        clock: FakeClock, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.INTERVAL_VARIABLE, "0")
    with track("codec points", 2, unit="points") as points:
        for label in ("none", "webp quality 50"):
            with track(label, 20, unit="images") as images:
                clock.now += 2
                images.advance(20)
            points.advance()
    assert _lines(capsys.readouterr().err) == [
        "  none: 20/20 (100%), 10.0 images/s, done in 2.0 s",
        "codec points: 1/2 (50%), 0.5 points/s, ETA 2.0 s",
        "  webp quality 50: 20/20 (100%), 10.0 images/s, done in 2.0 s",
        "codec points: 2/2 (100%), 0.5 points/s, done in 4.0 s",
    ]


def test_a_disabled_bar_counts_and_prints_nothing(capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.INTERVAL_VARIABLE, "0")
    with track("evaluating", 10, unit="images", enabled=False) as bar:
        bar.advance(4)
        bar.log("not shown")
    assert bar.completed == 4 and capsys.readouterr().err == ""


def test_track_iter_and_the_add_task_interface(capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.INTERVAL_VARIABLE, "0")
    assert list(track_iter(["a", "b", "c"], "timing cuts", unit="cuts")) == ["a", "b", "c"]
    with progress_bar(enabled=True, transient=False, unit="cuts") as bars:
        task = bars.add_task("timing cuts", total=2)
        bars.update(task, advance=1)
        bars.update(task, advance=1)
    lines = _lines(capsys.readouterr().err)
    assert [line.split(",")[0] for line in lines] == ["timing cuts: 1/3 (33%)", "timing cuts: 2/3 (66%)",
                                                      "timing cuts: 3/3 (100%)", "timing cuts: 1/2 (50%)",
                                                      "timing cuts: 2/2 (100%)"]
    assert all(" cuts/s" in line for line in lines) and not any("images" in line for line in lines)


def _worker_bar(amount: int) -> float:
    with track("worker bar", 10, unit="items") as bar:
        bar.advance(amount)
    return bar.completed


def test_bars_in_worker_processes_and_threads_do_not_fail(capfd: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.INTERVAL_VARIABLE, "0")
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(_worker_bar, [3, 4]) == [3, 4]
    assert "worker bar" not in capfd.readouterr().err  # workers show nothing
    failures: list[BaseException] = []

    def run(name: str) -> None:
        try:
            with track(name, 50, unit="items") as bar:
                for _ in range(50):
                    bar.advance()
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    with track("threads", 4, unit="threads") as outer:
        threads = [threading.Thread(target=run, args=(f"thread {i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
            outer.advance()
    err = capfd.readouterr().err
    assert not failures
    assert "threads: 4/4 (100%)" in err and all(f"thread {i}: 50/50 (100%)" in err for i in range(4))
    assert progress._display is None  # every bar let go of the display


def test_on_a_terminal_the_bar_is_rich(tmp_path: Path) -> None:
    script = ("from splitbench.progress import track\n"
              "with track('decoding', 100, unit='images') as bar:\n"
              "    for _ in range(4):\n"
              "        bar.advance(25)\n")
    leader, follower = pty.openpty()
    child = subprocess.Popen([sys.executable, "-c", script], stderr=follower, stdout=subprocess.DEVNULL, cwd=REPO,
                             env={**os.environ, "SPLITBENCH_PROGRESS_SECONDS": "0", "COLUMNS": "120"})
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert child.wait(timeout=60) == 0
    os.close(leader)
    shown = b"".join(chunks).decode()
    assert ESCAPE in shown  # a live display, not plain lines
    assert "100/100 images" in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert "decoding: " not in shown


@needs_shared_data
@needs_shared_weights
def test_eval_through_a_pipe_prints_plain_progress_lines(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "splitbench", "eval", "cifar_resnet20", "--weights",
         str(SHARED_WEIGHTS / "cifar-resnet20-12fca82f.th"), "--split", "test", "--limit", "64", "--batch-size", "16",
         "--workers", "0", "--out", str(tmp_path / "eval")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "SPLITBENCH_DATA": str(SHARED_DATA), "SPLITBENCH_PROGRESS_SECONDS": "0"})
    assert done.returncode == 0, done.stderr
    assert ESCAPE not in done.stderr
    found = re.findall(r"^evaluating: (\d+)/64 \((\d+)%\), ([\d.,]+) images/s, (ETA|done in) ", done.stderr, re.M)
    assert [(int(n), int(share), kind) for n, share, _, kind in found] == \
        [(16, 25, "ETA"), (32, 50, "ETA"), (48, 75, "ETA"), (64, 100, "done in")], done.stderr
    assert all(float(rate.replace(",", "")) > 0 for _, _, rate, _ in found)


class Slow(nn.Module):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds, self.calls = seconds, 0
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        time.sleep(self.seconds)
        return self.linear(x.flatten(1)[:, :4])


def test_the_estimate_is_timed_by_a_dry_run_only(capsys: pytest.CaptureFixture) -> None:
    model = Slow(0.02)
    Plan("eval").add("model", "slow").estimate(model, torch.zeros(1, 4), 1300, 5).finish(False, show_plan)
    assert model.calls == 0  # a real run does not pay for the probe
    Plan("eval").add("model", "slow").estimate(model, torch.zeros(1, 4), 1300, 5).finish(True, show_plan)
    assert 2 <= model.calls <= 4 and model.training  # a warm-up and at most 3 timed passes; the mode is given back
    assert "estimate" in capsys.readouterr().out
    line = estimate_line(model, torch.zeros(1, 4), 1300, 5)
    found = re.fullmatch(r"~(\d+) s \(forward pass (\d\.\d) ms/image × 1,300 images × 5 settings\)", line)
    assert found, line
    # 20 ms a pass of 8 copies: about 2.5 ms an image (sleep overshoots a little), × 1,300 × 5 ≈ 16 s
    total, per_image = int(found[1]), float(found[2])
    assert 2.5 <= per_image < 5 and abs(total - per_image * 1300 * 5 / 1000) <= 1


def test_the_probe_keeps_to_its_budget_and_a_failing_pass_is_said() -> None:
    model = Slow(0.15)
    began = time.perf_counter()
    seconds = forward_seconds(model, torch.zeros(1, 4), budget_s=0.5)
    assert time.perf_counter() - began < 0.5 + 0.2 and 0.15 / 8 <= seconds < 0.3

    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("shape mismatch\nmore detail")

    assert estimate_line(Broken(), torch.zeros(1, 4), 10) == "none (the timing pass failed: shape mismatch)"
