"""Model sources (torchvision by name, timm, the user's own factory) and the user's own data."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import REPO, SHARED_DATA, run_in_process, needs_shared_data, needs_shared_weights, shared_weights
from splitbench.data import open_dataset
from splitbench.errors import SplitbenchError
from splitbench.zoo import get_spec, load_model

MODEL_FILE = textwrap.dedent(
    """
    import torch
    import torch.nn.functional as F
    from torch import nn


    class Block(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

        def forward(self, x):
            return F.relu(self.conv(x)) + x  # a skip connection and a functional op


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.block = Block(8)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            x = self.block(F.relu(self.stem(x)))
            return self.fc(torch.flatten(self.pool(x), 1))


    def build():
        torch.manual_seed(0)
        return {"model": Net(), "input_size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


    def not_a_module():
        return 42


    def broken():
        raise ValueError("no such layer width")
    """
)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("user") / "net.py"
    path.write_text(MODEL_FILE)
    return path


def test_a_factory_model_has_cuts_outside_its_skip(model_file: Path) -> None:
    zoo_model = load_model(f"{model_file}:build")
    graph = zoo_model.cuts()
    assert zoo_model.spec.input_size == 32 and zoo_model.spec.preprocessing.mean == (0.5, 0.5, 0.5)
    # inside the block the block's input crosses too: only stem, relu, the block's output, …
    assert [c.name for c in graph.cuts] == ["stem", "relu", "block", "pool", "flatten", "fc"]
    assert graph.resolve("block").shape == (8, 16, 16)
    # stem 8·16·16·27 = 55296, block conv 8·16·16·72 = 147456, pool 8·16·16 = 2048, fc 80
    assert [c.cum_macs for c in graph.cuts] == [55296, 55296, 202752, 204800, 204800, 204880]
    head, tail = zoo_model.split("block")
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(tail(head(x)), zoo_model.model(x), atol=1e-6, rtol=1e-6)
    with pytest.raises(SplitbenchError, match=r"cannot split at 'block.conv': 2 values cross"):
        graph.resolve("block.conv")


def test_factory_profile_split_and_codec_from_the_command_line(model_file: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    for label, colour in enumerate(["red", "blue"]):
        (images / f"class{label}").mkdir(parents=True)
        for i in range(3):
            from PIL import Image

            Image.new("RGB", (40, 40), colour).save(images / f"class{label}" / f"{i}.png")
    model = f"{model_file}:build"
    profile = run_in_process("profile", "--model", model, "--out", str(tmp_path / "profile"))
    assert profile.returncode == 0, profile.stderr
    assert "6 valid cuts" in profile.stdout
    split = run_in_process("split", "--model", model, "--at", "block", "--repeats", "0", "--out", str(tmp_path / "split"))
    assert split.returncode == 0, split.stderr
    summary = list(csv.DictReader((tmp_path / "split" / "split.csv").open()))[0]
    assert summary["transfer_elements"] == str(8 * 16 * 16) and summary["head_macs"] == "202752"
    codec = run_in_process("codec", "--model", model, "--weights", "none", "--at", "block", "--dataset",
                 f"imagefolder:{images}", "--codec", "none,minmax8,webp:50", "--layout", "gray", "--workers", "1",
                 "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "codec"))
    assert codec.returncode == 0, codec.stderr
    rows = list(csv.DictReader((tmp_path / "codec" / "codec.csv").open()))
    assert [r["codec"] for r in rows] == ["none", "minmax8", "webp"] and all(r["images"] == "6" for r in rows)
    sidecar = json.loads((tmp_path / "codec" / "codec.json").read_text())
    assert sidecar["data"]["dataset"] == f"imagefolder:{images}" and sidecar["data"]["file_list_sha256"]


@pytest.mark.parametrize(
    "model, message",
    [
        ("resnet19", r"unknown model 'resnet19'; did you mean resnet18"),
        ("nowhere/net.py:build", r"model file not found: nowhere/net.py"),
        ("{file}:broken", r"model factory .*:broken raised ValueError: no such layer width"),
        ("{file}:not_a_module", r"returned int, not an nn.Module"),
        ("{file}:missing", r"has no function 'missing'"),
        ("timm:resnet_nonexistent", r"unknown model 'timm:resnet_nonexistent'"),
    ],
)
def test_bad_model_sources_fail_in_one_line(model: str, message: str, model_file: Path) -> None:
    with pytest.raises(SplitbenchError, match=message):
        load_model(model.format(file=model_file))


def test_bad_model_source_on_the_command_line(model_file: Path, tmp_path: Path) -> None:
    done = run_in_process("profile", f"{model_file}:broken", "--out", str(tmp_path))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: model factory") and "Traceback" not in done.stderr


def test_untraceable_model_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "branchy.py"
    path.write_text(textwrap.dedent(
        """
        from torch import nn

        class Gate(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 3, 1)

            def forward(self, x):
                return self.conv(x) if x.mean() > 0 else x

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.gate = Gate()
                self.conv = nn.Conv2d(3, 4, 3)

            def forward(self, x):
                return self.conv(self.gate(x))

        def build():
            return {"model": Net(), "input_size": 16}
        """))
    done = run_in_process("profile", f"{path}:build", "--out", str(tmp_path / "a"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "broke inside 'gate'" in done.stderr and "--leaf gate" in done.stderr
    done = run_in_process("profile", f"{path}:build", "--leaf", "gate", "--out", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr and "2 valid cuts" in done.stdout


def test_torchvision_names_take_their_weights_preprocessing() -> None:
    spec = get_spec("efficientnet_b1")
    assert spec.source == "torchvision" and spec.torchvision_weights == "efficientnet_b1"
    # torchvision's IMAGENET1K_V2 for B1: resize 255, crop 240, bilinear
    assert (spec.input_size, spec.preprocessing.resize, spec.preprocessing.crop) == (240, 255, 240)
    assert spec.dataset == "imagenet-val-1300"


def test_timm_model_profiles_and_splits() -> None:
    pytest.importorskip("timm")
    zoo_model = load_model("timm:resnet18")
    graph = zoo_model.cuts()
    assert graph.total_macs == 1_819_065_856  # the same network as torchvision's resnet18
    assert "layer2" in [c.name for c in graph.cuts]
    head, tail = zoo_model.split("layer2")
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        assert head(x).shape == (1, 128, 28, 28)
        torch.testing.assert_close(tail(head(x)), zoo_model.model(x))


def test_default_weights_fail_in_one_line_without_a_network(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    # HF_HUB_OFFLINE makes the hub refuse at once, as a machine without a network does after
    # its time-outs.
    done = subprocess.run([sys.executable, "-m", "splitbench", "profile", "timm:resnet18", "--weights", "default",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: cannot get timm's pretrained weights for resnet18")
    assert not list(tmp_path.iterdir())


# --- the user's own data ------------------------------------------------------------------------


def _image_folder_from_manifest(target: Path, limit: int) -> Path:
    """imagenet-val-1300's first images laid out as <wnid>/<file>, as an ImageNet user would have them."""
    source = SHARED_DATA / "imagenet-val-1300"
    with (source / "labels.csv").open() as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: r["file"])[:limit]
    for row in rows:
        (target / row["wnid"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(source / "images" / row["file"], target / row["wnid"] / row["file"])
    return target


@needs_shared_data
def test_image_folder_of_wnids_takes_imagenet_labels(tmp_path: Path) -> None:
    folder = _image_folder_from_manifest(tmp_path / "val", 40)
    mine = open_dataset(f"imagefolder:{folder}")
    manifest = open_dataset("imagenet-val-1300", root=SHARED_DATA, limit=40)
    assert len(mine) == 40
    by_file = {Path(p).name: label for p, label in manifest.samples}
    assert all(by_file[Path(p).name] == label for p, label in mine.samples)
    assert mine.provenance()["labels"] == "imagenet wnid index"


def test_image_folder_and_csv_errors(tmp_path: Path) -> None:
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    with pytest.raises(SplitbenchError, match=r"imagefolder: no images under .*empty"):
        open_dataset(f"imagefolder:{tmp_path / 'empty'}")
    with pytest.raises(SplitbenchError, match=r"imagefolder: .*missing is not a folder"):
        open_dataset(f"imagefolder:{tmp_path / 'missing'}")
    (tmp_path / "bad.csv").write_text("path,label\nx.png,1\n")
    with pytest.raises(SplitbenchError, match=r"csv: missing image .*x.png"):
        open_dataset(f"csv:{tmp_path / 'bad.csv'}")
    (tmp_path / "nohead.csv").write_text("x.png,1\n")
    with pytest.raises(SplitbenchError, match=r"needs a header with columns path,label"):
        open_dataset(f"csv:{tmp_path / 'nohead.csv'}")


def test_csv_data_set_keeps_its_order_and_labels(tmp_path: Path) -> None:
    from PIL import Image

    for name in ("b.png", "a.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "set.csv").write_text("path,label\nb.png,3\na.png,7\n")
    dataset = open_dataset(f"csv:{tmp_path / 'set.csv'}")
    assert [(Path(p).name, label) for p, label in dataset.samples] == [("b.png", 3), ("a.png", 7)]
    assert len(dataset.provenance()["labels_sha256"]) == 64


@needs_shared_data
@needs_shared_weights
def test_eval_on_an_image_folder_matches_the_manifest(tmp_path: Path) -> None:
    folder = _image_folder_from_manifest(tmp_path / "val", 100)
    weights = str(shared_weights("mobilenet_v2-imagenet-int8dequant.pth"))
    results = []
    for dataset in (f"imagefolder:{folder}", "imagenet-val-1300"):
        out = tmp_path / dataset.split(":")[0]
        done = run_in_process("eval", "mobilenet_v2", "--weights", weights, "--dataset", dataset, "--data", str(SHARED_DATA),
                    "--limit", "100", "--loader-workers", "0", "--out", str(out))
        assert done.returncode == 0, done.stderr
        results.append(list(csv.DictReader((out / "eval.csv").open()))[0])
    assert results[0]["top1"] == results[1]["top1"] and results[0]["images"] == results[1]["images"] == "100"


@pytest.mark.parametrize(("marker", "printed"), [("<!-- api-example -->", "layer2"),
                                                  ("<!-- api-example-link -->", "bytes; top-5: [["),
                                                  ("<!-- api-example-jobs -->", "'head_macs': 995692544}")])
def test_readme_python_api_example_runs(marker: str, printed: str, tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    start = readme.index(marker)
    code = readme[readme.index("```python", start) + len("```python"): readme.index("```", readme.index("```python", start) + 9)]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    assert printed in done.stdout


@needs_shared_data
def test_readme_api_script_runs_unguarded_as_a_file(tmp_path: Path) -> None:
    """The README's splitbench.api example as a script without a main guard: its sweep uses worker
    processes, which must not run the script again."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- api-example-script -->")
    begin = readme.index("```python", start) + len("```python")
    (tmp_path / "example.py").write_text(readme[begin: readme.index("```", begin)])
    done = subprocess.run([sys.executable, "example.py"], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**os.environ, "SPLITBENCH_DATA": str(SHARED_DATA)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("24 valid cuts\n")  # cifar_resnet20: 24 cuts, and the script ran once
    assert "layer3 minmax8    NaN  32.0625" in done.stdout  # 64×8×8 bytes + 8 over 32×32 pixels, in bits
    assert "layer3:minmax8         4104.0" in done.stdout  # 4,096 values and the 8-byte range
    chosen = done.stdout[done.stdout.index("bandwidth_mbit"):].splitlines()
    assert len(chosen) == 1 + 2 * 2  # two bandwidths × two budgets


@needs_shared_data
def test_normalisation_options_reach_the_preprocessing(tmp_path: Path) -> None:
    args = ["eval", "--model", str(REPO / "examples" / "tiny_net.py") + ":build", "--weights", "none", "--dataset",
            f"imagefolder:{SHARED_DATA / 'cifar10-jpeg' / 'test'}", "--limit", "10", "--loader-workers", "0",
            "--out", str(tmp_path)]
    done = run_in_process(*args, "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25")
    assert done.returncode == 0, done.stderr
    sidecar = json.loads((tmp_path / "eval.json").read_text())
    assert sidecar["arguments"]["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert sidecar["arguments"]["preprocessing"]["std"] == [0.25, 0.25, 0.25]
    assert sidecar["data"]["labels"] == "sorted folder index" and sidecar["data"]["images"] == 10
    done = run_in_process(*args, "--std", "0,1,1")
    assert done.returncode == 2 and done.stderr == "error: --std must be positive, got '0,1,1'\n"
