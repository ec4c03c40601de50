"""Defects of the hostile-input audit (issue 18), each at its mechanism."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import SHARED_DATA, SHARED_WEIGHTS, as_user, needs_root, needs_shared_data, run_in_process, zoo
from splitbench.codecs.sweep import SweepRequest, _open_feature_cache
from splitbench.split import preprocessing_for
from splitbench.data import open_dataset
from splitbench.errors import SplitbenchError


def _swapped_root(tmp_path: Path) -> Path:
    """imagenet-val-1300 with every file name pointing at another image (the labels unchanged)."""
    source = SHARED_DATA / "imagenet-val-1300"
    images = tmp_path / "root" / "imagenet-val-1300" / "images"
    images.mkdir(parents=True)
    names = sorted(path.name for path in (source / "images").iterdir())
    for name, other in zip(names, names[1:] + names[:1]):
        (images / name).symlink_to(source / "images" / other)
    shutil.copy(source / "labels.csv", images.parent / "labels.csv")
    return tmp_path / "root"


@needs_shared_data
def test_the_same_names_under_another_root_are_other_data(tmp_path: Path) -> None:
    root = _swapped_root(tmp_path)
    shared = open_dataset("imagenet-val-1300", root=SHARED_DATA)
    swapped = open_dataset("imagenet-val-1300", root=root)
    # the manifest's checksum covers names only, and they agree ...
    assert shared.provenance()["file_list_sha256"] == swapped.provenance()["file_list_sha256"]
    # ... but the content fingerprint, which every cache keys on, does not
    assert shared.fingerprint() != swapped.fingerprint()
    model = zoo("mobilenet_v2")
    folders = []
    for data_root, dataset in ((SHARED_DATA, shared), (root, swapped)):
        request = SweepRequest(model, "bottleneck6", "imagenet-val-1300", data_root=data_root,
                               cache_root=tmp_path / "cache")
        folders.append(_open_feature_cache(request, dataset, preprocessing_for(model, "seed"), "features.6").folder)
    assert folders[0] != folders[1]


@needs_shared_data
@pytest.mark.parametrize("bad_label", ["1000", "-1"])
def test_a_label_outside_the_classes_is_refused_by_line(tmp_path: Path, bad_label: str) -> None:
    root = _swapped_root(tmp_path)
    labels = root / "imagenet-val-1300" / "labels.csv"
    lines = labels.read_text().splitlines()
    fields = lines[5].split(",")  # file,label,wnid; line 6 of the file
    lines[5] = ",".join([fields[0], bad_label, *fields[2:]])
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(SplitbenchError, match=rf"labels.csv, line 6: label {bad_label} of .* is outside 0..999 \(1000 classes\)"):
        open_dataset("imagenet-val-1300", root=root)


@needs_shared_data
def test_the_labels_checksum_is_in_the_provenance(tmp_path: Path) -> None:
    import hashlib

    shared = open_dataset("imagenet-val-1300", root=SHARED_DATA)
    expected = hashlib.sha256((SHARED_DATA / "imagenet-val-1300" / "labels.csv").read_bytes()).hexdigest()
    assert shared.provenance()["labels_sha256"] == expected


@needs_shared_data
def test_a_truncated_image_changes_the_fingerprint(tmp_path: Path) -> None:
    root = _swapped_root(tmp_path)
    before = open_dataset("imagenet-val-1300", root=root).fingerprint()
    victim = sorted((root / "imagenet-val-1300" / "images").iterdir())[7]
    data = victim.read_bytes()
    victim.unlink()
    victim.write_bytes(data[: len(data) // 2])
    assert open_dataset("imagenet-val-1300", root=root).fingerprint() != before


@pytest.mark.parametrize(
    "args, message",
    [
        (["profile", "vgg16", "--weights", "{text}.pth"],
         "error: not a weights file (neither a torch checkpoint nor safetensors): {text}.pth"),
        (["profile", "vgg16", "--weights", "{text}.safetensors"],
         "error: not a weights file (neither a torch checkpoint nor safetensors): {text}.safetensors"),
        # a header that looks right over a damaged body fails when the file is read
        (["profile", "vgg16", "--weights", "{damaged}.pth"],
         "error: cannot read weights from {damaged}.pth: not a plain tensor checkpoint"),
        (["profile", "vgg16", "--weights", "{damaged}.safetensors"],
         "error: cannot read weights from {damaged}.safetensors: not a safetensors file"),
        (["profile", "vgg16", "--input-size", "8"], "error: VGG cannot run on a 3x8x8 input"),
        (["profile", "vit", "--input-size", "10"], "error: SplittableViT cannot run on a 3x10x10 input"),
        (["profile", "cifar_resnet20", "--input-size", "10000"],
         "error: --input-size 10000: cifar_resnet20 would need about 541 GiB for its activations; this machine has"),
        (["eval", "ssd_vgg16", "--weights", "none"],
         "error: ssd_vgg16 is a detection model whose outputs splitbench cannot score"),
        (["report", "--check", "--baselines", "{text}.csv"], "error: {text}.csv is not a baselines CSV: no column metric"),
    ],
)
def test_bad_files_and_sizes_end_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    text, damaged = tmp_path / "text", tmp_path / "damaged"
    for suffix in (".pth", ".safetensors", ".csv"):
        text.with_suffix(suffix).write_text("hello\n")
    damaged.with_suffix(".pth").write_bytes(b"PK\x03\x04" + bytes(200))
    damaged.with_suffix(".safetensors").write_bytes((40).to_bytes(8, "little") + b"{" + bytes(60))
    paths = {"text": text, "damaged": damaged}
    done = run_in_process(*[a.format(**paths) for a in args], "--dry-run" if args[0] == "report" else "--out",
                          *([] if args[0] == "report" else [str(tmp_path / "out")]))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message.format(**paths)) and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "out").exists()


def test_report_outside_a_checkout_refuses_instead_of_writing_an_empty_overview(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    for folder in (tmp_path / "reports", tmp_path / "missing"):
        done = run_in_process("report", "--reports", str(folder), "--out", str(tmp_path / "README.md"))
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"error: --reports {folder}") and done.stderr.count("\n") == 1, done.stderr
        assert not (tmp_path / "README.md").exists()


@needs_shared_data
def test_a_tampered_training_checkpoint_ends_in_one_line(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "last.pt").write_bytes(b"\x80\x04not a pickle at all")
    done = run_in_process("train", "cifar_resnet20", "--epochs", "1", "--train-limit", "20", "--limit", "20",
                          "--loader-workers", "0", "--checkpoint-dir", str(checkpoints), "--out", str(tmp_path / "out"),
                          "--data", str(SHARED_DATA))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: cannot read training checkpoint from {checkpoints / 'last.pt'}: "
                                  "not a plain tensor checkpoint"), done.stderr
    assert done.stderr.count("\n") == 1


def test_more_workers_than_cores_or_items_are_clamped_and_said() -> None:
    from splitbench.preflight import usable_cores, worker_count

    cores = usable_cores()
    assert worker_count(None, 1000) == cores and worker_count(0, 20) == 0
    assert worker_count(1000, 1000) == cores and worker_count(1000, 1) == 1


@needs_shared_data
def test_workers_1000_for_20_images_runs_on_the_cores_it_has(tmp_path: Path) -> None:
    from splitbench.preflight import usable_cores

    done = run_in_process("codec", "mobilenet_v2", "--weights", "none", "--at", "bottleneck6", "--limit", "20",
                          "--codec", "bpg", "--qp", "35", "--workers", "1000", "--data", str(SHARED_DATA),
                          "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert f"note: --workers 1000: using {min(usable_cores(), 20)}" in done.stderr


@needs_shared_data
def test_an_imagenet_model_on_a_ten_class_set_is_warned_about_and_recorded(tmp_path: Path) -> None:
    import json

    done = run_in_process("eval", "resnet18", "--weights", "none", "--dataset", "cifar10", "--split", "test",
                          "--limit", "4", "--loader-workers", "0", "--data", str(SHARED_DATA), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    message = "resnet18 has 1000 outputs but the labels of cifar10 index 10 classes; its top-1 there measures nothing"
    assert f"warning: {message}\n" in done.stderr
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["warnings"] == [message]


@needs_shared_data
def test_training_on_the_test_set_is_warned_about(tmp_path: Path) -> None:
    done = run_in_process("rd", "mobilenet_v2", "--weights", "none", "--at", "bottleneck3", "--train-dataset", "imagenet-val-1300",
                          "--data", str(SHARED_DATA), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"),
                          "--dry-run")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: --train-dataset: imagenet-val-1300 is a test set (its manifest says never to train or calibrate on it); "
        "the results are not a fair test",
        "warning: --train-dataset: 1300 of the 1300 test images are also training images",
    ]


@needs_shared_data
def test_the_feature_cache_holds_the_images_asked_for_and_grows_keeping_them(tmp_path: Path) -> None:
    import numpy as np

    from splitbench.codecs.cache import fill_cache

    model = zoo("mobilenet_v2")
    request = SweepRequest(model, "bottleneck6", "imagenet-val-1300", data_root=SHARED_DATA, cache_root=tmp_path / "cache")
    dataset = open_dataset("imagenet-val-1300", root=SHARED_DATA)
    preprocessing = preprocessing_for(model, "seed")
    cache = _open_feature_cache(request, dataset, preprocessing, "features.6")
    head = model.cuts().head("features.6")
    fill_cache(cache, head, dataset, preprocessing, 3)
    # 3 of the 1300 images: 3 feature maps on disk, not a 1300-row file
    assert np.load(cache.features_path, mmap_mode="r").shape == (3, *cache.shape)
    first = np.array(cache.features(3))
    fill_cache(cache, head, dataset, preprocessing, 5)
    assert np.load(cache.features_path, mmap_mode="r").shape == (5, *cache.shape) and cache.computed == 5
    assert np.array_equal(cache.features(3), first)
    assert not np.array_equal(cache.features(5)[3], np.zeros(cache.shape, dtype=np.float32))


def test_files_of_an_earlier_run_in_out_are_named_as_such(tmp_path: Path) -> None:
    import os

    out = tmp_path / "out"
    out.mkdir()
    for name in ("estimators.csv", "profile.csv"):  # an earlier run's files, one of which this run rewrites
        (out / name).write_text("old\n")
        os.utime(out / name, (1_000_000_000, 1_000_000_000))
    done = run_in_process("profile", "cifar_resnet20", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [f"note: {out} also holds files this run did not write: estimators.csv"]
    assert (out / "estimators.csv").read_text() == "old\n" and (out / "profile.csv").read_text() != "old\n"


def _state_and_parent(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process from /proc, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _descendants(pid: int) -> set[int]:
    """Live (not zombie) processes below ``pid``."""
    import os

    parents = {int(e): info[1] for e in os.listdir("/proc") if e.isdigit()
               if (info := _state_and_parent(int(e))) is not None and info[0] != "Z"}
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if (info := _state_and_parent(pid)) is not None and info[0] != "Z"}


@needs_shared_data
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_a_killed_two_worker_sweep_leaves_no_process_and_the_rerun_finishes(tmp_path: Path, signal_name: str) -> None:
    import signal
    import subprocess
    import sys
    import time

    import pandas as pd

    args = [sys.executable, "-m", "splitbench", "codec", "mobilenet_v2", "--weights", "none", "--at", "bottleneck6",
            "--limit", "60", "--codec", "bpg", "--qp", "30,35,40", "--layout", "gray", "--workers", "2", "--data", str(SHARED_DATA),
            "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]
    sweep = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(_descendants(sweep.pid)) < 3 and time.monotonic() < deadline:  # forkserver + 2 encoders
        assert sweep.poll() is None, sweep.stderr.read()
        time.sleep(0.2)
    time.sleep(1.0)  # encoding under way
    family = _descendants(sweep.pid)
    assert len(family) >= 3 and sweep.poll() is None
    sweep.send_signal(getattr(signal, signal_name))
    sweep.wait(timeout=30)
    deadline = time.monotonic() + 5
    while _alive(family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(family), f"still alive 5 s after {signal_name}: {sorted(_alive(family))}"
    if signal_name == "SIGTERM":
        assert sweep.returncode == 130 and sweep.stderr.read().startswith("error: interrupted")
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    table = pd.read_csv(tmp_path / "out" / "codec.csv")
    assert sorted(table.loc[table["codec"] == "bpg", "param"].tolist()) == [30, 35, 40]


FOLDER_OPTIONS = [  # (command line, the folder option under test); every other input is valid
    (["profile", "cifar_resnet20"], "--out"),
    (["split", "cifar_resnet20", "--weights", "none", "--at", "layer2"], "--out"),
    (["eval", "cifar_resnet20", "--weights", "none", "--limit", "2"], "--out"),
    (["codec", "mobilenet_v2", "--weights", "none", "--limit", "2"], "--out"),
    (["codec", "mobilenet_v2", "--weights", "none", "--limit", "2"], "--cache"),
    (["codec", "mobilenet_v2", "--weights", "none", "--limit", "2"], "--keep-bitstreams"),
    (["train", "cifar_resnet20", "--epochs", "1", "--train-limit", "20"], "--out"),
    (["train", "cifar_resnet20", "--epochs", "1", "--train-limit", "20"], "--checkpoint-dir"),
    (["group", "cifar_resnet20", "--groups", "2"], "--out"),
    (["prune", "vit", "--ratio", "0.5"], "--out"),
    (["rd", "mobilenet_v2", "--weights", "none"], "--out"),
    (["rd", "mobilenet_v2", "--weights", "none"], "--cache"),
]


FOLDER_CASES = {  # case -> the one line expected, or None where the run goes ahead
    "existing file": "{option} {path} is a file, not a folder",
    "zero-byte file": "{option} {path} is a file, not a folder",
    "read-only folder": "{option} {path} cannot be written (Permission denied)",
    "missing parent": None,  # created when results are written, like mkdir -p; a dry run creates nothing
}


def _place(case: str, root: Path) -> Path:
    """A path of the given kind under ``root``."""
    if case in ("existing file", "text file"):
        (root / "taken").write_text("not a folder\n")
        return root / "taken"
    if case == "zero-byte file":
        (root / "empty").write_bytes(b"")
        return root / "empty"
    if case == "read-only folder":
        (root / "read-only").mkdir(mode=0o555)
        return root / "read-only"
    return root / "home" / "missing" / "parent" / "run"  # under a folder this user may write


@functools.lru_cache(maxsize=None)
def _imported_for(args: tuple[str, ...]) -> None:
    """One valid dry run as root first: the modules it imports lazily may live where ``nobody`` cannot read."""
    scratch = Path(tempfile.mkdtemp())
    data = [] if args[0] in ("profile", "split") else ["--data", str(SHARED_DATA)]
    done = run_in_process(*args, "--out", str(scratch / "out"), "--cache", str(scratch / "cache"), *data, "--dry-run") \
        if args[0] in ("codec", "rd") else run_in_process(*args, "--out", str(scratch / "out"), *data, "--dry-run")
    shutil.rmtree(scratch)
    assert done.returncode == 0, done.stderr


@needs_root
@needs_shared_data
@pytest.mark.parametrize("case", list(FOLDER_CASES))
@pytest.mark.parametrize(("args", "option"), FOLDER_OPTIONS, ids=lambda v: v if isinstance(v, str) else v[0])
def test_every_folder_option_ends_in_one_line_or_goes_ahead(args: list[str], option: str, case: str,
                                                             open_tmp_path: Path) -> None:
    root = open_tmp_path
    (root / "home").mkdir()
    (root / "home").chmod(0o777)
    path = _place(case, root)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    others = {"--out": root / "home" / "out"}
    if args[0] in ("codec", "rd"):
        others["--cache"] = root / "home" / "cache"
    if args[0] not in ("profile", "split"):
        others["--data"] = SHARED_DATA
    extra = [arg for name, other in others.items() if name != option for arg in (name, str(other))]
    _imported_for(tuple(args))
    with as_user("nobody"):  # root may write anywhere; a read-only folder is read-only to others
        done = run_in_process(*args, option, str(path), *extra, "--dry-run", cwd=root / "home")
    expected = FOLDER_CASES[case]
    if expected is None:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 2, done.stderr
        assert done.stderr == "error: " + expected.format(option=option, path=path) + "\n"
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # nothing written


DATA_COMMANDS = [
    ["eval", "cifar_resnet20", "--weights", "none", "--limit", "2"],
    ["codec", "mobilenet_v2", "--weights", "none", "--limit", "2"],
    ["train", "cifar_resnet20", "--epochs", "1", "--train-limit", "20"],
    ["group", "cifar_resnet20", "--groups", "2"],
    ["prune", "vit", "--ratio", "0.5"],
    ["rd", "mobilenet_v2", "--weights", "none"],
]
DATA_CASES = ["text file", "zero-byte file", "missing parent", "unreadable folder", "read-only copy"]


@needs_root
@needs_shared_data
@pytest.mark.parametrize("case", DATA_CASES)
@pytest.mark.parametrize("args", DATA_COMMANDS, ids=lambda v: v[0])
def test_every_data_root_that_holds_no_data_ends_in_one_line(args: list[str], case: str, open_tmp_path: Path) -> None:
    root = open_tmp_path
    if case == "unreadable folder":
        (root / "locked").mkdir(mode=0o000)
        path = root / "locked"
    elif case == "read-only copy":  # the shared layout, linked into a folder nobody may write
        path = root / "copy"
        path.mkdir()
        for entry in SHARED_DATA.iterdir():
            (path / entry.name).symlink_to(entry)
        path.chmod(0o555)
    else:
        path = _place(case, root)
    home = root / "writable"
    home.mkdir()
    home.chmod(0o777)
    others = ["--out", str(home / "out")] + (["--cache", str(home / "cache")] if args[0] in ("codec", "rd") else [])
    _imported_for(tuple(args))
    with as_user("nobody"):
        done = run_in_process(*args, "--data", str(path), *others, "--dry-run", cwd=home)
    if case == "read-only copy":  # reading is all a data root needs
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("error: ") and str(path) in done.stderr, done.stderr
    assert list(home.iterdir()) == []


WEIGHTS_OPTIONS = [  # a real run (weights are read last) and dry runs (which must look at the file too)
    ["profile", "cifar_resnet20", "--weights"],
    ["eval", "cifar_resnet20", "--limit", "2", "--dry-run", "--weights"],
    ["prune", "vit", "--ratio", "0.5", "--dry-run", "--weights"],
]


@needs_root
@needs_shared_data
@pytest.mark.parametrize("case", ["text", "zero-byte", "missing parent", "folder", "unreadable"])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("args", WEIGHTS_OPTIONS, ids=lambda v: v[0])
def test_weights_that_are_not_weights_end_in_one_line(args: list[str], case: str, suffix: str,
                                                      open_tmp_path: Path) -> None:
    path = open_tmp_path / ("nowhere" if case == "missing parent" else "") / f"w{suffix}"
    if case == "text":
        path.write_text("hello\n")
    elif case == "zero-byte":
        path.write_bytes(b"")
    elif case == "folder":
        path.mkdir()
    elif case == "unreadable":  # a real checkpoint that this user may not read
        path.write_bytes((SHARED_WEIGHTS / "cifar-resnet20-12fca82f.th").read_bytes())
        path.chmod(0o600)
    home = open_tmp_path / "home"
    home.mkdir()
    home.chmod(0o777)
    _imported_for((*[arg for arg in args[:-1] if arg != "--dry-run"], "--weights", "none") if args[0] != "prune"
                  else tuple(arg for arg in args[:-1] if arg != "--dry-run"))
    with as_user("nobody"):
        done = run_in_process(*args, str(path), "--out", str(home / "out"), "--data", str(SHARED_DATA), cwd=home) \
            if args[0] != "profile" else run_in_process(*args, str(path), "--out", str(home / "out"), cwd=home)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and str(path) in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert list(home.iterdir()) == []
