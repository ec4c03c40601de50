"""``splitbench codec`` as users run it: files and columns, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import SHARED_DATA, needs_shared_data, needs_shared_weights, shared_weights
from splitbench.cli import main
from test_cli import run

COLUMNS = ["model", "split", "codec", "param", "layout", "bits", "backend", "images", "feature_bytes", "jpeg_bytes",
           "ratio_percent", "bpp", "top1", "top5", "top1_drop", "top5_drop", "encode_ms", "decode_ms"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--qp", "52"], "error: --qp 52 is out of range for bpg (0–51)"),
        (["--codec", "webp", "--quality", "101"], "error: --quality 101 is out of range for webp (0–100)"),
        (["--codec", "heic"], "error: unknown codec 'heic'; valid codecs: bpg, png, webp, avif, jpegxl, jpeg2000"),
        (["--codec", "jpeg"], "error: unknown codec 'jpeg'; did you mean jpegxl, jpeg2000? valid codecs: bpg, png"),
        (["--layout", "rgb"], "error: unknown layout 'rgb'; valid layouts: paper, gray"),
        (["--codec", "png", "--qp", "30"], "error: --qp was given but no codec in --codec takes it"),
        (["--codec", "bpg", "--bits", "16"], "error: bpg codes 8, 10, 12-bit samples; --bits 16 is not supported"),
        (["--qp", "30,x"], "error: --qp takes comma-separated integers, got '30,x'"),
        (["--bpg-backend", "bpgenc"], "error: --bpg-backend bpgenc needs bpgenc and bpgdec on PATH"),
        (["--at", "pool9"], "error: unknown split point 'pool9'"),
        (["--at", "all,features.2"], "error: --at all takes no other cuts, got all,features.2"),
        (["--at", "bottleneck2,features.2"], "error: --at names a cut twice: bottleneck2,features.2"),
        (["--at", "bottleneck2,classifier"], "error: the tensor at classifier is 1000, not C×H×W planes"),
    ],
)
def test_bad_input_ends_in_one_line(args: list[str], message: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bpgenc, wherever libbpg is installed
    code, stderr = _main(capsys, "codec", "mobilenet_v2", "--weights", "none", *args, "--data", str(SHARED_DATA),
                         "--out", str(tmp_path))
    assert code == 2 and stderr.startswith(message), stderr
    assert stderr.count("\n") == 1


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """The command line in this process (a subprocess costs seconds of imports per case)."""
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    return int(exited.value.code), capsys.readouterr().err


def test_the_installed_command_fails_in_one_line(tmp_path: Path) -> None:
    done = run("codec", "mobilenet_v2", "--weights", "none", "--qp", "52", "--out", str(tmp_path))
    assert done.returncode == 2 and done.stderr == "error: --qp 52 is out of range for bpg (0–51)\n"


@needs_shared_data
@needs_shared_weights
def test_codec_writes_table_report_sidecar_and_plot(tmp_path: Path) -> None:
    done = run("codec", "mobilenet_v2", "--weights", str(shared_weights("mobilenet_v2-imagenet-int8dequant.pth")),
               "--data", str(SHARED_DATA), "--limit", "8", "--codec", "none,minmax8,bpg,webp:80,png",
               "--qp", "35", "--workers", "1", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "out" / "codec.csv")
    assert all(column in table.columns for column in COLUMNS)
    assert table["codec"].tolist() == ["none", "minmax8", "bpg", "bpg", "webp", "webp", "png", "png"]
    assert table["layout"].tolist()[2:] == ["paper", "gray"] * 3
    assert (table["images"] == 8).all() and table["jpeg_bytes"].nunique() == 1
    png = table[table["codec"] == "png"]
    minmax8 = table.loc[1]
    assert (png["top1"] == minmax8["top1"]).all() and (png["top5"] == minmax8["top5"]).all()  # lossless
    sidecar = json.loads((tmp_path / "out" / "codec.json").read_text())
    assert sidecar["weights"]["sha256"] == "5bda536ec6a2257113dcd9f59fc1ddb4ebb3705ce357f6bae0d54bb03da3980d"
    assert sidecar["data"]["images"] == 8 and sidecar["arguments"]["preprocessing"]["resize_to_square"] == 224
    markdown = (tmp_path / "out" / "codec.md").read_text()
    assert "Beside seed 003" in markdown and "65.27" in markdown  # the paper's MobileNetV2 QP 35 top-1
    assert (tmp_path / "out" / "codec.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_weights_offline_fail_in_one_line_naming_weights_path(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, stderr = _main(capsys, "codec", "--data", str(tmp_path), "--out", str(tmp_path / "out"))
    assert code == 2
    if "cannot get torchvision's default weights" not in stderr:
        pytest.skip("torchvision's VGG16 weights are available here")
    assert stderr.count("\n") == 1 and "--weights PATH" in stderr


def test_codec_list_syntax_builds_the_sweep() -> None:
    from splitbench.cli.codec import build_points

    points = build_points(["none", "minmax8", "bpg", "webp:50/90", "avif:30@gray", "png@paper"], [35], [], ["paper", "gray"],
                          8, "444", "pyav")
    rows = [(p.codec, p.spec.param if p.spec else None, p.layout) for p in points]
    assert rows == [("none", None, "-"), ("minmax8", None, "-"), ("bpg", 35, "paper"), ("bpg", 35, "gray"),
                    ("webp", 50, "paper"), ("webp", 50, "gray"), ("webp", 90, "paper"), ("webp", 90, "gray"),
                    ("avif", 30, "gray"), ("png", None, "paper")]
    assert dict(points[2].spec.options) == {"chroma": "444", "backend": "pyav"} and points[2].spec.channels == 3
    defaults = build_points(["bpg", "webp"], [], [], ["gray"], 8, "420", "pyav")
    assert [p.spec.param for p in defaults[1:]] == [10, 20, 30, 35, 40, 50, 10, 20, 30, 40, 50, 60, 70, 80, 90]


@needs_shared_data
def test_codec_at_all_sweeps_every_cut_smaller_than_the_input_in_one_table(tmp_path: Path) -> None:
    from splitbench.zoo import load_model

    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exited:
        main(["codec", "resnet18", "--weights", "none", "--at", "all", "--codec", "none,minmax8", "--layout", "gray",
              "--limit", "2", "--data", str(SHARED_DATA), "--cache", str(tmp_path / "cache"), "--out", str(out)])
    assert exited.value.code == 0
    table = pd.read_csv(out / "codec.csv")
    # resnet18 at 224×224: layer2.0.add (128×28×28 = 100,352 < 3×224×224) through avgpool (512×1×1), 13 cuts
    cuts = [cut for cut in load_model("resnet18").cuts().cuts if len(cut.shape) == 3 and
            cut.shape[0] * cut.shape[1] * cut.shape[2] < 3 * 224 * 224]
    assert len(cuts) == 13 and cuts[0].name == "layer2.0.add" and cuts[-1].name == "avgpool"
    assert list(table["split"]) == [cut.name for cut in cuts for _ in range(2)]
    assert list(table["codec"]) == ["none", "minmax8"] * 13
    float32 = table[table["codec"] == "none"]
    assert list(float32["feature_bytes"]) == [2 * 4 * c * h * w for c, h, w in (cut.shape for cut in cuts)]
    assert (out / "codec.png").stat().st_size > 10_000


@needs_shared_data
def test_a_python_caller_may_give_folders_as_text(tmp_path: Path) -> None:
    from splitbench.jobs.codec import CodecJob

    job = CodecJob(model="cifar_resnet20", weights="none", at="layer3", codec=("none",), limit=2, data=str(SHARED_DATA),
                   cache=str(tmp_path / "cache"), out=str(tmp_path / "out"))
    assert job.cache == tmp_path / "cache" and job.out == tmp_path / "out" and job.data == SHARED_DATA
    assert dict(job.plan().rows)["cache"] == str(tmp_path / "cache")


UNGUARDED = """
from splitbench.jobs.codec import CodecJob

print("script body runs", flush=True)
done = CodecJob(model="cifar_resnet20", weights="none", at="layer3", codec=("none", "webp"), quality=(50,),
                layout=("gray",), limit=8, workers=2, data={data!r}, cache={cache!r}, out={out!r}).run()
print("rows", len(done.table))
"""


@needs_shared_data
def test_a_script_without_a_main_guard_runs_its_sweep_once(tmp_path: Path) -> None:
    """Worker processes must not import the caller's script again (multiprocessing does, unguarded)."""
    import subprocess
    import sys

    script = tmp_path / "sweep.py"
    script.write_text(UNGUARDED.format(data=str(SHARED_DATA), cache=str(tmp_path / "cache"), out=str(tmp_path / "out")))
    for how in ([str(script)], ["-m", "sweep"]):  # as a file, and as a module (multiprocessing re-runs both)
        done = subprocess.run([sys.executable, *how], capture_output=True, text=True, timeout=240, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.count("script body runs") == 1 and "rows 2" in done.stdout
