"""The user's runs: a folder per configuration, config.yaml, --config, rerun, runs list/compare."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import typer
import yaml

from conftest import needs_shared_data, needs_shared_weights, run_in_process, shared_weights
from splitbench import runs
from splitbench.cli import app
from splitbench.cli.runs import MEASURING

# A model each measuring command accepts, with the arguments it needs to parse.
REQUIRED = {"train": ["cifar_resnet20"], "prune": ["vit"], "group": ["cifar_resnet20"]}


def _codec_run(tmp_path: Path, *args: str) -> Path:
    result = run_in_process("codec", "cifar_resnet20", "--at", "layer1", "--split", "test", "--codec", "none,webp",
                            "--quality", "50", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folders = sorted((tmp_path / "runs" / "codec").iterdir(), key=lambda folder: folder.stat().st_mtime)
    return folders[-1]


@needs_shared_data
@needs_shared_weights
def test_runs_of_other_weights_and_limits_get_their_own_folders_and_compare(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(runs.RUNS_ENV, raising=False)
    trained = _codec_run(tmp_path, "--weights", str(shared_weights("cifar-resnet20-12fca82f.th")), "--limit", "16")
    random = _codec_run(tmp_path, "--weights", "none", "--limit", "8")
    assert trained != random and trained.parent == random.parent == tmp_path / "runs" / "codec"
    for folder in (trained, random):
        assert runs.RunConfig.read(folder).key()[:8] == folder.name.rsplit("-", 1)[1]
    # the random-weights run says so above its table; the trained one has only its subset to declare
    assert "random weights" in (random / "codec.md").read_text()
    assert "random weights" not in (trained / "codec.md").read_text()

    listing = run_in_process("runs", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "2 runs under runs" in listing.stdout

    compared = run_in_process("runs", "compare", str(trained), str(random), "--out", str(tmp_path / "cmp"),
                              cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    settings = runs.compare([runs.open_run(trained), runs.open_run(random)]).settings
    assert set(settings["setting"]) >= {"--weights", "--limit"}
    assert settings.set_index("setting").loc["--limit"].tolist() == ["16", "8"]
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert {"top1[A]", "top1[B]", "codec"} <= set(table.columns)
    rows = pd.read_csv(trained / "codec.csv")
    assert len(table) == len(rows) == len(pd.read_csv(random / "codec.csv"))  # each setting joined across the runs
    assert table["top1[A]"].max() > 50 > table["top1[B]"].max()  # trained vs random weights, on the same rows
    assert (tmp_path / "cmp" / "compare.png").is_file()


@needs_shared_data
def test_rerun_returns_the_same_results_and_a_foreign_out_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(runs.RUNS_ENV, raising=False)
    folder = _codec_run(tmp_path, "--weights", "none", "--limit", "8")
    before = (folder / "codec.csv").read_bytes()
    again = run_in_process("rerun", str(folder), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (folder / "codec.csv").read_bytes() == before
    assert len(list(folder.parent.iterdir())) == 1

    other = run_in_process("codec", "cifar_resnet20", "--at", "layer1", "--split", "test", "--codec", "none,webp",
                           "--quality", "50", "--weights", "none", "--limit", "4", "--out", str(folder), "--dry-run",
                           cwd=tmp_path)
    assert other.returncode == 2
    assert other.stderr.count("\n") == 1 and "another configuration (--limit 8 there, 4 now)" in other.stderr


def _parsed(command: str, args: list[str]) -> runs.RunConfig:
    """The RunConfig that ``splitbench COMMAND ARGS`` would run with (parsed by click, not run)."""
    group = typer.main.get_command(app)
    click_command = group.commands[command]
    with click_command.make_context(command, list(args)) as context:
        declared = {param.name: context.params[param.name] for param in click_command.params
                    if param.name in context.params and param.name != "config"}
    return runs.RunConfig(command, declared)


def _changed(value):
    """Another valid value of an option's type, to prove --config fills it."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 if value else 0.25
    return None


@pytest.mark.parametrize("command", MEASURING)
def test_config_fills_every_option_and_its_key_round_trips(command: str, tmp_path: Path) -> None:
    arguments = REQUIRED.get(command, ["resnet18"])
    defaults = _parsed(command, arguments)
    options = dict(defaults.options)
    changed = {}
    for name, value in options.items():
        new = _changed(value) if name not in ("dry_run",) else None
        if new is not None:
            options[name] = changed[name] = new
    written = tmp_path / "config.yaml"
    written.write_text(runs.RunConfig(command, options).to_yaml())

    filled = _parsed(command, ["--config", str(written)])
    assert changed, f"{command} has no option to change"
    for name, value in changed.items():
        assert filled.options[name] == value, f"{command} --{name} not filled from --config"
    assert filled.key() == runs.RunConfig(command, options).key()
    # the command line wins over the file
    overridden = _parsed(command, ["--config", str(written), *arguments])
    assert overridden.options["model"] == arguments[0]


def test_a_bad_config_file_ends_in_one_line(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(runs.RunConfig("eval", {"model": "resnet18"}).to_yaml())
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump({"command": "profile", "options": {"bogus": 1}}))
    broken = tmp_path / "broken.yaml"
    broken.write_text("command: [unclosed")
    cases = [
        (["profile", "--config", str(other)], "configuration of `eval`, not `profile`"),
        (["profile", "--config", str(unknown)], "`profile` has no option bogus"),
        (["profile", "--config", str(broken)], "is not valid YAML"),
        (["profile", "--config", str(tmp_path / "missing.yaml")], "no run configuration at"),
        (["rerun", str(tmp_path)], "no run configuration at"),
    ]
    for args, message in cases:
        result = run_in_process(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and result.stderr.count("\n") == 1, (args, result.stderr)


def test_profile_by_default_writes_under_runs_not_reports(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(runs.RUNS_ENV, raising=False)
    result = run_in_process("profile", "resnet18", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (folder,) = (tmp_path / "runs" / "profile").iterdir()
    assert folder.name.startswith("resnet18-") and (folder / "config.yaml").is_file()
    assert not (tmp_path / "reports").exists()
    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "mine"))
    assert run_in_process("profile", "resnet18", "--input-size", "160", cwd=tmp_path).returncode == 0
    (mine,) = (tmp_path / "mine" / "profile").iterdir()
    assert runs.RunConfig.read(mine).options["input_size"] == 160
