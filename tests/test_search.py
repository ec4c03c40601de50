"""``plan --search``: every deployment measured on calibration pictures, the Pareto front of
(latency, accuracy drop, bytes) per condition, and the choice under each budget."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import SHARED_DATA, few_cifar_images, needs_shared_data, needs_shared_weights, run_in_process, shared_weights
from splitbench.link.search import choose, pareto

CIFAR_WEIGHTS = "cifar-resnet20-12fca82f.th"


def test_the_front_keeps_exactly_the_deployments_no_other_beats() -> None:
    table = pd.DataFrame({"total_ms": [10, 20, 30, 20, 10], "drop": [5, 1, 0, 2, 5], "payload_bytes": [9, 9, 9, 9, 8]})
    # row 1 beats row 3 (as fast, smaller drop, same bytes); row 4 beats row 0 (same time and drop, fewer bytes)
    assert pareto(table).tolist() == [False, True, True, False, True]
    assert pareto(table.iloc[[2]]).tolist() == [True]  # alone, a candidate is its own front


def test_each_budget_picks_the_fastest_within_the_drop_or_the_most_accurate_within_the_time() -> None:
    predictions = pd.DataFrame({
        "bandwidth_mbit": 10.0, "rtt_ms": 0.0, "setup": ["a", "b", "c"], "variant": "m", "at": ["x", "y", "z"],
        "codec": "bpg", "param": [30, 40, 50], "top1": [78.0, 75.0, 60.0], "drop": [0.0, 3.0, 18.0],
        "payload_bytes": [900, 500, 100], "total_ms": [30.0, 12.0, 8.0]})
    chosen = choose(predictions, "top1", max_drop=(1, 5, 100), max_latency=(10, 20, 5)).set_index(["budget", "limit"])
    assert chosen["chosen"].to_dict() == {
        ("max_drop", 1): "a", ("max_drop", 5): "b", ("max_drop", 100): "c",
        ("max_latency_ms", 10): "c", ("max_latency_ms", 20): "b", ("max_latency_ms", 5): "none within budget"}
    assert chosen.loc[("max_drop", 5), "candidates_within"] == 2


@needs_shared_data
@needs_shared_weights
def test_a_search_measures_every_candidate_and_chooses_from_its_front(tmp_path: Path) -> None:
    weights = str(shared_weights(CIFAR_WEIGHTS))
    # four pictures of each class: the search's spread and eval's first 40 are the same pictures
    options = ["cifar_resnet20", "--weights", weights, "--dataset", f"imagefolder:{few_cifar_images(tmp_path / 'few')}",
               "--data", str(SHARED_DATA), "--limit", "40"]
    search = ["plan", *options, "--search", "--at", "layer1,layer2", "--codec", "webp:10/90,minmax8",
              "--preprocess", "model", "--bandwidth", "1,100", "--rtt", "5", "--max-drop", "0,30",
              "--max-latency", "1000", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "search")]
    done = run_in_process(*search)
    assert done.returncode == 0, done.stderr
    candidates = pd.read_csv(tmp_path / "search" / "candidates.csv")
    assert candidates["setup"].tolist() == [
        "input", "layer1:webp@10/gray", "layer2:webp@10/gray", "layer1:webp@90/gray", "layer2:webp@90/gray",
        "layer1:minmax8", "layer2:minmax8", "edge"]
    assert (candidates["timed_runs"] == 40).all()
    evaluated = run_in_process("eval", *options, "--out", str(tmp_path / "eval"))
    assert evaluated.returncode == 0, evaluated.stderr
    edge = candidates.set_index("setup").loc["edge"]
    assert edge["top1"] == pytest.approx(pd.read_csv(tmp_path / "eval" / "eval.csv")["top1"].iloc[0])
    assert edge["drop"] == 0 and edge["payload_bytes"] == 0
    # WebP at quality 10 sends fewer bytes than at 90, and min-max quantisation one byte per element
    coded = candidates.set_index("setup")
    assert coded.loc["layer2:webp@10/gray", "payload_bytes"] < coded.loc["layer2:webp@90/gray", "payload_bytes"]
    assert coded.loc["layer2:minmax8", "payload_bytes"] == 32 * 16 * 16 + 8
    predictions = pd.read_csv(tmp_path / "search" / "predictions.csv")
    chosen = pd.read_csv(tmp_path / "search" / "search.csv")
    assert len(predictions) == 2 * len(candidates) and len(chosen) == 2 * 3
    for pick in chosen.itertuples():
        here = predictions[predictions["bandwidth_mbit"] == pick.bandwidth_mbit]
        if pick.budget == "max_drop":
            expected = here[here["drop"] <= pick.limit]["total_ms"].min()
            assert pick.total_ms == expected and pick.drop <= pick.limit
        else:
            assert pick.top1 == here[here["total_ms"] <= pick.limit]["top1"].max()
        assert here.set_index("setup").loc[pick.chosen, "front"]  # every choice is on its condition's front
    # the edge's answer is the reference; a lossy WebP at quality 10 loses accuracy against it
    assert coded.loc["layer1:webp@10/gray", "drop"] > 0
    assert (tmp_path / "search" / "search.png").stat().st_size > 10_000
    again = run_in_process(*search)
    assert again.returncode == 0 and again.stderr.count("from cache") == len(candidates), again.stderr
    assert pd.read_csv(tmp_path / "search" / "candidates.csv").equals(candidates)
    # the choices over a real link, on the same pictures: the link's top-1 is the calibration's
    linked = run_in_process("link", "--deploy", str(tmp_path / "search"), "--data", str(SHARED_DATA),
                            "--out", str(tmp_path / "link"))
    assert linked.returncode == 0, linked.stderr
    checked = pd.read_csv(tmp_path / "link" / "deploy_check.csv")
    assert len(checked) == len(chosen) - (chosen["chosen"] == "none within budget").sum()
    assert (checked["calibration_top1"] == checked["link_top1"]).all()
    assert set(pd.read_csv(tmp_path / "link" / "link.csv")["setup"]) == {"input", "edge", *checked["chosen"]}
    assert (checked.get("regret_percent", pd.Series(dtype=float)).dropna() >= 0).all()
    assert (checked.get("regret_points", pd.Series(dtype=float)).dropna() >= 0).all()
    refused = run_in_process("link", "--deploy", str(tmp_path / "search"), "--limit", "5", "--dry-run")
    assert refused.returncode == 2 and refused.stderr.endswith(
        "links the search's --limit (40), not 5: leave --limit out\n"), refused.stderr


@pytest.mark.parametrize("options, message", [
    (["--max-drop", "1"], "--max-drop is an option of plan --search"),
    (["--search", "--codec", "bpg", "--qp", "30"], "--search takes each codec's values in --codec, as bpg:32/38 "
                                                   "or webp:50/90; drop --qp/--quality"),
    (["--search", "--codec", "webp"], "--codec webp: give the quality values to try, as webp:V1/V2"),
    (["--search", "--codec", "webp:50", "--max-drop=-1"], "--max-drop takes a finite number ≥ 0, got -1.0"),
    (["--search", "--codec", "webp:50", "--variants", "cifar_resnet20"], "--variants: cifar_resnet20 is named twice"),
    (["--search", "--codec", "webq:50"], "unknown codec 'webq'; did you mean webp?"),
    (["--search", "--codec", "webp:50", "--validate", "link.csv"], "a search's choices are linked by link --deploy"),
])
def test_a_search_s_mistakes_are_one_line(options: list[str], message: str) -> None:
    done = run_in_process("plan", "cifar_resnet20", "--weights", "none", "--at", "layer2", *options, "--dry-run")
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_link_deploy_names_what_is_not_a_search(tmp_path: Path) -> None:
    done = run_in_process("link", "--deploy", str(tmp_path), "--dry-run")
    assert done.returncode == 2 and done.stderr == f"error: --deploy {tmp_path}: no search.json; give the folder " \
                                                   "plan --search wrote\n", done.stderr
    (tmp_path / "search.json").write_text('{"command": "link", "arguments": {}}')
    for name in ("search.csv", "candidates.csv", "predictions.csv"):
        (tmp_path / name).write_text("a\n1\n")
    done = run_in_process("link", "--deploy", str(tmp_path), "--dry-run")
    assert done.returncode == 2 and done.stderr.endswith("search.json was not written by plan --search\n")
