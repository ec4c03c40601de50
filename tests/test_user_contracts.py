"""The user's side of the contracts (issue 29): factories, their dicts, their outputs, and the user's labels."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import REPO, SHARED_DATA, needs_shared_data, run_in_process
from splitbench.data import open_dataset
from splitbench.errors import SplitbenchError
from splitbench.zoo import get_spec, load_model

FACTORIES = textwrap.dedent(
    """
    import sys

    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, classes)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


    class Dict(Net):
        def forward(self, x):
            return {"out": super().forward(x)}


    class Maps(Net):
        def forward(self, x):
            return self.conv(x)


    class FixedSize(nn.Module):  # a linear layer over the flattened input: it runs at one size only
        def __init__(self, side):
            super().__init__()
            self.fc = nn.Linear(3 * side * side, 10, device="meta")  # never materialised: no memory

        def forward(self, x):
            return self.fc(torch.flatten(x, 1))


    def good():
        return {"model": Net(), "input_size": 32}

    def exits():
        sys.exit(3)

    def words_for_size():
        return {"model": Net(), "input_size": "big"}

    def float_size():
        return {"model": Net(), "input_size": 32.0}

    def string_mean():
        return {"model": Net(), "input_size": 32, "mean": "0.5"}

    def zero_std():
        return {"model": Net(), "input_size": 32, "std": [0.2, 0, 0.2]}

    def listed_split_points():
        return {"model": Net(), "input_size": 32, "split_points": ["conv", "pool"]}

    def one_leaf_as_a_string():
        return {"model": Net(), "input_size": 32, "leaf_modules": "conv"}

    def misspelt():
        return {"model": Net(), "input_sise": 32}

    def odd_task():
        return {"model": Net(), "input_size": 32, "task": "regression"}

    def huge():
        return {"model": Net(), "input_size": 100000}

    def huge_and_fixed():
        return {"model": FixedSize(100000), "input_size": 100000}

    def returns_dict():
        return {"model": Dict(), "input_size": 32}

    def returns_maps():
        return {"model": Maps(), "input_size": 32}
    """
)


@pytest.fixture(scope="module")
def factories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("user") / "nets.py"
    path.write_text(FACTORIES)
    return path


def _one_line_error(done, start: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(start), done.stderr


# --- the factory and its dict -------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory, message",
    [
        ("exits", r"model factory .*:exits called sys.exit\(3\) instead of returning a model"),
        ("words_for_size", r"model factory .*:words_for_size: input_size must be a whole number ≥ 8, got 'big'"),
        ("string_mean", r"mean must be 3 numbers \(one per colour channel\), got '0.5'"),
        ("zero_std", r"std must be 3 positive numbers \(one per colour channel\), got \[0.2, 0, 0.2\]"),
        ("listed_split_points", r"split_points must map your names to cut names or module paths .*got \['conv', 'pool'\]"),
        ("one_leaf_as_a_string", r"leaf_modules must be a list of module paths or class names, got 'conv'"),
        ("misspelt", r"unknown key 'input_sise' in the dict of model factory .*; did you mean input_size\?"),
        ("odd_task", r"task must be one of classification, detection, segmentation, got 'regression'"),
    ],
)
def test_a_factory_breaking_its_contract_fails_in_one_line(factories: Path, factory: str, message: str) -> None:
    with pytest.raises(SplitbenchError, match=message):
        get_spec(f"{factories}:{factory}")


def test_a_whole_float_size_is_a_size(factories: Path) -> None:
    assert get_spec(f"{factories}:float_size").input_size == 32


def test_sys_exit_in_a_factory_or_at_its_import_ends_in_one_line(factories: Path, tmp_path: Path) -> None:
    done = run_in_process("profile", f"{factories}:exits", "--out", str(tmp_path / "a"))
    _one_line_error(done, f"error: model factory {factories}:exits called sys.exit(3)")
    leaving = tmp_path / "leaving.py"
    leaving.write_text("import sys\nsys.exit('bye')\n")
    done = run_in_process("profile", f"{leaving}:build", "--out", str(tmp_path / "b"))
    _one_line_error(done, f"error: importing {leaving} called sys.exit('bye')")


def test_a_factory_s_huge_input_size_gets_the_memory_estimate(factories: Path, tmp_path: Path) -> None:
    # before: the estimate ran only above the model's own size, so the factory's own went
    # straight to a trace the kernel killed
    done = run_in_process("profile", f"{factories}:huge", "--out", str(tmp_path / "a"))
    _one_line_error(done, f"error: input size 100000: {factories}:huge would need about ")
    assert "GiB for its activations; this machine has" in done.stderr
    # a model that runs at its own size only: its input alone is the estimate
    done = run_in_process("profile", f"{factories}:huge_and_fixed", "--out", str(tmp_path / "b"))
    _one_line_error(done, f"error: input size 100000: {factories}:huge_and_fixed would need at least ")


def test_the_memory_estimate_of_the_zoo_is_unchanged() -> None:
    zoo_model = load_model("cifar_resnet20")
    with pytest.raises(SplitbenchError, match=r"^--input-size 10000: cifar_resnet20 would need about 541 GiB"):
        zoo_model.cuts(10000)


@pytest.mark.parametrize("factory, returned", [("returns_dict", r"a dict \(keys 'out'\)"),
                                               ("returns_maps", r"a tensor of shape \dx4x32x32")])
def test_a_model_returning_no_class_scores_ends_eval_in_one_line(factories: Path, tmp_path: Path, factory: str,
                                                                 returned: str) -> None:
    _images_csv(tmp_path, [0, 1])
    done = run_in_process("eval", f"{factories}:{factory}", "--weights", "none", "--dataset",
                          f"csv:{tmp_path / 'set.csv'}", "--out", str(tmp_path / "out"))
    _one_line_error(done, f"error: {factories}:{factory} returned ")
    assert "not a tensor of class scores (batch x classes)" in done.stderr
    with pytest.raises(SplitbenchError, match=rf"returned {returned}"):
        from splitbench.evaluation import evaluate_topk

        evaluate_topk(load_model(f"{factories}:{factory}").model, open_dataset(f"csv:{tmp_path / 'set.csv'}",
                      transform=get_spec(f"{factories}:good").preprocessing.transform()), workers=0, progress=False)


def test_vit_h_14_without_weights_is_built_for_its_input_size() -> None:
    # the input size comes from the default (SWAG) weights' transforms: 518; torchvision builds
    # the architecture at 224 unless told, and profile then failed on its own input
    spec = get_spec("vit_h_14")
    with torch.device("meta"):  # the real build, without 2.5 GB of storage
        model = spec.build()
        assert spec.input_size == model.image_size == 518
        assert model(torch.zeros(1, 3, 518, 518)).shape == (1, 1000)
    assert model.encoder.pos_embedding.shape == (1, (518 // 14) ** 2 + 1, 1280)  # the SWAG weights' shape


# --- the user's labels ---------------------------------------------------------------------------


def _images_csv(folder: Path, labels: list[int], rows: list[str] | None = None) -> Path:
    """Distinct real images 0.png, 1.png, … and a CSV listing them with ``labels`` (or ``rows`` as given)."""
    for index in range(len(labels)):
        Image.new("RGB", (32, 32), (index * 40 % 256, 100, 200)).save(folder / f"{index}.png")
    lines = rows if rows is not None else [f"{index}.png,{label}" for index, label in enumerate(labels)]
    (folder / "set.csv").write_text("path,label\n" + "\n".join(lines) + "\n")
    return folder / "set.csv"


def test_a_csv_label_beyond_the_model_s_classes_is_named_by_line(tmp_path: Path) -> None:
    listed = _images_csv(tmp_path, [3, 7, 12])
    done = run_in_process("eval", f"{REPO}/examples/tiny_net.py:build", "--weights", "none", "--dataset",
                          f"csv:{listed}", "--out", str(tmp_path / "out"))
    _one_line_error(done, f"error: csv:{listed}, line 4: label 12 of {tmp_path / '2.png'} is outside 0..9 "
                          f"({REPO}/examples/tiny_net.py:build has 10 outputs)")
    assert not (tmp_path / "out").exists()


def test_an_image_folder_with_more_classes_than_the_model_is_named_by_folder(tmp_path: Path) -> None:
    for index in range(12):
        (tmp_path / f"class{index:02d}").mkdir()
        Image.new("RGB", (32, 32), (index * 20, 0, 0)).save(tmp_path / f"class{index:02d}" / "a.png")
    zoo_model = load_model(f"{REPO}/examples/tiny_net.py:build")
    with pytest.raises(SplitbenchError, match=rf"^imagefolder:{tmp_path}, class folder class10: label 10 of "
                                              rf"{tmp_path}/class10/a.png is outside 0..9 \(.* has 10 outputs\)$"):
        zoo_model.check_data(open_dataset(f"imagefolder:{tmp_path}"))


def test_repeated_and_conflicting_images_are_warned_about_and_recorded(tmp_path: Path) -> None:
    # line 4 repeats line 2; 1.png is labelled 1 on line 3 and 5 on line 5; 3.png is a copy of 0.png
    listed = _images_csv(tmp_path, [0, 1, 2], rows=["0.png,0", "1.png,1", "0.png,0", "1.png,5", "2.png,2", "3.png,2"])
    (tmp_path / "3.png").write_bytes((tmp_path / "0.png").read_bytes())
    done = run_in_process("eval", f"{REPO}/examples/tiny_net.py:build", "--weights", "none", "--dataset",
                          f"csv:{listed}", "--loader-workers", "0", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    repeated = (f"csv:{listed}: 1 image(s) listed more than once under the same label, e.g. {tmp_path / '0.png'} "
                f"(line 2) and {tmp_path / '0.png'} (line 4); each listing is scored")
    conflicting = (f"csv:{listed}: 2 image(s) listed under two or more labels (conflicting), e.g. "
                   f"{tmp_path / '0.png'} (line 2, label 0) and {tmp_path / '3.png'} (line 7, label 2); "
                   f"at most one is right")
    assert done.stderr.splitlines() == [f"warning: {repeated}", f"warning: {conflicting}"]
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["warnings"] == [repeated, conflicting]


@pytest.mark.parametrize(
    "rows, message",
    [
        (["0.png,0", ",1"], r"csv: .*set.csv, line 3: no image path \(label 1\)"),
        (["0.png,0", "1"], r"csv: .*set.csv, line 3: label None is not an integer"),
        (["0.png,0", "1.png"], r"csv: .*set.csv, line 3: label None is not an integer"),
        (["0.png,99999999999999999999"],
         r"csv: .*set.csv, line 2: label 99999999999999999999 is beyond the largest class index \(int64, 9223372036854775807\)"),
    ],
)
def test_a_csv_row_without_a_path_or_with_a_huge_label_fails_in_one_line(tmp_path: Path, rows: list[str],
                                                                          message: str) -> None:
    _images_csv(tmp_path, [0, 0], rows=rows)
    with pytest.raises(SplitbenchError, match=message):
        open_dataset(f"csv:{tmp_path / 'set.csv'}")


def test_a_label_of_int64_s_largest_reaches_the_model_check(tmp_path: Path) -> None:
    listed = _images_csv(tmp_path, [0], rows=["0.png,9223372036854775807"])
    with pytest.raises(SplitbenchError, match=r"line 2: label 9223372036854775807 of .* is outside 0..9"):
        load_model(f"{REPO}/examples/tiny_net.py:build").check_data(open_dataset(f"csv:{listed}"))


# --- one check for every command that scores a model on data ------------------------------------


@needs_shared_data
@pytest.mark.parametrize("command", [
    ["eval", "cifar_resnet20", "--weights", "none", "--dataset", "imagenet-val-1300"],
    ["codec", "cifar_resnet20", "--weights", "none", "--at", "layer1", "--codec", "none", "--dataset", "imagenet-val-1300"],
    ["rd", "cifar_resnet20", "--weights", "none", "--at", "input", "--dataset", "imagenet-val-1300"],
    ["plan", "cifar_resnet20", "--weights", "none", "--at", "layer1", "--dataset", "imagenet-val-1300"],
])
def test_every_command_that_scores_warns_about_another_label_space(command: list[str], tmp_path: Path) -> None:
    done = run_in_process(*command, "--data", str(SHARED_DATA), "--out", str(tmp_path / "out"), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert ("warning: cifar_resnet20 has 10 outputs but the labels of imagenet-val-1300 index 1000 classes; "
            "its top-1 there measures nothing") in done.stderr.splitlines()


def test_a_dry_run_hashes_the_user_s_images_but_writes_no_digests(tmp_path: Path) -> None:
    from splitbench.data import hashes

    listed = _images_csv(tmp_path, [0, 1], rows=["0.png,0", "1.png,1", "1.png,1"])
    time.sleep(hashes._SETTLE_S + 0.1)  # old enough to be remembered by a run that writes
    work = tmp_path / "work"
    work.mkdir()
    command = ("eval", f"{REPO}/examples/tiny_net.py:build", "--weights", "none", "--dataset", f"csv:{listed}",
               "--loader-workers", "0", "--out", str(work / "out"))
    dry = run_in_process(*command, "--dry-run", cwd=work)
    assert dry.returncode == 0 and "listed more than once under the same label" in dry.stderr, dry.stderr
    assert list(work.iterdir()) == []  # the repeats were found by content, and nothing was written
    done = run_in_process(*command, cwd=work)
    assert done.returncode == 0, done.stderr
    (store,) = (work / "cache" / "file-hashes").iterdir()  # the run that wrote results remembered the digests
    assert len(store.read_text().splitlines()) == 2
