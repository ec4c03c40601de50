"""The codec setting that ``serve``, ``link`` and ``plan`` share, and the cut it makes a :class:`SplitSetup` of."""

from __future__ import annotations

from splitbench.codecs.base import codec_class
from splitbench.errors import SplitbenchError
from splitbench.link.endpoints import EDGE, INPUT, SplitSetup
from splitbench.transport import BASELINES, check_trained_for, takes_parameter
from splitbench.values import split_names, split_numbers
from splitbench.zoo import ZooModel


def codec_setting(codec: str, qp: int | None, quality: int | None, required: bool = True) -> tuple[str, int | None]:
    """``--codec NAME`` (its value from ``--qp``/``--quality``) or ``NAME:V`` (its own value, as
    in ``codec``'s NAME:V1/V2): the codec and its parameter value. An option that the codec
    does not take is refused, as ``codec`` refuses it. ``required``: a codec with a parameter
    needs a value. A learned or a user's codec (``learned:…``, ``FILE.py:FUNCTION``) takes none."""
    name, colon, own = codec.partition(":") if takes_parameter(codec) else (codec, "", "")
    parameter = None if name in BASELINES or not takes_parameter(name) else codec_class(name).parameter
    given = {"qp": qp, "quality": quality}
    for option, value in given.items():
        if value is not None and option != parameter:
            raise SplitbenchError(f"--{option} was given but no codec in --codec takes it")
    if colon:
        if parameter is None:
            raise SplitbenchError(f"--codec {codec}: {name} takes no parameter value")
        values = split_numbers(own.replace("/", ","), f"--codec {codec}", int)
        if len(values) != 1:
            raise SplitbenchError(f"--codec {codec}: one {parameter} value here (the codec command sweeps several)")
        if given[parameter] is not None and given[parameter] != values[0]:
            raise SplitbenchError(f"--codec {codec} and --{parameter} {given[parameter]} disagree; give one")
        return name, values[0]
    if parameter is not None and given[parameter] is None and required:
        raise SplitbenchError(f"--codec {name} needs --{parameter}")
    return name, given[parameter] if parameter else None


def search_codecs(text: str) -> list[str]:
    """``plan --search``'s ``--codec``: a comma list of codec strings, an image codec with its
    values (``bpg:32/38/44``), each value one setting: ``["bpg:32", "bpg:38", "bpg:44"]``."""
    settings: list[str] = []
    for item in split_names(text, "--codec"):
        name, colon, own = item.partition(":") if takes_parameter(item) else (item, "", "")
        if name in BASELINES or not takes_parameter(name):
            settings.append(item)
            continue
        parameter = codec_class(name).parameter
        if parameter and not colon:
            raise SplitbenchError(f"--codec {item}: give the {parameter} values to try, as {name}:V1/V2")
        values = split_numbers(own.replace("/", ","), f"--codec {item}", int) if colon else [None]
        settings += [f"{name}:{value}" if value is not None else name for value in values]
    return list(dict.fromkeys(settings))


def setup_for(zoo_model: ZooModel, at: str, codec: str, qp: int | None, quality: int | None, layout: str,
              bits: int) -> SplitSetup:
    """One cut and its codec from the command line's options (the cut's canonical name)."""
    if at in (INPUT, EDGE):
        return SplitSetup(at, "jpeg" if at == INPUT else "none")
    cut = zoo_model.cuts().resolve(at)
    codec, param = codec_setting(codec, qp, quality)
    if not takes_parameter(codec):
        setup = SplitSetup(cut.name, codec)
        built = setup.tensor_codec(tuple(cut.shape))  # a learned codec for another cut, a user codec that fails: now
        check_trained_for(built, zoo_model, cut.name, codec, at)
        return setup
    at = cut.name
    options = (("chroma", "420"), ("backend", "pyav")) if codec == "bpg" else ()  # as `codec` runs it
    return SplitSetup(at, codec, param, layout, bits, options)


def serve_arguments(setup: SplitSetup) -> list[str]:
    """The ``splitbench serve`` options that serve ``setup``."""
    arguments = ["--at", setup.at, "--codec", setup.codec]
    if setup.pictured:
        parameter = codec_class(setup.codec).parameter
        if parameter:
            arguments += [f"--{parameter}", str(setup.param)]
        arguments += ["--layout", setup.layout, "--bits", str(setup.bits)]
    return arguments if setup.at != INPUT else ["--at", INPUT, "--codec", "jpeg"]
