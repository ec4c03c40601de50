"""The option parsers: any text ends in a parsed value or one SplitbenchError, never another exception.

Property-based (hypothesis) for the parsers themselves; table-driven through the command line
for every float and number-list option (they fail while parsing, before any work, so each
case runs in this process in well under a second).
"""

from __future__ import annotations

import inspect
import math
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SHARED_DATA, needs_shared_data, run_in_process
from splitbench.cli import app
from splitbench.cli.options import FiniteFloat, normalisation, split_names, split_numbers
from splitbench.errors import SplitbenchError

# Text as users mistype it: numbers, words for infinity and NaN, separators, blanks, odd characters.
PIECES = st.sampled_from(["1", "-2", "0.5", "1e3", "1e400", "-1e400", "nan", "NaN", "inf", "-inf", "Infinity",
                          "1_000", "0x10", "", " ", ",", ",,", "x", "٣", "\x00", "1e", ".", "-", "+0"])
TEXTS = st.one_of(st.text(max_size=30), st.lists(PIECES, max_size=6).map(",".join),
                  st.lists(PIECES, max_size=6).map("".join))
ANY_FLOATS = st.floats(allow_nan=True, allow_infinity=True)
FAST = settings(max_examples=300, deadline=None)


def _one_line(error: SplitbenchError, option: str) -> None:
    message = str(error)
    assert message.startswith(option) and "\n" not in message, message


@FAST
@given(text=TEXTS, kind=st.sampled_from([float, int]), minimum=st.sampled_from([None, 0, 1]))
def test_split_numbers_gives_finite_numbers_or_one_line(text: str, kind: type, minimum: int | None) -> None:
    try:
        numbers = split_numbers(text, "--values", kind, minimum)
    except SplitbenchError as error:
        _one_line(error, "--values")
        return
    assert numbers and all(isinstance(n, kind) and math.isfinite(n) for n in numbers)
    assert minimum is None or min(numbers) >= minimum


@FAST
@given(text=TEXTS)
def test_split_names_gives_stripped_names_or_one_line(text: str) -> None:
    try:
        names = split_names(text, "--at")
    except SplitbenchError as error:
        _one_line(error, "--at")
        return
    assert names and all(name == name.strip() and name and "," not in name for name in names)


@FAST
@given(values=st.lists(ANY_FLOATS, min_size=1, max_size=5))
def test_a_list_parses_exactly_when_every_number_in_it_is_finite(values: list[float]) -> None:
    text = ",".join(repr(v) for v in values)
    if all(math.isfinite(v) for v in values):
        assert split_numbers(text, "--bandwidth") == values
    else:
        with pytest.raises(SplitbenchError, match=r"^--bandwidth takes finite numbers \(no NaN or infinity\)"):
            split_numbers(text, "--bandwidth")


@FAST
@given(value=st.one_of(TEXTS, ANY_FLOATS), bounds=st.sampled_from([(None, None), (0.0, None), (0.01, 1000.0)]))
def test_a_float_option_gives_a_finite_number_in_range_or_one_line(value: str | float, bounds: tuple) -> None:
    parse = FiniteFloat("--lr", *bounds)
    try:
        number = parse(value)
    except SplitbenchError as error:
        _one_line(error, "--lr")
        return
    assert math.isfinite(number)
    assert (bounds[0] is None or number >= bounds[0]) and (bounds[1] is None or number <= bounds[1])


@FAST
@given(text=TEXTS, option=st.sampled_from(["--mean", "--std"]))
def test_normalisation_gives_three_finite_numbers_or_one_line(text: str, option: str) -> None:
    try:
        values = normalisation(text, option)
    except SplitbenchError as error:
        _one_line(error, option)
        return
    assert len(values) == 3 and all(math.isfinite(v) for v in values)
    assert option == "--mean" or min(values) > 0


CODEC_PIECES = st.sampled_from(["bpg", "webp", "png", "avif", "none", "minmax8", "jpeg", ":", "/", "@", "gray",
                                 "paper", "35", "-1", "99", "nan", "inf", "", " ", "\n"])


@FAST
@given(codecs=st.lists(st.lists(CODEC_PIECES, max_size=5).map("".join), max_size=4),
       qps=st.lists(st.integers(-5, 60), max_size=2), qualities=st.lists(st.integers(-5, 110), max_size=2))
def test_a_codec_list_gives_points_or_one_error(codecs: list[str], qps: list[int], qualities: list[int]) -> None:
    from splitbench.cli.codec import build_points

    try:
        points = build_points(split_names(",".join(codecs)), qps, qualities, ["gray"], 8, "420", "pyav")
    except SplitbenchError:
        return
    assert points[0].codec == "none"


def test_the_parsers_name_what_they_refuse() -> None:
    assert split_numbers(" 1, 2.5 ,", "--rtt") == [1.0, 2.5]
    assert FiniteFloat("--lr", 0.0)("1e-3") == 0.001
    for text, message in [("inf", "--lr takes a finite number ≥ 0, got 'inf'"),
                          ("nan", "--lr takes a finite number ≥ 0, got 'nan'"),
                          ("-1", "--lr takes a finite number ≥ 0, got '-1'"),
                          ("1e-3x", "--lr takes a finite number ≥ 0, got '1e-3x'")]:
        with pytest.raises(SplitbenchError) as refused:
            FiniteFloat("--lr", 0.0)(text)
        assert str(refused.value) == message
    with pytest.raises(SplitbenchError, match=r"^--rtt takes finite numbers \(no NaN or infinity\), got '0,1e400'$"):
        split_numbers("0,1e400", "--rtt")  # 1e400 reads as inf


def _float_options() -> list[tuple[str, str, object]]:
    """(command, parameter, its typer.Option) for every float-typed option of every command."""
    found = []
    for command in app.registered_commands:
        for name, parameter in inspect.signature(command.callback).parameters.items():
            hints = typing.get_type_hints(command.callback, include_extras=True)
            annotation = hints[name]
            base, *extras = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Annotated else (annotation,)
            if float in (base, *typing.get_args(base)):
                found.append((command.name, name, extras[0] if extras else parameter.default))
    return found


def test_every_float_option_of_every_command_refuses_nan_and_inf() -> None:
    options = _float_options()
    assert {(command, name) for command, name, _ in options} >= {("train", "lr"), ("rd", "lr"), ("group", "lr"),
                                                                ("plan", "edge_slowdown"), ("prune", "alpha")}
    unchecked = [f"{command} {name}" for command, name, info in options
                 if not isinstance(getattr(info, "parser", None), FiniteFloat)]
    assert not unchecked, f"float options not declared with options.float_option: {unchecked}"


@needs_shared_data
@pytest.mark.parametrize("args, message", [
    (["train", "cifar_resnet20", "--lr", "inf"], "error: --lr takes a finite number ≥ 0, got 'inf'"),
    (["train", "cifar_resnet20", "--checkpoint-minutes", "nan"], "error: --checkpoint-minutes takes a finite number ≥ 0"),
    (["group", "cifar_resnet20", "--lr", "nan"], "error: --lr takes a finite number ≥ 0, got 'nan'"),
    (["rd", "--lr", "-inf"], "error: --lr takes a finite number ≥ 0, got '-inf'"),
    (["rd", "--warmup-rate-weight", "nan"], "error: --warmup-rate-weight takes a finite number ≥ 0"),
    (["rd", "--lambdas", "0.05,inf"], "error: --lambdas takes finite numbers (no NaN or infinity), got '0.05,inf'"),
    (["rd", "--at", "input", "--aux-alpha", "nan"], "error: --aux-alpha takes finite numbers"),
    (["plan", "--bandwidth", "nan"], "error: --bandwidth takes finite numbers (no NaN or infinity), got 'nan'"),
    (["plan", "--rtt", "inf"], "error: --rtt takes finite numbers (no NaN or infinity), got 'inf'"),
    (["plan", "--edge-slowdown", "nan"], "error: --edge-slowdown takes a finite number from 0.01 to 1000, got 'nan'"),
    (["link", "--bandwidth", "1,Infinity"], "error: --bandwidth takes finite numbers"),
    (["serve", "--max-message-mb", "inf"], "error: --max-message-mb takes a finite number from 0.001 to 1024"),
    (["eval", "resnet18", "--mean", "nan,0.5,0.5"], "error: --mean takes finite numbers (no NaN or infinity)"),
    (["codec", "--std", "inf,1,1"], "error: --std takes finite numbers (no NaN or infinity), got 'inf,1,1'"),
    (["prune", "vit", "--alpha", "inf"], "error: --alpha takes a finite number ≥ 0, got 'inf'"),
    (["prune", "vit", "--ratio", "nan"], "error: pruning ratio must be in [0, 1), got nan"),
])
def test_nan_and_inf_options_end_in_one_line_before_any_work(args: list[str], message: str, tmp_path: Path) -> None:
    where = ["--dry-run"] if args[0] == "serve" else ["--out", str(tmp_path / "out"), "--data", str(SHARED_DATA)]
    done = run_in_process(*args, *where)
    assert done.returncode == 2 and done.stderr.startswith(message), done.stderr
    assert done.stderr.count("\n") == 1 and not (tmp_path / "out").exists()


def test_an_explicit_codec_value_wins_and_the_option_serves_the_others(capsys: pytest.CaptureFixture[str]) -> None:
    from splitbench import provenance
    from splitbench.cli.codec import build_points

    provenance.clear_warnings()
    rows = [(p.codec, p.spec.param) for p in build_points(["webp:50", "bpg:35"], [35], [], ["gray"], 8, "420", "pyav")[1:]]
    assert rows == [("webp", 50), ("bpg", 35)] and not capsys.readouterr().err  # the same value twice: nothing to say
    rows = [(p.codec, p.spec.param) for p in build_points(["bpg:30", "webp:50", "bpg"], [35], [], ["gray"], 8, "420",
                                                          "pyav")[1:]]
    assert rows == [("bpg", 30), ("webp", 50), ("bpg", 35)]  # the bare bpg takes --qp
    build_points(["bpg:30"], [35], [], ["gray"], 8, "420", "pyav")
    warning = "--qp 35 is not used: every codec that takes it has its own values (NAME:V1/V2), which win"
    assert capsys.readouterr().err == f"warning: {warning}\n"
    assert provenance.collect("codec", {})["warnings"] == [warning]  # recorded in the sidecar
    with pytest.raises(SplitbenchError, match="^--qp was given but no codec in --codec takes it$"):
        build_points(["webp:50", "png"], [35], [], ["gray"], 8, "420", "pyav")
    provenance.clear_warnings()


@needs_shared_data
def test_the_codec_command_takes_own_values_beside_qp(tmp_path: Path) -> None:
    done = run_in_process("codec", "mobilenet_v2", "--weights", "none", "--codec", "webp:50,bpg:35", "--qp", "35",
                          "--data", str(SHARED_DATA), "--out", str(tmp_path / "out"), "--dry-run")
    assert done.returncode == 0 and not done.stderr, done.stderr
