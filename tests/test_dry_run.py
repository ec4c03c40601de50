"""Every command checks its inputs before working; ``--dry-run`` stops there; the README's lines resolve."""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import REPO, SHARED, SHARED_DATA, needs_shared_data, needs_shared_weights
from splitbench.cli import main
from splitbench.preflight import reachable


def _readme_usage_lines() -> list[str]:
    """Every ``splitbench …`` line of the README's usage section (continuations joined)."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Usage"):]
    section = section[: section.index("\n### ")]
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #")[0].strip()
            if command.startswith("splitbench "):
                lines.append(command)
    return lines


USAGE = _readme_usage_lines()


def test_the_usage_section_is_found() -> None:
    assert len(USAGE) >= 25 and "splitbench profile vgg16" in USAGE


@needs_shared_data
@needs_shared_weights
@pytest.mark.parametrize("line", [line for line in USAGE if line != "splitbench models"])
def test_readme_usage_line_resolves(line: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    # As a user types it: from the repository root, with ../shared beside it as the data root.
    monkeypatch.chdir(REPO if (REPO.parent / "shared").resolve() == SHARED.resolve() else SHARED.parent / REPO.name)
    monkeypatch.setenv("SPLITBENCH_DATA", str(SHARED_DATA))
    with pytest.raises(SystemExit) as exit_:
        main([*shlex.split(line)[1:], "--dry-run"])
    captured = capsys.readouterr()
    assert exit_.value.code == 0, captured.err
    assert "dry run: nothing was computed" in captured.out


def _cli(*args: str, env: dict[str, str] | None = None, user: str | None = None) -> subprocess.CompletedProcess[str]:
    if user:
        account = pwd.getpwnam(user)
        prefix = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
    else:
        prefix = []
    return subprocess.run([*prefix, sys.executable, "-m", "splitbench", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})}, cwd=REPO)


def test_default_weights_offline_fail_before_any_download(tmp_path: Path) -> None:
    if reachable("download.pytorch.org"):
        pytest.skip("this machine reaches download.pytorch.org")
    torch_home = tmp_path / "torch"  # no cached VGG16 weights
    env = {"TORCH_HOME": str(torch_home), "SPLITBENCH_DATA": str(SHARED_DATA)}
    done = _cli("codec", "--weights", "default", "--codec", "bpg", "--qp", "35", "--dry-run", env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: torchvision's VGG16_Weights.IMAGENET1K_V1 is not cached")
    assert not torch_home.exists()  # nothing was downloaded, not even a folder made
    # --weights auto (the default) goes ahead offline, on random weights, and its plan says why
    done = _cli("codec", "--codec", "bpg", "--qp", "35", "--dry-run", env=env)
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert "auto: random (seeded)" in done.stdout
    assert not torch_home.exists()


@needs_shared_data
def test_an_existing_file_as_out_fails_before_any_encoding(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    cache = tmp_path / "cache"
    done = _cli("codec", "mobilenet_v2", "--weights", "none", "--out", str(taken), "--cache", str(cache),
                env={"SPLITBENCH_DATA": str(SHARED_DATA)})
    assert done.returncode == 2 and done.stderr == f"error: --out {taken} is a file, not a folder\n"
    assert not cache.exists() and taken.read_text() == "not a folder"


@needs_shared_data
@needs_shared_weights
@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0, reason="needs root and setpriv to drop privileges")
def test_a_read_only_out_fails_before_training() -> None:
    # pytest's own temporary folders are private to root: this one must be enterable by nobody.
    tmp_path = Path(tempfile.mkdtemp(prefix="splitbench-ro-"))
    tmp_path.chmod(0o755)
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o777)  # mkdir's mode is masked by the umask; nobody must be able to write here
    weights = SHARED / "weights" / "cifar-resnet20-12fca82f.th"
    done = _cli("group", "cifar_resnet20", "--weights", str(weights), "--groups", "2", "--out", str(read_only / "run"),
                env={"SPLITBENCH_DATA": str(SHARED_DATA), "HOME": str(home)}, user="nobody")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: --out {read_only / 'run'} cannot be written (Permission denied)")
    assert list(read_only.iterdir()) == []
    shutil.rmtree(tmp_path)


@needs_shared_data
def test_prune_runs_on_the_shipped_checkpoint_without_options(tmp_path: Path) -> None:
    done = _cli("prune", "vit", "--ratio", "0.5", "--method", "stability", "--dry-run",
                env={"SPLITBENCH_DATA": str(SHARED_DATA)})
    assert done.returncode == 0, done.stderr
    assert "using the reference checkpoint" in done.stdout and "vit-cifar10-fp16.safetensors" in done.stdout
